-- Forget every conversation of a room (its access record was deleted); its direct_seq
-- counter stays. ARGV: tagged prefix, room
local room = ARGV[2]
local users = key('direct-users', room)
for _, name in ipairs(redis.call('SMEMBERS', users)) do
  local mine = key('direct-of', room .. '\31' .. name)
  for _, pair in ipairs(redis.call('SMEMBERS', mine)) do
    redis.call('DEL', key('direct', room .. '\31' .. pair), key('direct-bytes', room .. '\31' .. pair))
  end
  redis.call('DEL', mine)
end
redis.call('DEL', users)
return 0
