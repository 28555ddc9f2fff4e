-- not_withdrawn.lua (a fragment, included by other scripts): not_withdrawn(key), whether the job hash
-- `key` is still to run.
--   Reads: the job hash's `status` (HGET), whether it exists (EXISTS).  Writes nothing.
--   Withdrawn: cancelled (rq's cancel() and delete() do not look in :intermediate, where a popped job
--   waits), or taken in hand elsewhere (started, finished, failed, stopped: a duplicate of its id in a
--   queue, or a stock rq worker's maintenance, which fails a job it finds in :intermediate for a
--   minute); a key that is not a hash is no job.  Any other status runs, as rq runs what it pops:
--   created (saved and pushed by hand), deferred, scheduled, none.
--   The table is compat.WITHDRAWN_STATUSES (tests/test_lua.py checks they agree).
local withdrawn_status = {canceled = true, failed = true, finished = true, started = true, stopped = true}

local function not_withdrawn(key)
  local status = redis.pcall('HGET', key, 'status')
  if type(status) == 'table' then return false end
  if status then return not withdrawn_status[status] end
  return redis.call('EXISTS', key) == 1
end
