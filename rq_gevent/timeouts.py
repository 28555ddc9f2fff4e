"""Job timeouts and interruptions that reach a job only while its own code runs.

rq wraps exactly the job's function (and each callback) in its ``death_penalty_class``; everything
outside that ``with`` block is rq's Redis bookkeeping.  :class:`GeventDeathPenalty` arms a hub timer
for the timeout and registers itself as the greenlet's *armed* penalty.  :func:`interrupt` delivers
an exception through that same timer, so an exception is only ever thrown while a penalty is armed:
the timer is closed synchronously when the block exits, before any bookkeeping can run.  A
greenlet interrupted before it arms its penalty (still preparing) gets the exception as soon as it
does.
"""

from __future__ import annotations

import weakref
from typing import Any

import gevent
from greenlet import greenlet as Greenlet
from rq.timeouts import BaseDeathPenalty, JobTimeoutException

from .sensitivity import public_message

_armed: weakref.WeakKeyDictionary[Greenlet, GeventDeathPenalty] = weakref.WeakKeyDictionary()
_pending: weakref.WeakKeyDictionary[Greenlet, BaseException] = weakref.WeakKeyDictionary()


class GeventDeathPenalty(BaseDeathPenalty):
    """rq death penalty for greenlets: ``(timeout, exception, job_id=...)`` like rq's own.

    A timeout of ``None``, ``0`` or a negative number (rq's ``-1``) means no limit; gevent would
    otherwise fire such a timer at once.  Like every gevent timeout it fires only when the job
    yields to the hub: CPU-bound code is not interrupted.
    """

    def __init__(self, timeout: float | None, exception: type[BaseException] = JobTimeoutException, **kwargs: Any):
        super().__init__(timeout, exception, **kwargs)
        self._greenlet: Greenlet | None = None
        self._timer: Any = None

    def setup_death_penalty(self) -> None:
        self._greenlet = gevent.getcurrent()
        pending = _pending.pop(self._greenlet, None)
        if pending is not None:
            raise pending
        _armed[self._greenlet] = self
        if self._timeout is not None and self._timeout > 0:
            message = f"Task exceeded maximum timeout value ({self._timeout} seconds)"
            self._arm(self._timeout, public_message(self._exception(message)))  # no input in it

    def cancel_death_penalty(self) -> None:
        self._disarm()
        if self._greenlet is not None and _armed.get(self._greenlet) is self:
            del _armed[self._greenlet]

    def deliver(self, exception: BaseException) -> None:
        """Throw ``exception`` into the job on the next turn of the hub, replacing the timeout."""
        self._arm(0, exception)

    def _arm(self, seconds: float, exception: BaseException) -> None:
        self._disarm()
        assert self._greenlet is not None
        self._timer = gevent.get_hub().loop.timer(seconds)
        self._timer.start(self._greenlet.throw, exception)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None


def interrupt(target: Greenlet, exception: BaseException) -> None:
    """Interrupt the job running in ``target`` with ``exception``.

    Delivered at once if the job's code is running, otherwise as soon as it starts.
    """
    penalty = _armed.get(target)
    if penalty is not None:
        penalty.deliver(exception)
    else:
        _pending[target] = exception


def forget_pending(target: Greenlet) -> None:
    """Drop an interruption that has not been delivered (the job's code already ended)."""
    _pending.pop(target, None)
