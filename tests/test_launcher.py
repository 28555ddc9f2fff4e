"""The pre-fork launcher (``rq-gevent worker -n N``): real processes, real signals, real Redis."""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testjobs
from conftest import REPO_DIR, wait_until
from rq import Queue, Retry
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the launcher's processes, signals and liveness files.
pytestmark = pytest.mark.once

# Executions of killed workers expire in ~2 s and are reaped every second, so abandoned jobs are
# seen through in seconds rather than rq's 60 s + 10 min.
FAST_REAPING = [
    "--worker-class",
    "testworkers.ShortTTLWorker",
    "--job-monitoring-interval",
    "1",
    "--maintenance-interval",
    "1",
]


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def worker_pids(connection) -> set[int]:
    return {worker.pid for worker in Worker.all(connection=connection)}


def all_finished(jobs) -> bool:
    return all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs)


def test_n_processes_register_and_stop_warm(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 1.5, i) for i in range(6)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "3")
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, what="2 workers registered")
    assert worker_pids(connection) == children(master.pid)
    assert master.pid not in worker_pids(connection)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 6, what="6 jobs running")

    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    assert all_finished(jobs)
    assert Worker.all(connection=connection) == []
    output = master.output()
    assert "[child 1 pid " in output and "[child 2 pid " in output
    assert "spawned child 2 (pid" in output


def test_a_killed_child_is_replaced_and_no_job_is_lost(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 1, i, retry=Retry(max=2)) for i in range(30)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "5", *FAST_REAPING)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 10, what="10 jobs running")
    victim = sorted(children(master.pid))[0]

    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: len(children(master.pid) - {victim}) == 2, timeout=5, what="replacement")
    assert time.monotonic() - killed_at < 2.0

    wait_until(lambda: all_finished(jobs), timeout=60, what="every job finished (killed ones retried)")
    assert f"(pid {victim}) exited: killed by signal SIGKILL" in master.output()
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


def test_ttin_and_ttou_change_the_number_of_workers(connection, redis_url, worker_process):
    master = worker_process("-u", redis_url, "-n", "2")
    wait_until(lambda: len(Worker.all(connection=connection)) == 2)

    os.kill(master.pid, signal.SIGTTIN)
    wait_until(lambda: len(Worker.all(connection=connection)) == 3, what="TTIN added a worker")
    os.kill(master.pid, signal.SIGTTOU)
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, what="TTOU removed a worker")
    os.kill(master.pid, signal.SIGTTOU)
    wait_until(lambda: len(Worker.all(connection=connection)) == 1, what="TTOU removed a worker")
    os.kill(master.pid, signal.SIGTTOU)  # never below one
    time.sleep(1)
    assert len(Worker.all(connection=connection)) == 1
    assert len(children(master.pid)) == 1

    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


def test_sighup_replaces_every_child_without_losing_a_job(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 2, i) for i in range(24)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "4")
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 8, what="8 jobs running")
    before = children(master.pid)

    os.kill(master.pid, signal.SIGHUP)
    wait_until(
        lambda: len(children(master.pid)) == 2 and not (children(master.pid) & before),
        timeout=30,
        what="both children replaced",
    )
    wait_until(lambda: all_finished(jobs), timeout=40, what="every job finished")

    assert {job.get_status() for job in jobs} == {JobStatus.FINISHED}
    assert "reload (SIGHUP)" in master.output()
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


def test_max_jobs_per_child_recycles(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.report_pid, 0.05) for _ in range(12)]
    master = worker_process("-u", redis_url, "-n", "1", "-c", "2", "--max-jobs-per-child", "4")
    wait_until(lambda: all_finished(jobs), timeout=40)

    assert len({job.return_value() for job in jobs}) == 3
    assert master.output().count("recycled after 4 jobs (--max-jobs-per-child)") >= 2
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


def test_max_memory_per_child_recycles_a_leaking_worker(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.hog_memory, 60, 1.0) for _ in range(4)]
    master = worker_process("-u", redis_url, "-n", "1", "-c", "1", "--max-memory-per-child", "150")
    wait_until(lambda: all_finished(jobs), timeout=60, what="every leaking job finished")

    assert "recycled: memory" in master.output()
    assert len({job.return_value() for job in jobs}) >= 2
    for pid in children(master.pid):
        assert int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") < 300 * 2**20
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


def test_watchdog_kills_a_child_whose_hub_is_stuck_while_others_serve(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    spinner = queue.enqueue(testjobs.spin, 600)
    master = worker_process("-u", redis_url, "-n", "2", "-c", "5", "--hub-timeout", "3", *FAST_REAPING)
    wait_until(lambda: spinner.get_status(refresh=True) == JobStatus.STARTED, what="spinning job started")

    served = [queue.enqueue(testjobs.green_sleep, 0.1, i) for i in range(10)]
    # The stuck process's next BLMOVE was already waiting on the server: it may take one job it never
    # reads, which stays in rq's intermediate list (see README, Limits). The rest are served.
    wait_until(
        lambda: sum(job.get_status(refresh=True) == JobStatus.FINISHED for job in served) >= 9,
        timeout=10,
        what="the other child serving",
    )
    assert connection.llen(queue.intermediate_queue_key) <= 1
    wait_until(lambda: "watchdog: its event loop has not run" in master.output(), timeout=15, what="watchdog kill")
    wait_until(lambda: "exited: killed by signal SIGABRT" in master.output(), timeout=10, what="the abort")
    # faulthandler in the child printed where its event loop was stuck: in the job's own code.
    assert "Fatal Python error: Aborted" in master.output()
    assert re.search(r'testjobs\.py", line \d+ in spin', master.output()), master.output()
    wait_until(lambda: spinner.get_status(refresh=True) == JobStatus.FAILED, timeout=30, what="abandoned job failed")
    assert "AbandonedJobError" in (spinner.latest_result().exc_string or "")

    after = queue.enqueue(testjobs.green_sleep, 0, "still serving")
    wait_until(lambda: after.get_status(refresh=True) == JobStatus.FINISHED)
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0


SLOW_START = """
import os
from gevent.monkey import get_original

if "RQ_GEVENT_CHILD_INDEX" in os.environ:  # a worker process, not the launcher's check of this module
    get_original("time", "sleep")(float(os.environ["BLOCK_SECONDS"]))  # blocks the event loop
"""


def test_start_up_has_its_own_limit_and_a_process_stuck_there_is_killed(
    connection, redis_url, worker_process, tmp_path
):
    """A worker process's start-up (imports, its config module, connecting) may block its event loop for
    longer than --hub-timeout: a big app's imports, or a loaded machine (CI saw children killed while
    connecting with --hub-timeout 3).  --startup-timeout limits it instead; a process stuck there is
    killed as failing at start-up, with where it was stuck."""
    (tmp_path / "slowstart.py").write_text(SLOW_START)
    args = ("-u", redis_url, "--config", "slowstart", "-P", str(tmp_path), "--hub-timeout", "1")
    slow = worker_process(*args, "--startup-timeout", "30", env={"BLOCK_SECONDS": "3"})
    wait_until(lambda: len(worker_pids(connection)) == 1, timeout=30, what="the slow starter registered")
    assert "watchdog" not in slow.output(), slow.output()
    os.kill(slow.pid, signal.SIGTERM)
    assert slow.wait(15) == 0, slow.output()

    stuck = worker_process(*args, "--startup-timeout", "2", env={"BLOCK_SECONDS": "600"})
    wait_until(lambda: "exited: killed by signal SIGABRT" in stuck.output(), timeout=20, what="the stuck one killed")
    output = stuck.output()
    assert re.search(r"watchdog: still starting \d+ s after its spawn \(--startup-timeout\)", output), output
    assert re.search(r'slowstart\.py", line \d+ in <module>', output), output
    assert "failed at start-up" in output, output
    os.kill(stuck.pid, signal.SIGTERM)
    assert stuck.wait(15) == 0, stuck.output()


def liveness_file(pid: int) -> Path:
    """The liveness file of worker process ``pid``, as its launcher told it (its environment)."""
    from rq_gevent.launcher.supervision import LIVENESS_ENV

    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return Path(environ[LIVENESS_ENV])


def test_a_removed_liveness_file_is_recreated_and_a_stuck_child_without_one_is_still_killed(
    connection, redis_url, worker_process
):
    """A tmp cleaner removes the worker processes' liveness files: the watchdog skipped a child without
    one (never killing it, stuck or not), and the child's touches failed silently.  Now a healthy child
    recreates its file and keeps running past --hub-timeout, even when the master's whole directory
    went; a stuck one is killed as before."""
    queue = Queue(connection=connection)
    spinner = queue.enqueue(testjobs.spin, 600)
    master = worker_process("-u", redis_url, "-n", "2", "-c", "5", "--hub-timeout", "3", *FAST_REAPING)
    wait_until(lambda: spinner.get_status(refresh=True) == JobStatus.STARTED, what="spinning job started")
    # The watchdog gives a child --startup-timeout until it has seen the child's first touch.
    wait_until(lambda: master.output().count(") started in ") == 2, what="the master saw both children start")
    spinner.refresh()
    stuck = Worker.find_by_key(Worker.redis_worker_namespace_prefix + spinner.worker_name, connection=connection).pid
    [healthy] = children(master.pid) - {stuck}
    files = {pid: liveness_file(pid) for pid in (stuck, healthy)}
    for path in files.values():
        path.unlink()

    wait_until(lambda: files[healthy].exists(), timeout=3, what="the healthy child's file recreated")
    wait_until(lambda: f"(pid {stuck}): watchdog" in master.output(), timeout=15, what="the stuck child killed")
    time.sleep(1)  # with the stuck one's kill, past --hub-timeout since the files went
    assert healthy in children(master.pid), master.output()
    assert f"(pid {healthy}): watchdog" not in master.output()
    assert not files[stuck].exists()  # a stuck child recreates nothing: no sign of life came from it
    served = queue.enqueue(testjobs.green_sleep, 0, "served")
    wait_until(lambda: served.get_status(refresh=True) == JobStatus.FINISHED, what="the healthy child serving")

    # The master's whole directory removed: it recreates that, the child its file in it.
    shutil.rmtree(files[healthy].parent)
    wait_until(lambda: files[healthy].exists(), timeout=3, what="the file recreated in a recreated directory")
    assert stat.S_IMODE(files[healthy].parent.stat().st_mode) == 0o700
    time.sleep(4)  # past --hub-timeout
    assert healthy in children(master.pid) and f"(pid {healthy}): watchdog" not in master.output()
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()


def test_an_unreachable_redis_is_one_line_before_any_worker_process_starts():
    """It was five start-up rounds, 26 lines and 7.7 s; a lone worker says one line."""
    for processes in ("2", "1"):
        result = subprocess.run([sys.executable, "-m", "rq_gevent", "worker", "-u", "redis://127.0.0.1:1/0", "-n",
                                 processes], capture_output=True, text=True, timeout=60, cwd=str(REPO_DIR))  # fmt: skip
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("rq-gevent: error: cannot connect to Redis at 127.0.0.1:1/0"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_check_that_hangs_is_one_line_after_the_startup_timeout(tmp_path):
    (tmp_path / "hanging_settings.py").write_text("import time\ntime.sleep(60)\n")
    result = subprocess.run([sys.executable, "-m", "rq_gevent", "worker", "-u", "redis://127.0.0.1:1/0", "-n", "2",
                             "--config", "hanging_settings", "-P", str(tmp_path), "--hub-timeout", "1",
                             "--startup-timeout", "2"],
                            capture_output=True, text=True, timeout=60, cwd=str(REPO_DIR))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "rq-gevent: error: checking the options and reaching Redis took over 2 s (--startup-timeout)"
    ], result.stderr


def test_crash_loop_ends_with_one_clear_error(worker_process, redis_that_answers_once):
    """Redis answered the launcher's check, then went away: the worker processes' start-up is retried."""
    master = worker_process("-u", redis_that_answers_once, "-n", "2")
    assert master.wait(60) == 1
    address = redis_that_answers_once.split("//")[1]
    last = master.output().strip().splitlines()[-2:]
    assert any(
        line.startswith(
            "rq-gevent: error: worker processes failed at start-up 5 times in a row; last: start-up "
            f"error: cannot connect to Redis at {address}"
        )
        for line in last
    ), master.output()


def test_burst_with_two_processes_drains_and_exits_0(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.report_pid, 0.2) for _ in range(20)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "5", "--burst")
    assert master.wait(30) == 0, master.output()
    assert all_finished(jobs)
    assert len({job.return_value() for job in jobs}) == 2


def test_second_signal_shuts_children_down_cold_and_pid_file(connection, redis_url, worker_process, tmp_path):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 60, i) for i in range(6)]
    pid_file = tmp_path / "master.pid"
    master = worker_process("-u", redis_url, "-n", "2", "-c", "3", "--pid", str(pid_file))
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 6, what="6 jobs running")
    assert pid_file.read_text() == str(master.pid)

    master.shut_down(cold=True, worker_processes=2)  # the second SIGTERM a second after both children took the first
    assert master.wait(20) == 0, master.output()

    assert {job.get_status(refresh=True) for job in jobs} == {JobStatus.QUEUED}
    assert sorted(queue.job_ids) == sorted(job.id for job in jobs)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert Worker.all(connection=connection) == []
    assert "cold shutdown of 2 worker processes" in master.output()
    assert not pid_file.exists()


def test_workers_shut_down_when_the_master_is_killed(connection, redis_url, worker_process):
    master = worker_process("-u", redis_url, "-n", "2")
    wait_until(lambda: len(Worker.all(connection=connection)) == 2)
    workers = children(master.pid)
    assert len(workers) == 2, workers

    os.kill(master.pid, signal.SIGKILL)
    master.wait(5)
    wait_until(lambda: Worker.all(connection=connection) == [], timeout=15, what="orphaned workers stopped")
    for pid in workers:
        wait_until(
            lambda pid=pid: (
                not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
            ),
            timeout=10,
        )


def test_max_jobs_without_per_child_recycling_ends_the_workers(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.report_pid, 0.05) for _ in range(10)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "2", "--max-jobs", "3")
    assert master.wait(30) == 0, master.output()
    statuses = [job.get_status(refresh=True) for job in jobs]
    assert statuses.count(JobStatus.FINISHED) == 6
    assert statuses.count(JobStatus.QUEUED) == 4
    assert "spawned child 3" not in master.output() and master.output().count("spawned child") == 2


def test_the_master_loads_nothing_a_worker_could_inherit():
    import subprocess
    import sys

    from conftest import REPO_DIR

    code = (
        "import sys; import rq_gevent.cli, rq_gevent.launcher.arbiter; "
        "print(sorted(m for m in ('gevent', 'redis', 'rq', 'ssl') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_DIR))
    assert result.stdout.strip() == "[]", result.stderr


def test_workers_whose_loops_die_are_replaced_backing_off_then_the_master_gives_up(redis_url, worker_process):
    master = worker_process("-u", redis_url, "-n", "2", "--queue-class", "testworkers.UnpoppableQueue", "a", "b")
    assert master.wait(60) == 1, master.output()
    output = master.output()
    assert len(re.findall(r"spawned child \d \(pid", output)) >= 3, output  # replaced
    assert re.search(r"child \d \(pid \d+\) exited: exit code 70 \(work loop died: RuntimeError", output), output
    # Dying that soon (before or after the master saw it ready) is a crash loop: backing off, then giving up.
    assert "; next start in 0.5 s" in output and "; next start in 2.0 s" in output, output
    assert "its work loop died (RuntimeError)" in output, output  # each worker's alert
    last = output.strip().splitlines()[-1]
    assert re.match(r"rq-gevent: error: worker processes failed (at start-up )?5 times in a row; last: .*work loop "
                    r"died: RuntimeError", last), output  # fmt: skip


def test_a_worker_whose_loop_dies_soon_after_it_was_up_is_replaced_backing_off(redis_url, worker_process):
    master = worker_process("-u", redis_url, "-n", "1", "--hub-timeout", "30", "--queue-class",
                            "testworkers.LateUnpoppableQueue", "a", "b")  # fmt: skip
    wait_until(lambda: len(re.findall(r"spawned child 1 \(pid", master.output())) >= 2, timeout=30,
               what=f"child 1 replaced:\n{master.output()}")  # fmt: skip
    output = master.output()
    assert re.search(r"child 1 \(pid \d+\) died [1-9]\d* s after its start-up \(work loop died: RuntimeError: "
                     r"LateUnpoppableQueue cannot pop\); next start in 0\.5 s", output), output  # fmt: skip
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()


def test_a_worker_process_whose_launcher_died_before_it_started_exits_at_once():
    """The kernel's parent-death signal is asked for only once the child runs: a launcher that died
    before then must still not leave an orphan worker (the child compares its parent with the pid
    the launcher gave it, before it reads its options)."""

    def child(master_pid: int) -> subprocess.Popen:
        env = dict(os.environ, RQ_GEVENT_MASTER_PID=str(master_pid), PYTHONUNBUFFERED="1")
        return subprocess.Popen([sys.executable, "-m", "rq_gevent.launcher.child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)  # fmt: skip

    # Its launcher (pid 1 here: not this process, its real parent) is gone: it exits without
    # reading its options from stdin, which this test never closes.
    orphan = child(1)
    try:
        orphan.wait(timeout=30)  # stdin stays open: a process that reads it waits for ever
        output = orphan.stdout.read()
    finally:
        orphan.kill()
        orphan.communicate()
    assert orphan.returncode == 0, output
    assert b"launcher (pid 1) gone before this worker process started" in output
    # Control: with its launcher alive (this process), it waits for its options.
    adopted = child(os.getpid())
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            adopted.wait(timeout=3)
    finally:
        adopted.kill()
        adopted.communicate()


def test_counts_of_one_and_none_read_as_words(connection, redis_url, worker_process):
    """ "1 worker processes", "finishing 0 running jobs": what the launcher and a worker log, with one job
    and with none."""
    lone = worker_process("-u", redis_url, "-c", "1", "idle-words")
    wait_until(lambda: "running up to 1 job at once" in lone.output(), what="the worker started")
    lone.shut_down()
    assert lone.wait(20) == 0, lone.output()
    assert "warm shutdown requested (signal SIGTERM); no job is running." in lone.output()

    queue = Queue("one-job-words", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 60)
    master = worker_process("-u", redis_url, "-n", "1", "--max-jobs-per-child", "100", "-c", "1", queue.name)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job running")
    master.shut_down(cold=True)
    assert master.wait(20) == 0, master.output()
    output = master.output()
    for line in ("master started: 1 worker process\n", "SIGTERM: warm shutdown of 1 worker process;",
                 "finishing 1 running job.", "SIGTERM: cold shutdown of 1 worker process\n",
                 "cold shutdown, requeueing 1 running job\n"):  # fmt: skip
        assert line in output, line
    assert not re.search(r"\b(1 [a-z ]*(processes|jobs)|0 running jobs)\b", lone.output() + output)


@pytest.mark.parametrize("where", ["--name", "config NAME"])
def test_the_worker_processes_of_a_named_pool_have_names_of_their_own(connection, redis_url, worker_process,
                                                                       tmp_path, where):  # fmt: skip
    """NAME in the config module gave both processes the same live name (rq requires them unique)."""
    (tmp_path / "named_settings.py").write_text("NAME = 'mailpool'\n")
    naming = ["--name", "mailpool"] if where == "--name" else ["--config", "named_settings", "-P", str(tmp_path)]
    master = worker_process("-u", redis_url, "-n", "2", *naming)
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, timeout=30, what="2 worker processes")
    names = sorted(worker.name for worker in Worker.all(connection=connection))
    assert [name.split(".")[:2] for name in names] == [["mailpool", "1"], ["mailpool", "2"]], names
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(20) == 0, master.output()


def test_a_stop_during_the_check_before_the_pool_starts_nothing(redis_url, tmp_path):
    """SIGTERM while the launcher's check imports a slow config module: queued, then honoured before any
    worker process starts (it killed the master and left the check running; as PID 1 it was lost)."""
    (tmp_path / "slow_settings.py").write_text("import time\ntime.sleep(2)\n")
    master = subprocess.Popen([sys.executable, "-m", "rq_gevent", "worker", "-u", redis_url, "-n", "2", "--config",
                               "slow_settings", "-P", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=str(REPO_DIR))  # fmt: skip
    time.sleep(0.7)
    master.send_signal(signal.SIGTERM)
    output, _ = master.communicate(timeout=30)
    assert master.returncode == 0, output
    assert "spawned child" not in output and "Traceback" not in output, output
