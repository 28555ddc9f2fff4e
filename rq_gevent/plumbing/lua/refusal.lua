-- refusal.lua (a fragment, included by other scripts): commands run as EXEC runs them.
--   refusal_in(reply): the refusal of writes a redis.pcall's reply is (OOM, READONLY, NOREPLICAS,
--   MISCONF, a read-only replica), else nil.  Redis refuses a script's writes only until its first one
--   lands: a script that meets one ends with it, as EXEC aborts, nothing applied.
--   run(command...): the command's reply; an error is kept and the other commands still run (as in
--   EXEC), none after a refusal.
--   ran(): the reply of a script whose caller needs no other: the refusal, else the first error, else 1.
--   Touches only the keys its callers name.
local function refusal_in(reply)
  if type(reply) ~= 'table' or not reply.err then return nil end
  -- Redis 6.2 words it "@user_script: 1: -OOM command not allowed ...", with a line end
  local err = reply.err:gsub('^@user_script: %d+: ', ''):gsub('^%-', ''):gsub('%s+$', '')
  for _, refusal in ipairs({'^OOM ', '^READONLY ', '^NOREPLICAS ', '^MISCONF ', 'read only replica'}) do
    if string.find(err, refusal) then return err end
  end
  return nil
end

local refused, first_error
local function run(...)
  if refused then return end
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    refused = refusal_in(reply)
    first_error = first_error or reply
  end
  return reply
end

local function ran()
  if refused then return redis.error_reply(refused) end
  return first_error or 1
end
