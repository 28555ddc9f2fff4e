-- success.lua: rq's record of a success with no dependents, applied as EXEC would
-- (rq_gevent.plumbing.job_writes, for rq's own Job).
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0): rq/worker BaseWorker.handle_job_success; rq/job.py
-- Job._handle_success, Job.cleanup; rq/executions.py cleanup_execution (rq 3) or
-- BaseWorker.cleanup_execution (rq 2); the job's last heartbeat (handle_execution_ended) in the one HSET.
--   KEYS[1]  job hash: HSET of Job.to_dict() without meta and result (status finished, ended_at,
--            last_heartbeat, ...: ARGV[7 .. 6 + words]); EXPIRE result ttl when positive
--   KEYS[2]  its dependents set: must not exist (else nothing is written: rq's own code records it)
--   KEYS[3]  its dependencies key: EXPIRE result ttl when positive
--   KEYS[4]  its results stream: XADD MAXLEN ~ 10 of the Result (ARGV[7 + words ..]); EXPIRE result
--            ttl, or PERSIST for -1
--   KEYS[5]  the queue's finished registry (zset): ZADD job id at ARGV[2]
--   KEYS[6]  execution hash: DEL
--   KEYS[7]  the queue's started registry (zset): ZREM composite key
--   KEYS[8]  the job's executions registry (zset): ZREM execution id
--   KEYS[9]  the worker's executions set (rq 3): SREM composite key; or KEYS[1] again
--   ARGV     result ttl, finished-registry score, composite key, execution id, job id, words, job
--            fields and values, result fields and values
--   Returns false (the job has dependents now), or ran()'s reply.
-- include: refusal.lua
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local ttl, words = tonumber(ARGV[1]), tonumber(ARGV[6])
run('HSET', KEYS[1], unpack(ARGV, 7, 6 + words))
run('XADD', KEYS[4], 'MAXLEN', '~', '10', '*', unpack(ARGV, 7 + words))
if ttl == -1 then run('PERSIST', KEYS[4]) else run('EXPIRE', KEYS[4], ttl) end
run('ZADD', KEYS[5], ARGV[2], ARGV[5])
if ttl > 0 then  -- rq's EXPIRE of the dependents set too, which does not exist
  run('EXPIRE', KEYS[1], ttl)
  run('EXPIRE', KEYS[3], ttl)
end
run('DEL', KEYS[6])
run('ZREM', KEYS[7], ARGV[3])
run('ZREM', KEYS[8], ARGV[4])
if KEYS[9] ~= KEYS[1] then run('SREM', KEYS[9], ARGV[3]) end
return ran()
