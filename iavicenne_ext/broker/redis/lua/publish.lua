-- Dedup, take the room's next seq, store the frame and PUBLISH it, in one step: every
-- server receives a room's frames in seq order.
-- ARGV: prefix, room, frame (without seq), candidate epoch, history size, history ttl ms,
--       dedup key | '', dedup ttl ms, history bytes per room, history bytes in total,
--       dedup identity, dedup keys per identity
-- -> {seq, 0} | {seq the dedup key got, 1} | {0, 2} when the deployment's history is full
local room = ARGV[2]
local frame = ARGV[3]
local dedup = ARGV[7]
local per_room, total_max = tonumber(ARGV[9]), tonumber(ARGV[10])
if dedup ~= '' then
  local known = redis.call('GET', P .. ':dedup:' .. dedup)
  if known then return {tonumber(known), 1} end
end
local epoch = ensure_room(room, ARGV[4], ARGV[6])
local meta = key('meta', room)
local history = key('history', room)
local size = #frame
account_expired(8)
local over = total_bytes() + size - total_max
if over > 0 then
  account_expired(128)
  over = total_bytes() + size - total_max
end
if over > 0 then
  -- the history of all rooms is full: this room makes space from its own oldest frames,
  -- and when it has too few, the message is refused (and nothing dropped)
  if room_bytes(room) < over then return {0, 2} end
  trim(room, math.huge, room_bytes(room) - over, 0)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
-- kept and published without its seq: the entry id and the envelope carry it, and the
-- reader puts it into the frame (protocol.with_seq)
redis.call('XADD', history, seq .. '-0', 'f', frame)
redis.call('HINCRBY', SIZES, room, size)
redis.call('INCRBY', TOTAL, size)
-- exact bounds, in count and in bytes: the oldest kept seq is then known, so
-- `recovered` is exact; the new frame is kept even when it alone is over the bytes
trim(room, tonumber(ARGV[5]), per_room, 1)
if redis.call('EXISTS', key('presence', room)) == 0 then
  expire_room(room, ARGV[6])
end
if dedup ~= '' then
  remember(dedup, seq, ARGV[8], ARGV[11], tonumber(ARGV[12]))
end
-- the envelope (envelope.py): one JSON header line, then the frame
redis.call('PUBLISH', key('room', room), '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '"}\n' .. frame)
return {seq, 0}
