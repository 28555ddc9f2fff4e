"""Heartbeats of running jobs that can never resurrect a job that has just ended.

rq's ``Execution.heartbeat`` and ``Job.heartbeat`` write unconditionally.  With many jobs ending at
once, Redis reads a large heartbeat pipeline in chunks interleaved with the jobs' own clean-up
pipelines, so an unconditional HSET re-creates an execution hash (and its registry entries) that
was just deleted.  This script does the same writes as rq 2.3-2.12 (``Execution.heartbeat``, the
started registry's ``add_execution(xx=True)``, ``ExecutionRegistry.add``, ``Job.heartbeat``), but
atomically and only while the execution still exists.
"""

from __future__ import annotations

from typing import Any

from rq.utils import current_timestamp, utcformat

# KEYS: execution hash, started registry, job's execution registry, job hash
# ARGV: ttl, started-registry score, execution id, composite key, execution-registry score,
#       heartbeat timestamp (float), heartbeat time (rq's string format)
_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
redis.call('EXPIRE', KEYS[3], ttl + 60)
if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('HSET', KEYS[4], 'last_heartbeat', ARGV[7])
end
return 1
"""


class JobHeartbeats:
    def __init__(self, connection: Any):
        self._script = connection.register_script(_BEAT)

    def beat(self, pipeline: Any, execution: Any, job: Any, ttl: int, beat_time: Any) -> None:
        """Queue one running job's heartbeat on ``pipeline``."""
        now_ts = current_timestamp()
        started_score = "+inf" if ttl < 0 else now_ts + ttl
        self._script(
            keys=[
                execution.key,
                job.started_job_registry.key,
                job.execution_registry.key,
                job.key,
            ],
            args=[
                ttl,
                started_score,
                execution.id,
                execution.composite_key,
                now_ts + ttl + 60,
                beat_time.timestamp(),
                utcformat(beat_time),
            ],
            client=pipeline,
        )
