"""Job timeouts and interruptions that reach a job only while its own code runs.

rq wraps exactly the job's function (and each callback) in its ``death_penalty_class``; everything
outside that ``with`` block is rq's Redis bookkeeping.  :class:`GeventDeathPenalty` arms a hub timer
for the timeout and, in a job's greenlet, becomes its ``RunningJob.armed_penalty``.
``RunningJob.interrupt`` delivers an exception through that same timer, so an exception is only ever
thrown while a penalty is armed: the timer is closed synchronously when the block exits, before any
bookkeeping can run.  A job interrupted before it arms its penalty (still preparing) keeps the
exception as its ``pending_interrupt`` and gets it as soon as it does.
"""

from __future__ import annotations

from typing import Any

import gevent
from greenlet import greenlet as Greenlet
from rq.timeouts import BaseDeathPenalty, JobTimeoutException

from ..sensitivity import public_message
from .running import RunningJob, running_job


class GeventDeathPenalty(BaseDeathPenalty):
    """rq death penalty for greenlets: ``(timeout, exception, job_id=...)`` like rq's own.

    A timeout of ``None``, ``0`` or a negative number (rq's ``-1``) means no limit; gevent would
    otherwise fire such a timer at once.  Like every gevent timeout it fires only when the job
    yields to the hub: CPU-bound code is not interrupted.
    """

    def __init__(self, timeout: float | None, exception: type[BaseException] = JobTimeoutException, **kwargs: Any):
        super().__init__(timeout, exception, **kwargs)
        self._greenlet: Greenlet | None = None
        self._running: RunningJob | None = None
        # The penalty this one is nested in (a job, or a library it calls, may arm its own inside rq's).
        self._outer: GeventDeathPenalty | None = None
        self._armed = False  # between setup and cancel
        self._undelivered: BaseException | None = None  # an interruption its timer has not thrown yet
        self._timer: Any = None

    def setup_death_penalty(self) -> None:
        self._greenlet = gevent.getcurrent()
        self._running = running = running_job()  # None outside a job (rq's maintenance runs callbacks too)
        if running is not None:
            pending, running.pending_interrupt = running.pending_interrupt, None
            if pending is not None:
                raise pending
            outer = running.armed_penalty
            self._outer = outer if isinstance(outer, GeventDeathPenalty) else None
            running.armed_penalty = self
        self._armed = True
        if self._timeout is not None and self._timeout > 0:
            message = f"Task exceeded maximum timeout value ({self._timeout} seconds)"
            self._arm(self._timeout, public_message(self._exception(message)))  # no input in it

    def cancel_death_penalty(self) -> None:
        self._disarm()
        self._armed = False
        outer = self._outer
        while outer is not None and not outer._armed:  # one that ended out of order
            outer = outer._outer
        running, undelivered = self._running, self._undelivered
        self._outer = self._undelivered = None
        if running is None:
            return
        if running.armed_penalty is self:
            running.armed_penalty = outer
        if undelivered is not None:  # the block ended before the interruption was thrown: pass it on
            if outer is not None:
                outer.deliver(undelivered)
            else:
                running.pending_interrupt = undelivered

    def deliver(self, exception: BaseException) -> None:
        """Throw ``exception`` into the job on the next turn of the hub, replacing the timeout."""
        self._undelivered = exception
        self._arm(0, exception)

    def _arm(self, seconds: float, exception: BaseException) -> None:
        self._disarm()
        assert self._greenlet is not None
        self._timer = gevent.get_hub().loop.timer(seconds)
        self._timer.start(self._throw, exception)

    def _throw(self, exception: BaseException) -> None:
        self._undelivered = None
        assert self._greenlet is not None
        self._greenlet.throw(exception)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
