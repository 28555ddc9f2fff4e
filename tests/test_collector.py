"""The garbage collector in a worker (rq_gevent.core.collector): tuned for many jobs in flight, still
collecting the reference cycles jobs leave, and with no greenlet of an ended job left to collect."""

import gc
import subprocess
import sys

import gevent
import pytest
import testjobs
from conftest import TESTS_DIR
from rq import Queue
from rq.job import Job
from test_cli import run_cli

from rq_gevent import GeventWorker
from rq_gevent.core import collector

JOBS = 3_000


def cycles_left_by(connection, disable_collector: bool) -> int:
    queue = Queue("cycles", connection=connection)
    with connection.pipeline() as pipeline:
        for _ in range(JOBS):
            queue.enqueue(testjobs.leave_a_cycle, pipeline=pipeline)
        pipeline.execute()
    if disable_collector:
        gc.disable()
    try:
        GeventWorker([queue], connection=connection, concurrency=50).work(burst=True)
    finally:
        gc.enable()
    return len(testjobs.CycleMember.alive)


def test_reference_cycles_jobs_leave_are_collected_while_the_worker_runs(connection):
    gc.collect()
    assert not testjobs.CycleMember.alive
    # The instrument: with the collector off, every cycle is still there after the run.
    assert cycles_left_by(connection, disable_collector=True) == 2 * JOBS
    gc.collect()
    assert not testjobs.CycleMember.alive

    left = cycles_left_by(connection, disable_collector=False)

    assert gc.isenabled() and gc.get_threshold()[0] >= collector.YOUNG_THRESHOLD
    assert left < JOBS // 2, f"{left} of {2 * JOBS} objects in cycles survived the run"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [("", [collector.YOUNG_THRESHOLD, True, True]),
     ("import gc\ngc.set_threshold(50_000, 10, 10)\n", [50_000, True, True]),
     ("import gc\ngc.disable()\n", ["the interpreter's", False, False])],
    ids=["default", "a higher threshold kept", "a disabled collector left alone"],
)  # fmt: skip
def test_a_worker_process_tunes_the_collector_once_it_starts(connection, redis_url, tmp_path, settings, expected):
    (tmp_path / "gcsettings.py").write_text(f"REDIS_URL = {redis_url!r}\n{settings}")
    job = Queue("default", connection=connection).enqueue(testjobs.collector_settings)
    result = run_cli("worker", "--config", "gcsettings", "-P", str(tmp_path), "-P", str(TESTS_DIR), "--burst")
    assert result.returncode == 0, result.stderr
    if expected[0] == "the interpreter's":
        default = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
        expected = [int(default), *expected[1:]]
    assert job.return_value(refresh=True) == expected


def test_the_greenlets_of_ended_jobs_are_freed_without_the_collector(connection):
    """The outcomes kept for a recheck after an outage keep their jobs, not the greenlets (and frames)
    the jobs ran in."""
    queue = Queue("freed", connection=connection)
    for n in range(200):
        queue.enqueue(testjobs.green_sleep, 0, n)
    worker = GeventWorker([queue], connection=connection, concurrency=20)
    gc.collect()
    gc.disable()
    try:
        before = sum(isinstance(o, gevent.Greenlet) for o in gc.get_objects())
        worker.work(burst=True)
        after = sum(isinstance(o, gevent.Greenlet) for o in gc.get_objects())
    finally:
        gc.enable()
    assert queue.finished_job_registry.count == 200
    assert after - before < 20, f"{after - before} greenlets left after 200 jobs"


def test_the_outcomes_kept_for_a_recheck_hold_no_job_objects(connection):
    """A worker keeps the outcomes of the last seconds to check them again after a failover
    (rq_gevent.core.outcomes): as the jobs' hashes, not their Job objects (a worker running 2,000 jobs/s
    grew by 250 MB of them)."""
    queue = Queue("kept", connection=connection)
    for n in range(300):
        queue.enqueue(testjobs.green_sleep, 0, n)
    worker = GeventWorker([queue], connection=connection, concurrency=20)
    worker.work(burst=True)
    gc.collect()
    assert queue.finished_job_registry.count == 300
    jobs_alive = sum(isinstance(o, Job) for o in gc.get_objects())
    assert jobs_alive < 20, f"{jobs_alive} Job objects alive after 300 jobs"
