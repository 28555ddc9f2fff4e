-- heartbeat.lua: rq's heartbeat writes for one running job, atomic and only while its execution still
-- exists (rq_gevent.compat.JobHeartbeats).  With many jobs ending at once, Redis reads a large
-- heartbeat pipeline in chunks interleaved with the jobs' own clean-up pipelines, so rq's unconditional
-- HSET would re-create an execution hash just deleted.
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0): rq/executions.py Execution.heartbeat (the execution hash,
-- StartedJobRegistry.add_execution(xx=True), ExecutionRegistry.add: XX from rq 3 on); rq/job.py
-- Job.heartbeat (only while the job hash exists, as xx=True).
--   KEYS[1]  execution hash: must exist; HSET last_heartbeat, EXPIRE ttl
--   KEYS[2]  the queue's started registry (zset): ZADD XX composite key at ARGV[2]
--   KEYS[3]  the job's executions registry (zset): ZADD (XX when ARGV[8] is "XX") execution id at
--            ARGV[5], EXPIRE ttl + 60
--   KEYS[4]  job hash: HSET last_heartbeat, if it exists
--   ARGV     ttl, started-registry score, execution id, composite key, execution-registry score,
--            heartbeat timestamp (float), heartbeat time (rq's string format), "XX" or ""
--   Returns 0 (the execution is gone: nothing written) or 1.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[4])
if ARGV[8] == 'XX' then
    redis.call('ZADD', KEYS[3], 'XX', ARGV[5], ARGV[3])
else
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
end
redis.call('EXPIRE', KEYS[3], ttl + 60)
if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('HSET', KEYS[4], 'last_heartbeat', ARGV[7])
end
return 1
