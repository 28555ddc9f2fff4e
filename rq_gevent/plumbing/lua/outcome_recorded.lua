-- outcome_recorded.lua: whether a server has the outcome of one run, atomically; if it lacks the run's
-- start too (a failover lost it), the start is written back for the outcome to be recorded again
-- (rq_gevent.plumbing.job_writes.outcome_recorded).  Not an optimisation: it runs on every rq version.
-- rq's outcome transactions (success, failure, retry, stop) and its clean-up of an abandoned job each
-- remove the execution from the started registry; a server that never had the run's start lacks it
-- too, and still has the job queued with another start (an immediate retry leaves it queued with this
-- one), or the status it had before the run (one not_withdrawn.lua does not withdraw).
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0), in its write-back: rq/job.py Job.prepare_for_execution's status,
-- started_at, worker_name and last_heartbeat; rq/registry.py StartedJobRegistry.add.
--   KEYS[1]  job hash: reads status, started_at; the write-back HSETs status started, started_at,
--            worker_name, last_heartbeat
--   KEYS[2]  the queue's started registry (zset): reads the run's composite key; the write-back ZADDs it
--   KEYS[3]  the queue: the write-back LREMs the job id
--   KEYS[4]  its intermediate list: the write-back LREMs the job id
--   ARGV     composite key, job id, the run's started_at, worker name, started-registry score
--   Returns 1: recorded; 0: started, not recorded; -1: neither, and the start is written back now.
-- include: not_withdrawn.lua
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local job = redis.call('HMGET', KEYS[1], 'status', 'started_at')
if not job[1] or withdrawn_status[job[1]] or job[2] == ARGV[3] then return 1 end
redis.call('LREM', KEYS[3], 0, ARGV[2])
redis.call('LREM', KEYS[4], 0, ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'started', 'started_at', ARGV[3], 'worker_name', ARGV[4],
           'last_heartbeat', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return -1
