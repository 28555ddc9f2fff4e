"""Recording how a job ended while Redis may be away, and putting back jobs that did not run.

rq records each outcome (success, failure, retry, stop) in one transaction.  If Redis is unreachable
then, the step waits for it and runs again, unless it had applied after all (only its answer was
lost): a job whose code ran is never left to rq's reaper as abandoned because Redis was away when
it ended.  A job that never started (Redis failed rq's bookkeeping before it was marked started), or
that a cold shutdown interrupted, goes back to the front of its queue: no failure, no retry used.

An outcome Redis acknowledged can still be lost: a primary sends writes to its replica after
acknowledging them, so a failover (Sentinel's, or a ``kill -9`` of the primary) drops the last moments
of them, as does the last second of an ``appendfsync everysec`` restart.  So the outcomes recorded in
the ``RECHECK_SECONDS`` before an outage are checked once Redis answers again, and recorded again where
the new server lacks them.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
from rq.utils import as_text

from . import compat
from .metrics import NoMetrics
from .redis_waits import REDIS_UNAVAILABLE, Backoff, why_unavailable
from .running import Phase, RunningJob, RunningJobs

# Outcomes recorded this long before an outage began are checked again after it: more than a
# primary's ``min-replicas-max-lag`` (the Redis docs' example is 10 s), after which it refuses writes.
RECHECK_SECONDS = 15.0
# At most this many recent outcomes are kept for that (the oldest are dropped first).
RECHECK_LIMIT = 20_000
HASH_GONE = "its hash is gone (deleted, or expired)"
# Between two attempts to record an outcome that Redis refused (the first retry is at once).
RETRY_PAUSE = 0.5


@dataclass
class _Recorded:
    at: float  # time.monotonic()
    running: RunningJob
    record: Callable[[], Any]
    before: dict[str, Any]
    was_stopped: bool


class Outcomes:
    """``wait_for_redis(call, to_do)`` calls until Redis answers (a cold shutdown gives up);
    ``outcome_recorded(running, on_primary=False)`` tells whether Redis has a job's outcome
    (``JobWrites.outcome_recorded``); ``cleanup_execution`` is the worker's (rq's) removal of an
    execution, in a requeue's transaction; ``cold`` is set by a cold shutdown."""

    def __init__(self, connection: Any, name: str, log: logging.Logger, jobs: RunningJobs,
                 wait_for_redis: Callable[[Callable[[], Any], str], Any], cold: gevent.event.Event,
                 outcome_recorded: Callable[..., bool], cleanup_execution: Callable[..., None],
                 metrics: NoMetrics) -> None:  # fmt: skip
        self.connection, self.name, self.log, self.jobs, self.metrics = connection, name, log, jobs, metrics
        self._wait_for_redis, self._cold = wait_for_redis, cold
        self._outcome_recorded, self._cleanup_execution = outcome_recorded, cleanup_execution
        self._recent: collections.deque[_Recorded] = collections.deque(maxlen=RECHECK_LIMIT)

    def record(self, running: RunningJob | None, record: Callable[[], Any], confirm: bool = False) -> None:
        """Run ``record``, one of rq's steps that record how ``running`` ended, until Redis has it.

        ``confirm`` checks even when no error was raised (rq's ``handle_job_failure`` swallows them).
        Without a job of our own that ran (rq's maintenance failing an abandoned job), just run it.
        """
        if running is None or running.execution is None or not running.ran:
            record()
            return
        job = running.job
        before = compat.snapshot(job)
        was_stopped = running.stopped
        retried = False
        # A primary that answers reads but refuses writes (NOREPLICAS until a replica follows it after a
        # failover) fails each attempt at once: the first retry is at once, then every RETRY_PAUSE.
        backoff = Backoff(first=0.0, ceiling=RETRY_PAUSE)
        while True:
            try:
                record()
                if not confirm:
                    break
            except REDIS_UNAVAILABLE as exc:
                if self._cold.is_set():
                    raise
                if not retried:
                    self.log.warning("Worker %s: %s; will record the outcome of job %s once it answers",
                                     self.name, why_unavailable(exc), job.id)  # fmt: skip
            recorded = self._wait_for_redis(
                functools.partial(self._outcome_recorded, running), f"record the outcome of job {job.id}"
            )
            if recorded:
                break
            compat.restore_after_retried_step(job, before)
            running.stopped = was_stopped
            retried = True
            backoff.pause(self._cold)
        if retried:
            self.log.warning("Worker %s: outcome of job %s recorded now that Redis answers", self.name, job.id)
        self._remember(_Recorded(time.monotonic(), running, record, before, was_stopped))

    def _remember(self, recorded: _Recorded) -> None:
        recent = self._recent
        while recent and recent[0].at < recorded.at - RECHECK_SECONDS * 2:
            recent.popleft()
        recent.append(recorded)

    def recheck_after_outage(self, down_since: float) -> None:
        """Redis answers again after an outage that began at ``down_since`` (monotonic): check, in a
        greenlet of its own, the outcomes recorded shortly before it."""
        due = [entry for entry in self._recent if entry.at >= down_since - RECHECK_SECONDS]
        if due:
            gevent.spawn(self._recheck, due)

    def _recheck(self, due: list[_Recorded]) -> None:
        again = 0
        for entry in due:
            job = entry.running.job
            try:
                check = functools.partial(self._outcome_recorded, entry.running, on_primary=True)
                if self._wait_for_redis(check, f"check the outcome of job {job.id}"):
                    continue
                compat.restore_after_retried_step(job, entry.before)
                entry.running.stopped = entry.was_stopped
                with self.jobs.recording_again(entry.running):
                    self._wait_for_redis(entry.record, f"record the outcome of job {job.id} again")
            except Exception:
                self.log.error("Worker %s: could not check the outcome of job %s", self.name, job.id, exc_info=True)
                continue
            again += 1
            self.log.warning("Worker %s: the outcome of job %s was lost with the Redis it was written to (a "
                             "failover?); recorded again", self.name, job.id)  # fmt: skip
        self.log.info("Worker %s: checked %d outcomes recorded before the Redis outage; %d recorded again",
                      self.name, len(due), again)  # fmt: skip

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
