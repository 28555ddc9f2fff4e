"""Warm and cold shutdown of a real ``rq-gevent worker`` process by real signals."""

import os
import signal
import time

import gevent
import testjobs
from conftest import registered_as, start_worker_greenlet, wait_until
from rq import Queue
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from rq_gevent import GeventWorker


def running_jobs(queue):
    return lambda: len(StartedJobRegistry(queue=queue))


def assert_deregistered(connection):
    assert Worker.all(connection=connection) == []
    assert connection.keys("rq:execution*") == []


def test_warm_shutdown_finishes_running_jobs_and_leaves_the_rest(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 2, i) for i in range(20)]
    worker = worker_process("-u", redis_url, "-c", "10")
    wait_until(lambda: running_jobs(queue)() == 10, what="10 jobs running")

    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, worker.output()

    statuses = [job.get_status(refresh=True) for job in jobs]
    assert statuses.count(JobStatus.FINISHED) == 10, worker.output()
    assert statuses.count(JobStatus.QUEUED) == 10
    assert len(queue) == 10
    assert_deregistered(connection)
    assert "warm shutdown requested (signal SIGTERM)" in worker.output()


def test_warm_shutdown_of_an_idle_worker_wakes_the_blocking_pop(connection, redis_url, worker_process):
    worker = worker_process("-u", redis_url)
    wait_until(lambda: registered_as(connection, worker.pid), what="worker registered")
    pop_client = (
        f"{registered_as(connection, worker.pid).name}:dequeue"  # rq_gevent.plumbing.dequeue's, not a leftover's
    )
    wait_until(
        lambda: any(c["name"] == pop_client and c["cmd"] in ("blmove", "blpop") for c in connection.client_list()),
        what="its pop blocked",
    )

    started = time.monotonic()
    os.kill(worker.pid, signal.SIGINT)
    assert worker.wait(timeout=8) == 0, worker.output()
    assert time.monotonic() - started < 3, "shutdown waited for the blocking pop to time out"
    assert_deregistered(connection)


def test_cold_shutdown_requeues_running_jobs_at_the_front(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    running = [queue.enqueue(testjobs.green_sleep, 30, i) for i in range(5)]
    queued = [queue.enqueue(testjobs.green_sleep, 30, f"q{i}") for i in range(3)]
    worker = worker_process("-u", redis_url, "-c", "5")
    wait_until(lambda: running_jobs(queue)() == 5, what="5 jobs running")

    worker.shut_down(cold=True)  # the second SIGTERM a second after the worker took the first
    assert worker.wait(timeout=10) == 0, worker.output()

    for job in running:
        assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert set(queue.job_ids[:5]) == {job.id for job in running}
    assert queue.job_ids[5:] == [job.id for job in queued]
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert_deregistered(connection)
    assert "cold shutdown" in worker.output()


def test_graceful_timeout_turns_a_warm_shutdown_cold(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    quick = queue.enqueue(testjobs.green_sleep, 0.5, "quick")
    slow = queue.enqueue(testjobs.green_sleep, 30, "slow")
    worker = worker_process("-u", redis_url, "--graceful-timeout", "2")
    wait_until(lambda: running_jobs(queue)() == 2)

    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, worker.output()

    assert 1.5 < time.monotonic() - started < 6
    assert quick.get_status(refresh=True) == JobStatus.FINISHED
    assert slow.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.job_ids == [slow.id]
    assert "graceful timeout of 2.0 s reached" in worker.output()


def test_a_second_stop_while_the_first_is_being_recorded_is_a_duplicate_not_a_cold_shutdown(connection):
    """Recording a warm shutdown writes to Redis while jobs run; a second signal during that round trip
    (a slow Redis, SIGINT to the process group beside a supervisor's SIGTERM) is the same request."""
    queue = Queue("stop", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 1.5, "finished")
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
    # Redis holds writes for 0.4 s: the first request's write waits, the second request comes meanwhile.
    connection.execute_command("CLIENT", "PAUSE", 400, "WRITE")
    gevent.sleep(0.05)
    first = gevent.spawn(worker.request_stop, signal.SIGTERM)
    gevent.sleep(0.05)
    worker.request_stop(signal.SIGTERM)
    first.join(5)
    greenlet.join(10)
    assert not worker.shutdown.cold.is_set()
    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "finished"
