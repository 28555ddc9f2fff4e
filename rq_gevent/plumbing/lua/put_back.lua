-- put_back.lua: jobs popped ahead of a free slot that never started, back at the front of their queue
-- in pop order, those not withdrawn meanwhile (rq_gevent.plumbing.dequeue).
-- Mirrors (rq 2.3.3, 2.12.0, 3.0.0): rq/intermediate_queue.py IntermediateQueue.remove (LREM), then
-- Queue.push_job_id(at_front=True) (LPUSH).
--   KEYS[1]  the queue (list): LPUSH each id put back
--   KEYS[2]  its intermediate list: LREM 1 each id; RPUSH an id whose LPUSH was refused, for maintenance
--   ARGV     job key prefix (job hashes are read: not_withdrawn.lua), then the job ids in pop order
--   Returns how many were put back, or the refusal of an LPUSH.
-- include: not_withdrawn.lua
local back = 0
for i = #ARGV, 2, -1 do
    if redis.call('LREM', KEYS[2], 1, ARGV[i]) == 1 and not_withdrawn(ARGV[1] .. ARGV[i]) then
        local pushed = redis.pcall('LPUSH', KEYS[1], ARGV[i])
        if type(pushed) == 'table' and pushed.err then
            -- refused after its LREM (an ACL, a queue key that is not a list): back for maintenance
            redis.call('RPUSH', KEYS[2], ARGV[i])
            return redis.error_reply(pushed.err)
        end
        back = back + 1
    end
end
return back
