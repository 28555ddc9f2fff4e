"""Recording how a job ended while Redis may be away.

rq records each outcome (success, failure, retry, stop) in one transaction.  If Redis is unreachable
then, the step waits for it and runs again, unless it had applied after all (only its answer was
lost): a job whose code ran is never left to rq's reaper as abandoned because Redis was away when
it ended.  (A job that did not run is put back on its queue instead: :mod:`rq_gevent.core.retries`.)

An outcome Redis acknowledged can still be lost: a primary sends writes to its replica after
acknowledging them, so a failover (Sentinel's, or a ``kill -9`` of the primary) drops the last moments
of them, as does the last second of an ``appendfsync everysec`` restart.  So each outcome is kept while
the server can still lose it (:mod:`rq_gevent.core.loss_window`: until every replica acknowledged it;
at most ``RECHECK_LIMIT`` of them, for at most twice ``RECHECK_SECONDS``), and those recorded in the
``RECHECK_SECONDS`` before an outage are checked once Redis answers again, and recorded again where the
new server lacks them.  What is kept is the job as rq would fetch it (its hash, as it was before the
outcome's step), not the job object: a worker must not grow by its jobs.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
from rq.registry import BaseRegistry

from .. import compat
from ..plumbing.redis_waits import REDIS_UNAVAILABLE, Backoff, why_unavailable
from ..words import plural
from .loss_window import LossWindow
from .running import Phase, RunningJob, RunningJobs

# Outcomes recorded this long before an outage began are checked again after it: more than a
# primary's ``min-replicas-max-lag`` (the Redis docs' example is 10 s), after which it refuses writes.
RECHECK_SECONDS = 15.0
# At most this many recent outcomes are kept for that (the oldest are dropped first).
RECHECK_LIMIT = 20_000
# Between two attempts to record an outcome that Redis refused (the first retry is at once).
RETRY_PAUSE = 0.5


@dataclass(frozen=True)
class OutcomeStep:
    """One of rq's worker methods that record how a job ended, called ``method(job, queue, *args, **kwargs)``."""

    method: str  # handle_job_success, handle_job_failure or handle_job_retry
    job: Any
    queue: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


# Where a recorded step's arguments held the job's started registry or its execution: both are made
# again from the job when the step is taken again.
_STARTED_REGISTRY = "<the job's started registry>"
_EXECUTION = "<the job's execution>"


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """A job's recorded outcome, as little as taking its step again needs: the job's hash as it was
    before the step (its ``to_dict()``, pickled), its execution's id and start, the step's other arguments."""

    at: float  # time.monotonic()
    job_id: str
    job_class: type
    connection: Any
    serializer: Any
    job_hash: bytes
    queue: Any
    execution_id: str
    execution_started: Any  # a datetime
    worker_name: str
    was_stopped: bool
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, running: RunningJob, step: OutcomeStep, job_hash: bytes, was_stopped: bool) -> RecordedOutcome:
        job, execution = running.job, running.execution

        def without_objects(value: Any) -> Any:
            if value is execution:
                return _EXECUTION
            return _STARTED_REGISTRY if isinstance(value, BaseRegistry) else value

        return cls(time.monotonic(), job.id, type(job), job.connection, job.serializer, job_hash, step.queue,
                   execution.id, execution.created_at, compat.execution_worker_name(execution), was_stopped,
                   step.method, tuple(map(without_objects, step.args)),
                   {name: without_objects(value) for name, value in step.kwargs.items()})  # fmt: skip

    def same_run(self, other: RecordedOutcome) -> bool:
        return self.job_id == other.job_id and self.execution_id == other.execution_id

    def rebuilt(self) -> tuple[RunningJob, OutcomeStep]:
        """The job as it was before its step (a new object), and that step again."""
        job = self.job_class(self.job_id, connection=self.connection, serializer=self.serializer)
        job.restore(compat.as_stored(pickle.loads(self.job_hash)))
        compat.skip_callbacks(job)  # callbacks ran with the job; steps do not run them
        execution = compat.execution_of(job, self.execution_id, self.worker_name, self.execution_started)
        running = RunningJob(job=job, queue=self.queue, execution=execution, phase=Phase.FINISHING,
                             stopped=self.was_stopped)  # fmt: skip

        def with_objects(value: Any) -> Any:
            if value is _EXECUTION:
                return execution
            return job.started_job_registry if value is _STARTED_REGISTRY else value

        step = OutcomeStep(self.method, job, self.queue, tuple(map(with_objects, self.args)),
                           {name: with_objects(value) for name, value in self.kwargs.items()})  # fmt: skip
        return running, step


class Outcomes:
    """``recorder(step)`` makes what takes ``step``; ``wait_for_redis(call, to_do)`` calls until Redis
    answers (a cold shutdown gives up); ``outcome_recorded(running, on_primary=False)`` tells whether
    Redis has a job's outcome (``JobWrites.outcome_recorded``); ``cold`` is set by a cold shutdown;
    ``loss_window`` tells which outcomes Redis can still lose; ``redis_failed(error)`` begins an outage
    (its end rechecks the outcomes recorded before it), as a failed outcome does."""

    def __init__(self, name: str, log: logging.Logger, jobs: RunningJobs,
                 recorder: Callable[[OutcomeStep], Callable[[], Any]],
                 wait_for_redis: Callable[[Callable[[], Any], str], Any], cold: gevent.event.Event,
                 outcome_recorded: Callable[..., bool], loss_window: LossWindow,
                 redis_failed: Callable[[Exception], None]) -> None:  # fmt: skip
        self.name, self.log, self.jobs, self._recorder = name, log, jobs, recorder
        self._wait_for_redis, self._cold, self._outcome_recorded = wait_for_redis, cold, outcome_recorded
        self._loss_window, self._redis_failed = loss_window, redis_failed
        self._recent: collections.deque[RecordedOutcome] = collections.deque(maxlen=RECHECK_LIMIT)

    def __len__(self) -> int:
        """How many recorded outcomes are kept to check after an outage."""
        return len(self._recent)

    def record(self, running: RunningJob | None, step: OutcomeStep, confirm: bool = False) -> None:
        """Take ``step``, which records how ``running`` ended, until Redis has it.

        ``confirm`` checks even when no error was raised (rq's ``handle_job_failure`` swallows them).
        Without a job of our own that ran (rq's maintenance failing an abandoned job), just take it.
        """
        record = self._recorder(step)
        if running is None or running.execution is None or not running.ran:
            record()
            return
        was_stopped = running.stopped
        ended_hash = running.job.to_dict()
        # A step may run inside another (rq 2's retry step calls handle_job_failure): the outer's is back after.
        outer_step_hash, running.ended_hash = running.ended_hash, ended_hash
        try:
            self._record_until_redis_has_it(running, record, confirm)
        finally:
            running.ended_hash = outer_step_hash
        if not self._loss_window.keeps_outcomes:
            return
        self._remember(RecordedOutcome.of(running, step, pickle.dumps(ended_hash, pickle.HIGHEST_PROTOCOL),
                                          was_stopped))  # fmt: skip

    def _record_until_redis_has_it(self, running: RunningJob, record: Callable[[], Any], confirm: bool) -> None:
        job, was_stopped = running.job, running.stopped
        before = compat.snapshot(job)
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
                # An outage even when every slot is busy and no pop or heartbeat meets it: the
                # outcomes recorded before it are checked once it ends.
                self._redis_failed(exc)
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

    def _remember(self, recorded: RecordedOutcome) -> None:
        """Keep ``recorded`` among the recent outcomes, dropping those too old to check or safe."""
        recent = self._recent
        self.forget_safe()
        if recent and recent[-1].same_run(recorded):
            # rq's step recorded through another (rq 2's retry step calls handle_job_failure): the
            # outer step, which ends last, is the one to take again.
            recent[-1] = recorded
        else:
            recent.append(recorded)

    def forget_safe(self) -> None:
        """Drop the oldest outcomes for as long as Redis can no longer lose them, or they are too old to check."""
        recent, can_lose = self._recent, self._loss_window.can_lose
        too_old = time.monotonic() - RECHECK_SECONDS * 2
        while recent and (recent[0].at < too_old or not can_lose(recent[0].at)):
            recent.popleft()

    def recheck_after_outage(self, down_since: float) -> None:
        """Redis answers again after an outage that began at ``down_since`` (monotonic): check, in a
        greenlet of its own, the outcomes recorded shortly before it."""
        due = [recorded for recorded in self._recent if recorded.at >= down_since - RECHECK_SECONDS]
        if due:
            gevent.spawn(self._recheck, due)

    def _recheck(self, due: list[RecordedOutcome]) -> None:
        again = 0
        for recorded in due:
            try:
                if not self._wait_for_redis(functools.partial(self._record_if_lost, recorded),
                                            f"check the outcome of job {recorded.job_id}"):  # fmt: skip
                    continue
            except Exception:
                self.log.error("Worker %s: could not check the outcome of job %s", self.name, recorded.job_id,
                               exc_info=True)  # fmt: skip
                continue
            again += 1
            self.log.warning("Worker %s: the outcome of job %s was lost with the Redis it was written to (a "
                             "failover?); recorded again", self.name, recorded.job_id)  # fmt: skip
        self.log.info("Worker %s: checked %s recorded before the Redis outage; %d recorded again",
                      self.name, plural(len(due), "outcome"), again)  # fmt: skip

    def _record_if_lost(self, recorded: RecordedOutcome) -> bool:
        """Record ``recorded`` again, from the job as it was before its step, if the primary lacks it."""
        running, step = recorded.rebuilt()
        if self._outcome_recorded(running, on_primary=True):
            return False
        with self.jobs.recording_again(running):
            self._recorder(step)()
        # This Redis too can lose it, to a second failover.
        self._remember(dataclasses.replace(recorded, at=time.monotonic()))
        return True
