"""rq's maintenance (registry clean-ups every ``maintenance_interval``), made safe for a worker that
others share a queue with: an error in it is logged and retried at the next interval, never allowed
to stop the worker, and what rq's clean-up would get wrong is handled first.

* An id in a queue's intermediate list whose key is not a job hash made rq's clean-up of that list
  raise on the first of them, every time, and never reach the ids after it: such ids are dropped.
* rq fails a job whose id it finds in ``:intermediate`` for over a minute.  A job popped but never
  started (its worker died in between) is requeued instead, up to ``retries.MAX_REQUEUES`` times;
  the stale id of a job that has moved on (finished, failed, running...) is only removed.
* rq cleans the queues one after another and stops at the first error: a queue with a key of the wrong
  type (its started registry a string, say) kept every queue after it from being cleaned (their
  abandoned jobs never failed or requeued) and left its maintenance lock held.  Each queue is cleaned
  on its own: its lock is released whatever happens, a key of the wrong type is bad input (one ERROR
  line naming the key and its type, the queue skipped for ``bad_queue_skip_seconds``,
  :mod:`rq_gevent.core.bad_queues`), any other error is logged with its traceback, and the next queue is
  cleaned.  Only Redis being away ends the round.
* rq times the interval with the wall clock (``now() - last_cleaned_at``), so a step back by an hour
  (NTP, a restored VM) would postpone every clean-up, abandoned jobs' included, by an hour: the
  interval is timed on the monotonic clock instead.
* rq's clean-up of an abandoned job runs its failure callback here, outside the job's greenlet:
  exception messages logged meanwhile are withheld (:mod:`rq_gevent.core.job_code_outside`).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from rq.utils import as_text

from .. import compat
from ..plumbing.redis_waits import REDIS_UNAVAILABLE
from . import job_code_outside, retries
from .bad_queues import BadQueues


class Maintenance:
    """``interval`` gives rq's ``maintenance_interval`` (read at each use: rq's API lets it change);
    ``clean_queue`` is rq's clean-up of one queue (``compat.clean_queue`` for the worker);
    ``drop_non_job`` removes an id whose key is not a job; ``requeue`` puts back a job that never
    started (``Requeues.never_started``)."""

    def __init__(
        self,
        connection: Any,
        name: str,
        log: logging.Logger,
        job_class: Any,
        interval: Callable[[], float],
        bad_queue_skip_seconds: float,
        clean_queue: Callable[[Any], None],
        drop_non_job: Callable[[Any, str], None],
        requeue: Callable[[Any, Any], None],
    ) -> None:
        self.connection, self.name, self.log, self.job_class = connection, name, log, job_class
        self._interval, self._clean_queue = interval, clean_queue
        self._drop_non_job, self._requeue = drop_non_job, requeue
        self._ran_at: float | None = None  # time.monotonic()
        self.bad_queues = BadQueues(name, log, bad_queue_skip_seconds, doing="clean up",
                                    expected_types=compat.maintenance_keys)  # fmt: skip

    def due(self) -> bool:
        """rq's ``should_run_maintenance_tasks``: at start, then every ``maintenance_interval`` s."""
        return self._ran_at is None or time.monotonic() - self._ran_at > self._interval()

    def cleaned_at(self, when: datetime.datetime | None) -> None:
        """The worker's ``last_cleaned_at`` was set: time the next run from it (on the monotonic clock)."""
        if when is None:
            self._ran_at = None
            return
        if when.tzinfo is None:  # set by hand without a time zone: taken as UTC, as rq's now() is
            when = when.replace(tzinfo=datetime.UTC)
        self._ran_at = time.monotonic() - max(0.0, time.time() - when.timestamp())

    def run(self, rq_maintenance: Callable[[], None]) -> bool:
        """rq's maintenance; False if it failed (logged, tried again after the interval)."""
        ok = True
        try:
            rq_maintenance()  # its clean_registries() is clean_queues()
        except REDIS_UNAVAILABLE:
            raise
        except Exception:
            self.log.error("Worker %s: maintenance failed; retrying in %s s", self.name, self._interval(),
                           exc_info=True)  # fmt: skip
            ok = False
        self._ran_at = time.monotonic()
        return ok

    def clean_queues(self, queues: list[Any]) -> None:
        """rq's ``clean_registries`` for each of ``queues`` but those skipped as bad, each on its own."""
        for queue in self.bad_queues.usable(queues):
            try:
                self._clean(queue)
            except REDIS_UNAVAILABLE:
                raise
            except Exception:
                if not self.bad_queues.skip_any_found(self.connection, [queue]):
                    self.log.error("Worker %s: maintenance of queue %s failed; retrying in %s s", self.name,
                                   queue.name, self._interval(), exc_info=True)  # fmt: skip

    def _clean(self, queue: Any) -> None:
        self._drop_ids_that_are_not_jobs(queue)
        # If several workers share the queue, one of them cleans it.
        if not queue.acquire_maintenance_lock():
            return
        try:
            with job_code_outside.rq_maintenance():  # it may run abandoned jobs' failure callbacks
                self._clean_queue(queue)
        finally:
            queue.release_maintenance_lock()

    def _drop_ids_that_are_not_jobs(self, queue: Any) -> None:
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

    def handled_failure(self, job: Any, queue: Any, exc_string: str) -> bool:
        """rq's maintenance is about to fail ``job`` as stuck in an intermediate list: True if that
        was dealt with here instead."""
        if compat.left_behind_in_intermediate(job, exc_string):
            self.log.info("Worker %s: stale id of job %s (%s) in the intermediate list", self.name, job.id,
                          job.get_status(refresh=False))  # fmt: skip
            return True
        if retries.never_started(job, exc_string):
            self._requeue(job, queue)
            return True
        return False
