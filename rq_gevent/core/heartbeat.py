"""One greenlet keeps the worker and every running job's execution alive, in batched pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gevent
import redis.exceptions
from rq import worker_registration
from rq.utils import now

from .. import compat
from ..plumbing.redis_waits import REDIS_UNAVAILABLE
from .background import Background

if TYPE_CHECKING:
    from rq.worker import Worker

    from ..alerts import RedisOutage
    from .running import RunningJob, RunningJobs
    from .worker_counters import WorkerCounters

# Heartbeats of this many jobs share one pipeline.
HEARTBEAT_BATCH = 200


class Heartbeat(Background):
    """``worker``: the rq worker whose key and running jobs' executions are kept alive, by rq's methods."""

    def __init__(self, worker: Worker, jobs: RunningJobs, redis_outage: RedisOutage, counters: WorkerCounters,
                 scripted: bool) -> None:  # fmt: skip
        """``scripted``: each job's heartbeat by ``lua/heartbeat.lua`` (else by rq's own methods)."""
        self.worker, self.jobs, self.redis_outage, self.counters = worker, jobs, redis_outage, counters
        self.scripted = scripted
        self._job_heartbeats: compat.JobHeartbeats | None = None

    def run(self) -> None:
        worker = self.worker
        while True:
            gevent.sleep(worker.job_monitoring_interval)
            try:
                self.send()
                self.redis_outage.succeeded()
            except redis.exceptions.RedisError as exc:
                worker.log.warning("Worker %s: heartbeat failed (%s); retrying next beat", worker.name, exc)
                if isinstance(exc, REDIS_UNAVAILABLE):
                    # The loop may be waiting for a free slot, not touching Redis: count this too.
                    self.redis_outage.failed(exc)
            except Exception:
                # Never let the heartbeat die: without it every running job would look abandoned.
                worker.log.exception("Worker %s: heartbeat failed; retrying next beat", worker.name)

    def send(self) -> None:
        """Refresh the worker key and every running job's execution and job hash, in batches."""
        worker = self.worker
        worker_ttl = max(worker.worker_ttl, int(worker.job_monitoring_interval)) + 60
        running = [r for r in self.jobs if r.beating]
        if self._job_heartbeats is None:
            self._job_heartbeats = compat.JobHeartbeats(worker.connection, self.scripted)
        batches = [running[i : i + HEARTBEAT_BATCH] for i in range(0, len(running), HEARTBEAT_BATCH)] or [[]]
        for index, batch in enumerate(batches):
            with worker.connection.pipeline(transaction=False) as pipeline:
                if index == 0:
                    # Checked first: rq's own heartbeat commands differ between releases.  "birth",
                    # not the key: the counters' tick may have re-created a hash without it.
                    pipeline.hexists(worker.key, "birth")
                    pipeline.sismember(worker_registration.REDIS_WORKER_KEYS, worker.key)
                    worker.heartbeat(worker_ttl, pipeline=pipeline)
                beat_time = now()
                checks = []
                for item in batch:
                    ttl = worker.get_heartbeat_ttl(item.job)
                    checks.append(self._job_heartbeats.beat(pipeline, item.execution, item.job, ttl, beat_time))
                results = pipeline.execute()
                if self.scripted:
                    self._note_lost_executions(batch, results[len(results) - len(batch) :])
                else:
                    for item, reply_at in zip(batch, checks, strict=True):
                        self._job_heartbeats.delete_recreated(worker.connection, item.job, results[reply_at])
                if index == 0 and not (results[0] and results[1]):
                    # The worker hash had expired (e.g. Redis restarted without persistence) or was re-created.
                    self._reregister(worker_ttl)

    def _note_lost_executions(self, batch: list[RunningJob], beats: list[Any]) -> None:
        """A running job whose execution hash is gone (deleted by hand?): its heartbeat does not re-create
        it, so say so once; the job runs on and its outcome is recorded as usual."""
        for running, beat in zip(batch, beats, strict=True):
            if beat == 0 and not running.execution_lost:
                running.execution_lost = True
                worker = self.worker
                worker.log.warning("Worker %s: execution %s of running job %s is gone from Redis; the job runs on, "
                                   "but rq's maintenance may fail it as abandoned", worker.name, running.execution.id,
                                   running.job.id)  # fmt: skip

    def _reregister(self, ttl: int) -> None:
        """What rq's ``register_birth`` writes (its fields, ``rq:workers`` and the queue's workers set),
        the worker's state and the heartbeat's TTL, in one transaction.  rq's own method would check
        first and refuse a hash a counter re-created, and reset the birth date; the counters a hash
        still holds are kept."""
        worker = self.worker
        worker.log.warning("Worker %s: worker key had expired or lost its registration; registering again",
                           worker.name)  # fmt: skip
        with worker.connection.pipeline() as pipeline:
            pipeline.hset(worker.key, mapping=compat.worker_registration_fields(worker))
            pipeline.hset(worker.key, "state", worker.get_state())
            pipeline.expire(worker.key, ttl)
            worker_registration.register(worker, pipeline)
            pipeline.execute()
        self.counters.current_job_changed()  # the next tick names the running job again
