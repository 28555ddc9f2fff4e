"""Worker-level problems an operator must hear about, as ERROR records on the ``rq.worker.alerts`` logger.

They print with the worker's other log lines (the logger is a child of ``rq.worker``), and Sentry's
logging integration turns them into events, which :mod:`rq_gevent.sentry` tags with
``rq_gevent.alert: <kind>`` and groups per kind.  Imports nothing but :mod:`logging`, so the
launcher can name the kinds too.
"""

from __future__ import annotations

import logging
from typing import Any

LOGGER_NAME = "rq.worker.alerts"

REDIS_UNREACHABLE = "redis-unreachable"
WATCHDOG_KILL = "watchdog-kill"
MEMORY_KILL = "memory-kill"
WORKER_DIED = "worker-died"
CRASH_LOOP = "crash-loop"


def alert(kind: str, message: str, *args: Any, **details: Any) -> None:
    """Log ``message % args`` at ERROR, marked as an alert of ``kind`` with ``details``."""
    logging.getLogger(LOGGER_NAME).error(message, *args, extra={"alert": kind, "alert_details": details})
