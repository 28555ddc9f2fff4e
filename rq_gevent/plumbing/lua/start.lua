-- start.lua: rq's start of a job, applied as EXEC would, only if the job was not withdrawn
-- (rq_gevent.plumbing.job_writes, for rq's own Job on a worker already busy).
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0): rq/executions.py Execution.create; rq/job.py
-- Job.prepare_for_execution, Job.heartbeat; rq/worker BaseWorker.prepare_job_execution (its LREM from
-- the intermediate list; rq 3 its PERSIST, rq 2 Job.perform's).
--   KEYS[1]  job hash: HSET of the fields Job.prepare_for_execution sets (status started, started_at,
--            worker_name, last_heartbeat, ...: ARGV[7 + words ..]), PERSIST
--   KEYS[2]  execution hash: HSET of Execution's fields (ARGV[7 .. 6 + words]), EXPIRE ttl
--   KEYS[3]  the job's executions registry (zset): ZADD execution id at now + ttl + 60, EXPIRE ttl + 60
--   KEYS[4]  the queue's started registry (zset): ZADD composite key at now + ttl
--   KEYS[5]  the queue's intermediate list: LREM 1 job id; or KEYS[1] again (no LREM)
--   KEYS[6]  the worker's executions set (rq 3): SADD composite key, EXPIRE ttl + 60; or KEYS[1] again
--   ARGV     ttl, now (seconds), execution id, composite key, job id, words, execution fields and
--            values, job fields and values
--   Returns -1 (withdrawn: nothing written), or ran()'s reply.
-- include: not_withdrawn.lua
-- include: refusal.lua
if not not_withdrawn(KEYS[1]) then return -1 end
local ttl, now, words = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
run('HSET', KEYS[2], unpack(ARGV, 7, 6 + words))
run('EXPIRE', KEYS[2], ttl)
run('ZADD', KEYS[3], now + ttl + 60, ARGV[3])
run('EXPIRE', KEYS[3], ttl + 60)
run('ZADD', KEYS[4], now + ttl, ARGV[4])
if KEYS[6] ~= KEYS[1] then
  run('SADD', KEYS[6], ARGV[4])
  run('EXPIRE', KEYS[6], ttl + 60)
end
run('HSET', KEYS[1], unpack(ARGV, 7 + words))
if KEYS[5] ~= KEYS[1] then run('LREM', KEYS[5], 1, ARGV[5]) end
run('PERSIST', KEYS[1])
return ran()
