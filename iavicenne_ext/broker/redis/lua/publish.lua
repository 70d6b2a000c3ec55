-- Dedup, take the room's next seq, store the frame and publish it, in one step: every
-- server receives a room's frames in seq order.
-- ARGV: tagged prefix, room, frame (without seq), candidate epoch, history size, history ttl
--       ms, dedup key | '', dedup ttl ms, history bytes per room, history bytes in total,
--       dedup identity, dedup keys per identity, the deployment's history bytes counting
--       this frame (the broker reserved its size in history-total), 'PUBLISH' | 'SPUBLISH'
-- -> {seq, 0, delta, new} | {seq the dedup key got, 1, delta} | {0, 2, delta} when the
--    deployment's history is full; delta: what history-total must change by beyond the
--    reservation; new: 1 when the room had no bytes counted (the broker lists it for audits)
local room = ARGV[2]
local frame = ARGV[3]
local dedup = ARGV[7]
local per_room, total_max, total = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[13])
local size = #frame
if dedup ~= '' then
  local known = redis.call('GET', P .. ':dedup:' .. dedup)
  if known then return {tonumber(known), 1, -size} end
end
local epoch = ensure_room(room, ARGV[4], ARGV[6])
local meta = key('meta', room)
local history = key('history', room)
-- what a new life of the room forgot is no longer in the total either
local over = total + DELTA - total_max
if over > 0 then
  -- the history of all rooms is full: this room makes space from its own oldest frames,
  -- and when it has too few, the message is refused (and nothing dropped)
  if room_bytes(room) < over then return {0, 2, DELTA - size} end
  trim(room, math.huge, room_bytes(room) - over, 0)
end
local new = 0
if not redis.call('HGET', SIZES, room) then new = 1 end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
-- kept and published without its seq: the entry id and the envelope carry it, and the
-- reader puts it into the frame (protocol.with_seq)
redis.call('XADD', history, seq .. '-0', 'f', frame)
redis.call('HINCRBY', SIZES, room, size)
-- exact bounds, in count and in bytes: the oldest kept seq is then known, so
-- `recovered` is exact; the new frame is kept even when it alone is over the bytes
trim(room, tonumber(ARGV[5]), per_room, 1)
if redis.call('EXISTS', key('presence', room)) == 0 then
  expire_room(room, ARGV[6])
end
if dedup ~= '' then
  remember(dedup, seq, ARGV[8], ARGV[11], tonumber(ARGV[12]))
end
-- the envelope (envelope.py): one JSON header line, then the frame; on a cluster through
-- the shard of the room's slot (SPUBLISH), elsewhere to every subscriber (PUBLISH)
redis.call(ARGV[14], key('room', room), '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '"}\n' .. frame)
return {seq, 0, DELTA, new}
