-- Replace the first `count` updates of a room's shared document with `merged`, the
-- document they make, unless another server compacted since this one read it (the
-- generation moved). Updates appended meanwhile are after them, and stay.
-- ARGV: tagged prefix, room, generation, count, merged, ttl_ms -> 1 | 0
local log, meta = key('shared', ARGV[2]), key('shared-meta', ARGV[2])
if (redis.call('HGET', meta, 'gen') or '0') ~= ARGV[3] then return 0 end
local count = tonumber(ARGV[4])
local removed = 0
for _, update in ipairs(redis.call('LRANGE', log, 0, count - 1)) do removed = removed + #update end
redis.call('LTRIM', log, count, -1)
redis.call('LPUSH', log, ARGV[5])
redis.call('HINCRBY', meta, 'bytes', #ARGV[5] - removed)
redis.call('HINCRBY', meta, 'gen', 1)
redis.call('PEXPIRE', log, ARGV[6])
redis.call('PEXPIRE', meta, ARGV[6])
return 1
