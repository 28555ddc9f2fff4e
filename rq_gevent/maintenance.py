"""rq's maintenance (registry clean-ups every ``maintenance_interval``), made safe for a worker that
others share a queue with: an error in it is logged and retried at the next interval, never allowed
to stop the worker, and what rq's clean-up would get wrong is handled first.

* An id in a queue's intermediate list whose key is not a job hash made rq's clean-up of that list
  raise on the first of them, every time, and never reach the ids after it: such ids are dropped.
* rq fails a job whose id it finds in ``:intermediate`` for over a minute.  A job popped but never
  started (its worker died in between) is requeued instead, up to ``compat.MAX_REQUEUES`` times;
  the stale id of a job that has moved on (finished, failed, running...) is only removed.
* rq cleans the queues one after another and stops at the first error: a queue with a key of the wrong
  type (its started registry a string, say) kept every queue after it from being cleaned (their
  abandoned jobs never failed or requeued) and left its maintenance lock held.  Each queue is cleaned
  on its own: its lock is released whatever happens, a key of the wrong type is bad input (one ERROR
  line naming the key and its type, the queue skipped for ``bad_queue_skip_seconds``,
  :mod:`rq_gevent.bad_queues`), any other error is logged with its traceback, and the next queue is
  cleaned.  Only Redis being away ends the round.
* rq times the interval with the wall clock (``now() - last_cleaned_at``), so a step back by an hour
  (NTP, a restored VM) would postpone every clean-up, abandoned jobs' included, by an hour: the
  interval is timed on the monotonic clock instead.
* rq's clean-up of an abandoned job runs its failure callback here, outside the job's greenlet:
  exception messages logged meanwhile are withheld (:mod:`rq_gevent.job_code_outside`).
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from rq.utils import as_text, now

from . import compat, job_code_outside
from .bad_queues import BadQueues
from .redis_waits import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from .worker import GeventWorker


class Maintenance:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker
        self._ran_at: float | None = None  # time.monotonic()
        self.bad_queues = BadQueues(worker.name, worker.log, worker.bad_queue_skip_seconds, doing="clean up",
                                    expected_types=compat.maintenance_keys)  # fmt: skip

    def due(self) -> bool:
        """rq's ``should_run_maintenance_tasks``: at start, then every ``maintenance_interval`` s."""
        return self._ran_at is None or time.monotonic() - self._ran_at > self.worker.maintenance_interval

    def cleaned_at(self, when: datetime.datetime | None) -> None:
        """The worker's ``last_cleaned_at`` was set: time the next run from it (on the monotonic clock)."""
        if when is None:
            self._ran_at = None
            return
        if when.tzinfo is None:  # set by hand without a time zone: taken as UTC, as rq's now() is
            when = when.replace(tzinfo=datetime.UTC)
        self._ran_at = time.monotonic() - max(0.0, time.time() - when.timestamp())

    def run(self, rq_maintenance: Any) -> None:
        worker = self.worker
        try:
            rq_maintenance()  # its clean_registries() is clean_queues()
        except REDIS_UNAVAILABLE:
            raise
        except Exception:
            worker.log.error("Worker %s: maintenance failed; retrying in %s s", worker.name,
                             worker.maintenance_interval, exc_info=True)  # fmt: skip
            worker.last_cleaned_at = now()
        self._ran_at = time.monotonic()

    def clean_queues(self, queues: list[Any]) -> None:
        """rq's ``clean_registries`` for each of ``queues`` but those skipped as bad, each on its own."""
        worker = self.worker
        for queue in self.bad_queues.usable(queues):
            try:
                self._clean(queue)
            except REDIS_UNAVAILABLE:
                raise
            except Exception:
                if not self.bad_queues.skip_any_found(worker.connection, [queue]):
                    worker.log.error("Worker %s: maintenance of queue %s failed; retrying in %s s", worker.name,
                                     queue.name, worker.maintenance_interval, exc_info=True)  # fmt: skip

    def _clean(self, queue: Any) -> None:
        self._drop_ids_that_are_not_jobs(queue)
        # If several workers share the queue, one of them cleans it.
        if not queue.acquire_maintenance_lock():
            return
        try:
            with job_code_outside.rq_maintenance():  # it may run abandoned jobs' failure callbacks
                compat.clean_queue(self.worker, queue)
        finally:
            queue.release_maintenance_lock()

    def _drop_ids_that_are_not_jobs(self, queue: Any) -> None:
        job_ids = queue.intermediate_queue.get_job_ids()
        if not job_ids:
            return
        with self.worker.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.type(self.worker.job_class.key_for(job_id))
            key_types = pipeline.execute()
        for job_id, key_type in zip(job_ids, key_types, strict=True):
            if as_text(key_type) not in ("hash", "none"):
                self.worker.dequeuer.drop_non_job(queue, job_id)

    def handled_failure(self, job: Any, queue: Any, exc_string: str) -> bool:
        """rq's maintenance is about to fail ``job`` as stuck in an intermediate list: True if that
        was dealt with here instead."""
        worker = self.worker
        if compat.left_behind_in_intermediate(job, exc_string):
            worker.log.info("Worker %s: stale id of job %s (%s) in the intermediate list", worker.name, job.id,
                            job.get_status(refresh=False))  # fmt: skip
            return True
        if compat.never_started(job, exc_string):
            compat.count_requeue(job)
            worker.outcomes.requeue(job, queue, "dequeued but never started")
            return True
        return False
