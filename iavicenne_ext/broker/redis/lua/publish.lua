-- Dedup, take the room's next seq, store the frame and PUBLISH it, in one step: every
-- server receives a room's frames in seq order.
-- ARGV: prefix, room, frame (without seq), candidate epoch, history size, history ttl ms,
--       dedup key | '', dedup ttl ms  -> {seq, 1 when the dedup key was seen before}
local room = ARGV[2]
local frame = ARGV[3]
local dedup = ARGV[7]
if dedup ~= '' then
  local known = redis.call('GET', P .. ':dedup:' .. dedup)
  if known then return {tonumber(known), 1} end
end
local epoch = ensure_room(room, ARGV[4], ARGV[6])
local meta = key('meta', room)
local history = key('history', room)
local seq = redis.call('HINCRBY', meta, 'seq', 1)
-- kept and published without its seq: the entry id and the envelope carry it, and the
-- reader puts it into the frame (protocol.with_seq)
-- exact MAXLEN: the oldest kept seq is then known, so `recovered` is exact
redis.call('XADD', history, 'MAXLEN', ARGV[5], seq .. '-0', 'f', frame)
if redis.call('EXISTS', key('presence', room)) == 0 then
  redis.call('PEXPIRE', meta, ARGV[6])
  redis.call('PEXPIRE', history, ARGV[6])
end
if dedup ~= '' then
  redis.call('SET', P .. ':dedup:' .. dedup, seq, 'PX', ARGV[8])
end
-- the envelope (envelope.py): one JSON header line, then the frame
redis.call('PUBLISH', key('room', room), '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '"}\n' .. frame)
return {seq, 0}
