"""Fewer Redis round trips per job, with the same keys and values rq's own worker leaves.

rq's worker makes 18 round trips per job; a forking worker has nothing better to do meanwhile, but
in a greenlet worker each one costs CPU that 100 jobs share.  :class:`FastPath` sits between
:class:`~rq_gevent.worker.GeventWorker` and ``rq.Worker`` and changes only *when* rq's writes reach
Redis, never what they are:

* **Start of a job, one pipeline instead of three round trips.**  rq creates the execution (one
  pipeline), marks the job started (a second) and, in ``Job.perform``, makes the job key persistent
  (a PERSIST).  Here the execution's pipeline is held and the job's writes and the PERSIST join it.
* **End of a job, one round trip fewer.**  rq writes the job's last heartbeat (an HSET on its own)
  just before the outcome transaction; here it is part of that transaction.
* **Worker-level writes once a second, not once per job.**  rq's counters (``successful_job_count``,
  ``failed_job_count``, ``total_working_time``), ``current_job``, the worker's own heartbeat and its
  BUSY state are written per job; here the counters add up in memory and a tick writes them,
  with ``current_job``, at most once a second (and at shutdown); BUSY is written only when the
  worker was not busy already.  The ``rq suspend`` flag is read at most once a second.
* **Dequeue, up to ``DEQUEUE_BATCH`` jobs per round trip** (one queue, Redis >= 6.2): a script
  moves ids from the queue to rq's ``:intermediate`` list, as rq's own LMOVE does, and returns each
  job's hash with it; the blocking LMOVE is used only when the queue is empty.
* **rq's serializer check, skipped for rq's own serializers** (:func:`compat.resolve_rq_serializers_quickly`):
  CPU, not round trips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import gevent
import redis.exceptions
from rq.suspension import is_suspended
from rq.utils import now, utcformat
from rq.worker import Worker, WorkerStatus

from . import compat
from .redis_waits import REDIS_UNAVAILABLE

# Worker-level writes (counters, current_job) reach Redis at most this often.
WORKER_WRITES_SECONDS = 1.0
# ``rq suspend`` is noticed within this many seconds.
SUSPENSION_CHECK_SECONDS = 1.0
# At most this many jobs are taken per dequeue round trip (never more than the free slots).
DEQUEUE_BATCH = 20

# KEYS: queue, intermediate list.  ARGV: how many, job key prefix.
# Returns id1, hash1 (flat field/value list), id2, hash2...
_POP_WITH_HASHES = """
local popped = {}
for _ = 1, tonumber(ARGV[1]) do
    local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
    if not id then break end
    popped[#popped + 1] = id
    -- HGETALL's only error is WRONGTYPE: sent back as nil for that id, not as the script's error.
    local fields = redis.pcall('HGETALL', ARGV[2] .. id)
    if fields.err then fields = false end
    popped[#popped + 1] = fields
end
return popped
"""


class WorkerWrites:
    """Worker-hash writes rq makes once per job, added up until the next tick."""

    def __init__(self) -> None:
        self.successful = 0
        self.failed = 0
        self.working_seconds = 0.0
        self.current_job_changed = False

    def pending(self) -> bool:
        return bool(self.successful or self.failed or self.working_seconds or self.current_job_changed)

    def add(self, other: WorkerWrites) -> None:
        self.successful += other.successful
        self.failed += other.failed
        self.working_seconds += other.working_seconds
        self.current_job_changed = self.current_job_changed or other.current_job_changed

    def queue_on(self, pipeline: Any, key: str) -> None:
        if self.successful:
            pipeline.hincrby(key, "successful_job_count", self.successful)
        if self.failed:
            pipeline.hincrby(key, "failed_job_count", self.failed)
        if self.working_seconds:
            pipeline.hincrbyfloat(key, "total_working_time", self.working_seconds)


class FastPath(Worker):
    """The round-trip savings; see the module docstring.  Not a worker on its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        compat.resolve_rq_serializers_quickly()
        super().__init__(*args, **kwargs)
        self._worker_writes = WorkerWrites()
        self._suspension_checked_at = float("-inf")
        self._suspended_flag = False
        self._pop_script: Any = None
        self._worker_writes_greenlet: gevent.Greenlet | None = None

    # -- start of a job -------------------------------------------------------------------------------

    def prepare_execution(self, job: Any) -> Any:
        """rq's execution, queued on a pipeline that :meth:`prepare_job_execution` runs."""
        pipeline = self.connection.pipeline()
        self.execution = compat.create_execution(job, self.get_heartbeat_ttl(job), pipeline, self.name)
        if self.get_state() != WorkerStatus.BUSY:
            # From idle to busy: what ``rq info`` shows changes now, not at the next tick.
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            Worker.set_current_job_id(self, job.id, pipeline=pipeline)
            self.set_current_job_working_time(0, pipeline=pipeline)
        self._local.start_pipeline = pipeline
        return self.execution

    def prepare_job_execution(self, job: Any, remove_from_intermediate_queue: bool = False) -> None:
        """rq's job writes (the worker-level ones go to the tick), plus ``Job.perform``'s PERSIST."""
        pipeline = getattr(self._local, "start_pipeline", None) or self.connection.pipeline()
        self._local.start_pipeline = None
        with pipeline:
            job.heartbeat(now(), self.get_heartbeat_ttl(job), pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            if remove_from_intermediate_queue:
                pipeline.lrem(
                    self.queue_class(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id
                )
            pipeline.persist(job.key)
            pipeline.execute()
        compat.skip_persist_in_perform(job)
        self._worker_writes.current_job_changed = True

    # -- end of a job ---------------------------------------------------------------------------------

    def handle_execution_ended(self, job: Any, queue: Any, heartbeat_ttl: int) -> None:
        """rq's last heartbeat of the job, written with the outcome (see :meth:`cleanup_execution`)."""
        job.ended_at = now()
        job.last_heartbeat = now()
        self._local.ended_job_id = job.id

    def cleanup_execution(self, job: Any, pipeline: Any) -> None:
        """Every outcome transaction calls this: it carries the job's last heartbeat too."""
        if getattr(self._local, "ended_job_id", None) == job.id and job.last_heartbeat is not None:
            pipeline.hset(job.key, "last_heartbeat", utcformat(job.last_heartbeat))
            # First in the transaction, where rq's own HSET would have come: the outcome may delete
            # the job hash (a result TTL of 0), and a later HSET would create it again.
            pipeline.command_stack.insert(0, pipeline.command_stack.pop())
        super().cleanup_execution(job, pipeline)

    # -- worker-level writes --------------------------------------------------------------------------

    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        self._worker_writes.successful += 1

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        self._worker_writes.failed += 1

    def increment_total_working_time(self, job_execution_time: timedelta, pipeline: Any = None) -> None:
        self._worker_writes.working_seconds += job_execution_time.total_seconds()

    def set_current_job_id(self, job_id: str | None = None, pipeline: Any = None) -> None:
        """While jobs run, ``current_job`` is the newest of them, written by the tick."""
        if self._running:
            self._worker_writes.current_job_changed = True
            return
        super().set_current_job_id(job_id, pipeline=pipeline)

    def write_worker_state(self) -> None:
        """One pipeline: the counters added up since the last call, and ``current_job``."""
        writes, self._worker_writes = self._worker_writes, WorkerWrites()
        if not writes.pending():
            return
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                writes.queue_on(pipeline, self.key)
                newest = next(reversed(self._running), None)
                Worker.set_current_job_id(self, newest, pipeline=pipeline)
                pipeline.execute()
        except REDIS_UNAVAILABLE:
            self._worker_writes.add(writes)  # kept for the next tick
            raise

    def _write_worker_state_every_second(self) -> None:
        while True:
            gevent.sleep(WORKER_WRITES_SECONDS)
            try:
                self.write_worker_state()
            except redis.exceptions.RedisError:
                pass  # kept for the next tick; the heartbeat reports Redis being away

    def start_worker_writes(self) -> None:
        self._worker_writes_greenlet = gevent.spawn(self._write_worker_state_every_second)

    def stop_worker_writes(self) -> None:
        if self._worker_writes_greenlet is not None:
            self._worker_writes_greenlet.kill()
        try:
            self.write_worker_state()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not write its job counters (%s)", self.name, exc)

    # -- suspension -----------------------------------------------------------------------------------

    def is_suspended_now(self, max_age: float = SUSPENSION_CHECK_SECONDS) -> bool:
        """rq's ``rq suspend`` flag, read at most every ``max_age`` seconds (the heartbeat keeps the
        worker alive).  Read it afresh before a blocking pop, which may wait long."""
        if time.monotonic() - self._suspension_checked_at >= max_age or self._suspended_flag:
            self._suspended_flag = bool(is_suspended(self.connection))
            self._suspension_checked_at = time.monotonic()
        return self._suspended_flag

    # -- dequeue --------------------------------------------------------------------------------------

    def pop_with_hashes(self, queue: Any, count: int) -> Iterator[tuple[str, dict[bytes, bytes] | None]]:
        """Move up to ``count`` ids from ``queue`` to its ``:intermediate`` list, with each job's hash
        (empty if the job was deleted, ``None`` if its key is not a hash), in one round trip."""
        if self._pop_script is None:
            self._pop_script = self.connection.register_script(_POP_WITH_HASHES)
        prefix = self.job_class.redis_job_namespace_prefix
        popped = self._pop_script(keys=[queue.key, queue.intermediate_queue_key], args=[count, prefix],
                                  client=self._dequeue_connection)  # fmt: skip
        for index in range(0, len(popped), 2):
            fields = popped[index + 1]
            yield popped[index].decode(), None if fields is None else dict(zip(fields[::2], fields[1::2], strict=True))
