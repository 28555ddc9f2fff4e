"""rq's job lifecycle, run through GeventWorker with many jobs at once, checked in Redis."""

import time

import gevent
import pytest
import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.worker import Worker

from rq_gevent import GeventWorker


def leftover_execution_keys(connection) -> list[bytes]:
    return connection.keys("rq:execution:*") + connection.keys("rq:executions:*")


def test_100_jobs_of_200ms_run_at_once(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.track_concurrency, 0.2, i) for i in range(100)]
    worker = GeventWorker([queue], connection=connection, concurrency=100)

    started = time.monotonic()
    assert worker.work(burst=True) is True
    elapsed = time.monotonic() - started

    assert [job.return_value() for job in jobs] == list(range(100))
    assert int(connection.get("test:max_running")) >= 50
    assert elapsed < 2.0, f"100 jobs of 0.2 s at -c 100 took {elapsed:.2f} s"


def test_60_concurrent_jobs_leave_clean_registries_and_executions(connection):
    queue = Queue(connection=connection)
    good = [queue.enqueue(testjobs.track_concurrency, 0.3, i) for i in range(40)]
    bad = [queue.enqueue(testjobs.fail, f"bad {i}") for i in range(20)]
    worker = GeventWorker([queue], connection=connection, concurrency=60)

    worker.work(burst=True)

    assert int(connection.get("test:max_running")) >= 35
    for job in good:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED
        assert job.worker_name == worker.name
        assert job.latest_result().type == Result.Type.SUCCESSFUL
    for job in bad:
        job.refresh()
        assert job.get_status() == JobStatus.FAILED
        assert "ValueError: bad" in job.latest_result().exc_string
    assert sorted(FinishedJobRegistry(queue=queue).get_job_ids()) == sorted(j.id for j in good)
    assert sorted(FailedJobRegistry(queue=queue).get_job_ids()) == sorted(j.id for j in bad)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert leftover_execution_keys(connection) == []
    worker.refresh()
    assert worker.successful_job_count == 40
    assert worker.failed_job_count == 20
    assert connection.hget(worker.key, "current_job") is None


def test_result_ttls_and_zero_ttl(connection):
    queue = Queue(connection=connection)
    kept = queue.enqueue(testjobs.green_sleep, 0.01, "kept", result_ttl=100)
    dropped = queue.enqueue(testjobs.green_sleep, 0.01, "dropped", result_ttl=0)
    GeventWorker([queue], connection=connection).work(burst=True)

    assert kept.return_value() == "kept"
    assert 0 < connection.ttl(kept.key) <= 100
    assert not connection.exists(dropped.key)
    assert leftover_execution_keys(connection) == []


def test_enqueue_retry_then_success_and_exhausted(connection):
    queue = Queue(connection=connection)
    flaky = queue.enqueue(testjobs.fail_then_succeed, "test:flaky", 2, retry=Retry(max=2))
    hopeless = queue.enqueue(testjobs.fail, "always", retry=Retry(max=1))
    GeventWorker([queue], connection=connection).work(burst=True)

    flaky.refresh()
    hopeless.refresh()
    assert flaky.get_status() == JobStatus.FINISHED
    assert flaky.return_value() == "succeeded on attempt 3"
    assert flaky.retries_left == 0
    assert hopeless.get_status() == JobStatus.FAILED
    assert int(connection.get("test:flaky")) == 3
    assert len(list(hopeless.results())) == 1  # the first failure was retried, not recorded as final


def test_job_returning_retry(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.return_retry_until, 3)
    GeventWorker([queue], connection=connection).work(burst=True)

    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "done after 3 attempts"
    assert [r.type for r in job.results()][-1] == Result.Type.RETRIED


def test_success_and_failure_callbacks(connection):
    queue = Queue(connection=connection)
    ok = queue.enqueue(testjobs.green_sleep, 0.05, "fine", on_success=Callback(testjobs.record_success))
    bad = queue.enqueue(testjobs.fail, on_failure=Callback(testjobs.record_failure))
    GeventWorker([queue], connection=connection).work(burst=True)

    calls = {c.decode() for c in connection.lrange("test:callbacks", 0, -1)}
    assert calls == {f"success:{ok.id}:fine", f"failure:{bad.id}:ValueError"}


def test_dependencies_are_enqueued_and_run_in_burst(connection):
    queue = Queue(connection=connection)
    parent = queue.enqueue(testjobs.green_sleep, 0.2, "parent")
    child = queue.enqueue(testjobs.green_sleep, 0.01, "child", depends_on=parent)
    grandchild = queue.enqueue(testjobs.green_sleep, 0.01, "grandchild", depends_on=child)
    failing = queue.enqueue(testjobs.fail)
    blocked = queue.enqueue(testjobs.green_sleep, 0, "never", depends_on=failing)
    assert child.get_status() == JobStatus.DEFERRED

    GeventWorker([queue], connection=connection, concurrency=10).work(burst=True)

    assert [j.return_value() for j in (parent, child, grandchild)] == ["parent", "child", "grandchild"]
    assert blocked.get_status() == JobStatus.DEFERRED
    assert DeferredJobRegistry(queue=queue).get_job_ids() == [blocked.id]


def test_get_current_job_and_meta_inside_concurrent_jobs(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.current_job_info, 0.1) for _ in range(20)]
    GeventWorker([queue], connection=connection, concurrency=20).work(burst=True)

    for job in jobs:
        assert job.return_value() == {"id": job.id, "same_after_yield": True}
        job.refresh()
        assert job.meta["seen_by"] == job.id


class CustomJob(Job):
    pass


class CustomQueue(Queue):
    job_class = CustomJob


def test_serializer_and_custom_classes(connection):
    queue = CustomQueue(connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(testjobs.green_sleep, 0.01, {"plain": ["json"]})
    worker = GeventWorker(
        [queue], connection=connection, serializer=JSONSerializer, job_class=CustomJob, queue_class=CustomQueue
    )
    worker.work(burst=True)

    fetched = CustomJob.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert fetched.get_status() == JobStatus.FINISHED
    assert fetched.return_value() == {"plain": ["json"]}


def test_async_jobs_run_concurrently_without_loop_errors(connection):
    queue = Queue(connection=connection)
    async_jobs = [queue.enqueue(testjobs.async_sleep, 0.1, i) for i in range(5)]
    green_jobs = [queue.enqueue(testjobs.green_sleep, 0.3, i) for i in range(5)]
    GeventWorker([queue], connection=connection, concurrency=10).work(burst=True)

    for job in async_jobs:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED, job.latest_result().exc_string
    assert [j.return_value() for j in async_jobs] == list(range(5))
    assert [j.return_value() for j in green_jobs] == list(range(5))


def test_job_deleted_while_queued_is_skipped(connection):
    queue = Queue(connection=connection)
    doomed = queue.enqueue(testjobs.green_sleep, 0, "doomed")
    survivor = queue.enqueue(testjobs.green_sleep, 0, "survivor")
    connection.delete(doomed.key)
    GeventWorker([queue], connection=connection).work(burst=True)

    assert survivor.return_value() == "survivor"
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_several_queues_in_priority_order(connection):
    high = Queue("high", connection=connection)
    low = Queue("low", connection=connection)
    low_jobs = [low.enqueue(testjobs.green_sleep, 0, f"low{i}") for i in range(3)]
    high_jobs = [high.enqueue(testjobs.green_sleep, 0, f"high{i}") for i in range(3)]
    GeventWorker([high, low], connection=connection, concurrency=1).work(burst=True)

    started = sorted(high_jobs + low_jobs, key=lambda j: Job.fetch(j.id, connection=connection).started_at)
    assert [j.id for j in started] == [j.id for j in high_jobs + low_jobs]


def test_rq_api_sees_a_busy_worker(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 1.0, i) for i in range(3)]
    worker = GeventWorker([queue], connection=connection, concurrency=5, name="visible")
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 3, what="three jobs started")

    [seen] = Worker.all(connection=connection)
    assert seen.name == "visible"
    assert seen.get_state() == "busy"
    assert seen.get_current_job_id() in {j.id for j in jobs}
    assert sorted(worker.get_current_job_ids()) == sorted(j.id for j in jobs)
    for job in jobs:
        assert Job.fetch(job.id, connection=connection).worker_name == "visible"

    greenlet.join(10)
    worker.refresh()
    assert worker.get_state() == "idle"
    assert worker.successful_job_count == 3


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True])
def test_bad_concurrency_is_refused(connection, concurrency):
    with pytest.raises(ValueError, match="concurrency"):
        GeventWorker(["default"], connection=connection, concurrency=concurrency)


def test_readme_recipe_lists_a_workers_running_jobs(connection):
    queue = Queue("mail", connection=connection)
    mine = [queue.enqueue(testjobs.green_sleep, 1.0, i) for i in range(4)]
    worker = GeventWorker([queue], connection=connection, concurrency=4, name="worker-name")
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 4)

    running = [
        job
        for job in Job.fetch_many(StartedJobRegistry(queue=queue).get_job_ids(), connection=connection)
        if job is not None and job.worker_name == "worker-name"
    ]
    assert sorted(job.id for job in running) == sorted(job.id for job in mine)
    greenlet.join(10)


def test_rq_info_command_shows_the_busy_worker(connection, redis_url):
    import subprocess
    import sys

    queue = Queue(connection=connection)
    queue.enqueue(testjobs.green_sleep, 2, "x")
    worker = GeventWorker([queue], connection=connection, name="shown-by-rq-info")
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 1)
    info = subprocess.run(
        [sys.executable, "-m", "rq.cli", "info", "-u", redis_url, "--only-workers", "--raw"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "worker shown-by-rq-info" in info.stdout and " busy default" in info.stdout, info.stdout + info.stderr
    greenlet.join(10)


def test_no_job_is_popped_beyond_free_slots(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 1.0, i) for i in range(5)]
    worker = GeventWorker([queue], connection=connection, concurrency=2)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 2)

    for _ in range(5):
        gevent.sleep(0.1)
        assert len(StartedJobRegistry(queue=queue)) == 2
        assert connection.llen(queue.intermediate_queue_key) == 0
        assert len(queue) == 3
    greenlet.join(10)
    assert [job.return_value() for job in jobs] == list(range(5))
