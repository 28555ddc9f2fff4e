"""Waiting out a Redis outage inside one greenlet, without blocking the others."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import gevent.event
import redis.exceptions

# What redis-py raises when Redis cannot be reached (after its own retries); any other Redis error
# is an answer and retrying it would not help.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

T = TypeVar("T")


def when_redis_answers(
    call: Callable[[], T],
    give_up: gevent.event.Event,
    log: logging.Logger,
    who: str,
    to_do: str,
    max_backoff: float = 5.0,
) -> T:
    """``call()`` again and again, backing off, until it does not fail with ``REDIS_DOWN``.

    The first failure is logged as a warning: "``who``: Redis unreachable (...); will ``to_do`` when
    it answers".  Once ``give_up`` is set the last error is raised instead (a cold shutdown).
    """
    backoff = 0.5
    warned = False
    while True:
        try:
            return call()
        except REDIS_DOWN as exc:
            if give_up.is_set():
                raise
            if not warned:
                log.warning("%s: Redis unreachable (%s); will %s when it answers", who, exc, to_do)
                warned = True
            give_up.wait(backoff)
            backoff = min(backoff * 2, max_backoff)
