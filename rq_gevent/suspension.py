"""``rq suspend`` / ``rq resume``: the flag read at most once a second, and the worker's state kept
SUSPENDED while it is in force, whatever jobs start or end meanwhile."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rq.suspension import is_suspended
from rq.worker import WorkerStatus

from . import compat
from .compat import StopRequested

if TYPE_CHECKING:
    from .worker import GeventWorker

# ``rq suspend`` is noticed within this many seconds.
SUSPENSION_CHECK_SECONDS = 1.0


class Suspension:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker
        self.in_force = False
        self._checked_at = float("-inf")
        self._flag = False

    def is_suspended_now(self, max_age: float = SUSPENSION_CHECK_SECONDS) -> bool:
        """rq's flag, read at most every ``max_age`` seconds (the heartbeat keeps the worker alive).
        Read it afresh (``max_age=0``) before a blocking pop, which may wait long."""
        if time.monotonic() - self._checked_at >= max_age or self._flag:
            self._flag = bool(is_suspended(self.worker.connection))
            self._checked_at = time.monotonic()
        return self._flag

    def wait_while_suspended(self, burst: bool) -> None:
        """rq's ``check_for_suspension``: a burst worker stops, any other waits for ``rq resume``."""
        worker = self.worker
        if not self.is_suspended_now():
            return
        if burst:
            worker.log.info("Worker %s: suspended in burst mode, exiting once running jobs end", worker.name)
            raise StopRequested
        worker.log.info("Worker %s: suspended, run `rq resume` to resume", worker.name)
        self.in_force = True  # first: a job ending while SUSPENDED is written must not write IDLE after it
        try:
            worker.set_state(WorkerStatus.SUSPENDED)
            while not compat.stop_requested(worker) and self.is_suspended_now():
                worker.shutdown.cold.wait(1)
                # Again: a job's start sent just before may have written BUSY after it.
                worker.set_state(WorkerStatus.SUSPENDED)
        finally:
            self.in_force = False
        worker.set_state(WorkerStatus.BUSY if worker.jobs else WorkerStatus.IDLE)
