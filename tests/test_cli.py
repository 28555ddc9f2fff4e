"""The ``rq-gevent`` command: help, version, a real run, and one clear line for every bad input."""

import os
import subprocess
import sys

import pytest
import testjobs
from conftest import REPO_DIR, TESTS_DIR, wait_until
from rq import Queue
from rq.job import Job, JobStatus

import rq_gevent


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rq_gevent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_DIR),
        env=dict(os.environ, **(env or {})),
    )


@pytest.mark.once  # parsing and imports: the same on every version
def test_version_and_help():
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"rq-gevent {rq_gevent.__version__}"

    bare = run_cli()  # no command: the help, as --help prints it (it was squeezed into one error line)
    assert bare.returncode == 0 and bare.stderr == "", bare.stderr
    assert bare.stdout == run_cli("--help").stdout and bare.stdout.startswith("Usage: rq-gevent [OPTIONS]")
    assert "\nCommands:\n  worker  " in bare.stdout
    assert run_cli("help").stdout == bare.stdout
    assert run_cli("help", "worker").stdout == run_cli("worker", "--help").stdout

    help_text = run_cli("worker", "--help").stdout
    for option in (
        "--concurrency",
        "--url",
        "--config",
        "--burst",
        "--graceful-timeout",
        "--with-scheduler",
        "--max-jobs",
        "--max-idle-time",
        "--logging_level",
        "--dequeue-strategy",
        "--pid",
    ):
        assert option in help_text


def test_burst_run_with_options(connection, redis_url, tmp_path):
    queue = Queue("mail", connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.1, i) for i in range(5)]
    pid_file = tmp_path / "worker.pid"
    result = run_cli(
        "worker",
        "mail",
        "-u",
        redis_url,
        "-c",
        "5",
        "--burst",
        "-P",
        str(TESTS_DIR),
        "--name",
        "cli-burst",
        "--pid",
        str(pid_file),
        "--disable-job-desc-logging",
    )
    assert result.returncode == 0, result.stderr
    assert [job.return_value() for job in jobs] == list(range(5))
    assert pid_file.read_text().isdigit()
    log = result.stdout + result.stderr
    assert "running up to 5 jobs at once" in log
    assert "testjobs.green_sleep" not in log  # descriptions are not logged


def test_config_module_supplies_url_queues_and_concurrency(connection, redis_url, tmp_path):
    (tmp_path / "workersettings.py").write_text(
        f"REDIS_URL = {redis_url!r}\nQUEUES = ['high', 'low']\nCONCURRENCY = 7\nNAME = 'from-config'\n"
    )
    job = Queue("low", connection=connection).enqueue(testjobs.green_sleep, 0, "configured")
    result = run_cli("worker", "--config", "workersettings", "-P", str(tmp_path), "-P", str(TESTS_DIR), "--burst")
    assert result.returncode == 0, result.stderr
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert "running up to 7 jobs at once" in result.stdout
    assert "Worker from-config" in result.stdout


@pytest.mark.once  # parsing and imports: the same on every version
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "0"], "0 is not in the range 1<=x<=1000000"),
        (["-c", "many"], "'many' is not a whole number (-c is --concurrency here; rq worker's -c CONFIG is --config)"),
        (["-u", "redis://127.0.0.1:1/0"], "cannot connect to Redis at 127.0.0.1:1/0"),
        (["-u", "notaurl://what"], "invalid Redis URL notaurl://what"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:1/0"], "cannot connect to Redis at 127.0.0.1:1/0"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:notaport/0"], "invalid Redis URL redis://:***@127.0.0.1:notaport/0"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:99999/0"], "invalid Redis URL redis://:***@127.0.0.1:99999/0"),
        (["-u", "redis:/:s3cret-pw@127.0.0.1:6379/0"], "invalid Redis URL redis:***@127.0.0.1:6379/0"),
        (["-u", ":s3cret-pw@127.0.0.1:6379/0"], "invalid Redis URL :***@127.0.0.1:6379/0"),
        (["-u", "redis://:s3c?ret-pw@127.0.0.1:6379/0"], "invalid Redis URL redis://:***@127.0.0.1:6379/0: it does"),
        (["-u", "redis://:s3cret-pw/@127.0.0.1:6379/0"], "invalid Redis URL redis://:***@127.0.0.1:6379/0: it does"),
        (["-u", "redis://127.0.0.1:6379/0?db=0;password=s3cret-pw"], "invalid Redis URL redis://127.0.0.1:6379/0?db"),
        (["-u", "redis://127.0.0.1:1/0?PassWord=s3cret-pw"], "invalid Redis connection settings for 127.0.0.1:1/0"),
        (["-u", "redis://127.0.0.1:1/0?password=s3cret-pw"], "cannot connect to Redis at 127.0.0.1:1/0"),
        (["--worker-class", "no.such.Worker"], "cannot import worker class 'no.such.Worker'"),
        (["--worker-class", "rq.Worker"], "is not a subclass of rq_gevent.GeventWorker"),
        (["--job-class", "rq.job.Nope"], "cannot import job class 'rq.job.Nope'"),
        (["--config", "no_such_settings_module"], "cannot import config module 'no_such_settings_module'"),
        (["--verbose", "--quiet"], "--verbose and --quiet cannot be used together"),
        (["-n", "0"], "--processes must be a whole number of at least 1 or 'auto', got '0'"),
        (["-n", "-3"], "--processes must be a whole number of at least 1 or 'auto', got '-3'"),
        (["-c", "99999999999999999999"], "is not in the range 1<=x<=1000000"),
        (["--pid", "/nonexistent-dir/x.pid"], "--pid /nonexistent-dir/x.pid: directory /nonexistent-dir does not"),
        (["--pid", "/nonexistent-dir/x.pid", "-n", "2"], "directory /nonexistent-dir does not exist"),
        (["--pid", "/proc/rq-gevent-test.pid"], "--pid /proc/rq-gevent-test.pid: cannot be written"),
        (["--name", "mail worker"], "worker name 'mail worker' must be text without spaces or control characters"),
        (["--name", "mail worker", "-n", "2"], "worker name 'mail worker' must be text without spaces"),
        (["-n", "9" * 5000], "--processes must be a whole number"),
        (["-n", "1_0"], "--processes must be a whole number of at least 1 or 'auto', got '1_0'"),
        (["-n", "\u0662"], "--processes must be a whole number of at least 1 or 'auto', got '\u0662'"),
        (["-n", "99999"], "--processes 99999 is more than "),
        (["-n", "lots"], "--processes must be a whole number of at least 1 or 'auto', got 'lots' (-n is --processes"),
        (["-n", "2", "--max-memory-per-child", "10"], "--max-memory-per-child 10 MB is below a worker process's"),
        (["-n", "2", "--hub-timeout", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_input_is_one_clear_line(redis_url, args, message):
    if not any(arg.startswith(("-u", "--config")) for arg in args):
        args = [*args, "-u", redis_url]
    result = run_cli("worker", *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rq-gevent: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "spawned child" not in result.stderr  # nothing started


def test_rq_worker_short_flags(connection, redis_url):
    """``-s``, ``-d`` and ``-l`` mean what they mean to ``rq worker`` (and ``rq worker-pool``)."""
    from datetime import UTC, datetime, timedelta

    from rq.registry import FailedJobRegistry

    queue = Queue("short-flags", connection=connection)
    scheduled = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), testjobs.green_sleep, 0, "due")
    failing = queue.enqueue(testjobs.fail, "no handler")
    args = ("worker", "short-flags", "-u", redis_url, "-P", str(TESTS_DIR), "--burst")
    result = run_cli(*args, "-s", "-d", "-l", "warning")
    assert result.returncode == 0, result.stderr
    assert scheduled.get_status(refresh=True) == JobStatus.FINISHED  # -s: the scheduler moved it
    assert failing.get_status(refresh=True) == JobStatus.FAILED
    assert failing.id not in FailedJobRegistry(queue=queue)  # -d: rq's default handler did not run
    assert "started with PID" not in result.stdout + result.stderr  # -l warning: no INFO line
    # The instruments can fail: without the flags the same jobs take the other branch of each check.
    scheduled = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), testjobs.green_sleep, 0, "due")
    failing = queue.enqueue(testjobs.fail, "handled")
    result = run_cli(*args)
    assert scheduled.get_status(refresh=True) == JobStatus.SCHEDULED
    assert failing.id in FailedJobRegistry(queue=queue)
    assert "started with PID" in result.stdout + result.stderr


def test_rq_worker_dequeue_strategy_short_flag(connection, redis_url):
    """``-ds round_robin`` is rq's --dequeue-strategy, not -d, -s and a queue named round_robin."""
    first, second = Queue("ds-first", connection=connection), Queue("ds-second", connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0, name) for name in ("a", "b") for queue in (first, second)]
    result = run_cli("worker", "ds-first", "ds-second", "-ds", "round_robin", "-c", "1", "-b", "-u", redis_url,
                     "-P", str(TESTS_DIR))  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "round_robin" not in output and "scheduler" not in output.lower(), output
    started = sorted(jobs, key=lambda job: Job.fetch(job.id, connection=connection).started_at)
    assert [job.origin for job in started] == ["ds-first", "ds-second", "ds-first", "ds-second"]
    assert all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs)
    # The instrument can fail: rq's default strategy drains the first queue first.
    jobs = [queue.enqueue(testjobs.green_sleep, 0, name) for name in ("a", "b") for queue in (first, second)]
    result = run_cli("worker", "ds-first", "ds-second", "-c", "1", "-b", "-u", redis_url, "-P", str(TESTS_DIR))
    started = sorted(jobs, key=lambda job: Job.fetch(job.id, connection=connection).started_at)
    assert [job.origin for job in started] == ["ds-first", "ds-first", "ds-second", "ds-second"]


def test_every_rq_worker_flag_is_honoured_or_refused_with_a_pointer():
    """Each option ``rq worker`` takes (of the rq installed) means the same here, or is one of the short
    flags that mean something else, whose rq-style value is refused naming rq's option."""
    from rq.cli.cli import main as rq_main

    from rq_gevent.cli import RQ_FLAGS_MEANING_OTHERWISE, worker

    same_meaning = {"exception_handler": "exception_handlers", "pid": "pid_file", "path": "paths"}
    ours = {flag: param.name for param in worker.params for flag in param.opts}
    differing = {}
    for param in rq_main.commands["worker"].params:
        for flag in param.opts:
            if ours.get(flag) != same_meaning.get(param.name, param.name):
                differing[flag] = next(opt for opt in param.opts if opt.startswith("--"))
    assert differing == RQ_FLAGS_MEANING_OTHERWISE
    for flag, rq_option in differing.items():
        result = run_cli("worker", flag, "my_settings_or_name", "-u", "redis://127.0.0.1:1/0")
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert f"rq worker's {flag} " in lines[0] and f"is {rq_option}" in lines[0], lines[0]


def test_a_module_that_cannot_be_imported_is_named_with_the_reason(connection, redis_url, tmp_path):
    """rq's import_attribute says "Invalid attribute name" whatever went wrong; a user needs the reason."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mailjobs_elsewhere.py").write_text("def send(to):\n    return to\n")
    (elsewhere / "broken_dependency.py").write_text("import rq_gevent_tests_not_installed\nclass W: pass\n")
    for path, reason in [
        ("nope.Nope", "no module named 'nope' (looked for in "),
        ("broken_dependency.W", "module 'broken_dependency' cannot be imported: ModuleNotFoundError: "
                                "No module named 'rq_gevent_tests_not_installed'"),
        ("rq_gevent.Nope", "module 'rq_gevent' has no attribute 'Nope'"),
    ]:  # fmt: skip
        result = run_cli("worker", "-w", path, "-u", redis_url, "-P", str(elsewhere))
        assert result.stderr.strip().splitlines() == [f"rq-gevent: error: cannot import worker class {path!r}: "
                                                      f"{result.stderr.split(': ', 3)[-1].strip()}"]  # fmt: skip
        assert reason in result.stderr, result.stderr
    # A job whose module is not on the worker's path fails saying so, with the path it looked in.
    job = Queue("elsewhere", connection=connection).enqueue("mailjobs_elsewhere.send", "a@example.com")
    run_cli("worker", "elsewhere", "-b", "-u", redis_url, "-P", str(TESTS_DIR))
    assert job.get_status(refresh=True) == JobStatus.FAILED
    last_line = job.latest_result().exc_string.strip().splitlines()[-1]
    assert "'mailjobs_elsewhere.send' cannot be imported: no module named 'mailjobs_elsewhere'" in last_line
    assert f"looked for in {TESTS_DIR}" in last_line and "the worker's -P adds one" in last_line, last_line
    # The instrument can fail: with the module's directory on the path, the job runs.
    job = Queue("elsewhere", connection=connection).enqueue("mailjobs_elsewhere.send", "a@example.com")
    run_cli("worker", "elsewhere", "-b", "-u", redis_url, "-P", str(elsewhere))
    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "a@example.com"


@pytest.mark.once  # parsing and imports: the same on every version
def test_help_prints_percent_signs_once():
    help_text = run_cli("worker", "--help").stdout
    assert "(+0-10% jitter)" in help_text and "%%" not in help_text


CONFIG_ERRORS = [
    (["--worker-class", "no.such.Worker"], "cannot import worker class 'no.such.Worker'"),
    (["--job-class", "rq.job.Nope"], "cannot import job class 'rq.job.Nope'"),
    (["--job-class", "rq.Queue"], "job class 'rq.Queue' is not a subclass of rq.job.Job"),
    (["--queue-class", "rq.Nope"], "cannot import queue class 'rq.Nope'"),
    (["--queue-class", "rq.job.Job"], "queue class 'rq.job.Job' is not a subclass of rq.queue.Queue"),
    (["--config", "no_such_settings_module"], "cannot import config module 'no_such_settings_module'"),
    (["--exception-handler", "os.sep"], "exception handler 'os.sep' is not callable"),
    (["--connection-class", "no.such.Redis"], "cannot import connection class 'no.such.Redis'"),
    (["--connection-class", "json.JSONDecoder"], "connection class 'json.JSONDecoder' is not a subclass of redis."),
    (
        ["--serializer", "no_such_module.Serializer"],
        "cannot use serializer 'no_such_module.Serializer': no module named 'no_such_module'",
    ),
    (["--serializer", "no.such.serializer"], "cannot use serializer"),  # rq's resolve_serializer differs by version
    (["-u", "notaurl://what"], "invalid Redis URL notaurl://what"),
    (["--log-format", "%(asctime)s %(no_such_field)s"], "--log-format '%(asctime)s %(no_such_field)s' cannot"),
]


@pytest.mark.parametrize("processes", ["1", "3"])
@pytest.mark.parametrize(("args", "message"), CONFIG_ERRORS)
def test_configuration_errors_are_found_before_connecting_and_never_retried(args, message, processes):
    """A Redis URL nobody listens on: had the worker tried to connect first, the error would be that."""
    if not any(arg in ("-u", "--config") for arg in args):
        args = [*args, "-u", "redis://127.0.0.1:1/0"]
    result = run_cli("worker", "-n", processes, *args, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"rq-gevent: error: {result.stderr.strip()[18:]}"]
    assert message in result.stderr, result.stderr
    assert "cannot connect" not in result.stderr and "spawned child" not in result.stderr


def test_wrong_credentials_are_one_line_before_any_worker_process_starts(redis_url):
    connection_url = redis_url.replace("redis://", "redis://nobody:wrong-pw@", 1)
    result = run_cli("worker", "-n", "2", "-u", connection_url, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"rq-gevent: error: Redis at {redis_url.split('//')[1]} refused the credentials"
    ], result.stderr


def test_a_configuration_error_found_by_a_worker_process_stops_the_launcher_at_once(
    connection, redis_url, worker_process
):
    """Credentials withdrawn while the pool runs: the replacement of a killed worker process meets
    them refused, and stops the pool at once, with no start-up retries (five rounds of back-off)."""
    import signal
    import time

    from rq import Worker

    connection.acl_setuser("rotated", enabled=True, passwords=["+right-pw"], commands=["+@all"], keys=["*"],
                           channels=["*"])  # fmt: skip
    try:
        master = worker_process("-n", "2", "-u", redis_url.replace("redis://", "redis://rotated:right-pw@", 1))
        wait_until(lambda: len(Worker.all(connection=connection)) == 2, timeout=30, what="2 worker processes")
        connection.acl_deluser("rotated")
        started = time.monotonic()
        os.kill(Worker.all(connection=connection)[0].pid, signal.SIGKILL)
        assert master.wait(30) == 1
        elapsed = time.monotonic() - started
    finally:
        connection.acl_deluser("rotated")
    output = master.output()
    last = output.strip().splitlines()[-1]
    assert last.startswith("rq-gevent: error: ") and "refused the credentials" in last, output
    assert "right-pw" not in output
    assert output.count("spawned child") == 3, output
    assert elapsed < 15, elapsed  # not a behaviour bound: five rounds of back-off would take 12 s more


def test_redis_url_in_the_environment_and_a_config_modules_own_redis_is_an_error(connection, redis_url, tmp_path):
    """A PaaS sets REDIS_URL unasked; a config module naming another Redis (SENTINEL here) used to lose
    in silence.  With -u the command line chooses, and says so; the same URL twice is no conflict."""
    (tmp_path / "sentinel_settings.py").write_text(
        'SENTINEL = {"INSTANCES": [("127.0.0.1", 1)], "MASTER_NAME": "mymaster"}\nQUEUES = ["two-sources"]\n'
    )
    (tmp_path / "same_url_settings.py").write_text(f"REDIS_URL = {redis_url[:-2]!r}\nQUEUES = ['two-sources']\n")
    secret_url = redis_url.replace("redis://", "redis://:env-s3cret@", 1)
    for processes in ("1", "2"):
        result = run_cli("worker", "--config", "sentinel_settings", "-P", str(tmp_path), "-b", "-n", processes,
                         env={"REDIS_URL": secret_url})  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"rq-gevent: error: two Redis connections are configured: REDIS_URL in the environment "
            f"({redis_url.replace('redis://', 'redis://:***@', 1)}) and SENTINEL in config module "
            "'sentinel_settings'; unset one (env -u REDIS_URL rq-gevent ...), or choose with -u"
        ], result.stderr
    job = Queue("two-sources", connection=connection).enqueue(testjobs.green_sleep, 0, "chosen")
    result = run_cli("worker", "--config", "sentinel_settings", "-P", str(tmp_path), "-P", str(TESTS_DIR), "-b",
                     "-u", redis_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Connecting to -u {redis_url}; not to SENTINEL in config module 'sentinel_settings'" in result.stdout
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    job = Queue("two-sources", connection=connection).enqueue(testjobs.green_sleep, 0, "same")
    result = run_cli("worker", "--config", "same_url_settings", "-P", str(tmp_path), "-P", str(TESTS_DIR), "-b",
                     env={"REDIS_URL": redis_url})  # fmt: skip
    assert result.returncode == 0 and "Connecting to" not in result.stdout + result.stderr, result.stderr
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_rqs_environment_variables_mean_what_they_mean_to_rq(connection, redis_url, tmp_path):
    """RQ_REDIS_URL, RQ_CONFIG, RQ_WORKER_CLASS... and, without a URL or config module, REDIS_HOST and
    REDIS_PORT: rq worker reads them; ignoring them sent the worker to localhost:6379 in silence."""
    host, port = redis_url.split("//")[1].split("/")[0].rsplit(":", 1)
    (tmp_path / "rq_env_settings.py").write_text(f"REDIS_URL = {redis_url!r}\nQUEUES = ['rq-env']\n")
    without_url = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "RQ_REDIS_URL")}
    for env in ({"RQ_REDIS_URL": redis_url}, {"REDIS_HOST": host, "REDIS_PORT": port},
                {"RQ_CONFIG": "rq_env_settings", "PYTHONPATH": str(tmp_path)}):  # fmt: skip
        job = Queue("rq-env", connection=connection).enqueue(testjobs.green_sleep, 0, "env")
        result = subprocess.run([sys.executable, "-m", "rq_gevent", "worker", "rq-env", "-b", "-P", str(TESTS_DIR)],
                                capture_output=True, text=True, timeout=60, cwd=str(REPO_DIR),
                                env={**without_url, **env})  # fmt: skip
        assert result.returncode == 0, (env, result.stderr)
        assert job.get_status(refresh=True) == JobStatus.FINISHED, env
    result = run_cli("worker", "-u", redis_url, env={"RQ_WORKER_CLASS": "rq.Worker"})
    assert "worker class 'rq.Worker' is not a subclass of rq_gevent.GeventWorker" in result.stderr
    # RQ_REDIS_URL beside a config module naming another Redis: the same error as REDIS_URL's.
    (tmp_path / "other_redis_settings.py").write_text("REDIS_HOST = 'elsewhere'\nREDIS_URL = None\n")
    result = subprocess.run([sys.executable, "-m", "rq_gevent", "worker", "--config", "other_redis_settings", "-P",
                             str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=str(REPO_DIR),
                            env={**without_url, "RQ_REDIS_URL": redis_url})  # fmt: skip
    assert "RQ_REDIS_URL in the environment" in result.stderr and "REDIS_HOST in config module" in result.stderr
    assert "REDIS_URL," not in result.stderr  # REDIS_URL = None is unset, as for rq
    result = run_cli("worker", env={"REDIS_URL": redis_url, "RQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.stderr.strip() == (
        "rq-gevent: error: REDIS_URL and RQ_REDIS_URL in the environment name different Redis: unset one, or use -u"
    )


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sentinels_that_do_not_answer_are_one_short_line(tmp_path, processes):
    """redis-py's MasterNotFoundError lists every Sentinel's client repr (1,175 characters), and the
    address shown was localhost:6379, which nobody configured."""
    (tmp_path / "nowhere_sentinels.py").write_text(
        'SENTINEL = {"INSTANCES": [("127.0.0.1", 1), ("127.0.0.1", 2)], "MASTER_NAME": "mail"}\n'
    )
    result = run_cli("worker", "--config", "nowhere_sentinels", "-P", str(tmp_path), "-n", processes,
                     env={"REDIS_URL": ""})  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "rq-gevent: error: cannot connect to Redis at master 'mail' of Sentinel 127.0.0.1:1, 127.0.0.1:2: no "
        "Sentinel named its address (unreachable, or it knows no such master)"
    ], result.stderr


def test_queue_name_that_is_not_a_string(redis_url, tmp_path):
    (tmp_path / "badqueues.py").write_text(f"REDIS_URL = {redis_url!r}\nQUEUES = ['ok', 123]\n")
    result = run_cli("worker", "--config", "badqueues", "-P", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip() == "rq-gevent: error: queue names must be non-empty strings, got 123 (int)"
    (tmp_path / "stringqueues.py").write_text(f"REDIS_URL = {redis_url!r}\nQUEUES = 'mail'\n")  # not m, a, i, l
    result = run_cli("worker", "--config", "stringqueues", "-P", str(tmp_path))
    assert result.stderr.strip() == "rq-gevent: error: QUEUES must be a list of queue names, not the string 'mail'"


def test_a_second_worker_with_the_same_live_name_is_refused(connection, redis_url, worker_process):
    first = worker_process("-u", redis_url, "--name", "only-one")
    from conftest import wait_until

    wait_until(lambda: connection.exists("rq:worker:only-one"))
    result = run_cli("worker", "-u", redis_url, "--name", "only-one")
    assert result.returncode != 0
    assert "There exists an active worker named 'only-one' already" in result.stderr
    assert "Traceback" not in result.stderr
    first.process.terminate()
    assert first.wait(10) == 0


@pytest.mark.once  # parsing and imports: the same on every version
def test_importing_the_package_loads_nothing_network_related():
    code = "import sys, rq_gevent; print(sorted(m for m in ('redis', 'rq', 'ssl', 'gevent') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR))
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.once  # parsing and imports: the same on every version
def test_importing_the_worker_into_an_unpatched_process_is_a_clear_error():
    code = (
        "import redis, rq_gevent\n"
        "try:\n    rq_gevent.GeventWorker\nexcept rq_gevent.NotPatchedError as e:\n    print(e)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR))
    assert "needs gevent's monkey-patching first: redis was imported before" in result.stdout, result.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ssl_imported_at_interpreter_start_up_is_one_line(redis_url, tmp_path, processes):
    """The command patches first thing; what a sitecustomize module imported came earlier still."""
    (tmp_path / "sitecustomize.py").write_text("import ssl\n")
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_cli("worker", "-u", redis_url, "-b", "-n", processes, env={"PYTHONPATH": python_path})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "rq-gevent: error: ssl was imported before rq-gevent could patch gevent, at the interpreter's start-up: by "
        "a sitecustomize or usercustomize module, a .pth file in site-packages, or PYTHONSTARTUP; workers need "
        "gevent's patching first"
    ], result.stderr


LATE_PATCH_PROGRAM = """
import sys
{first_import}
import rq_gevent

rq_gevent.patch()
from redis import Redis
from rq_gevent import GeventWorker

connection = Redis.from_url(sys.argv[1])
GeventWorker(["late-patch"], connection=connection).work(burst=True)
"""


@pytest.mark.parametrize(
    ("first_import", "named"),
    [("from redis import Redis", "redis"), ("import rq", "rq"), ("import urllib.request", "ssl")],
)
def test_a_patch_that_comes_too_late_stops_the_program_before_any_job_runs(
    connection, redis_url, tmp_path, first_import, named
):
    """With redis imported first, gevent only warned: the job ran, then the worker died in gevent's hub
    (LoopExit, 43 lines).  patch() refuses instead, naming what came first, and no job starts."""
    program = tmp_path / "late_patch.py"
    program.write_text(LATE_PATCH_PROGRAM.format(first_import=first_import))
    job = Queue("late-patch", connection=connection).enqueue(testjobs.green_sleep, 0)
    result = subprocess.run([sys.executable, str(program), redis_url], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(TESTS_DIR)))  # fmt: skip
    assert result.returncode == 1
    assert f"NotPatchedError: rq_gevent.patch() came too late: {named} was imported before" in result.stderr
    assert "LoopExit" not in result.stderr and "MonkeyPatchWarning" not in result.stderr, result.stderr
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    # The instrument can fail: patched first, the same program runs the job.
    program.write_text(LATE_PATCH_PROGRAM.format(first_import=""))
    result = subprocess.run([sys.executable, str(program), redis_url], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(TESTS_DIR)))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_a_worker_whose_loop_dies_exits_non_zero(connection, redis_url, worker_process):
    # Over two queues the pop is the queue class's, which fails: not bad input, an unexpected error.
    worker = worker_process("-u", redis_url, "--queue-class", "testworkers.UnpoppableQueue", "a", "b")
    assert worker.wait(30) == 70, worker.output()
    output = worker.output()
    assert "unhandled exception in the work loop, stopping" in output and "UnpoppableQueue cannot pop" in output
    assert "its work loop died (RuntimeError)" in output, output  # the alert (rq.worker.alerts)
    assert output.strip().splitlines()[-1].startswith("rq-gevent: error: the work loop died: RuntimeError"), output
