-- Create a room's access record, unless it has one, or members or history already (its
-- people and what they said would suddenly be in a private room), or its owner has
-- max_per_owner records.
-- ARGV: prefix, room, kind, owner, group ('' for none), max_per_owner, n, n x member
-- -> 'created' | 'exists' | 'budget'
local room = ARGV[2]
local record = key('access', room)
if redis.call('EXISTS', record, key('meta', room), key('presence', room), key('presence', 'signaling/' .. room)) > 0 then
  return 'exists'
end
local owned = P .. ':access-of:' .. ARGV[4]
if redis.call('SCARD', owned) >= tonumber(ARGV[6]) then return 'budget' end
redis.call('HSET', record, 'kind', ARGV[3], 'owner', ARGV[4], 'group', ARGV[5])
for i = 1, tonumber(ARGV[7]) do
  redis.call('SADD', key('access-members', room), ARGV[7 + i])
end
redis.call('SADD', owned, room)
redis.call('SADD', P .. ':access-rooms', room)
return 'created'
