"""Waiting out a Redis outage inside one greenlet, without blocking the others."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import gevent.event
import redis.exceptions

from .connections import PrimaryCutOff, ServerBusy

# What redis-py raises when Redis cannot take a command now but may later: unreachable (after
# redis-py's own retries), out of memory under ``maxmemory-policy noeviction`` (writes are refused
# until memory frees), or busy with a long script (``ServerBusy``, a ConnectionError).  Any other
# Redis error is an answer, and retrying it would not help.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
)


def why_unavailable(error: Exception) -> str:
    """``error`` (one of ``REDIS_UNAVAILABLE``) for a log line an operator can act on."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return "Redis is out of memory and refuses writes (maxmemory reached, noeviction)"
    if isinstance(error, PrimaryCutOff):
        return str(error)  # "Redis refuses writes (...)": it answers, so not "unreachable"
    if isinstance(error, ServerBusy):
        return "Redis is busy running a script past busy-reply-threshold (BUSY)"
    return f"Redis unreachable ({error})"


# A failover is over once the sentinels name the new primary (about a second): ask at least this often.
CUT_OFF_CEILING = 1.0


class Backoff:
    """The pauses between attempts while Redis cannot take a command: ``first``, then growing by
    ``factor`` (from at least ``MIN_PAUSE``) up to ``ceiling``, or up to ``CUT_OFF_CEILING`` after a
    :class:`PrimaryCutOff`.  The one pacing of every "again once Redis answers" loop of the worker."""

    MIN_PAUSE = 0.5

    def __init__(self, first: float = 0.5, ceiling: float = 5.0, factor: float = 2.0) -> None:
        self.first, self.ceiling, self.factor = first, ceiling, factor
        self.next = first

    def pause(self, give_up: gevent.event.Event | None = None, after: Exception | None = None) -> None:
        """Wait the next pause (cut short once ``give_up`` is set); ``after``: the error that failed."""
        if give_up is None:
            gevent.sleep(self.next)
        else:
            give_up.wait(self.next)
        ceiling = min(self.ceiling, CUT_OFF_CEILING) if isinstance(after, PrimaryCutOff) else self.ceiling
        self.next = min(max(self.next * self.factor, self.MIN_PAUSE), ceiling)

    def reset(self) -> None:
        self.next = self.first


T = TypeVar("T")


def when_redis_answers(
    call: Callable[[], T],
    give_up: gevent.event.Event,
    log: logging.Logger,
    who: str,
    to_do: str,
    max_backoff: float = 5.0,
    failed: Callable[[Exception], None] | None = None,
) -> T:
    """``call()`` again and again, backing off, until it does not fail with ``REDIS_UNAVAILABLE``.

    The first failure is logged as a warning: "``who``: Redis unreachable (...); will ``to_do`` once
    it answers"; a later one at INFO when its reason differs from the last logged.  Once ``give_up``
    is set the last error is raised instead (a cold shutdown).
    ``failed(error)`` is called at each failure (an outage, to whoever tracks them).
    """
    backoff = Backoff(ceiling=max_backoff)
    said: str | None = None
    while True:
        try:
            return call()
        except REDIS_UNAVAILABLE as exc:
            if failed is not None:
                failed(exc)
            if give_up.is_set():
                raise
            reason = why_unavailable(exc)
            if said is None:
                log.warning("%s: %s; will %s once it answers", who, reason, to_do)
            elif reason != said:  # where an outage stands (which server, refusing or unreachable) shows in the log
                log.info("%s: still waiting to %s: %s", who, to_do, reason)
            said = reason
            backoff.pause(give_up, after=exc)
