-- Replace updates 1 to `seq` of a room's shared document with `merged`, the document
-- they make, unless the log no longer holds them one by one (another server compacted
-- further, or another life began). Updates appended after them stay.
-- ARGV: tagged prefix, room, life, seq, merged -> {1, delta of shared-total} | {0}
local room, merged = ARGV[2], ARGV[5]
local log, meta = key('shared', room), key('shared-meta', room)
local state = redis.call('HMGET', meta, 'life', 'seq', 'solo')
if state[1] ~= ARGV[3] then return {0} end
local keep = tonumber(state[2]) - tonumber(ARGV[4])
local prefix = redis.call('LLEN', log) - keep
if keep < 0 or keep > tonumber(state[3]) or prefix < 1 then return {0} end
local removed = 0
for _, update in ipairs(redis.call('LRANGE', log, 0, prefix - 1)) do removed = removed + #update end
local ttl = redis.call('PTTL', meta)
redis.call('LTRIM', log, prefix, -1)
redis.call('LPUSH', log, merged)
if ttl > 0 then redis.call('PEXPIRE', log, ttl) end  -- the list was emptied and made anew
redis.call('HSET', meta, 'solo', keep)
redis.call('HINCRBY', meta, 'bytes', #merged - removed)
redis.call('HINCRBY', SHARED_SIZES, room, #merged - removed)
return {1, #merged - removed}
