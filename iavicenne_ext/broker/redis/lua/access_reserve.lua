-- In the deployment's slot: count a room against its owner's budget before its record is
-- created in the room's slot (access_create.lua), and list it among the rooms with a
-- record; or give the reservation back ('release').
-- ARGV: deployment's tagged prefix, 'reserve' | 'release', owner, room, max_per_owner,
--       1 when the room has a record nonetheless (release: keep it listed)
-- -> 'ok' | 'budget'
local owned = P .. ':access-of:' .. ARGV[3]
local room = ARGV[4]
if ARGV[2] == 'release' then
  redis.call('SREM', owned, room)
  if ARGV[6] ~= '1' then redis.call('SREM', P .. ':access-rooms', room) end
  return 'ok'
end
if redis.call('SISMEMBER', owned, room) == 0 and redis.call('SCARD', owned) >= tonumber(ARGV[5]) then
  return 'budget'
end
redis.call('SADD', owned, room)
redis.call('SADD', P .. ':access-rooms', room)
return 'ok'
