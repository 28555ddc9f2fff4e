"""Retries and requeues, as the worker keeps them on top of rq's own ``Retry``.

* **Attempts.**  Each run of a job is numbered (:func:`count_attempt`, 1 for the first), for logs,
  Sentry and the job modules; the number rides in ``job.meta``, which rq saves whenever it requeues
  or schedules a retry.  rq itself counts only the retries a job *returned*.
* **Requeues.**  A job that did not run is put back at the front of its queue, with no failure
  recorded and no retry used: one a cold shutdown interrupted, one whose start Redis failed
  (:meth:`Requeues.requeue_when_redis_is_back`), and one rq's maintenance finds popped but never
  started (:func:`never_started`) -- that last one at most ``MAX_REQUEUES`` times, after which rq
  fails it, so a job that kills its worker every time cannot loop forever.
* A retry rq decides (a ``Retry`` policy, a returned ``Retry``) is rq's own ``handle_job_retry``,
  recorded like any outcome (:mod:`rq_gevent.core.outcomes`).  Whether a job module gives up or retries is
  its own choice (``jobs.outcomes``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from rq.utils import as_text

from .. import compat
from ..integrations.metrics import NoMetrics
from ..plumbing.redis_waits import REDIS_UNAVAILABLE
from .running import Phase, RunningJob

ATTEMPT_META_KEY = "rq_gevent_attempt"
REQUEUES_META_KEY = "rq_gevent_requeues"
# A job popped but never started this many times is failed as rq would.
MAX_REQUEUES = 3
HASH_GONE = "its hash is gone (deleted, or expired)"


def count_attempt(job: Any) -> int:
    """Number this run of ``job`` (1 for the first), and remember it in ``job.meta`` (in memory).

    rq counts only retries a job *returned* (``number_of_retries``); retries by a ``Retry`` policy
    just decrement ``retries_left``.  rq saves the whole job, meta included, when it requeues or
    schedules a retry, so the number stored here reaches the next run without a Redis write of its
    own.
    """
    previous = job.meta.get(ATTEMPT_META_KEY)
    previous = previous if isinstance(previous, int) else 0
    attempt = max(previous, job.number_of_retries or 0) + 1
    if not compat.meta_kept_unread(job):
        job.meta[ATTEMPT_META_KEY] = attempt
    return attempt


def never_started(job: Any, exc_string: str) -> bool:
    """rq's maintenance is about to fail ``job`` because it was popped but never started, and it has
    not been requeued for that ``MAX_REQUEUES`` times already: requeue it instead."""
    if not compat.stuck_in_intermediate(exc_string) or compat.withdrawn(job):
        return False
    requeues = job.meta.get(REQUEUES_META_KEY)
    return not isinstance(requeues, int) or requeues < MAX_REQUEUES


def count_requeue(job: Any) -> None:
    """Saved with the job when it is requeued (rq's enqueue saves meta)."""
    requeues = job.meta.get(REQUEUES_META_KEY)
    job.meta[REQUEUES_META_KEY] = (requeues if isinstance(requeues, int) else 0) + 1


class Requeues:
    """Puts jobs that did not run back on their queues.  ``wait_for_redis(call, to_do)`` calls until
    Redis answers; ``cleanup_execution`` is the worker's (rq's) removal of an execution, in the
    requeue's transaction."""

    def __init__(self, connection: Any, name: str, log: logging.Logger,
                 wait_for_redis: Callable[[Callable[[], Any], str], Any], cleanup_execution: Callable[..., None],
                 metrics: NoMetrics) -> None:  # fmt: skip
        self.connection, self.name, self.log, self.metrics = connection, name, log, metrics
        self._wait_for_redis, self._cleanup_execution = wait_for_redis, cleanup_execution

    def never_started(self, job: Any, queue: Any) -> None:
        """rq's maintenance found ``job`` popped but never started (:func:`never_started`)."""
        count_requeue(job)
        self.requeue(job, queue, "dequeued but never started")

    def requeue(self, job: Any, queue: Any, why: str, execution: Any = None, reason: str = "never_started") -> None:
        """Put ``job`` back at the front of its queue as if it had never started.  Its id leaves rq's
        intermediate list (a job interrupted before rq marked it started is still there), and it is
        queued once.

        Only while it is still this worker's to put back (:func:`_taken_over`), checked and written in
        one transaction: after an outage, another host may have recovered and run it meanwhile.
        """

        def requeue_if_still_here(pipeline: Any) -> str:
            taken_over = _taken_over(pipeline, job, self.name)
            pipeline.multi()
            if taken_over:
                if taken_over == HASH_GONE:  # as rq's intermediate-list clean-up does for such an id
                    pipeline.lrem(queue.intermediate_queue_key, 0, job.id)
                return taken_over
            self._cleanup_execution(job, pipeline, execution=execution)
            job.started_at = None
            job.ended_at = None
            job.worker_name = None
            pipeline.lrem(queue.intermediate_queue_key, 0, job.id)
            pipeline.lrem(queue.key, 0, job.id)
            compat.requeue_at_front(queue, job, pipeline)
            return ""

        taken_over = self.connection.transaction(requeue_if_still_here, job.key, value_from_callable=True)
        if taken_over:
            self.log.warning("Worker %s: job %s %s, not requeued: %s", self.name, job.id, why, taken_over)
            return
        self.metrics.requeued(queue.name, reason)
        self.log.warning("Worker %s: job %s %s, requeued at the front of %s", self.name, job.id, why, queue.name)

    def requeue_when_redis_is_back(self, running: RunningJob) -> None:
        """The job never ran because Redis failed rq's bookkeeping: requeue it, retrying until Redis
        answers.  Given up only by a cold shutdown: with one queue the job then waits in rq's
        intermediate list for maintenance; popped from several queues, it would be lost."""
        if running.phase is Phase.REQUEUED:
            return
        requeue = functools.partial(
            self.requeue, running.job, running.queue, "never started (Redis failed)", running.execution
        )
        try:
            self._wait_for_redis(requeue, f"requeue job {running.job.id}")
            running.phase = Phase.REQUEUED
        except REDIS_UNAVAILABLE as exc:
            self.log.error("Worker %s: could not requeue job %s (%s); giving up", self.name, running.job.id, exc)


def _taken_over(pipeline: Any, job: Any, worker_name: str) -> str:
    """Why ``job`` is no longer this worker's to requeue, or ``""``: it must not have started anywhere
    (popped, never started: from one queue its id waits in the intermediate list, from several in no
    list), or be STARTED by this worker; nor be cancelled (``compat.WITHDRAWN_STATUSES``).  A job
    that another worker popped meanwhile is queued twice at worst, and runs once: a worker starts none
    that started or ended elsewhere.  Read on a WATCHing ``pipeline``."""
    fields = pipeline.hmget(job.key, "status", "worker_name")
    status, started_by = (value if value is None else as_text(value) for value in fields)
    if status is None and not pipeline.exists(job.key):
        return HASH_GONE
    if status not in compat.WITHDRAWN_STATUSES or (status == "started" and started_by == worker_name):
        return ""
    return f"taken over meanwhile (now {status}" + (f", by {started_by})" if started_by else ")")
