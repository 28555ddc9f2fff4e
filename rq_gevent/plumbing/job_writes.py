"""rq's own writes for a job's start and end, the same keys and values, in fewer round trips.

This is the one module (with :mod:`rq_gevent.core.worker_counters`, the heartbeat script in
:mod:`rq_gevent.compat` and the transaction script of :mod:`rq_gevent.plumbing.transactions`) that writes rq's
state itself rather than through rq's methods; a test
compares the Redis state it leaves with what rq's ``SimpleWorker`` leaves, on every rq version.

* **Start, one pipeline instead of two or three round trips.**  rq creates the execution (one
  pipeline), marks the job started (a second) and, before rq 3, makes the job key persistent in
  ``Job.perform`` (a PERSIST).  Here the execution's pipeline is held and the job's writes and the
  PERSIST join it; the worker-level writes of the start (its heartbeat, ``current_job``) go to the
  once-a-second tick and the heartbeat greenlet.
* **The start in a few words.**  For rq's own ``Job`` on a busy worker (the common case), the start
  is one call of ``lua/start.lua``, which applies the commands rq would have queued on that pipeline
  from the values rq computes (the execution's ``serialize()``, ``prepare_for_execution``'s mapping,
  the current second as rq's ``current_timestamp()``) in about 25 words instead of about 80: less
  for the worker to build and pack.  A job class with its own start methods, or a worker becoming
  busy, takes the pipeline; a test compares the two starts' writes on every rq version.
* **A job withdrawn after its pop does not start.**  The start applies only if the job hash still
  exists, neither cancelled (rq's ``cancel()`` and ``delete()`` do not look in ``:intermediate``) nor
  started or ended elsewhere meanwhile; else it is not run and its id leaves ``:intermediate``.
* **A success in a few words.**  A success of rq's own ``Job`` with no dependents is one call of
  ``lua/success.lua``, from rq's ``to_dict``, ``Result.serialize()`` and ``BaseRegistry.add``'s score;
  the job hash's three HSETs (last heartbeat, status, its fields) are one, the last having rewritten
  the first two's fields.  A job with dependents, repeats, a rate limit or a result TTL of 0, and a
  job class or worker class with its own methods take rq's code.
* **End, one round trip fewer.**  rq writes the job's last heartbeat (an HSET on its own) just
  before the outcome transaction; here it is the first command of that transaction.
* **Is the outcome there?**  After Redis failed or was replaced, :meth:`JobWrites.outcome_recorded`
  tells whether the server has a run's outcome.  A failover can lose the run's start with its outcome
  (the new primary then has the job queued, its id in the queue or the intermediate list, as before
  the run): the start is written back then, so that recording the outcome again leaves the job as
  rq would, and not queued to run again or to wait for rq's maintenance.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.exceptions
from rq.job import Job
from rq.results import Result
from rq.utils import as_text, now
from rq.worker import Worker, WorkerStatus

from .. import compat
from ..core.running import Phase, RunningJob
from ..speedups import utcformat
from . import lua, transactions
from .redis_waits import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from ..core.running import RunningJobs
    from ..core.worker_counters import WorkerCounters


# Their keys, what they write and the rq code they mirror: the headers of the files in rq_gevent/plumbing/lua/.
_OUTCOME_RECORDED = lua.load("outcome_recorded")
_START = lua.load("start")
_SUCCESS = lua.load("success")


class _JobFields:
    """A stand-in pipeline for rq's ``Job.prepare_for_execution``: keeps the mapping of its one HSET."""

    mapping: Any = None

    def hset(self, name: Any, *, mapping: Any) -> None:
        self.mapping = mapping


class JobWrites:
    def __init__(self, worker: Worker, jobs: RunningJobs, counters: WorkerCounters, scripted: bool,
                 cleanup_overridden: bool = False) -> None:  # fmt: skip
        """``worker``: the rq worker whose methods make rq's writes (rq's API, and a subclass's overrides);
        ``scripted``: a start and a success by ``lua/start.lua`` and ``lua/success.lua`` where they fit
        (else rq's own code); ``cleanup_overridden``: the worker's class has its own
        ``cleanup_execution``, which the success script would leave out."""
        self.worker, self.jobs, self.counters, self.scripted = worker, jobs, counters, scripted
        self._own_cleanup = not cleanup_overridden
        self._outcome_recorded_script: Any = None

    def create_execution(self, job: Any) -> Any:
        """rq's execution (and BUSY, if the worker was idle), on a pipeline held for :meth:`mark_started`,
        or in memory only, for ``lua/start.lua`` to write."""
        worker = self.worker
        running = self.jobs.own(job)
        if running is not None and self._start_script_fits(job):
            running.execution = execution = compat.new_execution(job, worker.name)
            running.start_ttl = worker.get_heartbeat_ttl(job)
            compat.track_execution(worker, execution)
            return execution
        with transactions.one_trip():
            pipeline = worker.connection.pipeline()
        execution = compat.create_execution(job, worker.get_heartbeat_ttl(job), pipeline, worker.name)
        compat.track_execution(worker, execution)
        if worker.get_state() != WorkerStatus.BUSY:
            # From idle to busy: what ``rq info`` shows changes now, not at the next tick.
            worker.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            compat.write_busy_since_now(Worker, worker, job.id, pipeline)
        if running is None:
            pipeline.execute()
        else:
            running.execution = execution
            running.start_pipeline = pipeline
        return execution

    def mark_started(self, job: Any, remove_from_intermediate_queue: bool) -> None:
        """rq's ``prepare_job_execution`` writes of the job, plus ``Job.perform``'s PERSIST (rq < 3).
        rq's ``Job.heartbeat`` is left out: its one HSET of ``last_heartbeat`` is overwritten at once
        by ``prepare_for_execution``'s (a job class's own ``heartbeat`` is still called).
        If Redis fails here, the job has not run."""
        worker = self.worker
        running = self.jobs.own(job)
        held = running.start_pipeline if running is not None else None
        if running is not None:
            running.start_pipeline = None
        if held is None and (running is None or running.start_ttl is None):
            with transactions.one_trip():
                held = worker.connection.pipeline()
        try:
            if held is None:
                self._start(running, remove_from_intermediate_queue)
            else:
                self._start_on(held, job, remove_from_intermediate_queue)
        except REDIS_UNAVAILABLE:
            if running is not None:
                running.failed_before_start()
            raise
        except transactions.JobWithdrawn:
            if running is not None:
                running.withdrawn()
            queue = worker.queue_class(job.origin, connection=worker.connection)
            worker.connection.lrem(queue.intermediate_queue_key, 1, job.id)
            raise
        compat.skip_persist_in_perform(job)
        self.counters.current_job_changed()
        if running is not None:
            running.phase = Phase.STARTED

    def _start_script_fits(self, job: Any) -> bool:
        """Whether ``lua/start.lua`` writes what rq's methods would for ``job``: rq's own, and a worker
        already busy (becoming busy writes the worker hash too)."""
        cls = type(job)
        return (
            self.scripted
            and cls.prepare_for_execution is Job.prepare_for_execution
            and cls.heartbeat is Job.heartbeat
            and cls.started_job_registry is Job.started_job_registry
            and self.worker.get_state() == WorkerStatus.BUSY
        )

    def _start(self, running: RunningJob, remove_from_intermediate_queue: bool) -> None:
        """The start as one call of ``lua/start.lua``, from the values rq's methods compute."""
        worker, job, execution = self.worker, running.job, running.execution
        fields = _JobFields()
        job.prepare_for_execution(worker.name, pipeline=fields)
        intermediate = job.key  # no LREM
        if remove_from_intermediate_queue:
            intermediate = worker.queue_class(job.origin, connection=worker.connection).intermediate_queue_key
        registry_key, worker_executions_key = compat.execution_keys(execution)
        keys = (job.key, execution.key, registry_key, job.started_job_registry.key, intermediate,
                worker_executions_key or job.key)  # fmt: skip
        execution_fields = [word for pair in execution.serialize().items() for word in pair]
        job_fields = [word for pair in fields.mapping.items() for word in pair]
        args = (running.start_ttl, int(time.time()), execution.id, execution.composite_key, job.id,
                len(execution_fields), *execution_fields, *job_fields)  # fmt: skip
        running.start_ttl = None
        if self._call(_START, keys, args) == -1:
            raise transactions.JobWithdrawn(f"{job.key}: cancelled, deleted or taken elsewhere")

    def _start_on(self, held: Any, job: Any, remove_from_intermediate_queue: bool) -> None:
        """The start as rq's commands on the held pipeline: one script call of them (transactions)."""
        worker = self.worker
        with held as pipeline:
            transactions.only_if_not_withdrawn(pipeline, job.key)
            if type(job).heartbeat is not Job.heartbeat:  # else rq's HSET, which the next one overwrites
                job.heartbeat(now(), worker.get_heartbeat_ttl(job), pipeline=pipeline)
            job.prepare_for_execution(worker.name, pipeline=pipeline)
            if remove_from_intermediate_queue:
                queue = worker.queue_class(job.origin, connection=worker.connection)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.persist(job.key)
            pipeline.execute()

    def success_recorder(self, job: Any, by_rq: Callable[[], Any]) -> Callable[[], Any]:
        """What records ``job``'s success: the success script where it writes what rq would, else
        ``by_rq`` (rq's ``handle_job_success``)."""
        running = self.jobs.own(job)
        if running is None or running.execution is None or not self._success_script_fits(job):
            return by_rq
        return functools.partial(self._record_success, running, by_rq)

    def _success_script_fits(self, job: Any) -> bool:
        cls, worker = type(job), self.worker
        return (
            self.scripted
            and all(getattr(cls, name) is getattr(Job, name) for name in compat.SUCCESS_SCRIPT_MIRRORS)
            and compat.results_in_streams(job)
            and self._own_cleanup
            and not job.repeats_left
            and not getattr(job, "has_rate_limit", False)
            and job.started_at is not None
            and job.ended_at is not None
            and job.get_result_ttl(worker.default_result_ttl) != 0
        )

    def _record_success(self, running: RunningJob, by_rq: Callable[[], Any]) -> None:
        """rq's ``handle_job_success``, with no dependents, as one call of ``lua/success.lua``."""
        worker, job, execution = self.worker, running.job, running.execution
        result_ttl = job.get_result_ttl(worker.default_result_ttl)
        job_fields = [word for pair in compat.finished_fields(job, running.ended_hash).items() for word in pair]
        result = compat.success_result(job, worker.name, execution)
        result_fields = [word for pair in result.serialize().items() for word in pair]
        score = result_ttl if result_ttl < 0 else int(time.time()) + result_ttl  # rq's BaseRegistry.add
        registry_key, worker_executions_key = compat.execution_keys(execution)
        keys = (job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id),
                job.finished_job_registry.key, execution.key, job.started_job_registry.key, registry_key,
                worker_executions_key or job.key)  # fmt: skip
        args = (result_ttl, "+inf" if score == -1 else score, execution.composite_key, execution.id, job.id,
                len(job_fields), *job_fields, *result_fields)  # fmt: skip
        if self._call(_SUCCESS, keys, args) is None:  # it has dependents now
            by_rq()
            return
        if not compat.EXPLICIT_EXECUTIONS:
            worker.set_current_job_id(None)  # as rq 2's cleanup_execution: the tick writes it
        took = job.ended_at - job.started_at
        worker.increment_successful_job_count()
        worker.increment_total_working_time(took)
        if worker.log_job_description:
            worker.log.info("Successfully completed %s job in %ss on worker %s", job.description, took, worker.name)
        else:
            worker.log.info("Successfully completed job %s in %ss on worker %s", job.id, took, worker.name)

    def _call(self, script: lua.LuaScript, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """One of this module's scripts, coalesced with other greenlets' calls; the first error among
        its commands' replies is raised (the script's reply), as ``pipeline.execute()`` would."""
        return self.worker.connection.coalescer.evalsha(script.sha, script.source, len(keys), *keys, *args)

    @staticmethod
    def note_end(job: Any) -> None:
        """rq's ``handle_execution_ended`` in memory; its HSET of the last heartbeat waits for
        :meth:`add_last_heartbeat`."""
        job.ended_at = now()
        job.last_heartbeat = now()

    def add_last_heartbeat(self, job: Any, pipeline: Any) -> None:
        """First in an outcome transaction, where rq's own HSET would have come: the outcome may delete
        the job hash (a result TTL of 0), and a later HSET would create it again."""
        if self.jobs.own(job) is None or job.ended_at is None or job.last_heartbeat is None:
            return
        pipeline.hset(job.key, "last_heartbeat", utcformat(job.last_heartbeat))
        compat.move_last_command_first(pipeline)

    def outcome_recorded(self, running: RunningJob, on_primary: bool = False) -> bool:
        """Whether Redis has the outcome of ``running``'s run.  False also when it lacked the run's
        start: that start is written back before this returns, for the outcome to be recorded again.

        ``on_primary``: read from a primary only.  After a failover a pooled connection (or a
        sentinel that has not heard yet) may still lead to the demoted server, which serves reads of
        what it is about to discard; on a replica the pool is dropped and ConnectionError raised."""
        worker, job, execution = self.worker, running.job, running.execution
        if self._outcome_recorded_script is None:
            self._outcome_recorded_script = worker.connection.register_script(_OUTCOME_RECORDED.source)
        queue = running.queue
        keys = [job.key, job.started_job_registry.key, queue.key, queue.intermediate_queue_key]
        started_at = utcformat(job.started_at) if job.started_at else ""
        registry_score = time.time() + worker.get_heartbeat_ttl(job)
        args = [execution.composite_key, job.id, started_at, worker.name, registry_score]
        with worker.connection.pipeline(transaction=False) as pipeline:
            if on_primary:
                pipeline.execute_command("ROLE")
            self._outcome_recorded_script(keys=keys, args=args, client=pipeline)
            replies = pipeline.execute(raise_on_error=False)  # a replica refuses the script's writes: ROLE first
        role, recorded = replies if on_primary else (None, *replies)
        if isinstance(role, Exception):
            raise role
        if role is not None and as_text(role[0]) != "master":
            worker.connection.connection_pool.disconnect()
            raise redis.exceptions.ConnectionError(f"reached a {as_text(role[0])}, not the primary")
        if isinstance(recorded, Exception):  # out of memory writing a lost start back: the caller waits
            raise recorded
        if recorded == -1:
            worker.log.warning("Worker %s: Redis had lost the start of job %s too (a failover?), and had it "
                               "queued again; its start is written back", worker.name, job.id)  # fmt: skip
        return bool(recorded == 1)
