"""Worker-hash writes that rq makes once per job, made once a second instead.

rq's counters (``successful_job_count``, ``failed_job_count``, ``total_working_time``) and, before
rq 3, ``current_job`` are written per job; here they add up in memory and a tick writes them at
most once a second (and at shutdown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gevent
import redis.exceptions
from rq.worker import Worker

from . import compat
from .background import Background
from .redis_waits import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from .worker import GeventWorker

# Worker-level writes (counters, current_job) reach Redis at most this often.
WORKER_WRITES_SECONDS = 1.0


class WorkerWrites:
    """What rq would have written to the worker hash since the last tick."""

    def __init__(self) -> None:
        self.successful = 0
        self.failed = 0
        self.working_seconds = 0.0
        self.current_job_changed = False

    def pending(self) -> bool:
        return bool(self.successful or self.failed or self.working_seconds or self.current_job_changed)

    def add_job(self, successful: int = 0, failed: int = 0, working_seconds: float = 0.0) -> None:
        self.successful += successful
        self.failed += failed
        self.working_seconds += working_seconds

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


class WorkerWritesTick(Background):
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker

    def run(self) -> None:
        while True:
            gevent.sleep(WORKER_WRITES_SECONDS)
            try:
                self.flush()
            except redis.exceptions.RedisError:
                pass  # kept for the next tick; the heartbeat reports Redis being away

    def flush(self) -> None:
        """One pipeline: the counters added up since the last call, and ``current_job``."""
        worker = self.worker
        writes, worker.worker_writes = worker.worker_writes, WorkerWrites()
        if not writes.pending():
            return
        try:
            with worker.connection.pipeline(transaction=False) as pipeline:
                writes.queue_on(pipeline, worker.key)
                compat.write_current_job(Worker, worker, worker.jobs.newest_id(), pipeline)
                pipeline.execute()
        except REDIS_UNAVAILABLE:
            worker.worker_writes.add(writes)  # kept for the next tick
            raise

    def stop(self) -> None:
        super().stop()
        try:
            self.flush()
        except redis.exceptions.RedisError as exc:
            self.worker.log.warning("Worker %s: could not write its job counters (%s)", self.worker.name, exc)
