-- A room's shared document (shared_state.py), read at once: its life, the number of
-- updates appended in it, its bytes, whether the whole log follows (1) or only the updates
-- appended after update `since` of life `life` (0: the log holds each as it was appended),
-- then those updates, oldest first.
-- ARGV: tagged prefix, room, life, since -> {life, seq, bytes, whole, update...}
local meta = redis.call('HMGET', key('shared-meta', ARGV[2]), 'life', 'seq', 'solo', 'bytes')
local life, seq, solo = meta[1] or '', tonumber(meta[2] or '0'), tonumber(meta[3] or '0')
local missing = seq - tonumber(ARGV[4])
local reply = {life, seq, meta[4] or '0', 1}
local first = 0
if life ~= '' and life == ARGV[3] and missing >= 0 and missing <= solo then
  reply[4] = 0
  if missing == 0 then return reply end
  first = -missing
end
for _, update in ipairs(redis.call('LRANGE', key('shared', ARGV[2]), first, -1)) do
  reply[#reply + 1] = update
end
return reply
