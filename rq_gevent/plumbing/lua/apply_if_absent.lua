-- apply_if_absent.lua: one of rq's transactions (MULTI ... EXEC, after WATCH of keys rq expects absent)
-- applied by one script call (rq_gevent.plumbing.transactions).  Mirrors no rq function: it runs rq's own
-- commands, whichever rq version built them, as EXEC would.
--   KEYS[1 .. #KEYS - n]   the watched keys, all assumed absent (rq's dependents set of a job that
--                          succeeds): nothing is applied if one exists
--   KEYS[#KEYS - n + 1 ..] job hashes that must not be withdrawn (not_withdrawn.lua)
--   ARGV[1]                n, how many job hashes
--   ARGV[2 ..]             each command as its length and its words; it writes what rq's commands write
--   Returns false (a watched key exists), -1 (a job was withdrawn), or the commands' replies.
-- include: not_withdrawn.lua
-- include: refusal.lua
local jobs = tonumber(ARGV[1])
for i = 1, #KEYS - jobs do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
for i = #KEYS - jobs + 1, #KEYS do
  if not not_withdrawn(KEYS[i]) then return -1 end
end
local replies, i, n = {}, 2, #ARGV
while i <= n do
  local words = tonumber(ARGV[i])
  replies[#replies + 1] = run(unpack(ARGV, i + 1, i + words))
  if refused then return ran() end
  i = i + words + 1
end
return replies
