"""Steps of the wall clock (an NTP correction, a resumed VM): no timing decision of the launcher or
of a worker may move with them.  Real processes under libfaketime, whose clock the test steps while
they run; the machine's own clock is left alone."""

import os
import re
import signal
import time
from pathlib import Path

import pytest
import testjobs
from conftest import wait_until
from peers.stepped_clock import SteppedClock
from rq import Queue
from rq.job import JobStatus
from rq.worker import Worker
from test_launcher import children, worker_pids

from rq_gevent.core.shutdown import COLD_SHUTDOWN_HINT
from rq_gevent.launcher.supervision import LIVENESS_ENV

HOUR = 3600
HUB_TIMEOUT = "3"


@pytest.fixture
def clock(tmp_path: Path) -> SteppedClock:
    return SteppedClock(tmp_path)


def step(clock: SteppedClock, seconds: int) -> None:
    clock.step(seconds)
    # The instrument: processes on this clock do read the stepped time.
    assert abs(clock.ahead_of_real_time() - clock.offset) < 60


def liveness_file(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    prefix = f"{LIVENESS_ENV}=".encode()
    return Path(next(item[len(prefix) :] for item in environ if item.startswith(prefix)).decode())


def mtime_or_none(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None  # the master reaped its process: the assertions below say why


def all_touched_since(stamps: dict[Path, float | None]) -> bool:
    """Each liveness file's mtime differs from its stamp (or its process was reaped)."""
    current = {path: mtime_or_none(path) for path in stamps}
    return all(mtime is None or mtime != stamps[path] for path, mtime in current.items())


def start_pool(connection, redis_url, worker_process, clock: SteppedClock):
    master = worker_process("-u", redis_url, "-n", "2", "--hub-timeout", HUB_TIMEOUT, env=clock.env())
    wait_until(lambda: len(children(master.pid)) == 2 and worker_pids(connection) == children(master.pid),
               timeout=20, what="2 worker processes registered")  # fmt: skip
    return master


def test_a_forward_clock_step_aborts_no_worker_process(connection, redis_url, worker_process, clock):
    master = start_pool(connection, redis_url, worker_process, clock)
    before = children(master.pid)
    files = [liveness_file(pid) for pid in before]

    step(clock, HOUR)  # far beyond --hub-timeout
    # Each child stamps its liveness file on the new clock within a second; until then the file looks
    # an hour old to anything comparing it with the wall clock.
    stamps = {path: mtime_or_none(path) for path in files}
    wait_until(lambda: all_touched_since(stamps), what="touches after the step")
    # The master's loop runs its watchdog, then spawns: a spawn after the touches proves the watchdog
    # looked at every child since the step.
    os.kill(master.pid, signal.SIGTTIN)
    wait_until(lambda: "spawned child 3" in master.output(), what="the master's next round")

    output = master.output()
    assert "watchdog" not in output and "SIGABRT" not in output, output
    assert before < children(master.pid), output

    job = Queue(connection=connection).enqueue(testjobs.green_sleep, 0, "served after the step")
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, what="a job served after the step")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()


def test_a_backward_clock_step_does_not_hide_a_stuck_worker_process(connection, redis_url, worker_process, clock):
    """The watchdog still works (the instrument): a process stuck before the clock went back an hour
    is killed after --hub-timeout, not an hour later, and the other one keeps serving."""
    master = start_pool(connection, redis_url, worker_process, clock)
    queue = Queue(connection=connection)
    spinner = queue.enqueue(testjobs.spin, 60)
    wait_until(lambda: spinner.get_status(refresh=True) == JobStatus.STARTED, what="spinning job started")
    spinner.refresh()
    stuck = Worker.find_by_key(Worker.redis_worker_namespace_prefix + spinner.worker_name, connection=connection).pid
    (healthy,) = children(master.pid) - {stuck}

    step(clock, -HOUR)
    wait_until(lambda: "exited: killed by signal SIGABRT" in master.output(), timeout=15, what="the watchdog's abort")

    output = master.output()
    assert re.search(rf"killing child \d \(pid {stuck}\): watchdog: its event loop has not run for \d+ s", output)
    assert len(re.findall("killing child", output)) == 1, output
    assert healthy in children(master.pid)
    served = queue.enqueue(testjobs.green_sleep, 0, "served by the other process")
    wait_until(lambda: served.get_status(refresh=True) == JobStatus.FINISHED, what="the other process serving")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()


def test_a_backward_clock_step_does_not_swallow_the_second_stop(connection, redis_url, worker_process, clock):
    """A second SIGTERM a second or more after the first is a cold shutdown, even if the wall clock
    went back in between (it would look like a duplicate sent within the same second)."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 60)
    worker = worker_process("-u", redis_url, "-c", "2", env=clock.env())
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, timeout=20, what="job started")

    os.kill(worker.pid, signal.SIGTERM)
    wait_until(lambda: COLD_SHUTDOWN_HINT in worker.output(), what="warm shutdown begun")
    step(clock, -HOUR)
    time.sleep(1.1)
    os.kill(worker.pid, signal.SIGTERM)

    assert worker.wait(15) == 0, worker.output()
    assert "cold shutdown, requeueing 1 running job" in worker.output()
    assert job.get_status(refresh=True) == JobStatus.QUEUED


def test_a_backward_clock_step_does_not_postpone_maintenance(connection, redis_url, worker_process, clock):
    """Registry clean-ups (which fail or retry abandoned jobs) keep their --maintenance-interval when
    the wall clock goes back an hour; rq's own interval is timed with the wall clock."""
    # --worker-ttl 16: an idle worker's blocking pop (worker_ttl - 15 s) returns to the loop every second.
    worker = worker_process("-u", redis_url, "--maintenance-interval", "1", "--worker-ttl", "16", env=clock.env())

    def clean_ups() -> int:
        return worker.output().lower().count("cleaning registries for queue: default")  # rq 2.3: "Cleaning"

    wait_until(lambda: clean_ups() >= 1, timeout=20, what="the first clean-up")
    step(clock, -HOUR)
    before = clean_ups()
    wait_until(lambda: clean_ups() >= before + 2, what="two clean-ups after the step")
    worker.shut_down()
    assert worker.wait(15) == 0, worker.output()
