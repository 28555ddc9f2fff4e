"""rq's own writes for a job's start and end, the same keys and values, in fewer round trips.

This is the one module (with :mod:`rq_gevent.worker_writes`, the heartbeat script in
:mod:`rq_gevent.compat` and the transaction script of :mod:`rq_gevent.transactions`) that writes rq's
state itself rather than through rq's methods; a test
compares the Redis state it leaves with what rq's ``SimpleWorker`` leaves, on every rq version.

* **Start, one pipeline instead of two or three round trips.**  rq creates the execution (one
  pipeline), marks the job started (a second) and, before rq 3, makes the job key persistent in
  ``Job.perform`` (a PERSIST).  Here the execution's pipeline is held and the job's writes and the
  PERSIST join it; the worker-level writes of the start (its heartbeat, ``current_job``) go to the
  once-a-second tick and the heartbeat greenlet.
* **Only a job still queued starts.**  The start applies only if the job hash still exists with
  status queued: a job cancelled or deleted after its pop (rq's ``cancel()`` and ``delete()`` do not
  look in ``:intermediate``) is not run; its id leaves ``:intermediate``.
* **End, one round trip fewer.**  rq writes the job's last heartbeat (an HSET on its own) just
  before the outcome transaction; here it is the first command of that transaction.
* **Is the outcome there?**  After Redis failed or was replaced, :meth:`JobWrites.outcome_recorded`
  tells whether the server has a run's outcome.  A failover can lose the run's start with its outcome
  (the new primary then has the job queued, its id in the queue or the intermediate list, as before
  the run): the start is written back then, so that recording the outcome again leaves the job as
  rq would, and not queued to run again or to wait for rq's maintenance.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis.exceptions
from rq.job import Job
from rq.utils import as_text, now
from rq.worker import Worker, WorkerStatus

from . import compat, transactions
from .redis_waits import REDIS_UNAVAILABLE
from .running import Phase, RunningJob
from .speedups import utcformat

if TYPE_CHECKING:
    from .worker import GeventWorker


# Whether a server has the outcome of one run, atomically.  rq's outcome transactions (success,
# failure, retry, stop) and its clean-up of an abandoned job each remove the execution from the started
# registry; a server that never had the run's start lacks it too, and still has the job queued with
# another start (an immediate retry leaves it queued with this one).  Then the start is written back.
# KEYS: job hash, started registry, queue, intermediate list.
# ARGV: execution's composite key, job id, the run's started_at, worker name, started-registry score.
# Returns 1: recorded; 0: started, not recorded; -1: neither, and the start is written back now.
_OUTCOME_RECORDED = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local job = redis.call('HMGET', KEYS[1], 'status', 'started_at')
if job[1] ~= 'queued' or job[2] == ARGV[3] then return 1 end
redis.call('LREM', KEYS[3], 0, ARGV[2])
redis.call('LREM', KEYS[4], 0, ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[3], 'worker_name', ARGV[4],
           'last_heartbeat', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return -1
"""


class JobWrites:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker
        self._outcome_recorded_script: Any = None

    def create_execution(self, job: Any) -> Any:
        """rq's execution (and BUSY, if the worker was idle), on a pipeline held for :meth:`mark_started`."""
        worker = self.worker
        running = worker.jobs.own(job)
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
        running = worker.jobs.own(job)
        held = running.start_pipeline if running is not None else None
        if running is not None:
            running.start_pipeline = None
        if held is None:
            with transactions.one_trip():
                held = worker.connection.pipeline()
        try:
            with held as pipeline:
                transactions.only_if_queued(pipeline, job.key)
                if type(job).heartbeat is not Job.heartbeat:  # else rq's HSET, which the next one overwrites
                    job.heartbeat(now(), worker.get_heartbeat_ttl(job), pipeline=pipeline)
                job.prepare_for_execution(worker.name, pipeline=pipeline)
                if remove_from_intermediate_queue:
                    queue = worker.queue_class(job.origin, connection=worker.connection)
                    pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
                pipeline.persist(job.key)
                pipeline.execute()
        except REDIS_UNAVAILABLE:
            if running is not None:
                running.failed_before_start()
            raise
        except transactions.JobNotQueued:
            if running is not None:
                running.withdrawn()
            queue = worker.queue_class(job.origin, connection=worker.connection)
            worker.connection.lrem(queue.intermediate_queue_key, 1, job.id)
            raise
        compat.skip_persist_in_perform(job)
        worker.worker_writes.current_job_changed = True
        if running is not None:
            running.phase = Phase.STARTED

    @staticmethod
    def note_end(job: Any) -> None:
        """rq's ``handle_execution_ended`` in memory; its HSET of the last heartbeat waits for
        :meth:`add_last_heartbeat`."""
        job.ended_at = now()
        job.last_heartbeat = now()

    def add_last_heartbeat(self, job: Any, pipeline: Any) -> None:
        """First in an outcome transaction, where rq's own HSET would have come: the outcome may delete
        the job hash (a result TTL of 0), and a later HSET would create it again."""
        if self.worker.jobs.own(job) is None or job.ended_at is None or job.last_heartbeat is None:
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
            self._outcome_recorded_script = worker.connection.register_script(_OUTCOME_RECORDED)
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
