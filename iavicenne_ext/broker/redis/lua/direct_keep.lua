-- Keep a direct message in its conversation (two usernames in a room, `first` <= `second`).
-- ARGV: tagged prefix, room, first, second, frame (without direct_seq), max_count,
-- max_bytes, ttl_ms -> the direct_seq it got (the room's counter, kept for good so that a
-- client's direct_since stays meaningful).
local room, first, second, frame = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_count, max_bytes, ttl_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local pair = first .. '\31' .. second
local log = key('direct', room .. '\31' .. pair)
local size_key = key('direct-bytes', room .. '\31' .. pair)
local seq = redis.call('INCR', key('direct-seq', room))
redis.call('RPUSH', log, seq .. ' ' .. frame)
local size = redis.call('INCRBY', size_key, #frame)
local count = redis.call('LLEN', log)
-- the oldest go first (each entry is "<direct_seq> <frame>")
while count > 0 and (count > max_count or size > max_bytes) do
  local old = redis.call('LPOP', log)
  local space = string.find(old, ' ', 1, true)
  size = redis.call('INCRBY', size_key, -(#old - space))
  count = count - 1
end
local users = key('direct-users', room)
redis.call('SADD', users, first, second)
for _, name in ipairs({first, second}) do
  local mine = key('direct-of', room .. '\31' .. name)
  redis.call('SADD', mine, pair)
  redis.call('PEXPIRE', mine, ttl_ms)
end
redis.call('PEXPIRE', log, ttl_ms)
redis.call('PEXPIRE', size_key, ttl_ms)
redis.call('PEXPIRE', users, ttl_ms)
return seq
