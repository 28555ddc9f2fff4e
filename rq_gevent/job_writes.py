"""rq's own writes for a job's start and end, the same keys and values, in fewer round trips.

This is the one module (with :mod:`rq_gevent.worker_writes` and the heartbeat script in
:mod:`rq_gevent.compat`) that writes rq's state itself rather than through rq's methods; a test
compares the Redis state it leaves with what rq's ``SimpleWorker`` leaves, on every rq version.

* **Start, one pipeline instead of two or three round trips.**  rq creates the execution (one
  pipeline), marks the job started (a second) and, before rq 3, makes the job key persistent in
  ``Job.perform`` (a PERSIST).  Here the execution's pipeline is held and the job's writes and the
  PERSIST join it; the worker-level writes of the start (its heartbeat, ``current_job``) go to the
  once-a-second tick and the heartbeat greenlet.
* **End, one round trip fewer.**  rq writes the job's last heartbeat (an HSET on its own) just
  before the outcome transaction; here it is the first command of that transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rq.utils import now, utcformat
from rq.worker import Worker, WorkerStatus

from . import compat
from .redis_waits import REDIS_UNAVAILABLE
from .running import Phase

if TYPE_CHECKING:
    from .worker import GeventWorker


class JobWrites:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker

    def create_execution(self, job: Any) -> Any:
        """rq's execution (and BUSY, if the worker was idle), on a pipeline held for :meth:`mark_started`."""
        worker = self.worker
        running = worker.jobs.own(job)
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
        If Redis fails here, the job has not run."""
        worker = self.worker
        running = worker.jobs.own(job)
        held = running.start_pipeline if running is not None else None
        if running is not None:
            running.start_pipeline = None
        try:
            with held or worker.connection.pipeline() as pipeline:
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
