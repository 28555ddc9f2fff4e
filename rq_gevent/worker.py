"""``GeventWorker``: an ``rq.Worker`` that runs each job in a greenlet of a bounded pool.

Every job still goes through rq's own ``perform_job`` and ``handle_job_*`` methods.  This class keeps
only the rq methods that must differ for greenlets, and builds the parts that do the work, each handed
what it uses (:meth:`GeventWorker._build_parts`): the worker core in :mod:`rq_gevent.core`, the Redis
plumbing in :mod:`rq_gevent.plumbing` (docs/architecture.md: who is built with what, and the path of
one job through them).

What differs between rq releases, and every use of rq's private names, is in :mod:`rq_gevent.compat`.
"""

from __future__ import annotations

from .patching import require_patched

require_patched()

import asyncio
import contextlib
import datetime
import functools
import inspect
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.exceptions
import gevent.lock
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import __version__ as rq_version
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.queue import Queue
from rq.utils import import_attribute, now
from rq.worker import DequeueStrategy, Worker, WorkerStatus

from . import alerts, compat, speedups
from .allowlist import AllowedJobs, JobNotAllowed
from .core import collector, job_code_outside, log_bounds, retries, timeouts
from .core.admission import Admission
from .core.commands import Commands
from .core.error_text import ERROR_TEXT_MAX, Failure, cap, describe_failure
from .core.heartbeat import Heartbeat
from .core.loop import WorkerSteps, WorkLoop
from .core.loss_window import LossWindow
from .core.maintenance import Maintenance
from .core.outcomes import Outcomes, OutcomeStep
from .core.retries import Requeues
from .core.running import Phase, RunningJob, RunningJobs, running_job
from .core.scheduler import GreenletScheduler
from .core.shutdown import Shutdown
from .core.suspension import Suspension
from .core.worker_counters import WorkerCounters
from .exceptions import ColdShutdown, FunctionNotImportable, JobStopped, WorkLoopDied
from .integrations.metrics import NO_METRICS, NoMetrics
from .plumbing import transactions
from .plumbing.connections import (
    ensure_pool_capacity,
    follow_failovers,
    jobs_client,
    reconnect_if_timeout_changed,
    share_path,
    socket_timeout,
)
from .plumbing.dequeue import Dequeuer
from .plumbing.dotted import why_not_importable
from .plumbing.job_writes import JobWrites
from .plumbing.redis_waits import REDIS_UNAVAILABLE, when_redis_answers, why_unavailable
from .sensitivity import SensitiveJobs, SensitiveRecordFilter
from .server_floor import refuse_unsupported_server
from .words import plural

__all__ = ["DEFAULT_CONCURRENCY", "GeventWorker", "RunningJob", "running_job"]

DEFAULT_CONCURRENCY = 20

# Redis unreachable for this long is an alert (an ERROR record, a Sentry event), once per outage.
DEFAULT_REDIS_ALERT_SECONDS = 60.0

InterruptedJobHandler = Callable[..., None]


def _in_sensitive_job() -> bool:
    current = running_job()
    return current is not None and current.sensitive


def _job_state() -> tuple[bool, Failure | None]:
    current = running_job()
    if current is None:  # rq's maintenance may run a job's failure callback (rq_gevent.core.job_code_outside)
        return job_code_outside.in_rq_maintenance(), None
    return current.sensitive, current.failure


_SENSITIVE_RECORDS = SensitiveRecordFilter(_in_sensitive_job)
_BOUNDED_RECORDS = log_bounds.BoundedRecordFilter(_job_state)


def _sentry_scrubbing_for_own_client() -> Callable[[], None] | None:
    """rq_gevent.integrations.sentry's scrubbing for a Sentry client the application set up (sentry-sdk is optional)."""
    if "sentry_sdk" not in sys.modules:
        return None
    from .integrations.sentry import scrubbing_for_own_client

    return scrubbing_for_own_client()


def _failure_to_store(running: RunningJob | None, exc_string: str) -> str:
    """What rq stores (job hash, failure Result) and sends (webhooks) for a failure: the worker's
    bounded description of it, with no exception message for a sensitive job; rq's text, bounded,
    for a failure rq itself found (an abandoned job)."""
    if running is not None and running.failure is not None:
        return running.failure.text
    if running is not None and running.sensitive:
        return describe_failure(*sys.exc_info(), sensitive=True)
    return cap(exc_string, ERROR_TEXT_MAX)


def _pool_jobs_only(step: Callable[..., Any]) -> Callable[..., Any]:
    """One of rq's steps of a job, ``step(self, running, job, ...)`` for a job of the pool; rq's own
    (``Worker.<step>``) for any other job."""

    @functools.wraps(step)
    def for_any_job(self: GeventWorker, job: Job, *args: Any, **kwargs: Any) -> Any:
        running = self.jobs.own(job)
        if running is None:
            return getattr(super(GeventWorker, self), step.__name__)(job, *args, **kwargs)
        return step(self, running, job, *args, **kwargs)

    del for_any_job.__wrapped__  # its signature is rq's, without ``running``
    return for_any_job


def _in_pool_jobs_only(step: Callable[..., Any]) -> Callable[..., Any]:
    """One of rq's worker-level steps, ``step`` in a greenlet that acts for a job of the pool; rq's own
    elsewhere."""

    @functools.wraps(step)
    def anywhere(self: GeventWorker, *args: Any, **kwargs: Any) -> Any:
        if self.jobs.acting_for() is None:
            return getattr(super(GeventWorker, self), step.__name__)(*args, **kwargs)
        return step(self, *args, **kwargs)

    return anywhere


class GeventWorker(compat.WorkerHooks, Worker):
    """An rq worker that runs up to ``concurrency`` jobs at once, each in its own greenlet.

    Use it through the ``rq-gevent worker`` command, or construct it like ``rq.Worker`` (after
    :func:`rq_gevent.patch`) with these extra keyword arguments:

    * ``concurrency``: how many jobs run at once (default 20);
    * ``graceful_timeout``: seconds a warm shutdown waits for running jobs before it turns cold
      (default ``None``: wait for them however long they take);
    * ``redis_alert_after``: seconds of Redis being unreachable before the worker raises an alert
      (:mod:`rq_gevent.alerts`; default 60);
    * ``allowed_jobs``: patterns of the job functions (and callbacks) it may run, each a function
      defined where its name says; others fail with :class:`rq_gevent.allowlist.JobNotAllowed`
      before anything outside the patterns is imported (default: all; :mod:`rq_gevent.allowlist`).
    * ``sensitive_jobs``: patterns of job functions whose descriptions are never logged, besides
      functions marked with :func:`rq_gevent.sensitive` (:mod:`rq_gevent.sensitivity`).
    """

    death_penalty_class = timeouts.GeventDeathPenalty

    # Longest a blocking pop waits before it loops (and a dead connection is noticed after this plus
    # ``dequeue_socket_margin`` seconds).  Shutdown does not wait for it: it wakes the pop at once.
    dequeue_block_seconds = 10
    dequeue_socket_margin = 10
    # A running job's execution expires this many seconds after its heartbeat is due (rq: 60).
    heartbeat_ttl_margin = 60
    # A queue whose keys hold the wrong type is skipped this long, then popped from again (rq_gevent.core.bad_queues).
    bad_queue_skip_seconds = 60.0
    # A job's start, success and heartbeat, and batched pops, by the scripts of rq_gevent/plumbing/lua/ that mirror
    # rq's code, fewer round trips: only on the rq releases CI tests (compat.TESTED_RQ_VERSIONS); False:
    # always rq's own code.
    use_scripts = True

    def __init__(
        self,
        queues: Any,
        *args: Any,
        concurrency: int = DEFAULT_CONCURRENCY,
        graceful_timeout: float | None = None,
        redis_alert_after: float = DEFAULT_REDIS_ALERT_SECONDS,
        sensitive_jobs: SensitiveJobs | list[str] | tuple[str, ...] = (),
        allowed_jobs: AllowedJobs | list[str] | tuple[str, ...] | None = None,
        metrics: NoMetrics = NO_METRICS,
        **kwargs: Any,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
        if graceful_timeout is not None and graceful_timeout < 0:
            raise ValueError(f"graceful_timeout must be at least 0 seconds, not {graceful_timeout!r}")
        if redis_alert_after <= 0:
            raise ValueError(f"redis_alert_after must be more than 0 seconds, not {redis_alert_after!r}")
        self.concurrency = concurrency
        self.metrics = metrics
        self.graceful_timeout = graceful_timeout
        self.redis_alert_after = redis_alert_after
        self.allowed_jobs = allowed_jobs if isinstance(allowed_jobs, AllowedJobs) else AllowedJobs(allowed_jobs)
        job_class = kwargs.get("job_class") or type(self).job_class  # a subclass's own, as rq's worker keeps it
        kwargs["job_class"] = self.allowed_jobs.job_class(
            import_attribute(job_class) if isinstance(job_class, str) else job_class
        )
        if not isinstance(sensitive_jobs, SensitiveJobs):
            sensitive_jobs = SensitiveJobs(sensitive_jobs)
        if sensitive_jobs.allowed is None:
            sensitive_jobs.allowed = self.allowed_jobs
        self.sensitive_jobs = sensitive_jobs
        self.jobs = RunningJobs()
        self.executions: dict[str, Any] = {}
        speedups.install()
        super().__init__(queues, *args, **kwargs)
        if not issubclass(self.death_penalty_class, timeouts.GeventDeathPenalty):
            self.log.warning("Worker %s: death_penalty_class %s replaced by %s: a signal or a thread's exception "
                             "cannot interrupt one greenlet among many", self.name, self.death_penalty_class.__name__,
                             timeouts.GeventDeathPenalty.__name__)  # fmt: skip
            self.death_penalty_class = timeouts.GeventDeathPenalty
        for queue in self.queues:  # Queue objects passed in keep their own job class: their registries use it
            queue.job_class = self.allowed_jobs.job_class(queue.job_class)
        self._build_parts()
        self.jobs_connection = jobs_client(self.connection, self.jobs_socket_timeout, 2 * concurrency + 8)
        self._async_jobs = gevent.lock.Semaphore(1)
        self._interrupted_job_handlers: list[InterruptedJobHandler] = []
        self._sentry_scrubbing: Callable[[], None] | None = None

    def _build_parts(self) -> None:
        """The collaborators, each handed what it uses (docs/architecture.md).  Built again by ``work()``
        if what they were given changed since: a subclass that renames itself after rq's ``__init__``,
        a ``use_scripts`` or ``log`` set on the instance."""
        self._built_for = self._parts_depend_on()
        # On the worker's logger, whichever it is (an adapter's own): a sensitive job's records, and every
        # failure's text, bounded.
        logger = getattr(self.log, "logger", self.log)
        if _SENSITIVE_RECORDS not in logger.filters:
            logger.addFilter(_SENSITIVE_RECORDS)
        log_bounds.install(logger, _BOUNDED_RECORDS)
        self.redis_outage = alerts.RedisOutage(
            self.name, self.redis_alert_after, self.log, on_recovered=self._redis_recovered, metrics=self.metrics
        )
        self.scripted = self.use_scripts and compat.SCRIPTS_MIRROR_THIS_RQ
        self.admission = Admission(self.concurrency)
        self.dequeuer = Dequeuer(
            self.connection, self.name, self.log, job_class=self.job_class, queue_class=self.queue_class,
            serializer=self.serializer, queues=functools.partial(compat.queues_in_order, self),
            popped_from=lambda queue: self.reorder_queues(reference_queue=queue),
            server_version=lambda: self.get_redis_server_version(),
            describe=lambda job: self.log_job_description and not self.sensitive_jobs(job),
            redis_down=lambda: self.redis_outage.down_since is not None,
            bad_queue_skip_seconds=self.bad_queue_skip_seconds, scripted=self.scripted,
        )  # fmt: skip
        self.shutdown = Shutdown(self.name, self.log, self.jobs, self.admission,
                                 lambda signum, frame: self.request_stop(signum, frame), self._record_stop_request,
                                 lambda: self.loop.wake_pop())  # fmt: skip
        self.suspension = Suspension(self.connection, self.name, self.log, self.jobs, self.set_state,
                                     functools.partial(compat.stop_requested, self), self.shutdown.cold)  # fmt: skip
        steps = WorkerSteps(
            stop_requested=functools.partial(compat.stop_requested, self),
            check_for_suspension=lambda burst: self.check_for_suspension(burst),
            maintenance_due=lambda: self.should_run_maintenance_tasks,
            run_maintenance=lambda: self.run_maintenance_tasks(),
            execute_job=lambda job, queue: self.execute_job(job, queue),
            dequeue_timeout=lambda: self.dequeue_timeout,
            wait_for_redis=self.wait_for_redis,
        )
        self.loop = WorkLoop(self.name, self.log, steps, self.jobs, self.admission, self.dequeuer, self.suspension,
                             self.redis_outage)  # fmt: skip
        self.counters = WorkerCounters(
            self.connection, self.key, self.name, self.log,
            lambda pipeline: compat.write_current_job(Worker, self, self.jobs.newest_id(), pipeline),
        )  # fmt: skip
        self.job_writes = JobWrites(self, self.jobs, self.counters, self.scripted,
                                    type(self).cleanup_execution is not GeventWorker.cleanup_execution)  # fmt: skip
        self.heartbeats = Heartbeat(self, self.jobs, self.redis_outage, self.counters, self.scripted)
        self.loss_window = LossWindow(self.connection, self.log, self.name, lambda: self.outcomes.forget_safe())
        self.outcomes = Outcomes(self.name, self.log, self.jobs, self._recorder, self.wait_for_redis,
                                 self.shutdown.cold, self.job_writes.outcome_recorded, self.loss_window,
                                 self.redis_outage.failed)  # fmt: skip
        self.requeues = Requeues(self.connection, self.name, self.log, self.wait_for_redis, self.cleanup_execution,
                                 self.metrics)  # fmt: skip
        self.commands = Commands(self.name, self.log, self.jobs, self.redis_outage, {
            "shutdown": lambda payload: self.request_stop(),
            "stop-job": lambda payload: self.stop_job(payload.get("job_id")),
            "stop-execution": lambda payload: self.request_stop_execution(payload.get("execution_id")),
            "kill-horse": lambda payload: self.kill_horse(),
        })  # fmt: skip
        self.maintenance = Maintenance(self.connection, self.name, self.log, self.job_class,
                                       lambda: self.maintenance_interval, self.bad_queue_skip_seconds,
                                       functools.partial(compat.clean_queue, self), self.dequeuer.drop_non_job,
                                       self.requeues.never_started)  # fmt: skip
        if self.last_cleaned_at is not None:
            self.maintenance.cleaned_at(self.last_cleaned_at)

    def _parts_depend_on(self) -> tuple[Any, ...]:
        return self.name, self.use_scripts, self.log

    # -- per-job state that rq keeps on the worker --------------------------------------------------

    @property
    def log_job_description(self) -> bool:  # type: ignore[override]
        """rq's switch for logging job descriptions, off in the greenlet of a sensitive job."""
        current = running_job()
        return self._log_job_description and (current is None or not current.sensitive)

    @log_job_description.setter
    def log_job_description(self, value: bool) -> None:
        self._log_job_description = value

    @property
    def execution(self) -> Any:  # type: ignore[override]
        """The execution of the job running in the calling greenlet; elsewhere (rq 3) one of them."""
        running = self.jobs.acting_for()
        if running is not None:
            return running.execution
        return compat.rq_worker_execution(self)

    @execution.setter
    def execution(self, value: Any) -> None:
        running = self.jobs.acting_for()
        if running is None:
            compat.set_rq_worker_execution(self, value)
        elif value is not None:
            running.execution = value

    @property
    def stopped_job_id(self) -> str | None:
        """rq's one stopped job, per greenlet: the job this greenlet acts for (its own, or one whose
        outcome it records again) if it was stopped.  Outside the pool (rq's ``_handle_stopped_job``
        called directly), the id last set there."""
        running = self.jobs.acting_for()
        if running is None:
            return self.__dict__.get("_stopped_outside_pool")
        return running.job.id if running.stopped else None

    @stopped_job_id.setter
    def stopped_job_id(self, job_id: str | None) -> None:
        acting = self.jobs.acting_for()
        running = acting if job_id is None or (acting is not None and acting.job.id == job_id) else None
        running = running or self.jobs.get(job_id)
        if running is not None:
            running.stopped = job_id is not None
        else:
            self.__dict__["_stopped_outside_pool"] = job_id

    @property
    def admitted_job_count(self) -> int:
        """Jobs this worker has taken off its queues since ``work()`` started."""
        return self.admission.admitted

    def get_current_job_ids(self) -> list[str]:
        """Ids of the jobs this worker is running now, oldest first (in the worker's process)."""
        return self.jobs.ids()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """rq's: the job's time left, at most ``job_monitoring_interval``, plus a margin.  Without
        ``working_time`` (rq 2's signature), the time since the job started."""
        if job.timeout and job.timeout > 0:
            elapsed = working_time or (compat.seconds_since(job.started_at) if job.started_at else 0.0)
            remaining = max(job.timeout - elapsed, 0)
            return int(min(remaining, self.job_monitoring_interval)) + self.heartbeat_ttl_margin
        return int(self.job_monitoring_interval) + self.heartbeat_ttl_margin

    # -- connections ----------------------------------------------------------------------------------

    def prepare_connection(self, connection: Any) -> Any:
        """rq's (its ``_set_connection``), for a pool of greenlets: failovers followed, one script call
        per transaction."""
        timeout_before = socket_timeout(connection)
        follow_failovers(connection)
        share_path(connection)
        connection = compat.rq_prepare_connection(self, connection)  # a socket timeout of at least connection_timeout
        reconnect_if_timeout_changed(connection, timeout_before)
        ensure_pool_capacity(connection, self.concurrency)
        return transactions.one_trip_client(connection)

    @property
    def dequeue_timeout(self) -> int:
        return max(1, min(self.worker_ttl - 15, self.dequeue_block_seconds))

    @property
    def dequeue_socket_timeout(self) -> float:
        """The pop's own client: longer than the longest blocking pop, by ``dequeue_socket_margin``."""
        return self.dequeue_timeout + self.dequeue_socket_margin

    @property
    def jobs_socket_timeout(self) -> float:
        """What rq's worker gives its connection (``worker_ttl - 5``), or the caller's, if longer."""
        return max(socket_timeout(self.connection) or 0, self.worker_ttl - 5)

    def wait_for_redis(self, call: Callable[[], Any], to_do: str) -> Any:
        """``call()`` until Redis answers it; a cold shutdown gives up (raising Redis's error)."""
        answer = when_redis_answers(call, self.shutdown.cold, self.log, f"Worker {self.name}", to_do,
                                    failed=self.redis_outage.failed)  # fmt: skip
        self.redis_outage.succeeded()  # an outage seen by another call (an outcome's) ends too
        return answer

    def _redis_recovered(self, down_since: float) -> None:
        """An outage ended, seen by whichever connection first had an answer: the loop tries again at
        once, and outcomes recorded meanwhile are checked."""
        self.loop.redis_answered()
        self.outcomes.recheck_after_outage(down_since)

    # -- the loop -------------------------------------------------------------------------------------

    def work(
        self,
        burst: bool = False,
        logging_level: str | None = None,
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
        max_jobs: int | None = None,
        max_idle_time: int | None = None,
        with_scheduler: bool = False,
        dequeue_strategy: DequeueStrategy = DequeueStrategy.DEFAULT,
    ) -> bool:
        """Run jobs until stopped; same arguments and return value as ``rq.Worker.work``.

        * ``burst``: exit once the queues are empty *and* no job is running (jobs that running
          jobs enqueue, such as dependents and immediate retries, are run too).
        * ``max_jobs``: admit this many jobs, let them finish, then exit.
        * ``max_idle_time``: exit after this many seconds with no job running and none dequeued.

        Each call counts its own jobs: ``max_jobs``, the idle time and the return value.

        Raises :class:`rq_gevent.exceptions.WorkLoopDied` if the loop ended on an unexpected error
        (after the running jobs finished and the worker deregistered): the worker did not stop as asked.
        """
        if self._parts_depend_on() != self._built_for:
            self._build_parts()
        self.admission.start_counting()
        # Before bootstrap: a SIGTERM while the worker registers (say, the launcher's master dying at that
        # moment) must be a warm shutdown that deregisters, not the default action that leaves the
        # worker in rq's registry until its TTL.
        compat.install_signal_handlers(self)  # rq's hook: a subclass's override of it runs
        try:
            self.bootstrap(logging_level, date_format, log_format)
        except BaseException:  # a server refused (older than 7.0), a name taken: no handlers left behind
            self.shutdown.remove_signal_handlers()
            raise
        self._sentry_scrubbing = _sentry_scrubbing_for_own_client()
        compat.set_dequeue_strategy(self, dequeue_strategy)
        self.dequeuer.open(self.dequeue_socket_timeout)
        self.set_state(WorkerStatus.IDLE)  # rq's worker waits for jobs idle, not "started"
        self.log.info("Worker %s: running up to %s at once", self.name, plural(self.concurrency, "job"))
        if self.use_scripts and not self.scripted:
            self.log.info("Worker %s: rq %s is not a release rq-gevent is tested with (%s): rq's own code writes "
                          "each job's start, success and heartbeat", self.name, rq_version,
                          ", ".join(compat.TESTED_RQ_VERSIONS))  # fmt: skip
        if with_scheduler:
            compat.start_scheduler(self, burst, logging_level, date_format, log_format)  # rq's hook, as above
        self.heartbeats.start()
        self.counters.start()
        self.loss_window.start()
        self.metrics.start(self.concurrency)
        # Prove the command listener hears, twice per socket timeout (rq_gevent.core.listener).
        if getattr(self, "pubsub_thread", None) is not None:
            self.commands.start(self.connection, self.pubsub_channel_name,
                                (socket_timeout(self.connection) or self.connection_timeout) / 2,
                                subscribe=self.subscribe, unsubscribe=self.unsubscribe)  # fmt: skip
        collector.tune_for_many_jobs_in_flight()
        try:
            self.loop.run(burst, max_jobs, max_idle_time, concurrency=self.concurrency,
                          max_connection_wait_time=self.max_connection_wait_time,
                          backoff_factor=self.exponential_backoff_factor)  # fmt: skip
            self.shutdown.drain(self.graceful_timeout)
        finally:
            self.metrics.stop()
            self.heartbeats.stop()
            self.loss_window.stop()
            self.commands.stop_watch()
            self.counters.stop()
            try:
                self.teardown()
            except redis.exceptions.RedisError as exc:
                self.log.error("Worker %s: could not deregister from Redis (%s); its key expires", self.name, exc)
            self.dequeuer.close()
            self.jobs_connection.connection_pool.disconnect()
            self.shutdown.remove_signal_handlers()
        if self.loop.died is not None:
            raise WorkLoopDied(f"{type(self.loop.died).__name__}: {self.loop.died}") from self.loop.died
        return self.admission.admitted > 0

    def check_for_suspension(self, burst: bool) -> None:
        self.suspension.wait_while_suspended(burst)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return self.maintenance.due()

    @property
    def last_cleaned_at(self) -> datetime.datetime | None:  # type: ignore[override]
        return self.__dict__.get("_last_cleaned_at")

    @last_cleaned_at.setter
    def last_cleaned_at(self, value: datetime.datetime | None) -> None:
        """rq's; set by hand (rq's API allows it), it moves the next maintenance as it would in rq."""
        self.__dict__["_last_cleaned_at"] = value
        if "maintenance" in self.__dict__:
            self.maintenance.cleaned_at(value)

    def run_maintenance_tasks(self) -> None:
        if not self.maintenance.run(super().run_maintenance_tasks):
            self.last_cleaned_at = now()

    def clean_registries(self) -> None:
        """rq's, with each queue cleaned on its own (a bad queue does not stop the others')."""
        self.maintenance.clean_queues(list(self.queues))
        self.last_cleaned_at = now()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """While ``rq suspend`` is in force the state stays SUSPENDED, whatever jobs start or end.
        A state Redis cannot take now is skipped: the next one is recorded."""
        if self.suspension.in_force and state != WorkerStatus.SUSPENDED:
            return
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_UNAVAILABLE as exc:
            self.log.warning("Worker %s: could not record state %s: %s", self.name, state, why_unavailable(exc))

    def register_birth(self) -> None:
        """rq's registration, on a server no older than 7.0 (:mod:`rq_gevent.server_floor`).  While
        Redis is unavailable (unreachable, out of memory) a starting worker waits here rather than
        crash, which the launcher would count toward a crash loop."""
        self.wait_for_redis(self._register_on_a_supported_server, "register")

    def _register_on_a_supported_server(self) -> None:
        refuse_unsupported_server(self.connection, self.log)
        super().register_birth()

    def subscribe(self) -> None:
        """rq's command listener, waiting like :meth:`register_birth`."""
        self.wait_for_redis(super().subscribe, "subscribe to its command channel")

    def unsubscribe(self) -> None:
        """rq's, surviving a listener greenlet that reads the connection rq's UNSUBSCRIBE reconnects.

        After a lost connection, rq's UNSUBSCRIBE reconnects and reads the handshake while the listener
        greenlet may be reading that same new socket, and gevent refuses two greenlets on one socket
        (found by CI: a worker crashed at shutdown after a network cut).  Then the connection is only
        closed, which ends the subscription in Redis and the listener, already told to stop."""
        try:
            super().unsubscribe()
        except gevent.exceptions.ConcurrentObjectUseError:
            self.log.info("Worker %s: closing its command listener's connection", self.name)
            # Never back to the pool: the listener may still hold it.  No retries, so the listener,
            # woken by the disconnect, fails at once instead of reconnecting.
            connection, self.pubsub.connection = self.pubsub.connection, None
            if connection is not None:
                connection.retry = RedisRetry(NoBackoff(), 0)
                connection.disconnect()
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=2)

    # -- one job: admitted, started, performed, ended ---------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Admit ``job`` to the pool (a slot must be free) and return at once.  A second copy of the id
        of a job whose code runs here (its id was in the queue twice) is not run: as one that started
        elsewhere.  One whose run is over is admitted (its retry, or repeat, requeued it)."""
        earlier = self.jobs.get(job.id)
        if earlier is not None and earlier.in_progress:
            self.log.warning("Worker %s: job %s popped again while it runs here (its id was queued twice); "
                             "not run twice", self.name, job.id)  # fmt: skip
            queue.intermediate_queue.remove(job.id)
            return
        running = RunningJob(
            job=job, queue=queue, attempt=retries.count_attempt(job), sensitive=self.sensitive_jobs(job)
        )
        running.greenlet = self.admission.spawn(self._run_job, running)
        self.jobs.add(running)  # before the greenlet first runs: the loop counts it as running at once

    def _run_job(self, running: RunningJob) -> None:
        job, queue = running.job, running.queue
        self.jobs.enter(running)
        compat.on_function_call(job, functools.partial(self._function_called, running), self.jobs_connection)
        if not self.allowed_jobs(job):
            compat.skip_callbacks(job)  # the job fails as it calls its function (Job.func refuses it)
        try:
            execution = self.prepare_execution(job)
            with self._serialised_if_async(job):
                compat.perform_job(self, job, queue, execution)
        except Exception as exc:
            # perform_job handles every failure of the job itself; this is rq's bookkeeping failing,
            # e.g. Redis gone for longer than redis-py's retries.
            if isinstance(exc, REDIS_UNAVAILABLE) and running.phase is Phase.ADMITTED:
                running.failed_before_start()
            if running.never_started:
                self.requeues.requeue_when_redis_is_back(running)
            elif isinstance(exc, REDIS_UNAVAILABLE) or not self._fail_after_internal_error(running):
                self.log.error("Worker %s: could not record the outcome of job %s; rq will treat it as abandoned",
                               self.name, job.id, exc_info=True)  # fmt: skip
        finally:
            running.pending_interrupt = None
            running.greenlet = None  # it holds the entry as its argument: a cycle only the collector would free
            self.metrics.function_ended(running)  # a function the outcome's path left running
            if running.execution is not None:
                self.executions.pop(running.execution.id, None)
            self.jobs.discard(running)
            self.admission.ended_one(now_idle=not self.jobs)
            if not self.jobs:
                self._became_idle()

    def _fail_after_internal_error(self, running: RunningJob) -> bool:
        """``perform_job`` raised (rq's bookkeeping, not the job, failed; in rq's terms its work horse
        died): the job is failed as rq fails one whose horse died, with the error as its text, unless
        its outcome is recorded already.  False if that fails too."""
        job, queue = running.job, running.queue
        self.log.error("Worker %s: job %s: the worker failed running it; failing the job", self.name, job.id,
                       exc_info=True)  # fmt: skip
        try:
            if running.failure is None:  # else the job's own failure, which rq's handling then broke on
                running.failure = Failure.of(sys.exc_info(), sensitive=running.sensitive)
            if running.execution is not None and running.ran and self.job_writes.outcome_recorded(running):
                return True
            self.handle_job_failure(job, queue, exc_string=running.failure.text,
                                    **compat.execution_kwargs(running.execution))  # fmt: skip
            queue.intermediate_queue.remove(job.id)  # popped but never marked started: rq's LREM did not run
            return True
        except Exception:
            self.log.error("Worker %s: could not fail job %s", self.name, job.id, exc_info=True)
            return False

    def _function_called(self, running: RunningJob) -> None:
        if self._sentry_scrubbing is not None:
            self._sentry_scrubbing()
        try:
            # The worker's job class refuses a job outside ALLOWED_JOBS here (JobNotAllowed), before it
            # counts as running; rq imports the function again right after, where an import error's
            # message would be withheld.
            _ = running.job.func
        except JobNotAllowed:
            raise
        except Exception as exc:
            # rq's import_attribute says "Invalid attribute name" whatever the reason: name it instead.
            func_name = running.job.func_name or ""
            reason = why_not_importable(func_name, "; the worker's -P adds one") or f"{type(exc).__name__}: {exc}"
            raise FunctionNotImportable(
                f"job {running.job.id}: its function {func_name!r} cannot be imported: {reason}"
            ) from None
        if running.phase is Phase.STARTED:
            running.phase = Phase.RUNNING
            self.metrics.started(running)

    def _became_idle(self) -> None:
        try:
            with self.connection.pipeline() as pipeline:
                # Jobs' own pipelines may have executed out of order: nothing runs, so nothing is current.
                compat.write_current_job(Worker, self, None, pipeline)
                self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
                pipeline.execute()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not record idle state (%s)", self.name, exc)
        self.loop.became_idle()

    @contextlib.contextmanager
    def _serialised_if_async(self, job: Job) -> Iterator[None]:
        """Run ``async def`` jobs one at a time: asyncio allows one running loop per OS thread."""
        try:
            func = job.func  # rq imports it again at each access; refused (JobNotAllowed) outside ALLOWED_JOBS
            is_async = bool(func) and (inspect.iscoroutinefunction(func) or asyncio.iscoroutinefunction(func))
        except Exception:
            is_async = False
        if not is_async:
            yield
            return
        with self._async_jobs:
            yield

    # Each of rq's steps of a job below (@_pool_jobs_only) is rq's own for a job that is not one of the
    # pool's: called directly, as rq's API allows (rq's tests do), or by rq's maintenance.

    @_pool_jobs_only
    def prepare_execution(self, running: RunningJob, job: Job) -> Any:
        """rq's execution, on a pipeline that :meth:`prepare_job_execution` sends (rq_gevent.plumbing.job_writes)."""
        return self.job_writes.create_execution(job)

    @_pool_jobs_only
    def prepare_job_execution(
        self, running: RunningJob, job: Job, remove_from_intermediate_queue: bool = False
    ) -> None:
        """rq's writes that mark the job started, with its execution's (rq_gevent.plumbing.job_writes)."""
        self.job_writes.mark_started(job, remove_from_intermediate_queue)
        self.procline(f"Running {len(self.jobs)} of {plural(self.concurrency, 'job')}")

    @_pool_jobs_only
    def handle_execution_ended(self, running: RunningJob, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """The job's own code is over: from here on nothing may interrupt it."""
        if running.phase is Phase.STARTED and isinstance(sys.exc_info()[1], REDIS_UNAVAILABLE):
            running.failed_before_start()  # Redis failed rq's last call before the function
        elif running.ran:
            running.phase = Phase.FINISHING
        self.metrics.function_ended(running)
        running.pending_interrupt = None
        self.job_writes.note_end(job)

    @_pool_jobs_only
    def handle_job_success(self, running: RunningJob, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self._record_outcome(running, OutcomeStep("handle_job_success", job, queue, args, kwargs))
        self.metrics.ended(queue.name, "finished")

    @_pool_jobs_only
    def handle_job_retry(self, running: RunningJob, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self._record_outcome(running, OutcomeStep("handle_job_retry", job, queue, args, kwargs))
        # Requeued or scheduled; or failed, past the Retry's max (rq 2.3.3 via handle_job_failure).
        self._count_outcome(running, queue)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "", **kwargs: Any
    ) -> None:
        running = self.jobs.own(job)
        if running is not None and "execution" not in kwargs:
            kwargs.update(compat.execution_kwargs(running.execution))
        kwargs.update(started_job_registry=started_job_registry, exc_string=_failure_to_store(running, exc_string))
        step = OutcomeStep("handle_job_failure", job, queue, kwargs=kwargs)
        self._record_failure(running, job, queue, exc_string, step, kwargs.get("execution"))
        if running is not None and not isinstance(running.interrupted_by, ColdShutdown):
            self._count_outcome(running, queue)

    def _record_failure(self, running: RunningJob | None, job: Job, queue: Queue, exc_string: str,
                        step: OutcomeStep, execution: Any) -> None:  # fmt: skip
        """A cold shutdown's or a never-started job is requeued, what rq's maintenance gets wrong is
        handled there, a stopped job gets its stopped callback; the rest is rq's failure (or retry)."""
        reason = running.interrupted_by if running is not None else None
        if isinstance(reason, ColdShutdown):
            self.requeues.requeue(job, queue, "interrupted by cold shutdown", execution, reason="cold_shutdown")
            return
        if running is not None and running.never_started:
            self.requeues.requeue_when_redis_is_back(running)
            return
        if running is not None and running.phase is Phase.WITHDRAWN:
            return
        if self.maintenance.handled_failure(job, queue, exc_string):
            return
        if isinstance(reason, JobStopped):
            # rq's forking worker runs the stopped callback when it reaps the horse, before handle_job_failure.
            self.log.warning("Worker %s: job %s stopped by user, moving it to FailedJobRegistry", self.name, job.id)
            try:
                compat.execute_stopped_callback(job, self.death_penalty_class)
            except Exception:
                self.log.error("Worker %s: stopped callback of job %s failed", self.name, job.id, exc_info=True)
        self._record_outcome(running, step, confirm=True)

    def _record_outcome(self, running: RunningJob | None, step: OutcomeStep, confirm: bool = False) -> None:
        """Take ``step``, which records how ``running`` ended; its job's own greenlet gives up its slot first."""
        if running is not None and running.greenlet is gevent.getcurrent():
            self.admission.outcome_to_record(running.greenlet)
        self.outcomes.record(running, step, confirm)

    def _recorder(self, step: OutcomeStep) -> Callable[[], Any]:
        """What takes rq's own ``step``, its transaction one coalesced script call
        (rq_gevent.plumbing.transactions), whichever greenlet runs it; a success as one call of
        ``lua/success.lua`` where that writes what rq would (rq_gevent.plumbing.job_writes)."""
        by_rq = getattr(super(), step.method)
        success = step.method == "handle_job_success"

        def in_one_trip() -> Any:
            with transactions.one_trip(assume_no_dependents=success):
                return by_rq(step.job, step.queue, *step.args, **step.kwargs)

        return self.job_writes.success_recorder(step.job, in_one_trip) if success else in_one_trip

    def _count_outcome(self, running: RunningJob | None, queue: Queue) -> None:
        """Count how rq recorded a failure or retry, by the job's status, once per run."""
        if running is None or not running.ran or running.outcome_counted:
            return
        running.outcome_counted = True
        self.metrics.failure_recorded(queue.name, running.job.get_status(refresh=False))

    def cleanup_execution(self, job: Job, pipeline: Any, execution: Any = None) -> None:
        """Every outcome transaction calls this; it carries the job's last heartbeat too.  The
        execution is the job's own even when rq runs the transaction again (after a WatchError, or
        when Redis was away), so a second run removes it from the started registry as well."""
        running = self.jobs.own(job)
        if running is not None and execution is None:
            execution = running.execution
        self.job_writes.add_last_heartbeat(job, pipeline)
        compat.cleanup_execution(self, job, pipeline, execution, outside_pool=running is None)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """rq's exception handling (its log line, the exception handlers, Sentry's), after noting the
        failure as logs and Redis may show it (rq_gevent.core.error_text, rq_gevent.core.log_bounds)."""
        exception = exc_info[1] if len(exc_info) > 1 else None
        running = self.jobs.own(job)
        if running is not None:
            running.failure = Failure.of(exc_info, sensitive=running.sensitive)
        if isinstance(exception, (JobStopped, ColdShutdown)):
            # Deliberate, like rq's stop-job and cold shutdown: not an error for exception handlers.
            self.log.info("Worker %s: job %s interrupted: %s", self.name, job.id, exception)
            for handler in self._interrupted_job_handlers:
                try:
                    handler(job, *exc_info)
                except Exception:  # a report that failed must not cost the job its recorded outcome
                    self.log.exception("Worker %s: interrupted-job handler %r failed for job %s",
                                       self.name, handler, job.id)  # fmt: skip
            return
        if running is not None and running.never_started:
            self.log.warning("Worker %s: Redis failed before job %s started (%s)", self.name, job.id, exception)
            return
        if running is not None and running.phase is Phase.WITHDRAWN:
            self.log.warning("Worker %s: job %s was cancelled, deleted or taken elsewhere after it was popped; not run",
                             self.name, job.id)  # fmt: skip
            return
        super().handle_exception(job, *exc_info)

    def push_interrupted_job_handler(self, handler: InterruptedJobHandler) -> None:
        """Call ``handler(job, exc_type, exc_value, traceback)`` for each job stopped by a stop command
        or interrupted by a cold shutdown (rq's exception handlers see neither: they are no errors)."""
        self._interrupted_job_handlers.append(handler)

    # -- worker-level writes, once a second (rq_gevent.core.worker_counters) ---------------------------------

    # Counted once the outcome's transaction applied: rq builds it again after a WatchError.
    # For a job outside the pool (rq's maintenance, a direct call) rq writes them at once.
    @_in_pool_jobs_only
    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        transactions.count_once_applied(pipeline, lambda: self.counters.add_job(successful=1))

    @_in_pool_jobs_only
    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        transactions.count_once_applied(pipeline, lambda: self.counters.add_job(failed=1))

    @_in_pool_jobs_only
    def increment_total_working_time(self, job_execution_time: Any, pipeline: Any = None) -> None:
        seconds = job_execution_time.total_seconds()
        transactions.count_once_applied(pipeline, lambda: self.counters.add_job(working_seconds=seconds))

    def set_current_job_id(self, job_id: str | None = None, pipeline: Any = None) -> None:
        """rq < 3: while jobs run, ``current_job`` is the newest of them, written by the tick."""
        if self.jobs:
            self.counters.current_job_changed()
            return
        compat.write_current_job(Worker, self, job_id, pipeline if pipeline is not None else self.connection)

    # -- shutdown and commands ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM handled in greenlets, never inside a job's code (rq_gevent.core.shutdown)."""
        self.shutdown.install_signal_handlers()

    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """First request: warm shutdown.  A second one (a second later or more): cold shutdown."""
        if compat.stop_requested(self):
            self.request_force_stop(signum, frame)
        else:
            self.shutdown.request_warm(signum)

    def _record_stop_request(self) -> None:
        """What rq's ``request_stop`` records: a stop was asked for, and when (in Redis while jobs run)."""
        compat.record_stop_request(self)
        if self.jobs:
            with contextlib.suppress(redis.exceptions.RedisError):
                self.set_shutdown_requested_date()

    def request_force_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Cold shutdown: interrupt running jobs and put them back at the front of their queues."""
        self.shutdown.request_cold()

    def handle_payload(self, message: dict[str, Any]) -> None:
        self.commands.handle(message)

    def stop_job(self, job_id: str) -> bool:
        """Stop one running job (it ends STOPPED); the others go on.  False if not running here."""
        return self.commands.stop(self.jobs.get(job_id), f"job {job_id}")

    def request_stop_execution(self, execution_id: str) -> bool:  # type: ignore[override]
        """rq 3's ``stop-execution``: stop the job running that execution, like :meth:`stop_job`."""
        return self.commands.stop(self.jobs.by_execution(execution_id), f"execution {execution_id}")

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """``kill-horse``: there is no horse process; every running job fails as if its horse died."""
        self.commands.kill_all()

    def wait_for_horse(self) -> tuple[None, None, None]:
        return None, None, None

    @property
    def horse_pid(self) -> int:
        return 0

    def listener_failed(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """rq retries a lost listener connection but lets a socket timeout end the listener.  A listener
        already replaced (its connection closed under it) just ends."""
        if compat.listener_stopped(pubsub_thread):
            self.log.debug("Worker %s: replaced command listener ended (%s)", self.name, type(exc).__name__)
            return
        if not isinstance(exc, REDIS_UNAVAILABLE):
            compat.rq_listener_failed(self, exc, pubsub, pubsub_thread)
            return
        self.log.error("Worker %s: command listener: %s; retrying in 2 s", self.name, why_unavailable(exc))
        gevent.sleep(2)

    # -- the scheduler: a greenlet, not a forked process (rq_gevent.core.scheduler) ----------------------------

    def start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        self.scheduler = GreenletScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.run_in_greenlet(burst)

    def stop_scheduler(self) -> None:
        if isinstance(self.scheduler, GreenletScheduler):
            self.scheduler.stop_and_wait(timeout=self.scheduler.interval + 5)
