-- ARGV: tagged prefix, room, conn, entry JSON; nothing when the connection is not registered
local presence = key('presence', ARGV[2])
if redis.call('HEXISTS', presence, ARGV[3]) == 1 then
  redis.call('HSET', presence, ARGV[3], ARGV[4])
end
return 0
