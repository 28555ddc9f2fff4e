"""Warm and cold shutdown, from a signal, a ``shutdown`` command or ``request_stop()``.

The first request is warm: no more jobs are taken, running ones finish (up to ``graceful_timeout``).
A second one, a second later or more, is cold: running jobs are interrupted and put back at the
front of their queues.  Signals are handled in greenlets (gevent's ``signal_handler``), never
inside a job's code.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from ..exceptions import ColdShutdown
from ..words import plural
from .admission import Admission
from .running import RunningJobs

# The end of the line a worker process logs once it took a first stop signal (tests and the soak wait for it).
COLD_SHUTDOWN_HINT = "Send it again for a cold shutdown"

# After a cold shutdown has interrupted every job, how long their own bookkeeping (putting them back
# on their queues) may take before the worker exits anyway.
COLD_SHUTDOWN_BOOKKEEPING_SECONDS = 10.0


class Shutdown:
    """``request_stop(signum, frame)`` is the worker's (rq's) handler of SIGINT and SIGTERM;
    ``record_stop()`` records a warm shutdown as rq does; ``wake_pop()`` unblocks a blocking pop,
    False once the loop no longer pops."""

    def __init__(self, name: str, log: logging.Logger, jobs: RunningJobs, admission: Admission,
                 request_stop: Callable[[int, Any], None], record_stop: Callable[[], None],
                 wake_pop: Callable[[], bool]) -> None:  # fmt: skip
        self.name, self.log, self.jobs, self.admission = name, log, jobs, admission
        self._request_stop, self._record_stop, self._wake_pop = request_stop, record_stop, wake_pop
        self.cold = gevent.event.Event()
        self.warm_requested_at: float | None = None  # time.monotonic(): no wall-clock step moves it
        self._signal_handlers: list[Any] = []

    def install_signal_handlers(self) -> None:
        self._signal_handlers = [
            gevent.signal_handler(signum, self._request_stop, signum, None)
            for signum in (signal.SIGINT, signal.SIGTERM)
        ]

    def remove_signal_handlers(self) -> None:
        for handler in self._signal_handlers:
            handler.cancel()
        self._signal_handlers = []

    def request_warm(self, signum: int | None) -> None:
        self.log.info(
            f"Worker %s: warm shutdown requested%s; %s. {COLD_SHUTDOWN_HINT}.",
            self.name,
            f" (signal {signal.Signals(signum).name})" if signum else "",
            f"finishing {plural(len(self.jobs), 'running job')}" if self.jobs else "no job is running",
        )
        # First: a second signal while the stop is recorded (a Redis round trip) is a duplicate, not a cold one.
        self.warm_requested_at = time.monotonic()
        self._record_stop()
        self.admission.job_ended.set()
        gevent.spawn(self._wake_dequeue)

    def _wake_dequeue(self) -> None:
        """Unblock the blocking pop until the loop has seen the stop (it may not have blocked yet)."""
        for _ in range(20):
            if not self._wake_pop():
                return
            gevent.sleep(0.5)

    def request_cold(self) -> None:
        requested = self.warm_requested_at
        if requested is not None and time.monotonic() - requested < 1:
            self.log.debug("Worker %s: second stop within 1 second ignored (duplicate signal)", self.name)
            return
        self.log.warning("Worker %s: cold shutdown, requeueing %s", self.name, plural(len(self.jobs), "running job"))
        self.cold.set()

    def drain(self, graceful_timeout: float | None) -> None:
        """Wait for admitted jobs to end: all of them (warm, for up to ``graceful_timeout`` seconds), or
        interrupt them (cold)."""
        jobs, admission = self.jobs, self.admission
        if not jobs:
            return
        self.log.info("Worker %s: waiting for %s to finish", self.name, plural(len(jobs), "running job"))
        deadline = None if graceful_timeout is None else time.monotonic() + graceful_timeout
        while jobs and not self.cold.is_set():
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if deadline is not None and wait == 0.0:
                self.log.warning("Worker %s: graceful timeout of %s s reached", self.name, graceful_timeout)
                break
            admission.job_ended.clear()
            gevent.wait([self.cold, admission.job_ended], timeout=wait, count=1)
        if not jobs:
            return
        for running in jobs:
            running.interrupt(ColdShutdown(f"Worker {self.name} shut down cold"))
        admission.join(timeout=COLD_SHUTDOWN_BOOKKEEPING_SECONDS)
        for job_id in jobs.ids():
            self.log.error("Worker %s: job %s did not stop; rq will treat it as abandoned", self.name, job_id)
