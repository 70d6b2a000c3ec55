-- Add or remove a member of a private room (an invitation lifts a removal).
-- ARGV: tagged prefix, room, 'add' | 'remove', username, max members -> 'done' | 'missing' | 'full'
local room = ARGV[2]
if redis.call('HGET', key('access', room), 'kind') ~= 'private' then return 'missing' end
local members = key('access-members', room)
if ARGV[3] == 'remove' then
  redis.call('SREM', members, ARGV[4])
  return 'done'
end
if redis.call('SISMEMBER', members, ARGV[4]) == 0 and redis.call('SCARD', members) >= tonumber(ARGV[5]) then
  return 'full'
end
redis.call('SADD', members, ARGV[4])
redis.call('SREM', key('access-removed', room), ARGV[4])  -- an invitation lifts a removal
return 'done'
