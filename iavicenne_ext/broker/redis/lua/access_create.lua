-- Create a room's access record, unless it has one, or members or history already (its
-- people and what they said would suddenly be in a private room). The owner's budget
-- (max_private_rooms_per_identity) was reserved before, in the deployment's slot
-- (access_reserve.lua); the broker gives it back when this answers 'exists'.
-- ARGV: tagged prefix, room, kind, owner, group ('' for none), n, n x member
-- A room created private or group starts with no shared document: one written while it
-- was public and forgotten since (but not its bytes yet) is deleted.
-- -> {'created', delta of shared-total} | {'exists', owner of the record there, '' for none}
local room = ARGV[2]
local record = key('access', room)
if redis.call('EXISTS', record, key('meta', room), key('presence', room), key('presence', 'signaling/' .. room)) > 0 then
  return {'exists', redis.call('HGET', record, 'owner') or ''}
end
redis.call('HSET', record, 'kind', ARGV[3], 'owner', ARGV[4], 'group', ARGV[5])
for i = 1, tonumber(ARGV[6]) do
  redis.call('SADD', key('access-members', room), ARGV[6 + i])
end
forget_shared(room)
return {'created', SHARED_DELTA}
