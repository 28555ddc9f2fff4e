"""``rq suspend`` / ``rq resume``: the flag read at most once a second, and the worker's state kept
SUSPENDED while it is in force, whatever jobs start or end meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent.event
from rq.suspension import is_suspended
from rq.worker import WorkerStatus

from ..compat import StopRequested
from .running import RunningJobs

# ``rq suspend`` is noticed within this many seconds.
SUSPENSION_CHECK_SECONDS = 1.0


class Suspension:
    """``set_state`` is the worker's (rq's, which this suspension's ``in_force`` guards); ``stopping``
    tells whether a stop was requested; ``cold`` is set by a cold shutdown."""

    def __init__(self, connection: Any, name: str, log: logging.Logger, jobs: RunningJobs,
                 set_state: Callable[[str], None], stopping: Callable[[], bool],
                 cold: gevent.event.Event) -> None:  # fmt: skip
        self.connection, self.name, self.log, self.jobs = connection, name, log, jobs
        self._record_state, self._stopping, self._cold = set_state, stopping, cold
        self.in_force = False
        self._checked_at = float("-inf")
        self._flag = False

    def is_suspended_now(self, max_age: float = SUSPENSION_CHECK_SECONDS) -> bool:
        """rq's flag, read at most every ``max_age`` seconds (the heartbeat keeps the worker alive).
        Read it afresh (``max_age=0``) before a blocking pop, which may wait long."""
        if time.monotonic() - self._checked_at >= max_age or self._flag:
            self._flag = bool(is_suspended(self.connection))
            self._checked_at = time.monotonic()
        return self._flag

    def wait_while_suspended(self, burst: bool) -> None:
        """rq's ``check_for_suspension``: a burst worker stops, any other waits for ``rq resume``."""
        if not self.is_suspended_now():
            return
        if burst:
            self.log.info("Worker %s: suspended in burst mode, exiting once running jobs end", self.name)
            raise StopRequested
        self.log.info("Worker %s: suspended, run `rq resume` to resume", self.name)
        self.in_force = True  # first: a job ending while SUSPENDED is written must not write IDLE after it
        try:
            self._record_state(WorkerStatus.SUSPENDED)
            while not self._stopping() and self.is_suspended_now():
                self._cold.wait(1)
                # Again: a job's start sent just before may have written BUSY after it.
                self._record_state(WorkerStatus.SUSPENDED)
        finally:
            self.in_force = False
        self._record_state(WorkerStatus.BUSY if self.jobs else WorkerStatus.IDLE)
