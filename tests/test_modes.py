"""Burst draining, max_jobs, max_idle_time and the in-process scheduler."""

import os
import time
from datetime import timedelta
from pathlib import Path

import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Queue, Retry
from rq.job import JobStatus
from rq.worker import Worker

from rq_gevent import GeventWorker
from rq_gevent.core.scheduler import GreenletScheduler


def test_burst_runs_what_running_jobs_enqueue(connection):
    queue = Queue(connection=connection)
    parent = queue.enqueue(testjobs.green_sleep, 0.3, "parent")
    child = queue.enqueue(testjobs.green_sleep, 0.3, "child", depends_on=parent)
    spawner = queue.enqueue(testjobs.enqueue_follow_up, queue.name, "spawned")
    retried = queue.enqueue(testjobs.fail_then_succeed, "test:burst-retry", 1, retry=Retry(max=1))

    GeventWorker([queue], connection=connection, concurrency=10).work(burst=True)

    assert child.return_value() == "child"
    assert spawner.return_value() == "spawned"
    assert queue.fetch_job("follow-up-spawned").return_value() == "spawned"
    assert retried.get_status(refresh=True) == JobStatus.FINISHED
    assert len(queue) == 0


class WaitRecordingWorker(GeventWorker):
    """Records each time the loop waits for a job to end: (jobs running, whether one ended in time)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waits: list[tuple[int, bool]] = []
        wait = self.admission.wait_for_a_job_to_end

        def recorded_wait(timeout=1.0):
            running = len(self.jobs)
            ended = wait(timeout)
            self.waits.append((running, ended))
            return ended

        self.admission.wait_for_a_job_to_end = recorded_wait


class JobEndsDuringTheLastPopWorker(WaitRecordingWorker):
    """Holds an empty pop until the running jobs have ended; records each pop as (jobs running
    before it, jobs it popped, jobs running after it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pops: list[tuple[int, int, int]] = []
        pop = self.loop._pop

        def pop_while_the_last_job_ends(burst, slots):
            running_before = len(self.jobs)
            popped = pop(burst, slots)
            if not popped:
                while self.jobs:
                    self.admission.job_ended.clear()
                    self.admission.job_ended.wait(1)
            self.pops.append((running_before, len(popped), len(self.jobs)))
            return popped

        self.loop._pop = pop_while_the_last_job_ends


def test_burst_pops_again_at_once_when_the_last_job_ended_during_the_pop(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.2, i) for i in range(3)]
    worker = JobEndsDuringTheLastPopWorker([queue], connection=connection, concurrency=10)

    worker.work(burst=True)

    assert [job.return_value() for job in jobs] == [0, 1, 2]
    # The situation happened: an empty pop began with jobs running and ended with none, and the loop
    # popped again after it (rather than quitting with the queue unchecked).
    last_ended_during = [
        n for n, (before, popped, after) in enumerate(worker.pops) if before and not popped and not after
    ]
    assert last_ended_during and worker.pops[last_ended_during[-1] + 1 :], worker.pops
    # Waiting for a job to end with none running would sleep the full second for nothing.
    assert all(running for running, _ in worker.waits), worker.waits


def test_a_full_pool_takes_the_next_job_as_soon_as_a_slot_is_free(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0, i) for i in range(5)]
    worker = WaitRecordingWorker([queue], connection=connection, concurrency=1)

    worker.work(burst=True)

    assert [job.return_value() for job in jobs] == list(range(5))
    assert len(worker.waits) >= 4  # the pool was full after each admission
    # Each wait ends when the job's slot is free: a missed wake-up would wait out its 1 s timeout.
    assert all(ended for _, ended in worker.waits), worker.waits


def test_max_jobs_admits_that_many_and_lets_them_finish(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.3, i) for i in range(10)]
    worker = GeventWorker([queue], connection=connection, concurrency=10)

    assert worker.work(max_jobs=3) is True

    statuses = [job.get_status(refresh=True) for job in jobs]
    assert statuses[:3] == [JobStatus.FINISHED] * 3
    assert statuses[3:] == [JobStatus.QUEUED] * 7


def test_max_idle_time(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 1.5, "work first")
    worker = GeventWorker([queue], connection=connection)

    started = time.monotonic()
    worker.work(max_idle_time=2)
    elapsed = time.monotonic() - started

    assert job.return_value() == "work first"
    assert 3.0 <= elapsed < 6.5, "idle time counts from the end of the last job"


def child_pids() -> set[str]:
    return set(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split())


def test_scheduler_runs_in_a_greenlet_not_a_forked_process(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue_in(timedelta(seconds=1), testjobs.green_sleep, 0, "scheduled")
    worker = GeventWorker([queue], connection=connection)
    children_before = child_pids()
    greenlet = start_worker_greenlet(worker, with_scheduler=True)

    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=10, what="scheduled job ran")
    assert isinstance(worker.scheduler, GreenletScheduler)
    assert worker.scheduler._process.is_alive()
    assert child_pids() == children_before, "the scheduler must not fork"

    worker.request_stop()
    greenlet.join(10)
    assert greenlet.dead
    assert not worker.scheduler._process.is_alive()
    assert connection.keys("rq:scheduler-lock:*") == []


def test_burst_worker_deregisters_and_keeps_its_counters(connection):
    queue = Queue(connection=connection)
    queue.enqueue(testjobs.green_sleep, 0, "x")
    worker = GeventWorker([queue], connection=connection, name="info-check")
    worker.work(burst=True)
    assert Worker.all(connection=connection) == []
    assert connection.hget(worker.key, "successful_job_count") == b"1"
