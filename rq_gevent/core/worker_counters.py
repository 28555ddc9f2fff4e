"""Worker-hash writes that rq makes once per job, made once a second instead.

rq's counters (``successful_job_count``, ``failed_job_count``, ``total_working_time``) and, before
rq 3, ``current_job`` are written per job; here they add up in memory and a tick writes them at
most once a second (and at shutdown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
import redis.exceptions

from ..plumbing.redis_waits import REDIS_UNAVAILABLE
from .background import Background

# Worker-level writes (counters, current_job) reach Redis at most this often.
WORKER_WRITES_SECONDS = 1.0


class _Pending:
    """What rq would have written to the worker hash since the last tick."""

    def __init__(self) -> None:
        self.successful = 0
        self.failed = 0
        self.working_seconds = 0.0
        self.current_job_changed = False

    def __bool__(self) -> bool:
        return bool(self.successful or self.failed or self.working_seconds or self.current_job_changed)

    def add(self, other: _Pending) -> None:
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


class WorkerCounters(Background):
    """The worker hash ``key``'s counters, and ``current_job`` (written by ``write_current_job(pipeline)``,
    rq's for the newest running job), written by a tick."""

    def __init__(self, connection: Any, key: str, name: str, log: logging.Logger,
                 write_current_job: Callable[[Any], None]) -> None:  # fmt: skip
        self.connection, self.key, self.name, self.log = connection, key, name, log
        self._write_current_job = write_current_job
        self._pending = _Pending()
        self._flushing = gevent.lock.Semaphore()

    def add_job(self, successful: int = 0, failed: int = 0, working_seconds: float = 0.0) -> None:
        pending = self._pending
        pending.successful += successful
        pending.failed += failed
        pending.working_seconds += working_seconds

    def current_job_changed(self) -> None:
        """The next tick writes ``current_job`` (the running jobs changed, or the hash was re-created)."""
        self._pending.current_job_changed = True

    def run(self) -> None:
        while True:
            gevent.sleep(WORKER_WRITES_SECONDS)
            with self._flushing:
                try:
                    self.flush()
                except redis.exceptions.RedisError:
                    pass  # kept for the next tick; the heartbeat reports Redis being away

    def flush(self) -> None:
        """One pipeline: the counters added up since the last call, and ``current_job``."""
        writes, self._pending = self._pending, _Pending()
        if not writes:
            return
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                writes.queue_on(pipeline, self.key)
                self._write_current_job(pipeline)
                pipeline.execute()
        except REDIS_UNAVAILABLE:
            self._pending.add(writes)  # kept for the next tick
            raise

    def stop(self) -> None:
        # A tick's flush holds writes it took out of _pending: it completes before the loop is killed,
        # or they would be lost (killed while waiting for a pooled connection, say).
        with self._flushing:
            super().stop()
        try:
            self.flush()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not write its job counters (%s)", self.name, exc)
