"""rq's pub/sub commands (``rq.command``), mapped onto greenlets instead of a horse process.

* ``stop-job`` / ``stop-execution``: interrupt that one job; it ends STOPPED, the others go on.
* ``kill-horse``: there is no horse; every running job fails as if its horse had died.
* ``shutdown``: a warm shutdown.

A command for a job this worker is not running, or a malformed one, is logged and ignored.  The
listener itself is watched (:mod:`rq_gevent.listener`): one that stopped hearing is replaced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.exceptions
from rq.command import parse_payload

from .exceptions import JobKilled, JobStopped
from .listener import PROBE_COMMAND, ListenerWatch
from .redis_waits import REDIS_UNAVAILABLE, why_unavailable
from .running import RunningJob

if TYPE_CHECKING:
    from .worker import GeventWorker


class Commands:
    def __init__(self, worker: GeventWorker) -> None:
        self.worker = worker
        self.watch: ListenerWatch | None = None

    def handle(self, message: dict[str, Any]) -> None:
        worker = self.worker
        try:
            payload = parse_payload(message)
            command = payload.get("command")
        except (ValueError, KeyError, AttributeError):
            worker.log.warning("Worker %s: ignoring malformed command %r", worker.name, message.get("data"))
            return
        if command == PROBE_COMMAND:
            if self.watch is not None:
                self.watch.heard(payload)
            worker.redis_outage.succeeded()  # the listener hears Redis: that may end an outage
            return
        worker.log.info("Worker %s: received command %s", worker.name, command)
        if command == "shutdown":
            worker.request_stop()
        elif command == "stop-job":
            worker.stop_job(payload.get("job_id"))
        elif command == "stop-execution":
            worker.request_stop_execution(payload.get("execution_id"))
        elif command == "kill-horse":
            worker.kill_horse()
        else:
            worker.log.warning("Worker %s: unknown command %r ignored", worker.name, command)

    def stop(self, running: RunningJob | None, what: str) -> bool:
        """Stop one running job (it ends STOPPED); the others go on.  False if not running here."""
        worker = self.worker
        if running is None:
            worker.log.warning("Worker %s: not running %s, stop command ignored", worker.name, what)
            return False
        if not running.interrupt(JobStopped(f"Job {running.job.id} stopped by user")):
            worker.log.info("Worker %s: job %s is already finishing, stop command ignored", worker.name,
                            running.job.id)  # fmt: skip
            return False
        worker.log.info("Worker %s: stopping job %s", worker.name, running.job.id)
        return True

    def kill_all(self) -> None:
        worker = self.worker
        if not worker.jobs:
            worker.log.info("Worker %s: no job running, kill-horse ignored", worker.name)
            return
        for running in worker.jobs:
            if running.interrupt(JobKilled(f"Job {running.job.id} killed by kill-horse command")):
                worker.log.warning("Worker %s: killing job %s", worker.name, running.job.id)

    # -- the listener ---------------------------------------------------------------------------------

    def start(self, period: float) -> None:
        """Prove the command listener hears, every ``period`` seconds."""
        worker = self.worker
        if getattr(worker, "pubsub_thread", None) is None:
            return
        self.watch = ListenerWatch(worker.connection, worker.pubsub_channel_name, period, self._subscribe_again,
                                   worker.log, self._probe_failed, worker.redis_outage.succeeded)  # fmt: skip
        self.watch.start()

    def _probe_failed(self, error: redis.exceptions.RedisError) -> None:
        worker = self.worker
        if isinstance(error, REDIS_UNAVAILABLE):
            worker.log.warning("Worker %s: command listener probe: %s", worker.name, why_unavailable(error))
            worker.redis_outage.failed(error)
        else:
            worker.log.warning("Worker %s: command listener probe failed (%s)", worker.name, error)

    def stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def _subscribe_again(self) -> None:
        worker = self.worker
        try:
            worker.unsubscribe()
        except redis.exceptions.RedisError as exc:
            worker.log.debug("Worker %s: unsubscribing a dead listener failed (%s)", worker.name, exc)
        try:
            worker.subscribe()
        except redis.exceptions.RedisError as exc:
            worker.log.warning("Worker %s: could not subscribe again yet (%s)", worker.name, exc)
