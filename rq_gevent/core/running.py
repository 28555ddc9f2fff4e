"""The jobs a GeventWorker is running: one :class:`RunningJob` each, whose :class:`Phase` decides what
may still happen to it (be interrupted, be heartbeat, have its outcome retried, be requeued).

All per-job state lives here.  rq 3's ``worker.executions`` is kept as rq keeps it (an entry per
running execution, from its creation to its clean-up), each entry being a RunningJob's execution.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from greenlet import greenlet as Greenlet

from .. import compat
from ..exceptions import JobInterrupted, JobKilled, JobStopped
from .error_text import Failure


class Phase(enum.Enum):
    ADMITTED = "admitted"  # in the pool; rq has not marked it started
    STARTED = "started"  # rq marked it started; its function is not called yet
    RUNNING = "running"  # its function runs: interruptions are delivered now
    FINISHING = "finishing"  # its own code is over; rq records the outcome and nothing interrupts it
    NEVER_STARTED = "never started"  # Redis failed rq's bookkeeping before the job was marked started
    REQUEUED = "requeued"  # such a job is back on its queue
    WITHDRAWN = "withdrawn"  # no longer queued when it was to start (cancelled, deleted, taken elsewhere): not run


_RAN = (Phase.STARTED, Phase.RUNNING, Phase.FINISHING)
_INTERRUPTIBLE = (Phase.ADMITTED, Phase.STARTED, Phase.RUNNING)


class Penalty(Protocol):
    """A death penalty that can throw an exception into the job it guards (``GeventDeathPenalty``)."""

    def deliver(self, exception: BaseException) -> None: ...


@dataclass(eq=False)
class RunningJob:
    """A job admitted to the pool, from its admission until its greenlet ends."""

    job: Any
    queue: Any
    attempt: int = 1
    greenlet: Greenlet | None = None
    execution: Any = None
    phase: Phase = Phase.ADMITTED
    interrupted_by: JobInterrupted | None = None
    # rq's "stopped job": its failure is recorded as stopped (rq 3: status STOPPED), with no retry.
    stopped: bool = False
    # The execution's pipeline, held until rq's writes that mark the job started join it (job_writes).
    start_pipeline: Any = None
    # Or, its start goes as job_writes' start script, with this heartbeat TTL (taken with its execution).
    start_ttl: int | None = None
    # Its execution hash vanished from Redis while it ran (logged once by the heartbeat).
    execution_lost: bool = False
    # Its arguments may hold secrets: rq's log lines name it by id, and show none of them.
    sensitive: bool = True
    admitted_at: float = field(default_factory=time.monotonic)  # right after its dequeue
    function_started_at: float | None = None  # set (for metrics) while its function runs
    outcome_counted: bool = False  # its failure or retry is in the metrics (rq may route one through both)
    # How it failed, as logs and Redis may show it (rq_gevent.core.error_text): set by handle_exception.
    failure: Failure | None = None
    # The death penalty armed while its own code runs (rq_gevent.core.timeouts): interruptions go through it.
    armed_penalty: Penalty | None = None
    # An interruption that came before its code armed a penalty: thrown as soon as it does.
    pending_interrupt: BaseException | None = None
    # Its job's ``to_dict()`` as its outcome's step began (rq_gevent.core.outcomes keeps it for a recheck;
    # the success script writes it, rq_gevent.plumbing.job_writes), while that step runs.
    ended_hash: dict[str, Any] | None = None

    @property
    def ran(self) -> bool:
        """rq marked the job started, so its code ran (or was about to)."""
        return self.phase in _RAN

    @property
    def in_progress(self) -> bool:
        """Its code has not ended yet (it may not have started)."""
        return self.phase in _INTERRUPTIBLE

    @property
    def never_started(self) -> bool:
        return self.phase in (Phase.NEVER_STARTED, Phase.REQUEUED)

    @property
    def beating(self) -> bool:
        """Its execution needs heartbeats."""
        return self.execution is not None and self.phase in _INTERRUPTIBLE

    def failed_before_start(self) -> None:
        """Redis failed rq's bookkeeping before the job's function was called: it did not run."""
        if not self.never_started:
            self.phase = Phase.NEVER_STARTED
            compat.skip_failure_callback(self.job)  # not a failure of the job

    def withdrawn(self) -> None:
        """The job was no longer queued when rq's writes were to mark it started: nothing was written."""
        self.phase = Phase.WITHDRAWN
        compat.skip_callbacks(self.job)

    def interrupt(self, exception: JobInterrupted) -> bool:
        """Throw ``exception`` into the job's own code (now, or as soon as it starts); False if that code
        is over.  A second interruption of the same job keeps the first one's reason."""
        if self.phase not in _INTERRUPTIBLE:
            return False
        if self.interrupted_by is None:
            self.interrupted_by = exception
            self.stopped = isinstance(exception, JobStopped)
            if not isinstance(exception, JobKilled):
                # rq runs no failure callback for stopped or requeued jobs.
                compat.skip_failure_callback(self.job)
            if self.armed_penalty is not None:
                self.armed_penalty.deliver(exception)
            else:
                self.pending_interrupt = exception
        return True


# The job whose greenlet is running: each greenlet has its own context.
_current: contextvars.ContextVar[RunningJob | None] = contextvars.ContextVar("rq_gevent_running_job", default=None)
# The ended job whose outcome the calling greenlet records again (after a Redis outage lost it).
_recording_again: contextvars.ContextVar[RunningJob | None] = contextvars.ContextVar(
    "rq_gevent_recording_again", default=None
)


def running_job() -> RunningJob | None:
    """The job admitted to a GeventWorker whose greenlet calls this; ``None`` outside jobs."""
    return _current.get()


class RunningJobs:
    """One worker's running jobs by id, oldest first."""

    def __init__(self) -> None:
        self._by_id: dict[str, RunningJob] = {}

    def add(self, running: RunningJob) -> None:
        self._by_id[running.job.id] = running

    def discard(self, running: RunningJob) -> None:
        if self._by_id.get(running.job.id) is running:
            del self._by_id[running.job.id]

    def get(self, job_id: str | None) -> RunningJob | None:
        return self._by_id.get(job_id) if job_id is not None else None

    def by_execution(self, execution_id: str | None) -> RunningJob | None:
        return next((r for r in self if r.execution is not None and r.execution.id == execution_id), None)

    def own(self, job: Any) -> RunningJob | None:
        """``job``'s entry when called from that job's own greenlet (not from maintenance, say), or
        from the greenlet that records its outcome again (:meth:`recording_again`)."""
        current = running_job()
        if current is not None and current.job.id == job.id and self._by_id.get(job.id) is current:
            return current
        again = _recording_again.get()
        return again if again is not None and again.job is job else None

    @staticmethod
    def acting_for() -> RunningJob | None:
        """The job the calling greenlet acts for: its own, or the one whose outcome it records again."""
        return running_job() or _recording_again.get()

    @staticmethod
    @contextlib.contextmanager
    def recording_again(running: RunningJob) -> Iterator[None]:
        """While the calling greenlet records the outcome of ``running``, whose own greenlet has ended,
        rq's methods it calls see the job as that greenlet would (its execution, its last heartbeat)."""
        token = _recording_again.set(running)
        try:
            yield
        finally:
            _recording_again.reset(token)

    @staticmethod
    def enter(running: RunningJob) -> None:
        """Called first thing in ``running``'s greenlet."""
        _current.set(running)

    # The running job of the calling greenlet, as the module's public ``running_job()`` gives it.
    current = staticmethod(running_job)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def newest_id(self) -> str | None:
        return next(reversed(self._by_id), None)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __bool__(self) -> bool:
        return bool(self._by_id)
