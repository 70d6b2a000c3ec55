-- Move a person's read position forward (never back, never past the room's last seq).
-- Positions are '<epoch> <seq>' by username in read:R; one of another life counts as 0.
-- ARGV: tagged prefix, room, username, seq (-1: only read it) -> {epoch, read, seq}
local room, username, wanted = ARGV[2], ARGV[3], tonumber(ARGV[4])
local meta = key('meta', room)
local fields = redis.call('HMGET', meta, 'epoch', 'seq')
if not fields[1] then return {'', 0, 0} end
local epoch, seq = fields[1], tonumber(fields[2])
local reads = key('read', room)
local read = 0
local kept = redis.call('HGET', reads, username)
if kept then
  local space = string.find(kept, ' ', 1, true)
  if string.sub(kept, 1, space - 1) == epoch then read = tonumber(string.sub(kept, space + 1)) end
end
if wanted > read then
  read = math.min(wanted, seq)
  redis.call('HSET', reads, username, epoch .. ' ' .. read)
  local ttl = redis.call('PTTL', meta)
  if ttl > 0 then redis.call('PEXPIRE', reads, ttl) end
end
return {epoch, read, seq}
