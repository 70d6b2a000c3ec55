-- Replace the frame kept under one seq, if it is still the one the server read (compare
-- and swap): the stream's entry is deleted (XDEL) and the new frame kept in revised
-- (common.lua), or revised's entry replaced. The room's bytes count the new size.
-- ARGV: tagged prefix, room, seq, expected frame, new frame (both without seq)
-- -> {1 | 0 (not replaced), delta of history-total}
local room, seq, expected, frame = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local meta = key('meta', room)
if redis.call('EXISTS', meta) == 0 then return {0, 0} end
local history, revised = key('history', room), key('revised', room)
local id = seq .. '-0'
local row = redis.call('XRANGE', history, id, id)[1]
local current
if row then
  current = row[2][2]
else
  local member = redis.call('ZRANGEBYSCORE', revised, seq, seq)[1]
  if not member then return {0, 0} end
  current = revised_frame(member)
end
if current ~= expected then return {0, 0} end
if row then
  redis.call('XDEL', history, id)
else
  redis.call('ZREMRANGEBYSCORE', revised, seq, seq)
end
redis.call('ZADD', revised, seq, seq .. ':' .. frame)
-- it lives as long as the room's history: no longer when the room is empty
local ttl = redis.call('PTTL', meta)
if ttl > 0 then redis.call('PEXPIRE', revised, ttl) end
local delta = #frame - #current
redis.call('HINCRBY', SIZES, room, delta)
return {1, delta}
