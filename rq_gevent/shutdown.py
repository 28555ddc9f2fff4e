"""Warm and cold shutdown, from a signal, a ``shutdown`` command or ``request_stop()``.

The first request is warm: no more jobs are taken, running ones finish (up to ``graceful_timeout``).
A second one, a second later or more, is cold: running jobs are interrupted and put back at the
front of their queues.  Signals are handled in greenlets (gevent's ``signal_handler``), never
inside a job's code.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis.exceptions

from . import compat
from .exceptions import ColdShutdown

# The end of the line a worker process logs once it took a first stop signal (tests and the soak wait for it).
COLD_SHUTDOWN_HINT = "Send it again for a cold shutdown"

if TYPE_CHECKING:
    from .worker import GeventWorker

# After a cold shutdown has interrupted every job, how long their own bookkeeping (putting them back
# on their queues) may take before the worker exits anyway.
COLD_SHUTDOWN_BOOKKEEPING_SECONDS = 10.0


class Shutdown:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker
        self.cold = gevent.event.Event()
        self.warm_requested_at: float | None = None  # time.monotonic(): no wall-clock step moves it
        self._signal_handlers: list[Any] = []

    def install_signal_handlers(self) -> None:
        self._signal_handlers = [
            gevent.signal_handler(signum, self.worker.request_stop, signum, None)
            for signum in (signal.SIGINT, signal.SIGTERM)
        ]

    def remove_signal_handlers(self) -> None:
        for handler in self._signal_handlers:
            handler.cancel()
        self._signal_handlers = []

    def request_warm(self, signum: int | None) -> None:
        worker = self.worker
        worker.log.info(
            f"Worker %s: warm shutdown requested%s; finishing %d running jobs. {COLD_SHUTDOWN_HINT}.",
            worker.name,
            f" (signal {signal.Signals(signum).name})" if signum else "",
            len(worker.jobs),
        )
        compat.record_stop_request(worker)
        self.warm_requested_at = time.monotonic()
        if worker.jobs:
            with contextlib.suppress(redis.exceptions.RedisError):
                worker.set_shutdown_requested_date()
        worker.admission.job_ended.set()
        if worker.loop.dequeuing:
            gevent.spawn(self._wake_dequeue)

    def _wake_dequeue(self) -> None:
        """Unblock the blocking pop until the loop has seen the stop (it may not have blocked yet)."""
        for _ in range(20):
            if not self.worker.loop.dequeuing or not self.worker.dequeuer.wake():
                return
            gevent.sleep(0.5)

    def request_cold(self) -> None:
        worker = self.worker
        requested = self.warm_requested_at
        if requested is not None and time.monotonic() - requested < 1:
            worker.log.debug("Worker %s: second stop within 1 second ignored (duplicate signal)", worker.name)
            return
        worker.log.warning("Worker %s: cold shutdown, requeueing %d running jobs", worker.name, len(worker.jobs))
        self.cold.set()

    def drain(self) -> None:
        """Wait for admitted jobs to end: all of them (warm), or interrupt them (cold)."""
        worker = self.worker
        jobs, admission = worker.jobs, worker.admission
        if not jobs:
            return
        worker.log.info("Worker %s: waiting for %d running jobs to finish", worker.name, len(jobs))
        deadline = None if worker.graceful_timeout is None else time.monotonic() + worker.graceful_timeout
        while jobs and not self.cold.is_set():
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if deadline is not None and wait == 0.0:
                worker.log.warning("Worker %s: graceful timeout of %s s reached", worker.name, worker.graceful_timeout)
                break
            admission.job_ended.clear()
            gevent.wait([self.cold, admission.job_ended], timeout=wait, count=1)
        if not jobs:
            return
        for running in jobs:
            running.interrupt(ColdShutdown(f"Worker {worker.name} shut down cold"))
        admission.join(timeout=COLD_SHUTDOWN_BOOKKEEPING_SECONDS)
        for job_id in jobs.ids():
            worker.log.error("Worker %s: job %s did not stop; rq will treat it as abandoned", worker.name, job_id)
