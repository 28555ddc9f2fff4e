"""The ``rq-gevent`` command: help, version, a real run, and one clear line for every bad input."""

import os
import subprocess
import sys

import pytest
import testjobs
from conftest import REPO_DIR, TESTS_DIR
from rq import Queue
from rq.job import JobStatus

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


def test_version_and_help():
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"rq-gevent {rq_gevent.__version__}"

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "0"], "0 is not in the range x>=1"),
        (["-c", "many"], "'many' is not a valid integer"),
        (["-u", "redis://127.0.0.1:1/0"], "cannot connect to Redis at 127.0.0.1:1/0"),
        (["-u", "notaurl://what"], "invalid Redis URL notaurl://what"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:1/0"], "cannot connect to Redis at 127.0.0.1:1/0"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:notaport/0"], "invalid Redis URL redis://:***@127.0.0.1:notaport/0"),
        (["-u", "redis://:s3cret-pw@127.0.0.1:99999/0"], "invalid Redis URL redis://:***@127.0.0.1:99999/0"),
        (["--worker-class", "no.such.Worker"], "cannot import worker class 'no.such.Worker'"),
        (["--worker-class", "rq.Worker"], "is not a subclass of rq_gevent.GeventWorker"),
        (["--job-class", "rq.job.Nope"], "cannot import job class 'rq.job.Nope'"),
        (["--config", "no_such_settings_module"], "cannot import config module 'no_such_settings_module'"),
        (["--serializer", "no.such.serializer"], "cannot use serializer"),
        (["--verbose", "--quiet"], "--verbose and --quiet cannot be used together"),
        (["-n", "0"], "--processes must be a whole number of at least 1 or 'auto', got '0'"),
        (["-n", "-3"], "--processes must be a whole number of at least 1 or 'auto', got '-3'"),
        (["-n", "lots"], "--processes must be a whole number of at least 1 or 'auto', got 'lots'"),
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


def test_queue_name_that_is_not_a_string(redis_url, tmp_path):
    (tmp_path / "badqueues.py").write_text(f"REDIS_URL = {redis_url!r}\nQUEUES = ['ok', 123]\n")
    result = run_cli("worker", "--config", "badqueues", "-P", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip() == "rq-gevent: error: queue names must be non-empty strings, got 123 (int)"


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


def test_importing_the_package_loads_nothing_network_related():
    code = "import sys, rq_gevent; print(sorted(m for m in ('redis', 'rq', 'ssl', 'gevent') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR))
    assert result.stdout.strip() == "[]", result.stderr


def test_importing_the_worker_into_an_unpatched_process_is_a_clear_error():
    code = (
        "import redis, rq_gevent\n"
        "try:\n    rq_gevent.GeventWorker\nexcept rq_gevent.NotPatchedError as e:\n    print(e)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR))
    assert "needs gevent's monkey-patching before ssl, redis are imported" in result.stdout, result.stderr
