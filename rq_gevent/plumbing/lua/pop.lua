-- pop.lua: up to n job ids moved from a queue to its intermediate list, each with its job hash, in one
-- round trip; a pop whose reply was lost, asked again, returns the ids it took instead
-- (rq_gevent.plumbing.dequeue).
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0): rq/queue.py Queue.lmove (LMOVE queue -> intermediate list, LEFT
-- RIGHT), then Job.fetch's HGETALL of each job hash.
--   KEYS[1]  the queue (list): LMOVE ids out of it
--   KEYS[2]  its intermediate list: LMOVE ids into it; LPOS of a lost pop's ids
--   KEYS[3]  this worker's pop receipt (list: the pop's token, then its ids): DEL, RPUSH, EXPIRE
--   ARGV     n, job key prefix (job hashes are read: HGETALL prefix .. id), pop token, receipt seconds
--   Returns id1, hash1 (flat field/value list, empty if deleted, nil if not a hash), id2, hash2, ...
local ids = {}
local receipt = redis.pcall('LRANGE', KEYS[3], 0, -1)  -- a key of another type: no receipt, replaced
if not receipt.err and receipt[1] == ARGV[3] then
    -- This pop ran before and its reply was lost: the ids it took that still wait to start.
    for index = 2, #receipt do
        if redis.call('LPOS', KEYS[2], receipt[index]) then ids[#ids + 1] = receipt[index] end
    end
else
    for _ = 1, tonumber(ARGV[1]) do
        local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
        if not id then break end
        ids[#ids + 1] = id
    end
    if #ids > 0 then
        -- Once the first LMOVE is written nothing can refuse these (Redis checks memory only then).
        redis.call('DEL', KEYS[3])
        redis.call('RPUSH', KEYS[3], ARGV[3], unpack(ids))
        redis.call('EXPIRE', KEYS[3], ARGV[4])
    end
end
local popped = {}
for _, id in ipairs(ids) do
    popped[#popped + 1] = id
    -- HGETALL's only error is WRONGTYPE: sent back as nil for that id, not as the script's error.
    local fields = redis.pcall('HGETALL', ARGV[2] .. id)
    if fields.err then fields = false end
    popped[#popped + 1] = fields
end
return popped
