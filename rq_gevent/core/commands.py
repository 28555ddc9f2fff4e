"""rq's pub/sub commands (``rq.command``), mapped onto greenlets instead of a horse process.

* ``stop-job`` / ``stop-execution``: interrupt that one job; it ends STOPPED, the others go on.
* ``kill-horse``: there is no horse; every running job fails as if its horse had died.
* ``shutdown``: a warm shutdown.

A command for a job this worker is not running, or a malformed one, is logged and ignored.  The
listener itself is watched (:mod:`rq_gevent.core.listener`): one that stopped hearing is replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis.exceptions
from rq.command import parse_payload

from ..alerts import RedisOutage
from ..exceptions import JobKilled, JobStopped
from ..plumbing.redis_waits import REDIS_UNAVAILABLE, why_unavailable
from .listener import PROBE_COMMAND, ListenerWatch
from .running import RunningJob, RunningJobs


class Commands:
    """``dispatch`` maps each of rq's command names to the worker's handler of its payload."""

    def __init__(self, name: str, log: logging.Logger, jobs: RunningJobs, redis_outage: RedisOutage,
                 dispatch: Mapping[str, Callable[[dict[str, Any]], Any]]) -> None:  # fmt: skip
        self.name, self.log, self.jobs, self.redis_outage, self.dispatch = name, log, jobs, redis_outage, dispatch
        self.watch: ListenerWatch | None = None
        self._subscribe: Callable[[], None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def handle(self, message: dict[str, Any]) -> None:
        try:
            payload = parse_payload(message)
            command = payload.get("command")
        except (ValueError, KeyError, AttributeError):
            self.log.warning("Worker %s: ignoring malformed command %r", self.name, message.get("data"))
            return
        if command == PROBE_COMMAND:
            if self.watch is not None:
                self.watch.heard(payload)
            self.redis_outage.succeeded()  # the listener hears Redis: that may end an outage
            return
        self.log.info("Worker %s: received command %s", self.name, command)
        handler = self.dispatch.get(command) if isinstance(command, str) else None
        if handler is None:
            self.log.warning("Worker %s: unknown command %r ignored", self.name, command)
            return
        handler(payload)

    def stop(self, running: RunningJob | None, what: str) -> bool:
        """Stop one running job (it ends STOPPED); the others go on.  False if not running here."""
        if running is None:
            self.log.warning("Worker %s: not running %s, stop command ignored", self.name, what)
            return False
        if not running.interrupt(JobStopped(f"Job {running.job.id} stopped by user")):
            self.log.info("Worker %s: job %s is already finishing, stop command ignored", self.name,
                          running.job.id)  # fmt: skip
            return False
        self.log.info("Worker %s: stopping job %s", self.name, running.job.id)
        return True

    def kill_all(self) -> None:
        if not self.jobs:
            self.log.info("Worker %s: no job running, kill-horse ignored", self.name)
            return
        for running in self.jobs:
            if running.interrupt(JobKilled(f"Job {running.job.id} killed by kill-horse command")):
                self.log.warning("Worker %s: killing job %s", self.name, running.job.id)

    # -- the listener ---------------------------------------------------------------------------------

    def start(self, connection: Any, channel: str, period: float, subscribe: Callable[[], None],
              unsubscribe: Callable[[], None]) -> None:  # fmt: skip
        """Prove the command listener of ``channel`` hears, every ``period`` seconds; one that stopped
        hearing is replaced (``unsubscribe``, then ``subscribe``: the worker's, rq's)."""
        self._subscribe, self._unsubscribe = subscribe, unsubscribe
        self.watch = ListenerWatch(connection, channel, period, self._subscribe_again, self.log, self._probe_failed,
                                   self.redis_outage.succeeded)  # fmt: skip
        self.watch.start()

    def _probe_failed(self, error: redis.exceptions.RedisError) -> None:
        if isinstance(error, REDIS_UNAVAILABLE):
            self.log.warning("Worker %s: command listener probe: %s", self.name, why_unavailable(error))
            self.redis_outage.failed(error)
        else:
            self.log.warning("Worker %s: command listener probe failed (%s)", self.name, error)

    def stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def _subscribe_again(self) -> None:
        assert self._subscribe is not None and self._unsubscribe is not None  # set by start()
        try:
            self._unsubscribe()
        except redis.exceptions.RedisError as exc:
            self.log.debug("Worker %s: unsubscribing a dead listener failed (%s)", self.name, exc)
        try:
            self._subscribe()
        except redis.exceptions.RedisError as exc:
            self.log.warning("Worker %s: could not subscribe again yet (%s)", self.name, exc)
