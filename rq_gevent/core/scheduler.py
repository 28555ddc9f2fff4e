"""rq's scheduler, run as a greenlet of the worker instead of a forked process.

rq forks its scheduler; a fork after greenlets exist copies them into the child, where they go on
running (a forked scheduler was seen answering the worker's pub/sub commands).  Here the same
``RQScheduler.work`` loop runs in a greenlet and stops when the worker does.
"""

from __future__ import annotations

import logging

import gevent
from rq.scheduler import RQScheduler

from .. import compat

log = logging.getLogger("rq.scheduler")


class _SchedulerGreenlet:
    """The part of ``multiprocessing.Process`` that rq's worker asks of ``scheduler._process``."""

    def __init__(self, scheduler: GreenletScheduler):
        self.pid = None
        self.greenlet = gevent.spawn(scheduler.run_logged)

    def is_alive(self) -> bool:
        return not self.greenlet.dead


class GreenletScheduler(compat.SchedulerHooks, RQScheduler):
    def run_in_greenlet(self, burst: bool) -> None:
        """What rq's worker does with ``--with-scheduler``: take the queues' scheduler locks if free,
        then move due jobs once (burst) or keep doing so in a greenlet."""
        self.acquire_locks()
        if not self.acquired_locks:
            return
        if burst:
            registers = compat.scheduler_registers_itself(self)
            try:
                if registers:
                    self.register_birth()
                self.enqueue_scheduled_jobs()
            finally:
                self.release_locks()
                if registers:
                    self.register_death()
        else:
            self.start()

    def start(self) -> _SchedulerGreenlet:  # type: ignore[override]
        process = _SchedulerGreenlet(self)
        compat.mark_scheduler_started(self, process)
        return process

    def run_logged(self) -> None:
        log.info("Scheduler for %s started in a greenlet", ", ".join(compat.scheduler_queue_names(self)))
        try:
            self.work()
        except Exception:
            log.exception("Scheduler raised an exception")
        else:
            log.info("Scheduler has stopped")

    def stop_and_wait(self, timeout: float) -> None:
        """Ask the loop to stop (it releases its locks and deregisters); kill it after ``timeout``."""
        self.request_stop()
        process = compat.scheduler_process(self)
        if process is None:
            return
        process.greenlet.join(timeout)
        if not process.greenlet.dead:
            process.greenlet.kill(block=True, timeout=1)
            self.stop()
