-- Append one Yjs update to a room's shared document, unless the document would pass
-- max_bytes (checked here, so servers appending at once cannot pass it together). The
-- document lives ttl_ms after its last change.
-- ARGV: tagged prefix, room, update, max_bytes, ttl_ms -> the number of updates kept, or -1 (refused)
local log, meta = key('shared', ARGV[2]), key('shared-meta', ARGV[2])
local size = tonumber(redis.call('HGET', meta, 'bytes') or '0')
if size + #ARGV[3] > tonumber(ARGV[4]) then return -1 end
local count = redis.call('RPUSH', log, ARGV[3])
redis.call('HINCRBY', meta, 'bytes', #ARGV[3])
redis.call('PEXPIRE', log, ARGV[5])
redis.call('PEXPIRE', meta, ARGV[5])
return count
