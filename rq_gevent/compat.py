"""Every place where rq-gevent relies on rq internals or on what differs between rq releases; one
module, so a new rq release is one diff.

Supported: the rq versions declared in setup.cfg (each tested by CI), 2.3.3 to 3.0.x.  What rq 3
changed for a worker: it holds several executions (``worker.executions``, a per-worker executions
set in Redis), passes each explicitly (``perform_job``, ``handle_job_*``, ``cleanup_execution``), no
longer writes the worker hash's ``current_job``, and makes the job key persistent before, not in,
``Job.perform``.
"""

from __future__ import annotations

import inspect
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

try:  # rq >= 2.6
    from rq.exceptions import StopRequested
except ImportError:  # rq < 2.6 defines it next to the worker
    from rq.worker import StopRequested  # type: ignore[no-redef,attr-defined]

import rq
from rq import worker_registration
from rq.defaults import DEFAULT_FAILURE_TTL, DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.executions import Execution, ExecutionRegistry
from rq.registry import clean_registries
from rq.results import Result
from rq.utils import current_timestamp, now

from .plumbing import lua
from .speedups import utcformat

RQ_VERSION = tuple(int(part) for part in rq.__version__.split(".")[:2])
# rq >= 3: a worker holds several executions, each passed explicitly.
EXPLICIT_EXECUTIONS = RQ_VERSION >= (3, 0)

__all__ = ["EXPLICIT_EXECUTIONS", "RQ_VERSION", "StopRequested"]

# The rq releases CI tests (noxfile.py's matrix; tests/test_lua.py checks they agree).  On these only
# do the scripts of rq_gevent/plumbing/lua/ that mirror rq's code write a job's start, success and heartbeat
# and pop batches; on any other rq, rq's own code does (the worker says so in one INFO line).
TESTED_RQ_VERSIONS = ("2.3.3", "2.12.0", "3.0.0")
SCRIPTS_MIRROR_THIS_RQ = rq.__version__ in TESTED_RQ_VERSIONS

# Every private name of rq and redis-py this module relies on, by the class that has it (on its
# instances).  tests/test_compat.py checks the installed rq and redis-py have each, and that no other
# module of the package uses one: a release that drops one fails CI, not a user's worker.
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "rq.worker.Worker": ("_set_connection", "_install_signal_handlers", "_pubsub_exception_handler",
                         "_start_scheduler", "_stopped_job_id", "_stop_requested", "_shutdown_requested_date",
                         "_ordered_queues", "_dequeue_strategy", "_exc_handlers"),
    "rq.job.Job": ("_execute", "_status", "_result", "_handle_success", "_success_callback", "_failure_callback",
                   "_stopped_callback", "_success_callback_name", "_failure_callback_name", "_stopped_callback_name",
                   *(("_unreadable_meta",) if RQ_VERSION >= (3, 0) else ())),
    "rq.queue.Queue": ("_enqueue_job",),
    "rq.scheduler.RQScheduler": ("_install_signal_handlers", "_status", "_process", "_queue_names"),
    "rq.executions.Execution": ("_job",),
    "redis.client.PubSubWorkerThread": ("_running",),
}  # fmt: skip


def meta_kept_unread(job: Any) -> bool:
    """rq 3 writes a meta this process could not deserialize back as the bytes it read, as long as
    ``job.meta`` is still its placeholder; a key added here would replace those bytes."""
    unreadable = getattr(job, "_unreadable_meta", None)
    return unreadable is not None and job.meta == {"unserialized": unreadable}


def worker_registration_fields(worker: Any) -> dict[str, Any]:
    """The worker hash fields rq writes at birth: rq's ``serialize()`` (rq >= 2.4), else the mapping rq
    2.3's ``register_birth`` builds.  The worker's own birth and last heartbeat, not now's."""
    if hasattr(worker, "serialize"):
        return worker.serialize()
    heartbeat = getattr(worker, "last_heartbeat", None) or now()  # rq < 2.4 keeps no last_heartbeat
    return {
        "birth": utcformat(getattr(worker, "birth_date", None) or heartbeat),
        "last_heartbeat": utcformat(heartbeat),
        "queues": ",".join(worker.queue_names()),
        "pid": worker.pid,
        "hostname": worker.hostname,
        "ip_address": worker.ip_address,
        "version": worker.version,
        "python_version": worker.python_version,
    }


def seconds_since(moment: datetime) -> float:
    """Seconds from ``moment`` until now; rq < 2.4 stores naive UTC datetimes, later ones aware."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


def skip_failure_callback(job: Any) -> None:
    """Make rq's ``perform_job`` skip ``job``'s failure callback for this run only.

    The callback's name (what ``job.save()`` persists) is untouched; only the resolved callable that
    ``Job.failure_callback`` caches is cleared.
    """
    job._failure_callback = None


def listener_stopped(pubsub_thread: Any) -> bool:
    """redis-py's ``PubSubWorkerThread`` was told to stop (its loop ends after this exception)."""
    running = getattr(pubsub_thread, "_running", None)
    return running is not None and not running.is_set()


def callback_names(job: Any) -> dict[str, str | None]:
    """The dotted names of ``job``'s callbacks, as stored (nothing imported)."""
    return {
        "success callback": job._success_callback_name,
        "failure callback": job._failure_callback_name,
        "stopped callback": job._stopped_callback_name,
    }


def skip_callbacks(job: Any) -> None:
    """Make rq skip all of ``job``'s callbacks for this run, without importing them (names untouched)."""
    job._success_callback = job._failure_callback = job._stopped_callback = None


# What rq's IntermediateQueue.cleanup passes to handle_job_failure for an id left in
# ``:intermediate`` for over a minute with no execution (rq 2.3.3 to 2.12).
STUCK_IN_INTERMEDIATE = "Job was stuck in intermediate queue."


# A popped job with one of these statuses is not run: cancelled, or started or ended elsewhere (a
# duplicate of its id in a queue, another worker's maintenance).  Any other status is a job not run
# yet, which rq runs: queued, and those saved and pushed by hand (created, deferred, scheduled, none).
WITHDRAWN_STATUSES = frozenset({"canceled", "started", "finished", "failed", "stopped"})


def withdrawn(job: Any) -> bool:
    """``job`` (as loaded) is cancelled, or started or ended elsewhere."""
    return job.get_status(refresh=False) in WITHDRAWN_STATUSES


def stuck_in_intermediate(exc_string: str) -> bool:
    """rq's maintenance fails a job with ``exc_string`` because its id sat in ``:intermediate``."""
    return exc_string == STUCK_IN_INTERMEDIATE


def left_behind_in_intermediate(job: Any, exc_string: str) -> bool:
    """rq's maintenance is about to fail ``job`` as stuck in the intermediate list, but the job is not
    waiting to start there (rq would overwrite, say, a finished job with a failure)."""
    return stuck_in_intermediate(exc_string) and withdrawn(job)


def fail_unloadable(connection: Any, queue: Any, job_id: str, reason: str) -> None:
    """A popped job whose hash rq cannot load: out of the intermediate list and into the failed
    registry, its hash saying why (rq's own cleanup would crash on it every time)."""
    registry = queue.failed_job_registry
    with connection.pipeline() as pipeline:
        pipeline.lrem(queue.intermediate_queue_key, 1, job_id)
        pipeline.zadd(registry.key, {job_id: time.time() + DEFAULT_FAILURE_TTL})
        pipeline.hset(queue.job_class.key_for(job_id), mapping={"status": "failed", "exc_info": reason})
        pipeline.execute()


def requeue_at_front(queue: Any, job: Any, pipeline: Any) -> None:
    """Put ``job`` back at the front of ``queue`` as QUEUED, its dependencies already met."""
    queue._enqueue_job(job, pipeline=pipeline, at_front=True)


def on_function_call(job: Any, callback: Any, connection: Any) -> None:
    """Call ``callback()`` when rq is about to call ``job``'s function, and let the function see
    ``connection`` as ``job.connection`` (rq's own bookkeeping keeps the worker's).

    ``Job.perform`` makes one Redis call (PERSIST of the job hash) after the job was marked started
    and before it calls the function via ``Job._execute``; this tells the two apart.
    """
    execute = job._execute

    def execute_after_callback(*args: Any, **kwargs: Any) -> Any:
        callback()
        workers_connection, job.connection = job.connection, connection
        try:
            return execute(*args, **kwargs)
        finally:
            job.connection = workers_connection

    job._execute = execute_after_callback


_EXECUTION_TAKES_WORKER_NAME = "worker_name" in inspect.signature(Execution.create).parameters  # rq >= 2.4
_EXECUTION_REGISTRY_PREFIX = ExecutionRegistry.key_template.format("")
_RESULT_NAMES_EXECUTION = "execution_id" in inspect.signature(Result.__init__).parameters  # rq >= 2.4


def create_execution(job: Any, ttl: int, pipeline: Any, worker_name: str) -> Any:
    """rq's ``Execution.create`` on ``pipeline`` (the execution names its worker from rq 2.4 on)."""
    if _EXECUTION_TAKES_WORKER_NAME:
        return Execution.create(job, ttl, pipeline=pipeline, worker_name=worker_name)
    return Execution.create(job, ttl, pipeline=pipeline)


class _PersistDone:
    """``job.connection`` while ``Job.perform`` runs up to the function: its PERSIST of the job hash
    already went out with the job's start (GeventWorker.prepare_job_execution); everything else is the connection."""

    def __init__(self, connection: Any):
        self._connection = connection

    def persist(self, name: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def skip_persist_in_perform(job: Any) -> None:
    """Make ``job.perform()`` skip its PERSIST; the real connection is back before the function runs.

    In rq 2.3 to 2.12, ``Job.perform`` calls ``self.connection.persist(self.key)``, then ``self._execute()``;
    rq 3 makes the key persistent in ``prepare_job_execution`` and ``Job.perform`` makes no Redis call.
    """
    if EXPLICIT_EXECUTIONS:
        return
    connection = job.connection
    execute = job._execute

    def execute_with_connection(*args: Any, **kwargs: Any) -> Any:
        job.connection = connection
        job._execute = execute
        return execute(*args, **kwargs)

    job.connection = _PersistDone(connection)
    job._execute = execute_with_connection


# -- executions, rq 2 (one per worker, ``worker.execution``) and rq 3 (several, passed explicitly) ----


def perform_job(worker: Any, job: Any, queue: Any, execution: Any) -> bool:
    """rq's ``perform_job`` (rq 2 reads the execution from ``worker.execution``)."""
    if EXPLICIT_EXECUTIONS:
        return worker.perform_job(job, queue, execution)
    return worker.perform_job(job, queue)


def execution_kwargs(execution: Any) -> dict[str, Any]:
    """What to add to a call of rq's ``handle_job_failure`` for ``execution``."""
    return {"execution": execution} if EXPLICIT_EXECUTIONS else {}


def new_execution(job: Any, worker_name: str) -> Any:
    """The execution rq's ``Execution.create`` makes, in memory only (its writes: job_writes's start script)."""
    return execution_of(job, uuid.uuid4().hex, worker_name)


def execution_of(job: Any, execution_id: str, worker_name: str, created_at: datetime | None = None) -> Any:
    """``job``'s execution ``execution_id`` as rq holds it in memory (created now unless ``created_at``)."""
    if _EXECUTION_TAKES_WORKER_NAME:
        execution = Execution(id=execution_id, job_id=job.id, connection=job.connection, worker_name=worker_name)
    else:
        execution = Execution(id=execution_id, job_id=job.id, connection=job.connection)
    if created_at is not None:
        execution.created_at = created_at
    execution._job = job
    return execution


def execution_worker_name(execution: Any) -> str:
    return getattr(execution, "worker_name", "") if _EXECUTION_TAKES_WORKER_NAME else ""


def execution_keys(execution: Any) -> tuple[str, str]:
    """The keys ``Execution.create`` adds ``execution`` to besides its hash and the started registry:
    the job's executions registry, and rq 3's executions set of its worker ("" before rq 3)."""
    registry_key = f"{_EXECUTION_REGISTRY_PREFIX}{execution.job_id}"
    return registry_key, execution.worker_executions_key if EXPLICIT_EXECUTIONS and execution.worker_name else ""


def success_result(job: Any, worker_name: str, execution: Any) -> Any:
    """The result rq's ``Job._handle_success`` creates (from rq 2.4 on it names the worker and the
    execution), not saved."""
    kwargs: dict[str, Any] = {}
    if _RESULT_NAMES_EXECUTION:
        kwargs = {"worker_name": worker_name, "execution_id": execution.id,
                  "execution_started_at": execution.created_at, "execution_ended_at": job.ended_at}  # fmt: skip
    return Result(job_id=job.id, type=Result.Type.SUCCESSFUL, connection=job.connection, return_value=job._result,
                  serializer=job.serializer, **kwargs)  # fmt: skip


def results_in_streams(job: Any) -> bool:
    """Whether rq keeps ``job``'s results in a stream (rq < 2.4 asks the server: Redis >= 5)."""
    return bool(getattr(job, "supports_redis_streams", True))


def rq_worker_execution(worker: Any) -> Any:
    """rq's own ``worker.execution``, for a caller outside the worker's jobs: on rq 3 one of
    ``worker.executions``, else one from the worker's execution index in Redis (a worker loaded with
    ``find_by_key``); on rq 2 the attribute, as last set there."""
    if EXPLICIT_EXECUTIONS:
        from rq.worker.base import BaseWorker

        return BaseWorker.execution.fget(worker)
    return worker.__dict__.get("_rq_execution")


def set_rq_worker_execution(worker: Any, execution: Any) -> None:
    if EXPLICIT_EXECUTIONS:
        from rq.worker.base import BaseWorker

        BaseWorker.execution.fset(worker, execution)
    else:
        worker.__dict__["_rq_execution"] = execution


def track_execution(worker: Any, execution: Any) -> None:
    """``worker.executions`` as rq 3's ``prepare_execution`` keeps it (kept on rq 2 too, where only we read it)."""
    worker.executions[execution.id] = execution


def cleanup_execution(worker: Any, job: Any, pipeline: Any, execution: Any, outside_pool: bool = False) -> None:
    """rq's clean-up of one execution on ``pipeline``: out of the started registry, the job's
    execution registry and (rq 3) the worker's executions set, its hash deleted."""
    if EXPLICIT_EXECUTIONS:
        from rq.executions import cleanup_execution as rq_cleanup_execution

        rq_cleanup_execution(worker, job, pipeline, execution)
        return
    # rq 2.3 to 2.12: ``BaseWorker.cleanup_execution`` does this with ``worker.execution``.
    worker.set_current_job_id(None, pipeline=pipeline)
    if execution is None and outside_pool:  # the one rq's prepare_execution made, called outside the pool
        execution = rq_worker_execution(worker)
        set_rq_worker_execution(worker, None)
    if execution is not None:
        execution.delete(job=job, pipeline=pipeline)
        worker.executions.pop(execution.id, None)


def write_current_job(worker_class: Any, worker: Any, job_id: str | None, pipeline: Any) -> None:
    """The worker hash's ``current_job`` (rq < 3; rq 3 keeps the worker's executions set instead)."""
    if not EXPLICIT_EXECUTIONS:
        worker_class.set_current_job_id(worker, job_id, pipeline=pipeline)


def write_busy_since_now(worker_class: Any, worker: Any, job_id: str, pipeline: Any) -> None:
    """From idle to busy: rq < 3 names the job and zeroes ``current_job_working_time``."""
    if not EXPLICIT_EXECUTIONS:
        worker_class.set_current_job_id(worker, job_id, pipeline=pipeline)
        worker.set_current_job_working_time(0, pipeline=pipeline)


# What job_writes' success script does in rq's place: a job class that changes one of these takes rq's code.
SUCCESS_SCRIPT_MIRRORS = ("_handle_success", "set_status", "save", "to_dict", "cleanup", "finished_job_registry",
                          "started_job_registry", "dependents_key", "dependencies_key", "get_result_ttl")  # fmt: skip


def finished_fields(job: Any, ended_hash: dict[str, Any] | None) -> dict[str, Any]:
    """``job.to_dict(include_meta=False, include_result=False)`` once its status is FINISHED, from
    ``ended_hash``, its ``to_dict()`` just before (rq's ``to_dict`` formats five timestamps and
    compresses the job's data again on each call), else from the job."""
    set_status_in_memory(job, rq.job.JobStatus.FINISHED)
    if ended_hash is None:
        return job.to_dict(include_meta=False, include_result=False)
    fields = {name: value for name, value in ended_hash.items() if name != "meta" and name != "result"}
    fields["status"] = job._status
    return fields


def set_status_in_memory(job: Any, status: Any) -> None:
    """What rq's ``Job.set_status`` sets on the object, with no write (a script writes the hash)."""
    job._status = status


def execute_stopped_callback(job: Any, death_penalty_class: Any) -> None:
    """rq's stopped callback of ``job``, if it has one (a Job method before rq 3, ``rq.callbacks`` since)."""
    if job.stopped_callback is None:  # rq < 2.4 calls it unchecked
        return
    if EXPLICIT_EXECUTIONS:
        from rq.callbacks import execute_stopped_callback as rq_execute_stopped_callback

        rq_execute_stopped_callback(job, death_penalty_class)
    else:
        job.execute_stopped_callback(death_penalty_class)


def restore_after_retried_step(job: Any, snapshot: dict[str, Any]) -> None:
    """Undo what one of rq's outcome steps changed on ``job`` in memory before its transaction failed
    (rq sets status, result, retry counters... on the Job object as it queues the writes)."""
    job.__dict__.clear()
    job.__dict__.update(snapshot)


_AS_REDIS_STORES = redis.connection.Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)


def as_stored(mapping: dict[str, Any]) -> dict[str, bytes]:
    """A job's ``to_dict()`` as Redis stores it (``Job.save`` writes it so), for ``Job.restore``."""
    return {name: _AS_REDIS_STORES.encode(value) for name, value in mapping.items()}


def snapshot(job: Any) -> dict[str, Any]:
    return dict(job.__dict__)


def move_last_command_first(pipeline: Any) -> None:
    """Make the command just queued on ``pipeline`` its first (redis-py's ``command_stack``)."""
    pipeline.command_stack.insert(0, pipeline.command_stack.pop())


# -- heartbeats -----------------------------------------------------------------------------------


class JobHeartbeats:
    """rq's per-job heartbeat writes: one call of ``lua/heartbeat.lua`` per running job (``scripted``),
    else rq's own ``Execution.heartbeat`` and ``Job.heartbeat``."""

    def __init__(self, connection: Any, scripted: bool):
        self.scripted = scripted
        self._script = connection.register_script(lua.load("heartbeat").source) if scripted else None

    def beat(self, pipeline: Any, execution: Any, job: Any, ttl: int, beat_time: Any) -> int | None:
        """Queue one running job's heartbeat on ``pipeline``: when scripted, one command, whose reply is
        0 if the execution is gone.  Else rq's commands, and the index of the reply that tells, as rq's
        ``maintain_heartbeats`` reads it, whether ``Job.heartbeat`` re-created a job hash deleted meanwhile
        (1: then rq deletes it again, :func:`delete_recreated`)."""
        if self._script is None:
            execution.heartbeat(job.started_job_registry, ttl, pipeline=pipeline)
            index = len(pipeline)
            job.heartbeat(beat_time, ttl, pipeline=pipeline, xx=True)
            return index
        now_ts = current_timestamp()
        started_score = "+inf" if ttl < 0 else now_ts + ttl
        keys = [execution.key, job.started_job_registry.key, job.execution_registry.key, job.key]
        args = [ttl, started_score, execution.id, execution.composite_key, now_ts + ttl + 60,
                beat_time.timestamp(), utcformat(beat_time), "XX" if EXPLICIT_EXECUTIONS else ""]  # fmt: skip
        self._script(keys=keys, args=args, client=pipeline)
        return None

    @staticmethod
    def delete_recreated(connection: Any, job: Any, reply: Any) -> None:
        """rq's ``maintain_heartbeats``: a job hash its heartbeat's HSET created (the job had just been
        deleted, a result TTL of 0) is deleted again."""
        if reply == 1:
            connection.delete(job.key)


# -- maintenance ----------------------------------------------------------------------------------


def clean_queue(worker: Any, queue: Any) -> None:
    """rq's clean-up of one queue, what ``BaseWorker.clean_registries`` does for each queue while it
    holds the queue's maintenance lock (the same from rq 2.3.3 to 3.0): its registries, its workers
    set, its intermediate list."""
    worker.log.info("Worker %s: cleaning registries for queue: %s", worker.name, queue.name)
    clean_registries(queue, worker._exc_handlers)
    worker_registration.clean_worker_registry(queue)
    queue.intermediate_queue.cleanup(worker, queue)


def maintenance_keys(queue: Any) -> list[tuple[str, str]]:
    """The keys of ``queue`` its clean-up (:func:`clean_queue`) reads or writes, each with the only
    type it may have (or be absent).  rq 3 adds the ready registry."""
    keys = [(queue.key, "list"), (queue.intermediate_queue_key, "list")]
    keys.append((worker_registration.WORKERS_BY_QUEUE_KEY % queue.name, "set"))
    for name in ("started", "finished", "failed", "deferred", "scheduled", "ready"):
        registry = getattr(queue, f"{name}_job_registry", None)  # rq < 3: no ready registry
        if registry is not None:
            keys.append((registry.key, "zset"))
    return keys


# -- the scheduler --------------------------------------------------------------------------------


def scheduler_registers_itself(scheduler: Any) -> bool:
    """rq 2.12's and 3.0's scheduler keeps a record of itself in Redis (``register_birth`` and
    ``register_death``); rq 2.3.3's has neither."""
    return hasattr(scheduler, "register_birth")


def mark_scheduler_started(scheduler: Any, process: Any) -> None:
    """What rq's ``RQScheduler.start`` records, for a scheduler run in a greenlet instead of a process."""
    scheduler._status = scheduler.Status.STARTED
    scheduler._process = process


def scheduler_process(scheduler: Any) -> Any:
    return scheduler._process


def scheduler_queue_names(scheduler: Any) -> list[str]:
    return sorted(scheduler._queue_names)


# -- rq's private hooks, overridden ----------------------------------------------------------------


class WorkerHooks:
    """rq's private ``BaseWorker`` hooks a worker overrides, each forwarding to a public method of the
    worker (``prepare_connection``, ``install_signal_handlers``, ``listener_failed``, ``start_scheduler``,
    ``stopped_job_id``); rq's own are :func:`rq_prepare_connection` and :func:`rq_listener_failed`."""

    def _set_connection(self, connection: Any) -> Any:
        return self.prepare_connection(connection)  # type: ignore[attr-defined]

    def _install_signal_handlers(self) -> None:
        self.install_signal_handlers()  # type: ignore[attr-defined]

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        self.listener_failed(exc, pubsub, pubsub_thread)  # type: ignore[attr-defined]

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:  # fmt: skip
        self.start_scheduler(burst, logging_level, date_format, log_format)  # type: ignore[attr-defined]

    @property
    def _stopped_job_id(self) -> str | None:
        return self.stopped_job_id  # type: ignore[attr-defined]

    @_stopped_job_id.setter
    def _stopped_job_id(self, job_id: str | None) -> None:
        self.stopped_job_id = job_id  # type: ignore[attr-defined]


def install_signal_handlers(worker: Any) -> None:
    """rq's hook (``_install_signal_handlers``): a subclass that overrides it gets its override run."""
    worker._install_signal_handlers()


def start_scheduler(worker: Any, *args: Any) -> None:
    """rq's hook (``_start_scheduler``), as :func:`install_signal_handlers`."""
    worker._start_scheduler(*args)


def rq_prepare_connection(worker: Any, connection: Any) -> Any:
    """rq's ``_set_connection``: a socket timeout of at least its ``connection_timeout``."""
    return super(WorkerHooks, worker)._set_connection(connection)


def rq_listener_failed(worker: Any, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
    """rq's ``_pubsub_exception_handler``."""
    super(WorkerHooks, worker)._pubsub_exception_handler(exc, pubsub, pubsub_thread)


class SchedulerHooks:
    """rq's private ``RQScheduler`` hooks a scheduler run in a greenlet overrides."""

    def _install_signal_handlers(self) -> None:
        """The worker owns the process's signals and stops the scheduler itself."""


# -- rq's BaseWorker attributes without a public name ----------------------------------------------


def stop_requested(worker: Any) -> bool:
    return worker._stop_requested


def record_stop_request(worker: Any) -> None:
    """What rq's ``request_stop`` records: a stop was asked for, and when."""
    worker._shutdown_requested_date = now()
    worker._stop_requested = True


def queues_in_order(worker: Any) -> list[Any]:
    """The worker's queues in the order the dequeue strategy puts them now."""
    return worker._ordered_queues


def set_dequeue_strategy(worker: Any, strategy: Any) -> None:
    worker._dequeue_strategy = strategy


# -- redis-py -------------------------------------------------------------------------------------


def resp2_callbacks(legacy_responses: bool) -> dict[str, Any]:
    """redis-py's reply callbacks of a RESP2 client (``legacy_responses``: redis-py 8's setting)."""
    try:  # redis-py >= 8
        from redis._parsers.response_callbacks import get_response_callbacks
    except ImportError:  # redis-py 5 to 7, whose clients speak RESP2 unless told otherwise
        return dict(redis.Redis().response_callbacks)
    return dict(get_response_callbacks(2, legacy_responses))


# redis-py 5's pools want the name of the command a connection is for; redis-py 6 deprecates it.
_POOL_WANTS_COMMAND_NAME = int(redis.__version__.split(".")[0]) < 6


def pool_connection(pool: Any) -> Any:
    return pool.get_connection("EVALSHA") if _POOL_WANTS_COMMAND_NAME else pool.get_connection()
