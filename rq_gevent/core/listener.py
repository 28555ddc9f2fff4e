"""Proof that the worker's pub/sub command listener (stop-job, kill-horse, shutdown) still hears.

A subscribed connection only reads, so a path to Redis that died without closing (a NAT or proxy
that dropped it) leaves it waiting forever and every later command is lost; Redis keeps counting
the subscription.  The watch publishes a probe on the worker's own channel every ``period``
seconds; if the previous probe never arrived, the listener is replaced.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import gevent
import redis.exceptions

from .background import Background

PROBE_COMMAND = "rq-gevent-probe"


class ListenerWatch(Background):
    def __init__(
        self,
        connection: Any,
        channel: str,
        period: float,
        resubscribe: Callable[[], None],
        log: logging.Logger,
        on_redis_error: Callable[[redis.exceptions.RedisError], None],
        on_redis_answer: Callable[[], None] | None = None,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self.period = period
        self._resubscribe = resubscribe
        self._log = log
        self._on_redis_error = on_redis_error
        self._on_redis_answer = on_redis_answer
        self._outstanding: str | None = None

    def run(self) -> None:
        """Check every ``period`` seconds, forever (run it in a greenlet and kill it)."""
        while True:
            gevent.sleep(self.period)
            self.check()

    def check(self) -> None:
        if self._outstanding is not None:
            self._log.warning(
                "Command listener on %s heard nothing for %.0f s (a dead connection?); subscribing again",
                self._channel,
                self.period,
            )
            self._outstanding = None
            self._resubscribe()
        token = uuid.uuid4().hex
        self._outstanding = token  # before publishing: the listener may hear it before PUBLISH returns
        try:
            self._connection.publish(self._channel, json.dumps({"command": PROBE_COMMAND, "token": token}))
        except redis.exceptions.RedisError as exc:
            self._outstanding = None  # Redis itself is away: the listener reconnects on its own
            # Said, though: when every job is busy in its own code, this may be the first of the
            # worker's own commands to find a path gone silent.
            self._on_redis_error(exc)
            return
        if self._on_redis_answer is not None:
            self._on_redis_answer()  # after an outage, the first of the worker's commands to get through may be this

    def heard(self, payload: dict[str, Any]) -> None:
        """The listener received one of our probes."""
        if payload.get("token") == self._outstanding:
            self._outstanding = None
