"""rq.command's stop-job, kill-horse and shutdown, sent over Redis pub/sub to a GeventWorker."""

import gevent
import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Callback, Queue, Retry
from rq.command import send_kill_horse_command, send_shutdown_command, send_stop_job_command
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from rq_gevent import GeventWorker


def started(queue, count):
    return lambda: len(StartedJobRegistry(queue=queue)) == count


def test_stop_job_stops_only_that_job(connection):
    queue = Queue(connection=connection)
    jobs = [
        queue.enqueue(
            testjobs.green_sleep,
            2,
            i,
            on_stopped=Callback(testjobs.record_stopped),
            on_failure=Callback(testjobs.record_failure),
            retry=Retry(max=3),
        )
        for i in range(5)
    ]
    worker = GeventWorker([queue], connection=connection, concurrency=5)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 5), what="5 jobs started")

    victim = jobs[2]
    send_stop_job_command(connection, victim.id)
    wait_until(lambda: victim.get_status(refresh=True) == JobStatus.STOPPED, timeout=5, what="job stopped")
    assert len(StartedJobRegistry(queue=queue)) == 4, "the other jobs must keep running"

    greenlet.join(10)
    assert victim.id in FailedJobRegistry(queue=queue)
    assert victim.get_status(refresh=True) == JobStatus.STOPPED
    assert connection.lrange("test:callbacks", 0, -1) == [f"stopped:{victim.id}".encode()]
    for job in jobs:
        if job is not victim:
            assert job.return_value() == jobs.index(job)
    assert connection.keys("rq:execution*") == []


def test_a_stopped_job_whose_stopped_callback_raises_is_recorded_stopped(connection):
    """As rq records it (its suite: test_stopped_job_failed_even_if_stopped_callback_raises), by the
    stop-job command and by rq's own ``_stopped_job_id`` + ``_handle_stopped_job`` outside the pool."""
    queue = Queue(connection=connection)
    by_command = queue.enqueue(testjobs.green_sleep, 30, on_stopped=Callback(testjobs.fail))
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 1), what="job started")
    send_stop_job_command(connection, by_command.id)
    greenlet.join(10)
    assert by_command.get_status(refresh=True) == JobStatus.STOPPED
    assert by_command.id in FailedJobRegistry(queue=queue)

    if not hasattr(GeventWorker, "_handle_stopped_job"):
        return  # rq < 3 reaps a stopped horse inside monitor_work_horse: no such entry point
    by_api = queue.enqueue(testjobs.green_sleep, 0, on_stopped=Callback(testjobs.fail))
    worker = GeventWorker([queue], connection=connection)
    worker._stopped_job_id = by_api.id
    worker._handle_stopped_job(by_api, queue, worker.prepare_execution(by_api))
    assert by_api.get_status(refresh=True) == JobStatus.STOPPED
    assert by_api.id in FailedJobRegistry(queue=queue)
    assert worker._stopped_job_id is None


def test_an_interrupted_job_handler_that_raises_costs_the_job_nothing(connection, caplog):
    """A report (Sentry's, or one pushed by the application) that fails is logged; the stopped job is
    recorded as stopped all the same, and the handlers after it still run."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 30)
    worker = GeventWorker([queue], connection=connection)
    seen = []

    def broken(job, *exc_info):
        raise RuntimeError("the report failed")

    worker.push_interrupted_job_handler(broken)
    worker.push_interrupted_job_handler(lambda job, *exc_info: seen.append((job.id, exc_info[0].__name__)))
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 1))
    send_stop_job_command(connection, job.id)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STOPPED, timeout=5, what="job stopped")
    greenlet.join(10)
    assert greenlet.dead and greenlet.exception is None
    assert seen == [(job.id, "JobStopped")]
    assert job.id in FailedJobRegistry(queue=queue)
    assert any("interrupted-job handler" in record.getMessage() and record.exc_info for record in caplog.records)


def test_stop_job_for_a_job_not_running_here_is_ignored(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 1, "kept")
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 1))
    assert worker.stop_job("not-a-running-job") is False
    greenlet.join(10)
    assert job.return_value() == "kept"


def test_kill_horse_fails_running_jobs_and_the_worker_goes_on(connection):
    queue = Queue(connection=connection)
    doomed = [queue.enqueue(testjobs.green_sleep, 3, i, on_failure=Callback(testjobs.record_failure)) for i in range(3)]
    retried = queue.enqueue(testjobs.fail_then_succeed, "test:killed-once", 0, retry=Retry(max=1))
    worker = GeventWorker([queue], connection=connection, concurrency=10)
    greenlet = start_worker_greenlet(worker)  # not burst: it must keep serving afterwards
    wait_until(lambda: retried.get_status(refresh=True) == JobStatus.FINISHED)
    wait_until(started(queue, 3))

    send_kill_horse_command(connection, worker.name)
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FAILED for job in doomed), timeout=5)
    for job in doomed:
        assert "JobKilled: Job" in job.latest_result().exc_string
    assert sorted(connection.lrange("test:callbacks", 0, -1)) == sorted(
        f"failure:{job.id}:JobKilled".encode() for job in doomed
    )

    after = queue.enqueue(testjobs.green_sleep, 0.1, "after the kill")
    wait_until(lambda: after.return_value() == "after the kill", what="worker still serving")
    worker.request_stop()
    greenlet.join(10)
    assert greenlet.dead


def test_shutdown_command_is_a_warm_shutdown(connection):
    queue = Queue(connection=connection)
    running = [queue.enqueue(testjobs.green_sleep, 1.5, i) for i in range(2)]
    worker = GeventWorker([queue], connection=connection, concurrency=2)
    greenlet = start_worker_greenlet(worker)
    wait_until(started(queue, 2))
    waiting = queue.enqueue(testjobs.green_sleep, 0, "left queued")

    send_shutdown_command(connection, worker.name)
    greenlet.join(10)

    assert greenlet.dead
    assert [job.return_value() for job in running] == [0, 1]
    assert waiting.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.job_ids == [waiting.id]
    assert not connection.sismember("rq:workers", worker.key)


def test_stop_before_the_job_code_starts_is_delivered_when_it_does(connection, caplog):
    """An interruption that arrives while rq prepares the job waits for the job's own code."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 5, "never finishes")
    worker = GeventWorker([queue], connection=connection)
    original = worker.prepare_job_execution

    def slow_prepare(job, *args):
        worker.stop_job(job.id)  # arrives before the job's function is called
        gevent.sleep(0.1)
        return original(job, *args)

    worker.prepare_job_execution = slow_prepare
    worker.work(burst=True)

    assert job.get_status(refresh=True) == JobStatus.STOPPED
    assert job.id in FailedJobRegistry(queue=queue)
    # A job without a stopped callback: rq < 2.4 would call None and log the TypeError as an error.
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == []


def test_stop_after_the_job_code_returned_is_ignored(connection):
    """Once the job's function has returned, rq's bookkeeping runs uninterrupted."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0.1, "finished anyway")
    worker = GeventWorker([queue], connection=connection)
    original = worker.handle_job_success
    answers = []

    def stop_during_bookkeeping(job, *args, **kwargs):
        answers.append(worker.stop_job(job.id))
        gevent.sleep(0.2)  # a delivered interruption would land here
        return original(job, *args, **kwargs)

    worker.handle_job_success = stop_during_bookkeeping
    worker.work(burst=True)

    assert answers == [False]
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == "finished anyway"
