"""rq's own API and tools on GeventWorker's jobs, on every rq release CI runs (rq 2.x and rq 3).

rq 3 keeps a worker's running executions in a per-worker set that ``Worker.get_current_executions()``,
``rq info`` and rq-dashboard read; rq 2 names one ``current_job`` in the worker hash.  Where the two
differ, each test asserts what that release's own worker would show.
"""

import json
import logging
import sys
import time
import zlib

import gevent
import gevent.pywsgi
import pytest
import rq
import sentryjobs
import testjobs
from conftest import dashboard_shows_a_busy_worker_and_one_of_its_jobs, start_worker_greenlet, wait_until
from rq import Callback, Queue, Retry
from rq.command import send_command, send_stop_job_command
from rq.job import Dependency, Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import now
from rq.worker import Worker

from rq_gevent import GeventWorker, compat

RQ3 = compat.EXPLICIT_EXECUTIONS


def started(queue, count):
    return lambda: len(StartedJobRegistry(queue=queue)) == count


def execution_of(connection, job) -> str:
    [execution_id] = connection.zrange(f"rq:executions:{job.id}", 0, -1)
    return execution_id.decode()


def test_60_running_jobs_are_60_executions_of_that_worker(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 2, i) for i in range(60)]
    worker = GeventWorker([queue], connection=connection, concurrency=60, name="sixty")
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 60), what="60 jobs started")

    seen = Worker.find_by_key(worker.key, connection=connection)
    assert seen.get_state() == "busy"
    executions = StartedJobRegistry(queue=queue).get_job_and_execution_ids()
    assert sorted(job_id for job_id, _ in executions) == sorted(job.id for job in jobs)
    if RQ3:
        current = seen.get_current_executions()
        assert len(current) == 60
        assert {execution.job_id for execution in current} == {job.id for job in jobs}
        assert {execution.worker_name for execution in current} == {"sixty"}
        assert {execution.id for execution in current} == {execution_id for _, execution_id in executions}
        assert seen.current_execution_count == 60
        assert seen.get_current_job_id() in {job.id for job in jobs}
        assert len(worker.executions) == 60
    else:  # rq 2: one job named in the worker hash, the newest admitted
        assert seen.get_current_job_id() in {job.id for job in jobs}

    greenlet.join(15)
    assert all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs)
    assert connection.exists(f"rq:worker:{worker.name}:executions") == 0
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert connection.keys("rq:execution:*") == []
    assert worker.executions == {}


def test_a_waiting_worker_is_idle_busy_while_jobs_run_then_idle_again(connection):
    """What ``rq info`` and rq-dashboard show: rq's worker waits for jobs "idle", not "started"."""
    queue = Queue(connection=connection)
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker)
    state = lambda: Worker.find_by_key(worker.key, connection=connection).get_state()  # noqa: E731
    wait_until(lambda: state() == "idle", what="the waiting worker idle")
    job = queue.enqueue(testjobs.green_sleep, 1)
    wait_until(lambda: state() == "busy", what="the worker busy")
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, what="the job finished")
    wait_until(lambda: state() == "idle", what="the worker idle again")
    worker.request_stop()
    greenlet.join(15)
    assert greenlet.dead and worker.name not in {seen.name for seen in Worker.all(connection=connection)}


def test_rq_dashboard_shows_a_busy_worker_and_one_of_its_jobs(connection, redis_url):
    dashboard_shows_a_busy_worker_and_one_of_its_jobs([sys.executable, "-m", "rq_dashboard"], connection, redis_url)


def test_stop_job_and_stop_execution_commands_stop_exactly_that_job(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 2, i, on_stopped=Callback(testjobs.record_stopped)) for i in range(4)]
    worker = GeventWorker([queue], connection=connection, concurrency=4)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 4), what="4 jobs started")

    by_job, by_execution = jobs[1], jobs[2]
    send_stop_job_command(connection, by_job.id)
    execution_id = execution_of(connection, by_execution)
    if RQ3:
        from rq.command import send_stop_execution_command

        send_stop_execution_command(connection, by_execution.id, execution_id)
    else:  # rq 2 has no sender, but its payload is the same
        send_command(connection, worker.name, "stop-execution", job_id=by_execution.id, execution_id=execution_id)
    greenlet.join(15)

    for job in (by_job, by_execution):
        assert job.get_status(refresh=True) == JobStatus.STOPPED
        assert job.id in FailedJobRegistry(queue=queue)
    assert [jobs[0].return_value(), jobs[3].return_value()] == [0, 3]
    assert sorted(connection.lrange("test:callbacks", 0, -1)) == sorted(
        f"stopped:{job.id}".encode() for job in (by_job, by_execution)
    )
    assert connection.keys("rq:execution:*") == []


def test_stop_commands_for_unknown_jobs_and_executions_are_logged_and_ignored(connection, caplog):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 1, "kept")
    worker = GeventWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 1))
    send_command(connection, worker.name, "stop-job", job_id="no-such-job")
    send_command(connection, worker.name, "stop-execution", job_id=job.id, execution_id="no-such-execution")
    send_command(connection, worker.name, "stop-execution")
    greenlet.join(10)
    assert greenlet.successful()
    assert job.return_value() == "kept"
    messages = [record.getMessage() for record in caplog.records]
    assert any("not running job no-such-job" in message for message in messages), messages
    assert any("not running execution no-such-execution" in message for message in messages), messages


def test_retry_with_intervals_runs_through_the_scheduler(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.fail_then_succeed, "test:attempts", 2, retry=Retry(max=3, interval=[1, 1]))
    worker = GeventWorker([queue], connection=connection, name="with-scheduler")
    greenlet = start_worker_greenlet(worker, with_scheduler=True)
    try:
        wait_until(lambda: job.id in ScheduledJobRegistry(queue=queue), timeout=5, what="retry scheduled")
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=15, what="retried to success")
    finally:
        worker.request_stop()
        greenlet.join(15)
    assert int(connection.get("test:attempts")) == 3
    job.refresh()
    assert job.retries_left == 1
    # As with rq's own worker: the attempts that were retried leave no result, the last one does.
    assert [result.type for result in job.results()] == [Result.Type.SUCCESSFUL]


def test_dependencies_with_and_without_allow_failure(connection):
    queue = Queue(connection=connection)
    parent = queue.enqueue(testjobs.fail, "parent failed")
    tolerant = queue.enqueue(
        testjobs.green_sleep, 0, "ran anyway", depends_on=Dependency(jobs=[parent], allow_failure=True)
    )
    strict = queue.enqueue(testjobs.green_sleep, 0, "never", depends_on=parent)
    GeventWorker([queue], connection=connection).work(burst=True)
    assert parent.get_status(refresh=True) == JobStatus.FAILED
    assert tolerant.return_value() == "ran anyway"
    assert strict.get_status(refresh=True) == JobStatus.DEFERRED


class MarkedJob(Job):
    """A job class a worker subclass names as its class attribute, as rq users do."""


def test_a_worker_subclass_keeps_its_own_job_class_and_runs_jobs_as_it(connection):
    class MarkedWorker(GeventWorker):
        job_class = MarkedJob

    worker = MarkedWorker(["default"], connection=connection)
    assert worker.job_class is MarkedJob  # rq's Worker keeps a subclass's job_class unless one is passed
    job = Queue(connection=connection).enqueue(testjobs.green_sleep, 0, "marked")
    worker.work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "marked"
    assert MarkedWorker(["default"], connection=connection, job_class=Job).job_class is Job


def test_a_second_work_call_counts_its_own_jobs(connection):
    """Embedding: max_jobs, the idle time and the return value belong to each work() call."""
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0, i) for i in range(3)]
    worker = GeventWorker([queue], connection=connection)
    assert worker.work(burst=True, max_jobs=1) is True
    assert worker.work(burst=True, max_jobs=1) is True
    assert [job.get_status(refresh=True) for job in jobs] == [JobStatus.FINISHED, JobStatus.FINISHED, "queued"]
    assert worker.work(burst=True) is True
    assert worker.work(burst=True) is False


def test_retries_driven_by_successive_work_calls_end_failed(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.fail, "always", retry=Retry(max=2))
    worker = GeventWorker([queue], connection=connection)
    for _ in range(3):
        assert worker.work(burst=True, max_jobs=1) is True
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in FailedJobRegistry(queue=queue)
    assert worker.work(burst=True, max_jobs=1) is False


def test_a_job_whose_id_is_queued_twice_runs_once_even_when_both_are_popped_together(connection, caplog):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.track_concurrency, 0.5, "once", job_id="twice")
    queue.push_job_id(job.id)
    queue.enqueue(testjobs.green_sleep, 0, "other")
    GeventWorker([queue], connection=connection, concurrency=4).work(burst=True)
    assert job.return_value() == "once"
    assert connection.get("test:max_running") == b"1"
    assert len(job.results()) == 1
    assert "job twice popped again while it runs here" in caplog.text
    assert len(queue) == 0 and connection.llen(queue.intermediate_queue_key) == 0
    assert len(StartedJobRegistry(queue=queue)) == 0 and len(FailedJobRegistry(queue=queue)) == 0


class WorkerWhoseBookkeepingFails(GeventWorker):
    """rq's ``perform_job`` raising, as a worker subclass's bug or rq's own would (rq: the horse died)."""

    def perform_job(self, job, queue, *args):
        if job.args[1] == "broken":
            raise RuntimeError("the bookkeeping broke")
        return super().perform_job(job, queue, *args)


def test_a_job_whose_bookkeeping_raises_is_failed_and_the_worker_goes_on(connection):
    queue = Queue(connection=connection)
    broken = queue.enqueue(testjobs.green_sleep, 0, "broken")
    fine = queue.enqueue(testjobs.green_sleep, 0, "fine")
    worker = WorkerWhoseBookkeepingFails([queue], connection=connection)
    assert worker.work(burst=True) is True
    assert fine.return_value() == "fine"
    assert broken.get_status(refresh=True) == JobStatus.FAILED
    assert broken.id in FailedJobRegistry(queue=queue)
    assert "RuntimeError: the bookkeeping broke" in broken.latest_result().exc_string
    assert len(StartedJobRegistry(queue=queue)) == 0
    assert connection.llen(queue.intermediate_queue_key) == 0 and len(queue) == 0


def test_a_job_hash_rq_cannot_load_is_failed_and_the_worker_goes_on(connection, caplog):
    queue = Queue(connection=connection)
    queue.enqueue(testjobs.green_sleep, 0, "before", job_id="good-1")
    connection.hset("rq:job:broken", mapping={"status": "queued", "created_at": "not a date", "data": b"\x00junk"})
    connection.rpush(queue.key, "broken")
    queue.enqueue(testjobs.green_sleep, 0, "after", job_id="good-2")
    GeventWorker([queue], connection=connection).work(burst=True)
    assert Job.fetch("good-1", connection=connection).return_value() == "before"
    assert Job.fetch("good-2", connection=connection).return_value() == "after"
    assert "broken" in FailedJobRegistry(queue=queue).get_job_ids()
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert any("job broken cannot be loaded" in record.getMessage() for record in caplog.records)


def test_a_job_pushed_by_hand_runs_whatever_its_status_unless_cancelled_or_taken_elsewhere(connection):
    """rq runs what it pops: a job saved (status ``created``) and pushed with ``Queue.push_job_id``, one
    deferred or scheduled, one with no status; one that cannot be read is failed.  Not run: a cancelled
    job, and one started or ended elsewhere (a duplicate of its id in the queue)."""
    queue = Queue(connection=connection)
    to_run = [status for status in ("created", "deferred", "scheduled") if status in {s.value for s in JobStatus}]
    jobs = {}
    for status in (*to_run, "canceled", "started", "finished", ""):  # rq 2 has no status "created"
        job = Job.create(testjobs.green_sleep, args=(0, status), origin=queue.name, connection=connection,
                         id=f"by-hand-{status or 'none'}")  # fmt: skip
        job.save()
        if status:
            connection.hset(job.key, "status", status)
        else:
            connection.hdel(job.key, "status")
        queue.push_job_id(job.id)
        jobs[status] = job
    unreadable = Job.create(testjobs.green_sleep, args=(0,), origin=queue.name, connection=connection, id="bad")
    unreadable.save()
    connection.hset(unreadable.key, "data", zlib.compress(unreadable.data.replace(b"green_sleep", b"nope")))
    queue.push_job_id(unreadable.id)

    GeventWorker([queue], connection=connection).work(burst=True)

    for status in (*to_run, ""):
        assert jobs[status].get_status(refresh=True) == JobStatus.FINISHED, status
        assert jobs[status].return_value() == status
    for status in ("canceled", "started", "finished"):
        assert jobs[status].get_status(refresh=True) == status
        assert jobs[status].return_value() is None
    assert unreadable.get_status(refresh=True) == JobStatus.FAILED
    assert unreadable.id in FailedJobRegistry(queue=queue)
    assert len(queue) == 0 and connection.llen(queue.intermediate_queue_key) == 0


def test_a_running_jobs_execution_deleted_by_hand_is_logged_and_the_job_still_ends(connection, caplog):
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 2.5, "finished anyway")
    other = queue.enqueue(testjobs.green_sleep, 0.5, "other")
    worker = GeventWorker([queue], connection=connection, job_monitoring_interval=1)
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(started(queue, 2))
    execution_id = execution_of(connection, job)
    connection.delete(f"rq:execution:{job.id}:{execution_id}")
    greenlet.join(15)
    assert greenlet.successful()
    assert job.return_value() == "finished anyway" and other.return_value() == "other"
    assert connection.exists(f"rq:execution:{job.id}:{execution_id}") == 0, "the heartbeat must not re-create it"
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert connection.exists(f"rq:worker:{worker.name}:executions") == 0
    lost = [r.getMessage() for r in caplog.records if f"execution {execution_id} of running job" in r.getMessage()]
    assert len(lost) == 1, lost


# -- rq 3 only: features rq 2 does not have ---------------------------------------------------------

rq3_only = pytest.mark.skipif(not RQ3, reason=f"a feature of rq 3; this run uses rq {rq.__version__}")


@rq3_only
def test_rate_limited_jobs_run_at_most_that_many_at_once_and_free_their_slots(connection):
    from rq.rate_limit import RateLimit, RateLimitRegistry

    queue = Queue(connection=connection)
    limit = RateLimit("smtp-provider", concurrency=2)
    jobs = [queue.enqueue(testjobs.track_concurrency, 0.3, i, rate_limit=limit) for i in range(8)]
    jobs.append(queue.enqueue(testjobs.fail, "limited and failing", rate_limit=limit))
    GeventWorker([queue], connection=connection, concurrency=20).work(burst=True)
    assert [job.return_value() for job in jobs[:8]] == list(range(8))
    assert jobs[8].get_status(refresh=True) == JobStatus.FAILED
    assert int(connection.get("test:max_running")) == 2
    registry = RateLimitRegistry("smtp-provider", connection=connection)
    assert registry.get_allowed_job_ids() == []
    assert registry.get_rate_limited_job_ids() == []


class WebhookSink:
    """A real HTTP server that records what rq's webhooks send it."""

    def __init__(self):
        self.received: list[dict] = []
        self.server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), self.app, log=None, error_log=None)
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read()
        self.received.append({"method": environ["REQUEST_METHOD"], "body": json.loads(body) if body else None})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@rq3_only
def test_webhooks_are_sent_when_jobs_finish_and_fail(connection):
    from rq.webhook import Webhook

    sink = WebhookSink()
    try:
        queue = Queue(connection=connection)
        ok = queue.enqueue(testjobs.green_sleep, 0, "ok", webhooks=[Webhook(sink.url, "finished", method="POST")])
        bad = queue.enqueue(testjobs.fail, "bad", webhooks=[Webhook(sink.url, "failed", method="POST")])
        GeventWorker([queue], connection=connection).work(burst=True)
        wait_until(lambda: len(sink.received) == 2, timeout=5, what="two webhooks")
    finally:
        sink.server.stop()
    bodies = {hook["body"]["job_id"]: hook["body"] for hook in sink.received}
    assert set(bodies) == {ok.id, bad.id}
    assert bodies[ok.id]["status"] == "finished"
    assert bodies[bad.id]["status"] == "failed"
    assert {hook["method"] for hook in sink.received} == {"POST"}


@rq3_only
def test_cron_jobs_run_and_stay_in_their_history(connection):
    from rq.cron import CronScheduler, get_cron_job_ids

    cron = CronScheduler(connection=connection)
    cron.register(testjobs.green_sleep, "default", args=(0, "from cron"), interval=60, name="nightly")
    [enqueued] = cron.enqueue_jobs()
    GeventWorker([Queue(connection=connection)], connection=connection).work(burst=True)
    [job_id] = get_cron_job_ids("nightly", connection)
    assert Job.fetch(job_id, connection=connection).return_value() == "from cron"
    assert enqueued.name == "nightly"


@rq3_only
def test_a_retried_job_keeps_a_meta_the_worker_cannot_read(connection):
    """rq 3 writes back the bytes of a meta it could not deserialize (rq's suite:
    test_retry_keeps_unreadable_meta); the worker's attempt count in meta replaced them."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.fail, "always", retry=Retry(max=1), meta={"key": "value"})
    unreadable = b"cnot_an_importable_module\nOwner\n."  # pickled meta naming a module nobody has
    connection.hset(job.key, "meta", unreadable)

    GeventWorker([queue], connection=connection).work(burst=True)

    job.refresh()
    assert job.retries_left == 0 and job.id in FailedJobRegistry(queue=queue)
    assert connection.hget(job.key, "meta") == unreadable


class OverridesRqsHooks(GeventWorker):
    """A worker class (``--worker-class``) overriding rq's private hooks, each calling rq's through super()."""

    def __init__(self, *args, **kwargs):
        self.called: list[str] = []
        super().__init__(*args, **kwargs)

    def _set_connection(self, connection):
        self.called.append("_set_connection")
        return super()._set_connection(connection)

    def _install_signal_handlers(self):
        self.called.append("_install_signal_handlers")
        super()._install_signal_handlers()

    def _start_scheduler(self, *args, **kwargs):
        self.called.append("_start_scheduler")
        super()._start_scheduler(*args, **kwargs)


def test_a_subclass_overriding_rqs_private_hooks_has_each_called(connection):
    queue = Queue("hooks", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0, "done")
    worker = OverridesRqsHooks([queue], connection=connection)
    worker.work(burst=True, with_scheduler=True)
    assert worker.called == ["_set_connection", "_install_signal_handlers", "_start_scheduler"]
    assert job.return_value() == "done"


class RenamesItself(GeventWorker):
    """Names itself after rq's __init__, as a subclass may (host and pid, say)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = f"renamed-{self.name}"


def test_a_worker_renamed_after_construction_writes_everything_under_its_new_name(connection):
    queue = Queue("renamed", connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.1, n) for n in range(3)]
    worker = RenamesItself([queue], connection=connection, name="original")
    worker.work(burst=True)
    assert [job.return_value() for job in jobs] == [0, 1, 2]
    assert not connection.exists("rq:worker:original")  # no orphan hash of counters under the old name
    assert int(connection.hget("rq:worker:renamed-original", "successful_job_count")) == 3


def test_a_renamed_worker_shut_down_cold_requeues_its_running_job(connection):
    queue = Queue("renamed", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 30)
    worker = RenamesItself([queue], connection=connection, name="original")
    greenlet = start_worker_greenlet(worker)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
    worker.request_stop()
    time.sleep(1.1)  # a second request a second later or more is a cold shutdown
    worker.request_stop()
    greenlet.join(15)
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.job_ids == [job.id]


def test_rqs_own_heartbeat_deletes_a_job_hash_it_recreated(connection):
    """rq's code for a heartbeat (an rq release CI does not test, or use_scripts False): a job deleted
    just before the heartbeat (a result TTL of 0) is not left as a hash of one field, as rq's own
    ``maintain_heartbeats`` deletes it again."""
    queue = Queue("beats", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0)
    execution = compat.new_execution(job, "w")
    connection.delete(job.key)
    beats = compat.JobHeartbeats(connection, scripted=False)
    with connection.pipeline() as pipeline:
        index = beats.beat(pipeline, execution, job, 60, now())
        results = pipeline.execute()
    assert results[index] == 1 and connection.hkeys(job.key) == [b"last_heartbeat"]  # the HSET re-created it
    beats.delete_recreated(connection, job, results[index])
    assert not connection.exists(job.key)


def test_a_logger_set_on_the_worker_before_work_withholds_a_sensitive_jobs_secrets(connection, caplog):
    """rq's API lets ``worker.log`` be replaced; the worker's filters (a sensitive job's arguments and
    exception messages withheld) go on the logger it then logs to."""
    queue = Queue("own-logger", connection=connection)
    secret = "hunter2-in-the-logs"
    job = queue.enqueue(sentryjobs.derived_marked, "someone", secret)
    worker = GeventWorker([queue], connection=connection)
    worker.log = logging.getLogger("an.app.logger")
    caplog.set_level("DEBUG")
    worker.work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    logged = [logging.Formatter().format(record) for record in caplog.records if record.name == "an.app.logger"]
    assert any(job.id in line for line in logged)  # the instrument: the worker logged to it
    assert not [line for line in logged for marker in [secret, *sentryjobs.derived_markers(secret)] if marker in line]


def test_a_logger_adapter_set_on_the_worker_is_used(connection, caplog):
    """rq's worker logs through ``self.log`` whatever it is; an app's ``LoggerAdapter`` works too."""
    queue = Queue("adapter", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0, "done")
    worker = GeventWorker([queue], connection=connection)
    worker.log = logging.LoggerAdapter(logging.getLogger("an.app.adapter"), {"app": "x"})
    caplog.set_level("INFO")
    assert worker.work(burst=True) is True
    assert job.return_value() == "done"
    assert any(record.name == "an.app.adapter" for record in caplog.records)
