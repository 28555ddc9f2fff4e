"""Jobs popped ahead of a free slot (rq_gevent.core.prefetch): they happen when jobs end fast, never make a job
run twice or get lost, and go back to the front of their queue in order when they wait too long or
the worker stops."""

import os
import signal

import gevent
import pytest
import redis
import testjobs
from conftest import refusing_writes, start_worker_greenlet, wait_until
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from rq_gevent import GeventWorker
from rq_gevent.core import prefetch
from rq_gevent.embedded_redis import EmbeddedRedis


def test_jobs_that_end_fast_are_popped_ahead_and_each_runs_once(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.005, i) for i in range(1000)]
    worker = GeventWorker([queue], connection=connection, concurrency=20)
    # Without popping ahead, a pop takes at most the slots free as it begins.  Counted at each pop, from
    # the worker's side: a sampler polling Redis every few milliseconds misses the moments on a busy
    # machine, and counting the jobs held after a pop misses those that ended during it (CI: 20 > 20).
    # Each pop takes 10 ms more, as to a Redis in another zone: on a local Redis under load, the 20 jobs
    # can fall into step, all ending together between pops, and then none is ever popped ahead (CI).
    ahead_at_pops: list[int] = []
    pop_batch = worker.dequeuer.pop_batch

    def counting_pop_batch(slots: int) -> list:
        free = worker.admission.free_slots()
        gevent.sleep(0.01)
        popped = pop_batch(slots)
        ahead_at_pops.append(len(popped) - free)
        return popped

    worker.dequeuer.pop_batch = counting_pop_batch
    assert worker.work(burst=True) is True

    assert max(ahead_at_pops) > 0, "no job was ever popped ahead of a free slot"
    assert max(ahead_at_pops) <= worker.loop.prefetched.limit
    assert [job.return_value() for job in jobs] == list(range(1000))
    assert all(len(job.results()) == 1 for job in jobs[::25])
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert len(queue) == 0 and len(FailedJobRegistry(queue=queue)) == 0


def test_jobs_popped_ahead_go_back_in_order_when_they_wait_too_long(connection, caplog):
    queue = Queue(connection=connection)
    long_job = queue.enqueue(testjobs.green_sleep, 4, "long")
    jobs = [queue.enqueue(testjobs.green_sleep, 0, i) for i in range(4)]
    worker = GeventWorker([queue], connection=connection, concurrency=1)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: long_job.get_status(refresh=True) == JobStatus.STARTED, what="the long job started")

    # As if the last pop had seen jobs end: three popped ahead while the only slot stays busy.
    popped = worker.dequeuer.pop_batch(3)
    worker.loop.prefetched.add(popped)
    assert queue.get_job_ids() == [jobs[3].id]
    wait_until(lambda: len(queue) == 4, timeout=prefetch.MAX_WAIT + 3, what="the popped jobs put back")

    assert queue.get_job_ids() == [job.id for job in jobs]
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert long_job.get_status(refresh=True) == JobStatus.STARTED
    assert all(job.get_status(refresh=True) == JobStatus.QUEUED for job in jobs)
    assert "3 jobs popped ahead put back at the front of default" in caplog.text
    greenlet.join(15)
    assert [job.return_value() for job in jobs] == [0, 1, 2, 3]


def test_only_ids_still_waiting_to_start_are_put_back(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0, i) for i in range(5)]
    worker = GeventWorker([queue], connection=connection, concurrency=5)
    worker.dequeuer.open(worker.dequeue_socket_timeout)
    try:
        popped = worker.dequeuer.pop_batch(4)
        assert [job.id for job, _ in popped] == [job.id for job in jobs[:4]]
        connection.lrem(queue.intermediate_queue_key, 1, jobs[1].id)  # say, maintenance took it meanwhile

        assert worker.dequeuer.put_back(queue, [job.id for job, _ in popped]) == 3
    finally:
        worker.dequeuer.close()
    assert queue.get_job_ids() == [jobs[0].id, jobs[2].id, jobs[3].id, jobs[4].id]
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_a_warm_shutdown_amid_fast_jobs_loses_none_and_runs_none_twice(connection, redis_url, worker_process):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.01, i) for i in range(3000)]
    worker = worker_process("-u", redis_url, "-c", "10")
    wait_until(lambda: len(queue) < 2500, what="500 jobs taken")

    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()

    statuses = [job.get_status(refresh=True) for job in jobs]
    assert set(statuses) <= {JobStatus.FINISHED, JobStatus.QUEUED}, worker.output()
    queued = [job.id for job, status in zip(jobs, statuses, strict=True) if status == JobStatus.QUEUED]
    assert queue.get_job_ids() == queued  # in their order, each once
    assert connection.llen(queue.intermediate_queue_key) == 0
    finished = [job for job, status in zip(jobs, statuses, strict=True) if status == JobStatus.FINISHED]
    assert all(len(job.results()) == 1 for job in finished[::10])
    assert "warm shutdown requested (signal SIGTERM)" in worker.output()


def take_back_seat(connection, queue, worker, release_key: str | None, withdraw) -> tuple:
    """Pop two jobs as if ahead of a slot, withdraw the first (cancel or delete), hand both to the loop;
    ``release_key``: end the job holding the only slot at once, so that they start rather than wait."""
    popped = worker.dequeuer.pop_batch(2)
    first, second = (job for job, _ in popped)
    withdraw(Job.fetch(first.id, connection=connection))
    if release_key is not None:
        connection.rpush(release_key, "go")
    worker.loop.prefetched.add(popped)
    return first, second


def one_slot_held_until_release(connection, holder_call: tuple = (testjobs.block_in_redis, "release", 10)) -> tuple:
    """A burst worker with one slot, held by a job until ``release`` is pushed (or ``holder_call`` ends);
    "first" and "second" queued behind it."""
    queue = Queue(connection=connection)
    holder = queue.enqueue(*holder_call)
    queue.enqueue(testjobs.green_sleep, 0, "first")
    queue.enqueue(testjobs.green_sleep, 0, "second")
    worker = GeventWorker([queue], connection=connection, concurrency=1)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: holder.get_status(refresh=True) == JobStatus.STARTED, what="the holder started")
    return queue, worker, greenlet


WITHDRAWALS = {
    "cancel": lambda job: job.cancel(),
    "delete": lambda job: job.delete(),
    # What a stock rq worker's maintenance does to a job it finds in :intermediate for a minute.
    "failed elsewhere": lambda job: job.set_status(JobStatus.FAILED),
}


@pytest.mark.parametrize("withdrawal", sorted(WITHDRAWALS))
def test_a_job_cancelled_or_deleted_after_its_pop_is_not_run(connection, caplog, withdrawal):
    queue, worker, greenlet = one_slot_held_until_release(connection)

    first, second = take_back_seat(connection, queue, worker, "release", WITHDRAWALS[withdrawal])
    greenlet.join(15)

    assert "was cancelled, deleted or taken elsewhere after it was popped; not run" in caplog.text
    assert second.get_status(refresh=True) == JobStatus.FINISHED and second.return_value() == "second"
    if withdrawal in ("cancel", "failed elsewhere"):
        expected = JobStatus.CANCELED if withdrawal == "cancel" else JobStatus.FAILED
        assert Job.fetch(first.id, connection=connection).get_status() == expected
        assert Job.fetch(first.id, connection=connection).return_value() is None
    else:
        assert not connection.exists(first.key)  # not created again by a start
    assert connection.llen(queue.intermediate_queue_key) == 0 and len(queue) == 0
    assert len(FailedJobRegistry(queue=queue)) == 0 and len(StartedJobRegistry(queue=queue)) == 0


@pytest.mark.parametrize("withdrawal", sorted(WITHDRAWALS))
def test_a_job_cancelled_or_deleted_while_popped_ahead_is_not_put_back(connection, withdrawal):
    queue, worker, greenlet = one_slot_held_until_release(connection)

    first, second = take_back_seat(connection, queue, worker, None, WITHDRAWALS[withdrawal])
    wait_until(lambda: len(queue) == 1, timeout=3, what="the popped jobs put back")
    assert queue.get_job_ids() == [second.id]
    assert connection.llen(queue.intermediate_queue_key) == 0

    connection.rpush("release", "go")
    greenlet.join(15)
    assert second.get_status(refresh=True) == JobStatus.FINISHED
    if withdrawal in ("cancel", "failed elsewhere"):
        expected = JobStatus.CANCELED if withdrawal == "cancel" else JobStatus.FAILED
        assert Job.fetch(first.id, connection=connection).get_status() == expected
    else:
        assert not connection.exists(first.key)


@pytest.mark.parametrize("refused", ["lrem", "lpush"])
def test_a_put_back_redis_refuses_leaves_the_jobs_to_maintenance_and_the_loop_running(connection, caplog, refused):
    """Refused for good (an ACL here): at the first command, or at the LPUSH after an id left the
    intermediate list, where the id goes back."""
    queue, worker, greenlet = one_slot_held_until_release(connection)
    popped = worker.dequeuer.pop_batch(2)
    connection.execute_command("ACL", "SETUSER", "default", f"-{refused}")
    try:
        worker.loop.prefetched.add(popped)
        wait_until(lambda: "could not put 2 jobs popped ahead back" in caplog.text, timeout=3, what="the put-back")
    finally:
        connection.execute_command("ACL", "SETUSER", "default", "+@all")
    assert "could not put 2 jobs popped ahead back in default (" in caplog.text
    assert sorted(connection.lrange(queue.intermediate_queue_key, 0, -1)) == sorted(
        job.id.encode() for job, _ in popped
    )  # for maintenance to requeue
    assert queue.get_job_ids() == []

    connection.rpush("release", "go")
    greenlet.join(15)
    assert "unhandled exception in the work loop" not in caplog.text
    assert worker.admission.ended == 1  # the holder's outcome recorded, and the loop went on to the end


def test_a_put_back_while_redis_refuses_writes_for_now_waits_for_it(connection, caplog):
    queue, worker, greenlet = one_slot_held_until_release(connection)
    popped = worker.dequeuer.pop_batch(2)
    with refusing_writes(connection, "NOREPLICAS"):  # until a replica follows
        worker.loop.prefetched.add(popped)
        wait_until(lambda: "will put 2 jobs popped ahead back" in caplog.text, timeout=3, what="the put-back tried")
        assert connection.llen(queue.intermediate_queue_key) == 2
    wait_until(lambda: connection.llen(queue.intermediate_queue_key) == 0, timeout=5, what="the put-back")
    assert queue.get_job_ids() == [job.id for job, _ in popped]
    assert "could not put" not in caplog.text

    connection.rpush("release", "go")
    greenlet.join(15)
    assert "unhandled exception in the work loop" not in caplog.text


def test_no_job_popped_ahead_starts_once_a_warm_shutdown_is_requested(connection):
    queue, worker, greenlet = one_slot_held_until_release(connection)
    first, second = take_back_seat(connection, queue, worker, None, lambda job: None)
    worker.request_stop(signal.SIGTERM, None)
    connection.rpush("release", "go")  # the slot frees while they wait in it
    greenlet.join(15)

    assert queue.get_job_ids() == [first.id, second.id]
    assert first.get_status(refresh=True) == second.get_status(refresh=True) == JobStatus.QUEUED
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_jobs_popped_ahead_are_put_back_once_an_unreachable_redis_answers(caplog):
    with EmbeddedRedis(appendonly=True) as private_redis:  # AOF: the jobs and lists survive a restart
        connection = redis.Redis.from_url(private_redis.url)
        # The holder keeps its slot through the outage: it needs no Redis until it ends (one that failed
        # with the restart would leave its slot to them while its failure waits for Redis).
        queue, worker, greenlet = one_slot_held_until_release(connection, (testjobs.green_sleep, 4, "holder"))
        first, second = take_back_seat(connection, queue, worker, None, lambda job: None)
        private_redis.restart(down_for=1.5)  # their put-back is due 100 ms after they were popped
        wait_until(lambda: "jobs popped ahead put back" in caplog.text, timeout=20, what="the put-back")
        assert "will put 2 jobs popped ahead back in default once it answers" in caplog.text
        greenlet.join(30)  # the holder ends; the burst runs the two

        assert [first.get_status(refresh=True), second.get_status(refresh=True)] == [JobStatus.FINISHED] * 2
        assert connection.llen(queue.intermediate_queue_key) == 0
