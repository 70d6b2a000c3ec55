-- A room's shared document (shared_state.py), read at once: its generation (changes at
-- each compaction), its bytes, then its updates, oldest first.
-- ARGV: tagged prefix, room -> {generation, bytes, update...}
local meta = redis.call('HMGET', key('shared-meta', ARGV[2]), 'gen', 'bytes')
local reply = {meta[1] or '0', meta[2] or '0'}
for _, update in ipairs(redis.call('LRANGE', key('shared', ARGV[2]), 0, -1)) do
  reply[#reply + 1] = update
end
return reply
