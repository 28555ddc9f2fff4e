"""Recording how a job ended while Redis may be away.

rq records each outcome (success, failure, retry, stop) in one transaction.  If Redis is unreachable
then, the step waits for it and runs again, unless it had applied after all (only its answer was
lost): a job whose code ran is never left to rq's reaper as abandoned because Redis was away when
it ended.  (A job that did not run is put back on its queue instead: :mod:`rq_gevent.core.retries`.)

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
from typing import Any

import gevent
import gevent.event

from .. import compat
from ..plumbing.redis_waits import REDIS_UNAVAILABLE, Backoff, why_unavailable
from ..words import plural
from .running import RecordedOutcome, RunningJob, RunningJobs

# Outcomes recorded this long before an outage began are checked again after it: more than a
# primary's ``min-replicas-max-lag`` (the Redis docs' example is 10 s), after which it refuses writes.
RECHECK_SECONDS = 15.0
# At most this many recent outcomes are kept for that (the oldest are dropped first).
RECHECK_LIMIT = 20_000
# Between two attempts to record an outcome that Redis refused (the first retry is at once).
RETRY_PAUSE = 0.5


class Outcomes:
    """``wait_for_redis(call, to_do)`` calls until Redis answers (a cold shutdown gives up);
    ``outcome_recorded(running, on_primary=False)`` tells whether Redis has a job's outcome
    (``JobWrites.outcome_recorded``); ``cold`` is set by a cold shutdown."""

    def __init__(self, name: str, log: logging.Logger, jobs: RunningJobs,
                 wait_for_redis: Callable[[Callable[[], Any], str], Any], cold: gevent.event.Event,
                 outcome_recorded: Callable[..., bool]) -> None:  # fmt: skip
        self.name, self.log, self.jobs = name, log, jobs
        self._wait_for_redis, self._cold, self._outcome_recorded = wait_for_redis, cold, outcome_recorded
        self._recent: collections.deque[RunningJob] = collections.deque(maxlen=RECHECK_LIMIT)

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
        running.recorded = RecordedOutcome(time.monotonic(), record, before, was_stopped)
        self._remember(running)

    def _remember(self, running: RunningJob) -> None:
        """Keep ``running`` (its outcome just recorded) among the recent ones, dropping those too old to check."""
        recent, at = self._recent, _recorded(running).at
        while recent and _recorded(recent[0]).at < at - RECHECK_SECONDS * 2:
            recent.popleft()
        if not recent or recent[-1] is not running:  # rq's step may record through another (rq 2's retry)
            recent.append(running)

    def recheck_after_outage(self, down_since: float) -> None:
        """Redis answers again after an outage that began at ``down_since`` (monotonic): check, in a
        greenlet of its own, the outcomes recorded shortly before it."""
        due = [running for running in self._recent if _recorded(running).at >= down_since - RECHECK_SECONDS]
        if due:
            gevent.spawn(self._recheck, due)

    def _recheck(self, due: list[RunningJob]) -> None:
        again = 0
        for running in due:
            job, recorded = running.job, _recorded(running)
            try:
                check = functools.partial(self._outcome_recorded, running, on_primary=True)
                if self._wait_for_redis(check, f"check the outcome of job {job.id}"):
                    continue
                compat.restore_after_retried_step(job, recorded.before)
                running.stopped = recorded.was_stopped
                with self.jobs.recording_again(running):
                    self._wait_for_redis(recorded.record, f"record the outcome of job {job.id} again")
            except Exception:
                self.log.error("Worker %s: could not check the outcome of job %s", self.name, job.id, exc_info=True)
                continue
            again += 1
            self.log.warning("Worker %s: the outcome of job %s was lost with the Redis it was written to (a "
                             "failover?); recorded again", self.name, job.id)  # fmt: skip
        self.log.info("Worker %s: checked %s recorded before the Redis outage; %d recorded again",
                      self.name, plural(len(due), "outcome"), again)  # fmt: skip


def _recorded(running: RunningJob) -> RecordedOutcome:
    assert running.recorded is not None  # only jobs whose outcome was recorded are remembered
    return running.recorded
