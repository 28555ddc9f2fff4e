"""``GeventWorker``: an ``rq.Worker`` that runs each job in a greenlet of a bounded pool.

Every job still goes through rq's own ``perform_job`` and ``handle_job_*`` methods.  What this class
changes is only what assumes one job per process:

* the loop (:meth:`work`): pop a job only when a pool slot is free, from a client of its own;
* ``execution``, ``_stopped_job_id`` and the worker hash's ``current_job`` become per-job;
* one heartbeat greenlet keeps the worker and every running job and execution alive;
* timeouts, stop-job, kill-horse and shutdown interrupt a job only while its own code runs
  (:mod:`rq_gevent.timeouts`);
* signals are handled in greenlets; the scheduler is a greenlet, not a forked process.
"""

from __future__ import annotations

from .patching import require_patched

require_patched()

import asyncio
import contextlib
import contextvars
import functools
import inspect
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.local
import gevent.lock
import gevent.pool
import redis.exceptions
from greenlet import greenlet as Greenlet
from rq import worker_registration
from rq.command import parse_payload
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.utils import as_text, get_version, now
from rq.worker import DequeueStrategy, WorkerStatus

from . import alerts, compat, timeouts
from .compat import StopRequested
from .connections import (
    dequeue_client,
    ensure_pool_capacity,
    reconnect_if_timeout_changed,
    socket_timeout,
    unblock_clients,
)
from .exceptions import ColdShutdown, JobInterrupted, JobKilled, JobStopped
from .fast_path import DEQUEUE_BATCH, FastPath
from .heartbeats import JobHeartbeats
from .listener import PROBE_COMMAND, ListenerWatch
from .redis_waits import REDIS_UNAVAILABLE, when_redis_answers, why_unavailable
from .scheduler import GreenletScheduler
from .sensitivity import SensitiveJobs

DEFAULT_CONCURRENCY = 20

T = TypeVar("T")

# After a cold shutdown has interrupted every job, how long their own bookkeeping (putting them back
# on their queues) may take before the worker exits anyway.
COLD_SHUTDOWN_BOOKKEEPING_SECONDS = 10.0

# Heartbeats of this many jobs share one pipeline.
HEARTBEAT_BATCH = 200

# Redis unreachable for this long is an alert (an ERROR record, a Sentry event), once per outage.
DEFAULT_REDIS_ALERT_SECONDS = 60.0


@dataclass
class RunningJob:
    """A job admitted to the pool, as the heartbeat and the command handlers see it."""

    job: Job
    queue: Queue
    greenlet: Greenlet
    execution: Execution | None = None
    attempt: int = 1
    # True once rq has marked the job started (prepare_job_execution).
    prepared: bool = False
    # True once the job's function has been called (rq makes one more Redis call before that).
    code_started: bool = False
    # True if Redis failed rq's bookkeeping before the job was marked started (it has not run).
    redis_failed_before_start: bool = False
    # True once such a job is back on its queue.
    requeued: bool = False
    # True once the job's own code has returned or raised: from then on only rq's bookkeeping and
    # callbacks run, and nothing may interrupt it.
    finishing: bool = False
    interrupted_by: JobInterrupted | None = None


# The job whose greenlet is running (each greenlet has its own context), for error reports.
_running_job: contextvars.ContextVar[RunningJob | None] = contextvars.ContextVar("rq_gevent_running_job", default=None)


def running_job() -> RunningJob | None:
    """The job admitted to a GeventWorker whose greenlet calls this; ``None`` outside jobs."""
    return _running_job.get()


class GeventWorker(FastPath):
    """An rq worker that runs up to ``concurrency`` jobs at once, each in its own greenlet.

    Use it through the ``rq-gevent worker`` command, or construct it like ``rq.Worker`` (after
    :func:`rq_gevent.patch`) with two extra keyword arguments:

    * ``concurrency``: how many jobs run at once (default 20);
    * ``graceful_timeout``: seconds a warm shutdown waits for running jobs before it turns cold
      (default ``None``: wait for them however long they take);
    * ``redis_alert_after``: seconds of Redis being unreachable before the worker raises an alert
      (:mod:`rq_gevent.alerts`; default 60);
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

    def __init__(
        self,
        queues: Any,
        *args: Any,
        concurrency: int = DEFAULT_CONCURRENCY,
        graceful_timeout: float | None = None,
        redis_alert_after: float = DEFAULT_REDIS_ALERT_SECONDS,
        sensitive_jobs: SensitiveJobs | list[str] | tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
        if graceful_timeout is not None and graceful_timeout < 0:
            raise ValueError(f"graceful_timeout must be at least 0 seconds, not {graceful_timeout!r}")
        if redis_alert_after <= 0:
            raise ValueError(f"redis_alert_after must be more than 0 seconds, not {redis_alert_after!r}")
        self.concurrency = concurrency
        self.graceful_timeout = graceful_timeout
        self.redis_alert_after = redis_alert_after
        self.sensitive_jobs = (
            sensitive_jobs if isinstance(sensitive_jobs, SensitiveJobs) else SensitiveJobs(sensitive_jobs)
        )
        self._local = gevent.local.local()
        self._running: dict[str, RunningJob] = {}
        self._stopped_job_ids: set[str] = set()
        self._suspended = False
        super().__init__(queues, *args, **kwargs)
        self._pool = gevent.pool.Pool(concurrency)
        self._async_jobs = gevent.lock.Semaphore(1)
        self._job_done = gevent.event.Event()
        self._cold = gevent.event.Event()
        self._admitted_count = 0
        self._ended_count = 0
        self._dequeue_connection: Any = None
        self._heartbeat_greenlet: gevent.Greenlet | None = None
        self._listener_watch: ListenerWatch | None = None
        self._listener_greenlet: gevent.Greenlet | None = None
        self._idle_since = time.monotonic()
        self._signal_handlers: list[Any] = []
        self._dequeuing = False
        self._max_idle_time: int | None = None
        self._job_heartbeats: JobHeartbeats | None = None
        self._redis_outage = alerts.RedisOutage(self.name, redis_alert_after, self.log)

    # -- per-job state that rq keeps on the worker --------------------------------------------------

    @property
    def execution(self) -> Execution | None:  # type: ignore[override]
        """The execution of the job running in the calling greenlet (``None`` outside jobs)."""
        return getattr(self._local, "execution", None)

    @execution.setter
    def execution(self, value: Execution | None) -> None:
        self._local.execution = value

    @property
    def _current_job_id(self) -> str | None:
        return getattr(self._local, "job_id", None)

    def _own_running(self, job: Job) -> RunningJob | None:
        """``job``'s entry when called from that job's own greenlet (not from maintenance)."""
        return self._running.get(job.id) if job.id == self._current_job_id else None

    @property
    def _stopped_job_id(self) -> str | None:  # type: ignore[override]
        job_id = self._current_job_id
        return job_id if job_id in self._stopped_job_ids else None

    @_stopped_job_id.setter
    def _stopped_job_id(self, job_id: str | None) -> None:
        if job_id is not None:
            self._stopped_job_ids.add(job_id)
        elif self._current_job_id is not None:
            self._stopped_job_ids.discard(self._current_job_id)

    @property
    def admitted_job_count(self) -> int:
        """Jobs this worker has taken off its queues since ``work()`` started."""
        return self._admitted_count

    def get_current_job_ids(self) -> list[str]:
        """Ids of the jobs this worker is running now, oldest first (in the worker's process)."""
        return list(self._running)

    def get_heartbeat_ttl(self, job: Job) -> int:
        if job.timeout and job.timeout > 0 and job.started_at:
            elapsed = compat.seconds_since(job.started_at)
            remaining = max(job.timeout - elapsed, 0)
            return int(min(remaining, self.job_monitoring_interval)) + self.heartbeat_ttl_margin
        return int(self.job_monitoring_interval) + self.heartbeat_ttl_margin

    # -- connections ----------------------------------------------------------------------------------

    def _set_connection(self, connection: Any) -> Any:
        timeout_before = socket_timeout(connection)
        connection = super()._set_connection(connection)  # a socket timeout of at least connection_timeout
        reconnect_if_timeout_changed(connection, timeout_before)
        ensure_pool_capacity(connection, self.concurrency)
        return connection

    @property
    def dequeue_timeout(self) -> int:
        return max(1, min(self.worker_ttl - 15, self.dequeue_block_seconds))

    @property
    def dequeue_client_name(self) -> str:
        return f"{self.name}:dequeue"

    def _open_dequeue_connection(self) -> None:
        self._dequeue_connection = dequeue_client(
            self.connection, self.dequeue_client_name, self.dequeue_timeout + self.dequeue_socket_margin
        )

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
        """
        # Before bootstrap: a SIGTERM while the worker registers (say, the launcher's master dying at that
        # moment) must be a warm shutdown that deregisters, not the default action that leaves the
        # worker in rq's registry until its TTL.
        self._install_signal_handlers()
        self.bootstrap(logging_level, date_format, log_format)
        self._dequeue_strategy = dequeue_strategy
        self._max_idle_time = max_idle_time
        self._open_dequeue_connection()
        self.log.info("Worker %s: running up to %d jobs at once", self.name, self.concurrency)
        if with_scheduler:
            self._start_scheduler(burst, logging_level, date_format, log_format)
        self._heartbeat_greenlet = gevent.spawn(self._heartbeat_loop)
        self.start_worker_writes()
        self._watch_listener()
        try:
            self._dequeuing = True
            try:
                self._dequeue_loop(burst, max_jobs)
            except StopRequested:
                pass
            except Exception:
                self.log.error("Worker %s: unhandled exception in the work loop, stopping", self.name, exc_info=True)
            finally:
                self._dequeuing = False
            self._drain()
        finally:
            for greenlet in (self._heartbeat_greenlet, self._listener_greenlet):
                if greenlet is not None:
                    greenlet.kill()
            self.stop_worker_writes()
            try:
                self.teardown()
            except redis.exceptions.RedisError as exc:
                self.log.error("Worker %s: could not deregister from Redis (%s); its key expires", self.name, exc)
            self._dequeue_connection.close()
            self._remove_signal_handlers()
        return self._admitted_count > 0

    def _dequeue_loop(self, burst: bool, max_jobs: int | None) -> None:
        backoff = 1.0
        while not self._stop_requested:
            try:
                if not self._dequeue_step(burst, max_jobs):
                    return
                backoff = 1.0
                self._redis_outage.succeeded()
            except REDIS_UNAVAILABLE as exc:
                self.log.error("Worker %s: %s; retrying in %.0f s", self.name, why_unavailable(exc), backoff)
                self._redis_outage.failed(exc)
                gevent.sleep(backoff)
                backoff = min(backoff * self.exponential_backoff_factor, self.max_connection_wait_time)

    def _dequeue_step(self, burst: bool, max_jobs: int | None) -> bool:
        """One turn of the loop: admit at most one job.  False when the worker should stop dequeuing."""
        self.check_for_suspension(burst)
        if self.should_run_maintenance_tasks:
            self.run_maintenance_tasks()
        if not self._wait_for_free_slot():
            return False
        if max_jobs is not None and self._admitted_count >= max_jobs:
            self.log.info("Worker %s: admitted %d jobs (max_jobs), finishing them", self.name, max_jobs)
            return False
        ended_before_pop = self._ended_count
        slots = self._pool.free_count()
        if max_jobs is not None:
            slots = min(slots, max_jobs - self._admitted_count)
        popped = self._dequeue(burst, slots)
        if popped:
            for job, queue in popped:
                self.execute_job(job, queue)
            return True
        if burst:
            # A job that ended while the pop was in flight may have requeued itself (a retry) after the
            # pop looked: only an empty pop with no job ending meanwhile proves the queues are drained.
            if not self._running and self._ended_count == ended_before_pop:
                self.log.info("Worker %s: done, quitting", self.name)
                return False
            if self._running:  # else the job that ended during the pop: pop again at once
                self._wait_for_a_job_to_end()
        elif self._max_idle_time is not None and self._idle_for() >= self._max_idle_time:
            self.log.info("Worker %s: idle for %d seconds, quitting", self.name, self._max_idle_time)
            return False
        return True

    def run_maintenance_tasks(self) -> None:
        """rq's registry clean-ups; an error in them (a job hash rq cannot load...) is logged and
        retried at the next interval, never allowed to stop the worker."""
        try:
            for queue in self.queues:
                self._drop_ids_that_are_not_jobs(queue)
            super().run_maintenance_tasks()
        except REDIS_UNAVAILABLE:
            raise
        except Exception:
            self.log.error("Worker %s: maintenance failed; retrying in %s s", self.name, self.maintenance_interval,
                           exc_info=True)  # fmt: skip
            self.last_cleaned_at = now()

    def _drop_ids_that_are_not_jobs(self, queue: Queue) -> None:
        """Ids in ``queue``'s intermediate list whose key is not a job hash (a worker died between popping
        such an id and dropping it, or rq's own worker crashed on it): rq's clean-up of that list raises
        on the first of them, every time, and never reaches the ids after it."""
        job_ids = queue.intermediate_queue.get_job_ids()
        if not job_ids:
            return
        with self.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.type(self.job_class.key_for(job_id))
            key_types = pipeline.execute()
        for job_id, key_type in zip(job_ids, key_types, strict=True):
            if as_text(key_type) not in ("hash", "none"):
                self._drop_non_job(queue, job_id)

    def _drop_non_job(self, queue: Queue, job_id: str) -> None:
        # Not failed: rq's registries and tools would each raise on fetching such a job.
        key = self.job_class.key_for(job_id)
        self.log.error("Worker %s: queue %s held id %s whose key %s is not a job hash; dropped from the "
                       "queue, the key left as it is", self.name, queue.name, job_id, key)  # fmt: skip
        queue.intermediate_queue.remove(job_id)

    def check_for_suspension(self, burst: bool) -> None:
        """rq's ``rq suspend`` check, keeping the worker state truthful while jobs end meanwhile."""
        if not self.is_suspended_now():
            return
        if burst:
            self.log.info("Worker %s: suspended in burst mode, exiting once running jobs end", self.name)
            raise StopRequested
        self.log.info("Worker %s: suspended, run `rq resume` to resume", self.name)
        self._suspended = True
        self.set_state(WorkerStatus.SUSPENDED)
        try:
            while not self._stop_requested and self.is_suspended_now():
                self._cold.wait(1)
        finally:
            self._suspended = False
        self.set_state(WorkerStatus.BUSY if self._running else WorkerStatus.IDLE)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """While ``rq suspend`` is in force the state stays SUSPENDED, whatever jobs start or end.
        A state Redis cannot take now is skipped: the next one is recorded."""
        if self._suspended and state != WorkerStatus.SUSPENDED:
            return
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_UNAVAILABLE as exc:
            self.log.warning("Worker %s: could not record state %s: %s", self.name, state, why_unavailable(exc))

    def register_birth(self) -> None:
        """rq's registration.  While Redis is unavailable (unreachable, out of memory) a starting
        worker waits here rather than crash, which the launcher would count toward a crash loop."""
        self._when_redis_answers(super().register_birth, "register")

    def subscribe(self) -> None:
        """rq's command listener, waiting like :meth:`register_birth`."""
        self._when_redis_answers(super().subscribe, "subscribe to its command channel")

    def _wait_for_free_slot(self) -> bool:
        """Block until the pool has room; False if a stop was requested meanwhile."""
        while self._pool.full():
            self._wait_for_a_job_to_end()
            if self._stop_requested:
                return False
        return not self._stop_requested

    def _wait_for_a_job_to_end(self, timeout: float = 1.0) -> bool:
        """False if none ended within ``timeout``."""
        self._job_done.clear()
        return self._job_done.wait(timeout)

    def _idle_for(self) -> float:
        if self._running:
            return 0.0
        return time.monotonic() - self._idle_since

    def _dequeue(self, burst: bool, slots: int) -> list[tuple[Job, Queue]]:
        """Pop up to ``slots`` jobs: at once what is queued (one queue), else one job, blocking unless
        ``burst``; an empty list when the queues stayed empty."""
        popped = self._pop_batch(slots)
        if popped or self.is_suspended_now(max_age=0):
            return popped
        timeout: int | None = None
        if not burst:
            timeout = self.dequeue_timeout
            if self._max_idle_time is not None and not self._running:
                timeout = max(1, min(timeout, int(self._max_idle_time - self._idle_for()) + 1))
        while True:
            popped_id = self._pop_job_id(timeout)
            if popped_id is None:
                return []
            queue, job_id = popped_id
            job = self._fetch_popped_job(queue, job_id)
            if job is not None:
                return [self._admitting(job, queue)]

    def _single_queue_lmove(self) -> bool:
        return len(self._ordered_queues) == 1 and get_version(self.connection) >= (6, 2, 0)

    def _pop_batch(self, slots: int) -> list[tuple[Job, Queue]]:
        """Non-blocking: up to ``slots`` (at most ``DEQUEUE_BATCH``) jobs with their hashes, one round trip."""
        if not self._single_queue_lmove():
            return []
        queue = self._ordered_queues[0]
        admitted = []
        for job_id, fields in self.pop_with_hashes(queue, min(slots, DEQUEUE_BATCH)):
            job = self._load_popped_job(queue, job_id, fields)
            if job is not None:
                admitted.append(self._admitting(job, queue))
        return admitted

    def _admitting(self, job: Job, queue: Queue) -> tuple[Job, Queue]:
        self.reorder_queues(reference_queue=queue)
        job.redis_server_version = self.get_redis_server_version()
        if self.log_job_description and not self.sensitive_jobs(job):
            self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
        else:
            self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
        return job, queue

    def _pop_job_id(self, timeout: int | None) -> tuple[Queue, str] | None:
        """BLMOVE into ``:intermediate`` (one queue, Redis >= 6.2) or BLPOP, on the dequeue client."""
        queue_keys = [queue.key for queue in self._ordered_queues]
        try:
            if self._single_queue_lmove():
                popped = self.queue_class.lmove(self._dequeue_connection, queue_keys[0], timeout)
            else:
                popped = self.queue_class.lpop(queue_keys, timeout, connection=self._dequeue_connection)
        except DequeueTimeout:
            return None
        if popped is None:
            return None
        queue_key, job_id = (as_text(part) for part in popped)
        queue = next(queue for queue in self.queues if queue.key == queue_key)
        return queue, job_id

    def _fetch_popped_job(self, queue: Queue, job_id: str) -> Job | None:
        # If Redis is unavailable the loop backs off; with one queue the id waits in the intermediate list.
        fields: dict[bytes, bytes] | None
        try:
            fields = self.connection.hgetall(self.job_class.key_for(job_id))
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            fields = None
        return self._load_popped_job(queue, job_id, fields)

    def _load_popped_job(self, queue: Queue, job_id: str, fields: dict[bytes, bytes] | None) -> Job | None:
        """The job of a popped id from its hash (``None`` if its key is not a hash); ``None`` (and the id
        dealt with) if there is no job to run."""
        if fields is None:
            self._drop_non_job(queue, job_id)
            return None
        try:
            if not fields:
                raise NoSuchJobError(job_id)
            job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
            job.restore(fields)
            return job
        except NoSuchJobError:
            self.log.warning("Worker %s: job %s was deleted while queued; skipping it", self.name, job_id)
            queue.intermediate_queue.remove(job_id)
        except Exception as exc:
            reason = f"rq-gevent: job {job_id} cannot be loaded: {type(exc).__name__}: {exc}"
            self.log.error("Worker %s: %s; moved to the failed registry of %s", self.name, reason, queue.name)
            compat.fail_unloadable(self.connection, queue, job_id, reason)
        return None

    # -- running one job ------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Admit ``job`` to the pool (a slot must be free) and return at once."""
        self._admitted_count += 1
        greenlet = self._pool.spawn(self._run_job, job.id)
        # The pool frees the slot in a link of its own, run after the greenlet exits and before this one:
        # a wake-up from inside the greenlet would find the pool still full and wait on.
        greenlet.rawlink(self._slot_freed)
        # Registered before the greenlet first runs, so the loop counts it as running at once.
        self._running[job.id] = RunningJob(job=job, queue=queue, greenlet=greenlet, attempt=compat.count_attempt(job))

    def _run_job(self, job_id: str) -> None:
        running = self._running[job_id]
        job, queue = running.job, running.queue
        self._local.job_id = job_id
        _running_job.set(running)
        compat.on_function_call(job, functools.partial(setattr, running, "code_started", True))
        try:
            self.prepare_execution(job)
            running.execution = self.execution
            with self._serialised_if_async(job):
                self.perform_job(job, queue)
        except Exception as exc:
            # perform_job handles every failure of the job itself; this is rq's bookkeeping failing,
            # e.g. Redis gone for longer than redis-py's retries.
            redis_failed = isinstance(exc, REDIS_UNAVAILABLE)
            if redis_failed and not running.prepared:
                running.redis_failed_before_start = True
            if running.redis_failed_before_start:
                if not running.requeued:
                    self._requeue_when_redis_is_back(running)
            else:
                self.log.error(
                    "Worker %s: could not record the outcome of job %s; rq will treat it as abandoned",
                    self.name,
                    job_id,
                    exc_info=True,
                )
        finally:
            timeouts.forget_pending(running.greenlet)
            self._stopped_job_ids.discard(job_id)
            if self._running.get(job_id) is running:
                del self._running[job_id]
            self._ended_count += 1
            if not self._running:
                self._became_idle()

    def _slot_freed(self, _greenlet: Greenlet) -> None:
        self._job_done.set()

    def _became_idle(self) -> None:
        self._idle_since = time.monotonic()
        try:
            with self.connection.pipeline() as pipeline:
                # Jobs' own pipelines may have executed out of order: nothing runs, so nothing is current.
                super().set_current_job_id(None, pipeline=pipeline)
                self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
                pipeline.execute()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not record idle state (%s)", self.name, exc)
        if self._max_idle_time is not None and self._dequeuing:
            # The pop was armed while jobs ran, without the idle deadline: re-arm it.
            unblock_clients(self.connection, self.dequeue_client_name)

    @contextlib.contextmanager
    def _serialised_if_async(self, job: Job) -> Iterator[None]:
        """Run ``async def`` jobs one at a time: asyncio allows one running loop per OS thread."""
        try:
            is_async = inspect.iscoroutinefunction(job.func) or asyncio.iscoroutinefunction(job.func)
        except Exception:
            is_async = False
        if not is_async:
            yield
            return
        with self._async_jobs:
            yield

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """rq marks the job started; if Redis fails it here, the job has not run and is requeued."""
        running = self._own_running(job)
        try:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
        except REDIS_UNAVAILABLE:
            if running is not None:
                running.redis_failed_before_start = True
                compat.skip_failure_callback(job)  # not a failure of the job: it never ran
            raise
        if running is not None:
            running.prepared = True
        self.procline(f"Running {len(self._running)} of {self.concurrency} jobs")

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """The job's own code is over: from here on nothing may interrupt it, and what rq records
        about it waits for Redis if Redis is away."""
        running = self._own_running(job)
        if running is not None:
            running.finishing = True
            if not running.code_started and isinstance(sys.exc_info()[1], REDIS_UNAVAILABLE):
                # Called from rq's except block: Redis failed rq's last call before the function.
                running.redis_failed_before_start = True
                compat.skip_failure_callback(job)  # not a failure of the job: it never ran
        timeouts.forget_pending(gevent.getcurrent())
        record = functools.partial(super().handle_execution_ended, job, queue, heartbeat_ttl)
        if self._ran(job):
            self._when_redis_answers(record, f"record that job {job.id} ended")
        else:
            record()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        self._record_outcome(job, functools.partial(super().handle_job_success, job, queue, started_job_registry))

    def handle_job_retry(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self._record_outcome(job, functools.partial(super().handle_job_retry, job, queue, *args, **kwargs))

    def cleanup_execution(self, job: Job, pipeline: Any) -> None:
        """rq forgets the execution once it has queued its deletion on ``pipeline``.  If that
        transaction is then run again (rq retries it after a WatchError, which redis-py raises when
        the connection drops while watching; we retry it when Redis was away), the second run would
        leave the execution in the started registry and the finished job is reaped as abandoned."""
        running = self._own_running(job)
        if self.execution is None and running is not None:
            self.execution = running.execution
        super().cleanup_execution(job, pipeline)

    def _record_outcome(self, job: Job, record: Callable[[], Any], confirm: bool = False) -> None:
        """Run ``record``, one of rq's steps that record how a job ended (one transaction each).

        If Redis is unreachable, wait for it and run the step again, unless it had applied after
        all (only its answer was lost): a job whose code ran is not left to rq's reaper as
        abandoned because Redis was away when it ended.  ``confirm`` checks even when no error
        was raised (rq's ``handle_job_failure`` swallows them).  A cold shutdown gives up.
        """
        running = self._own_running(job)
        if running is None or running.execution is None or not self._ran(job):
            record()
            return
        execution = running.execution
        before = dict(job.__dict__)
        was_stopped = job.id in self._stopped_job_ids
        retried = False
        while True:
            try:
                record()
                if not confirm:
                    break
            except REDIS_UNAVAILABLE as exc:
                if self._cold.is_set():
                    raise
                self.log.warning("Worker %s: %s; will record the outcome of job %s once it answers", self.name,
                                 why_unavailable(exc), job.id)  # fmt: skip
            recorded = self._when_redis_answers(
                functools.partial(compat.outcome_recorded, self.connection, job, execution),
                f"record the outcome of job {job.id}",
            )
            if recorded:
                break
            # rq's step changed the job and the worker in memory as if it had applied: undo that.
            job.__dict__.clear()
            job.__dict__.update(before)
            if was_stopped:
                self._stopped_job_ids.add(job.id)
            retried = True
        if retried:
            self.log.warning("Worker %s: outcome of job %s recorded now that Redis answers", self.name, job.id)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        exception = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(exception, (JobStopped, ColdShutdown)):
            # Deliberate, like rq's stop-job and cold shutdown: not an error for exception handlers.
            self.log.info("Worker %s: job %s interrupted: %s", self.name, job.id, exception)
            return
        if self._never_ran(job):
            self.log.warning("Worker %s: Redis failed before job %s started (%s)", self.name, job.id, exception)
            return
        super().handle_exception(job, *exc_info)

    def _ran(self, job: Job) -> bool:
        """In the job's greenlet: rq marked it started, so its code ran (or began to)."""
        running = self._own_running(job)
        return running is not None and running.prepared and not running.redis_failed_before_start

    def _when_redis_answers(self, call: Callable[[], T], to_do: str) -> T:
        """``call()`` until Redis answers it; a cold shutdown gives up (raising Redis's error)."""
        return when_redis_answers(call, self._cold, self.log, f"Worker {self.name}", to_do)

    def _never_ran(self, job: Job) -> bool:
        """In the job's greenlet: rq's bookkeeping failed before the job was marked started."""
        running = self._own_running(job)
        return running is not None and running.redis_failed_before_start

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        running = self._own_running(job)
        reason = running.interrupted_by if running is not None else None
        if isinstance(reason, ColdShutdown):
            self._requeue(job, queue, "interrupted by cold shutdown")
            return
        if self._never_ran(job):
            assert running is not None
            self._requeue_when_redis_is_back(running)
            return
        if compat.left_behind_in_intermediate(job, exc_string):
            # rq's maintenance found the job's id in :intermediate, but the job itself has moved on
            # (finished, failed, running...): only the id is stale, and rq removes it.
            self.log.info("Worker %s: stale id of job %s (%s) in the intermediate list", self.name, job.id,
                          job.get_status(refresh=False))  # fmt: skip
            return
        if compat.never_started(job, exc_string):
            # rq's maintenance, in the main greenlet: popped by a worker that never started it.
            compat.count_requeue(job)
            self._requeue(job, queue, "dequeued but never started")
            return
        if isinstance(reason, JobStopped):
            self.log.warning("Worker %s: job %s stopped by user, moving it to FailedJobRegistry", self.name, job.id)
            try:
                if job.stopped_callback:  # rq < 2.4 calls it unchecked, and logs the TypeError as an error
                    job.execute_stopped_callback(self.death_penalty_class)
            except Exception:
                self.log.error("Worker %s: stopped callback of job %s failed", self.name, job.id, exc_info=True)
        record = functools.partial(
            super().handle_job_failure, job, queue, started_job_registry=started_job_registry, exc_string=exc_string
        )
        self._record_outcome(job, record, confirm=True)

    def _requeue(self, job: Job, queue: Queue, why: str) -> None:
        """Put ``job`` back at the front of its queue as if it had never started (it did not run, or
        a cold shutdown interrupted it): no failure, no retry used.  Its id leaves rq's intermediate
        list (a job interrupted before rq marked it started is still there), and it is queued once."""
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline)
            job.started_at = None
            job.ended_at = None
            job.worker_name = None
            pipeline.lrem(queue.intermediate_queue_key, 0, job.id)
            pipeline.lrem(queue.key, 0, job.id)
            compat.requeue_at_front(queue, job, pipeline)
            pipeline.execute()
        self.log.warning("Worker %s: job %s %s, requeued at the front of %s", self.name, job.id, why, queue.name)

    def _requeue_when_redis_is_back(self, running: RunningJob) -> None:
        """The job never ran because Redis failed rq's bookkeeping: requeue it, retrying until Redis
        answers.  Given up only by a cold shutdown: with one queue the job then waits in rq's
        intermediate list for maintenance; popped from several queues, it would be lost."""

        requeue = functools.partial(self._requeue, running.job, running.queue, "never started (Redis failed)")
        try:
            self._when_redis_answers(requeue, f"requeue job {running.job.id}")
            running.requeued = True
        except REDIS_UNAVAILABLE as exc:
            self.log.error("Worker %s: could not requeue job %s (%s); giving up", self.name, running.job.id, exc)

    # -- interrupting jobs ----------------------------------------------------------------------------

    def _interrupt(self, running: RunningJob, exception: JobInterrupted) -> bool:
        """Interrupt one running job; False if its own code has already ended."""
        if running.finishing:
            return False
        if running.interrupted_by is None:
            running.interrupted_by = exception
            if isinstance(exception, JobStopped):
                self._stopped_job_ids.add(running.job.id)
            if not isinstance(exception, JobKilled):
                # rq runs no failure callback for stopped or requeued jobs; the stopped callback
                # (if any) runs in handle_job_failure.
                compat.skip_failure_callback(running.job)
            timeouts.interrupt(running.greenlet, exception)
        return True

    def stop_job(self, job_id: str) -> bool:
        """Stop one running job (it ends STOPPED); the others go on. False if not running here."""
        running = self._running.get(job_id)
        if running is None:
            self.log.info("Worker %s: not running job %s, stop-job ignored", self.name, job_id)
            return False
        if not self._interrupt(running, JobStopped(f"Job {job_id} stopped by user")):
            self.log.info("Worker %s: job %s is already finishing, stop-job ignored", self.name, job_id)
            return False
        self.log.info("Worker %s: stopping job %s", self.name, job_id)
        return True

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """``kill-horse``: there is no horse process; every running job fails as if its horse died."""
        if not self._running:
            self.log.info("Worker %s: no job running, kill-horse ignored", self.name)
            return
        for running in list(self._running.values()):
            if self._interrupt(running, JobKilled(f"Job {running.job.id} killed by kill-horse command")):
                self.log.warning("Worker %s: killing job %s", self.name, running.job.id)

    def wait_for_horse(self) -> tuple[None, None, None]:
        return None, None, None

    @property
    def horse_pid(self) -> int:
        return 0

    # -- heartbeats -----------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(self.job_monitoring_interval)
            try:
                self.send_heartbeats()
                self._redis_outage.succeeded()
            except redis.exceptions.RedisError as exc:
                self.log.warning("Worker %s: heartbeat failed (%s); retrying next beat", self.name, exc)
                if isinstance(exc, REDIS_UNAVAILABLE):
                    # The loop may be waiting for a free slot, not touching Redis: count this too.
                    self._redis_outage.failed(exc)
            except Exception:
                # Never let the heartbeat die: without it every running job would look abandoned.
                self.log.exception("Worker %s: heartbeat failed; retrying next beat", self.name)

    def send_heartbeats(self) -> None:
        """Refresh the worker key and every running job's execution and job hash, in batches."""
        worker_ttl = max(self.worker_ttl, int(self.job_monitoring_interval)) + 60
        running = [r for r in self._running.values() if r.execution is not None and not r.finishing]
        if self._job_heartbeats is None:
            self._job_heartbeats = JobHeartbeats(self.connection)
        batches = [running[i : i + HEARTBEAT_BATCH] for i in range(0, len(running), HEARTBEAT_BATCH)] or [[]]
        for index, batch in enumerate(batches):
            with self.connection.pipeline(transaction=False) as pipeline:
                if index == 0:
                    # Checked first: rq's own heartbeat commands differ between releases.  "birth",
                    # not the key: the counters' tick may have re-created a hash without it.
                    pipeline.hexists(self.key, "birth")
                    pipeline.sismember(worker_registration.REDIS_WORKER_KEYS, self.key)
                    self.heartbeat(worker_ttl, pipeline=pipeline)
                beat_time = now()
                for item in batch:
                    assert item.execution is not None
                    self._job_heartbeats.beat(
                        pipeline, item.execution, item.job, self.get_heartbeat_ttl(item.job), beat_time
                    )
                results = pipeline.execute()
                if index == 0 and not (results[0] and results[1]):
                    # The worker hash had expired (e.g. Redis restarted without persistence) or was re-created.
                    self._reregister(pipeline, worker_ttl)

    def _reregister(self, pipeline: Any, ttl: int) -> None:
        self.log.warning("Worker %s: worker key had expired or lost its registration; registering again", self.name)
        pipeline.hset(self.key, mapping=compat.worker_registration_fields(self))
        pipeline.hset(self.key, "state", self.get_state())
        pipeline.expire(self.key, ttl)
        worker_registration.register(self, pipeline)
        pipeline.execute()
        self._worker_writes.current_job_changed = True  # the next tick names the running job again

    # -- shutdown -------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        self._signal_handlers = [
            gevent.signal_handler(signum, self.request_stop, signum, None) for signum in (signal.SIGINT, signal.SIGTERM)
        ]

    def _remove_signal_handlers(self) -> None:
        for handler in self._signal_handlers:
            handler.cancel()
        self._signal_handlers = []

    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """First request: warm shutdown.  A second one (a second later or more): cold shutdown."""
        if self._stop_requested:
            self.request_force_stop(signum, frame)
            return
        self.log.info(
            "Worker %s: warm shutdown requested%s; finishing %d running jobs. Send it again for a cold shutdown.",
            self.name,
            f" (signal {signal.Signals(signum).name})" if signum else "",
            len(self._running),
        )
        self._shutdown_requested_date = now()
        self._stop_requested = True
        if self._running:
            with contextlib.suppress(redis.exceptions.RedisError):
                self.set_shutdown_requested_date()
        self._job_done.set()
        if self._dequeuing:
            gevent.spawn(self._wake_dequeue)

    def _wake_dequeue(self) -> None:
        """Unblock the blocking pop until the loop has seen the stop (it may not have blocked yet)."""
        for _ in range(20):
            if not self._dequeuing or not unblock_clients(self.connection, self.dequeue_client_name):
                return
            gevent.sleep(0.5)

    def request_force_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Cold shutdown: interrupt running jobs and put them back at the front of their queues."""
        requested = self._shutdown_requested_date
        if requested is not None and (now() - requested).total_seconds() < 1:
            self.log.debug("Worker %s: second stop within 1 second ignored (duplicate signal)", self.name)
            return
        self.log.warning("Worker %s: cold shutdown, requeueing %d running jobs", self.name, len(self._running))
        self._cold.set()

    def _drain(self) -> None:
        """Wait for admitted jobs to end: all of them (warm), or interrupt them (cold)."""
        if not self._running:
            return
        self.log.info("Worker %s: waiting for %d running jobs to finish", self.name, len(self._running))
        deadline = None if self.graceful_timeout is None else time.monotonic() + self.graceful_timeout
        while self._running and not self._cold.is_set():
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if deadline is not None and wait == 0.0:
                self.log.warning("Worker %s: graceful timeout of %s s reached", self.name, self.graceful_timeout)
                break
            self._job_done.clear()
            gevent.wait([self._cold, self._job_done], timeout=wait, count=1)
        if not self._running:
            return
        for running in list(self._running.values()):
            self._interrupt(running, ColdShutdown(f"Worker {self.name} shut down cold"))
        self._pool.join(timeout=COLD_SHUTDOWN_BOOKKEEPING_SECONDS)
        for job_id in self._running:
            self.log.error("Worker %s: job %s did not stop; rq will treat it as abandoned", self.name, job_id)

    # -- commands, scheduler --------------------------------------------------------------------------

    def _watch_listener(self) -> None:
        """Prove the command listener hears, twice per socket timeout (:mod:`rq_gevent.listener`)."""
        if getattr(self, "pubsub_thread", None) is None:
            return
        period = (socket_timeout(self.connection) or self.connection_timeout) / 2
        self._listener_watch = ListenerWatch(
            self.connection, self.pubsub_channel_name, period, self._subscribe_again, self.log
        )
        self._listener_greenlet = gevent.spawn(self._listener_watch.run)

    def _subscribe_again(self) -> None:
        try:
            self.unsubscribe()
        except redis.exceptions.RedisError as exc:
            self.log.debug("Worker %s: unsubscribing a dead listener failed (%s)", self.name, exc)
        try:
            self.subscribe()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not subscribe again yet (%s)", self.name, exc)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """rq retries a lost listener connection but lets a socket timeout end the listener."""
        if not isinstance(exc, REDIS_UNAVAILABLE):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        self.log.error("Worker %s: command listener: %s; retrying in 2 s", self.name, why_unavailable(exc))
        gevent.sleep(2)

    def handle_payload(self, message: dict[str, Any]) -> None:
        """rq's pub/sub commands, mapped onto greenlets instead of a horse process."""
        try:
            payload = parse_payload(message)
        except (ValueError, KeyError, AttributeError):
            self.log.warning("Worker %s: ignoring malformed command %r", self.name, message.get("data"))
            return
        command = payload.get("command")
        if command == PROBE_COMMAND:
            if self._listener_watch is not None:
                self._listener_watch.heard(payload)
            return
        self.log.info("Worker %s: received command %s", self.name, command)
        if command == "shutdown":
            self.request_stop()
        elif command == "stop-job":
            self.stop_job(payload.get("job_id"))
        elif command == "kill-horse":
            self.kill_horse()
        else:
            self.log.warning("Worker %s: unknown command %r ignored", self.name, command)

    def _start_scheduler(
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
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def stop_scheduler(self) -> None:
        if isinstance(self.scheduler, GreenletScheduler):
            self.scheduler.stop_and_wait(timeout=self.scheduler.interval + 5)
