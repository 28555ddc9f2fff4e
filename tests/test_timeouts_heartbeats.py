"""Per-job timeouts delivered into the job only, and heartbeats that keep long jobs alive."""

import time
from types import SimpleNamespace

import gevent
import pytest
import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Callback, Queue
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty, UnixSignalDeathPenalty
from rq.utils import current_timestamp
from rq.worker import Worker
from testworkers import ShortTTLWorker

from rq_gevent import GeventWorker
from rq_gevent.core.running import RunningJob, RunningJobs
from rq_gevent.core.timeouts import GeventDeathPenalty
from rq_gevent.exceptions import JobStopped


@pytest.mark.parametrize("penalty", [UnixSignalDeathPenalty, TimerDeathPenalty])
def test_rqs_own_death_penalties_are_replaced_and_timeouts_still_fire(connection, caplog, penalty):
    """A worker subclass that names rq's signal or thread penalty (rq's TimerBasedWorker): neither can
    interrupt one greenlet among many, so the worker's own takes their place, with a warning."""
    worker_class = type("PenaltyWorker", (GeventWorker,), {"death_penalty_class": penalty})
    queue = Queue(connection=connection)
    slow = queue.enqueue(testjobs.green_sleep, 5, job_timeout=1)
    quick = queue.enqueue(testjobs.green_sleep, 0.1, "quick", job_timeout=1)
    worker = worker_class([queue], connection=connection)
    assert worker.death_penalty_class is GeventDeathPenalty
    assert f"death_penalty_class {penalty.__name__} replaced by GeventDeathPenalty" in caplog.text
    worker.work(burst=True)
    assert slow.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in slow.latest_result().exc_string
    assert quick.return_value() == "quick"


def test_one_job_times_out_while_its_siblings_finish(connection):
    queue = Queue(connection=connection)
    slow = queue.enqueue(testjobs.green_sleep, 5, "too slow", job_timeout=1)
    siblings = [queue.enqueue(testjobs.green_sleep, 1.5, i, job_timeout=10) for i in range(10)]
    worker = GeventWorker([queue], connection=connection, concurrency=20)

    started = time.monotonic()
    worker.work(burst=True)
    elapsed = time.monotonic() - started

    slow.refresh()
    assert slow.get_status() == JobStatus.FAILED
    assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in slow.latest_result().exc_string
    assert [job.return_value() for job in siblings] == list(range(10))
    assert elapsed < 4, "the timed-out job should have been cut at 1 s, not run its 5 s"
    assert StartedJobRegistry(queue=queue).get_job_ids() == []


def test_no_limit_with_minus_one(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 1.2, "unlimited", job_timeout=-1)
    GeventWorker([queue], connection=connection).work(burst=True)
    assert job.return_value() == "unlimited"


def test_death_penalty_treats_zero_and_negative_as_no_limit():
    def run(limit):
        with GeventDeathPenalty(limit, job_id="x"):
            gevent.sleep(0.05)
            return "ran"

    assert [run(None), run(0), run(-1)] == ["ran", "ran", "ran"]


def test_success_callback_timeout_fails_the_job(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0.01, "x", on_success=Callback(testjobs.slow_success_callback, timeout=1))
    sibling = queue.enqueue(testjobs.green_sleep, 2, "sibling")
    GeventWorker([queue], connection=connection).work(burst=True)

    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in job.latest_result().exc_string
    assert connection.lrange("test:callbacks", 0, -1) == []
    assert sibling.return_value() == "sibling"


def test_jobs_outlive_their_heartbeat_ttl_many_times_over(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 6, i, job_timeout=-1) for i in range(60)]
    worker = ShortTTLWorker([queue], connection=connection, concurrency=60, job_monitoring_interval=1)
    greenlet = start_worker_greenlet(worker, burst=True)
    registry = StartedJobRegistry(queue=queue)
    wait_until(lambda: len(registry) == 60, what="60 jobs started")
    assert worker.get_heartbeat_ttl(jobs[0]) == 2

    first_scores = dict(connection.zrange(registry.key, 0, -1, withscores=True))
    first_worker_heartbeat = connection.hget(worker.key, "last_heartbeat")
    for _ in range(8):  # 4 s, twice the TTL, with rq's reaper running all the while
        gevent.sleep(0.5)
        registry.cleanup()
        assert len(registry) == 60, "a running job was reaped as abandoned"
    later_scores = dict(connection.zrange(registry.key, 0, -1, withscores=True))

    assert later_scores.keys() == first_scores.keys()
    assert all(later_scores[key] > first_scores[key] for key in first_scores), "executions not refreshed"
    assert all(score > current_timestamp() for score in later_scores.values())
    assert connection.hget(worker.key, "last_heartbeat") != first_worker_heartbeat
    assert connection.ttl(worker.key) > 60
    executions = [execution for job in jobs for execution in job.get_executions()]
    assert len(executions) == 60
    assert all(connection.ttl(execution.key) > 0 for execution in executions)

    greenlet.join(15)
    assert [job.return_value() for job in jobs] == list(range(60))
    assert connection.keys("rq:execution*") == []


class RqOwnHeartbeats(GeventWorker):
    """Each job's heartbeat by rq's own methods, as on an rq release CI does not test."""

    use_scripts = False


@pytest.mark.parametrize("worker_class", [GeventWorker, RqOwnHeartbeats], ids=["scripts", "rq-code"])
@pytest.mark.parametrize("recreated_by_a_counter", [False, True], ids=["key gone", "key re-created by a counter"])
def test_heartbeat_registers_the_worker_again_if_its_key_vanished(connection, recreated_by_a_counter, worker_class):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 3, "kept alive")
    worker = worker_class([queue], connection=connection, job_monitoring_interval=1, name="comes-back")
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 1)

    connection.delete(worker.key)  # as after a Redis restart without persistence
    connection.srem("rq:workers", worker.key)
    if recreated_by_a_counter:
        # What the once-a-second counters write does to a vanished worker hash.
        connection.hincrby(worker.key, "successful_job_count", 1)
    wait_until(lambda: connection.sismember("rq:workers", worker.key), timeout=5, what="re-registered")
    fields = connection.hgetall(worker.key)
    assert fields[b"queues"] == b"default" and fields[b"state"] == b"busy"
    assert connection.ttl(worker.key) > 0
    assert [w.name for w in Worker.all(connection=connection)] == ["comes-back"]

    greenlet.join(10)
    assert job.return_value() == "kept alive"


def test_a_job_that_armed_its_own_death_penalty_can_still_be_stopped(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.nested_penalty_then_sleep, 3)
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
    gevent.sleep(0.3)  # its own penalty armed and cancelled
    assert worker.stop_job(job.id)
    greenlet.join(10)
    assert job.get_status(refresh=True) == JobStatus.STOPPED


def test_nested_penalties_that_end_out_of_order_leave_none_armed_and_pass_an_interruption_on():
    """A job's own penalties inside rq's: one ending out of order is never re-armed, and a stop thrown
    at an inner one whose block ends before the hub runs reaches the one still armed."""
    outcome = []

    def job_greenlet():
        running = RunningJob(job=SimpleNamespace(id="j"), queue=None)
        RunningJobs.enter(running)
        first, second = GeventDeathPenalty(None), GeventDeathPenalty(None)
        first.setup_death_penalty()
        second.setup_death_penalty()
        first.cancel_death_penalty()  # out of order
        second.cancel_death_penalty()
        outcome.append(running.armed_penalty)

        outer, inner = GeventDeathPenalty(None), GeventDeathPenalty(None)
        outer.setup_death_penalty()
        inner.setup_death_penalty()
        running.interrupt(JobStopped("stop"))  # thrown at the inner one on the next hub turn...
        inner.cancel_death_penalty()  # ...but its block ends first, without yielding
        try:
            gevent.sleep(0.5)
            outcome.append("ran on: the stop was lost")
        except JobStopped:
            outcome.append("stopped")
        finally:
            outer.cancel_death_penalty()

    gevent.spawn(job_greenlet).join(5)
    assert outcome == [None, "stopped"]
