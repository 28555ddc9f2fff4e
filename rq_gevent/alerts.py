"""Worker-level problems an operator must hear about, as ERROR records on the ``rq.worker.alerts`` logger.

They print with the worker's other log lines (the logger is a child of ``rq.worker``), and Sentry's
logging integration turns them into events, which :mod:`rq_gevent.integrations.sentry` tags with
``rq_gevent.alert: <kind>`` and groups per kind.  Imports only the standard library, so
the launcher can name the kinds too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .integrations.metrics import NO_METRICS, NoMetrics

LOGGER_NAME = "rq.worker.alerts"

REDIS_UNREACHABLE = "redis-unreachable"
WATCHDOG_KILL = "watchdog-kill"
MEMORY_KILL = "memory-kill"
WORKER_DIED = "worker-died"
WORK_LOOP_DIED = "work-loop-died"  # said by the worker itself, which then exits WORK_LOOP_DIED_EXIT
CRASH_LOOP = "crash-loop"


def alert(kind: str, message: str, *args: Any, **details: Any) -> None:
    """Log ``message % args`` at ERROR, marked as an alert of ``kind`` with ``details``."""
    logging.getLogger(LOGGER_NAME).error(message, *args, extra={"alert": kind, "alert_details": details})


class RedisOutage:
    """How long Redis has been unavailable (unreachable, or refusing writes) to one worker; one alert per
    outage past ``alert_after`` s."""

    def __init__(
        self,
        worker_name: str,
        alert_after: float,
        log: logging.Logger,
        on_recovered: Callable[[float], None] | None = None,
        metrics: NoMetrics = NO_METRICS,
    ):
        self.worker_name = worker_name
        self.alert_after = alert_after
        self.log = log
        self.on_recovered = on_recovered  # called with the outage's start (time.monotonic()) when it ends
        self.metrics = metrics
        self.down_since: float | None = None
        self.alerted = False

    def failed(self, error: Exception) -> None:
        self.metrics.redis_failed(starts_outage=self.down_since is None)
        if self.down_since is None:
            self.down_since = time.monotonic()
        down_for = time.monotonic() - self.down_since
        if down_for >= self.alert_after and not self.alerted:
            self.alerted = True
            alert(
                REDIS_UNREACHABLE,
                "Worker %s: Redis unavailable for %.0f s (%s)",
                self.worker_name,
                down_for,
                type(error).__name__,
                worker=self.worker_name,
                seconds=round(down_for),
            )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        if self.alerted:
            down_for = time.monotonic() - self.down_since
            self.log.warning("Worker %s: Redis reachable again after %.0f s", self.worker_name, down_for)
        down_since, self.down_since = self.down_since, None
        self.alerted = False
        self.metrics.redis_recovered()
        if self.on_recovered is not None:
            self.on_recovered(down_since)
