-- Append one Yjs update to a room's shared document, unless the document would pass
-- max_bytes (checked here, so servers appending at once cannot pass it together; the
-- deployment's total was reserved before, in its own slot). A document created anew
-- begins a life (the candidate id), forgetting the bytes of one that expired unaudited.
-- It lives with its room: kept while the room has members, else history_ttl.
-- ARGV: tagged prefix, room, update, max_bytes, life candidate, ttl_ms
-- -> {seq, life, updates kept, 1 when created, delta of shared-total} | {-1} (refused)
local room, update = ARGV[2], ARGV[3]
local log, meta = key('shared', room), key('shared-meta', room)
local size = tonumber(redis.call('HGET', meta, 'bytes') or '0')
if size + #update > tonumber(ARGV[4]) then return {-1} end
local life = redis.call('HGET', meta, 'life')
local created = 0
if not life then
  forget_shared(room)
  life, created = ARGV[5], 1
  redis.call('HSET', meta, 'life', life)
end
local count = redis.call('RPUSH', log, update)
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HINCRBY', meta, 'solo', 1)
redis.call('HINCRBY', meta, 'bytes', #update)
redis.call('HINCRBY', SHARED_SIZES, room, #update)
if redis.call('EXISTS', key('presence', room)) == 1 then
  redis.call('PERSIST', log)
  redis.call('PERSIST', meta)
else
  redis.call('PEXPIRE', log, ARGV[6])
  redis.call('PEXPIRE', meta, ARGV[6])
end
return {seq, life, count, created, SHARED_DELTA}
