-- The owner's moderation of one member, kept with the room's access record (access.py,
-- RoomAccess.moderated): mute and unmute, remove (from a private room's invited members
-- too) and readmit.
-- ARGV: tagged prefix, room, 'mute' | 'unmute' | 'remove' | 'readmit', username -> 'done' | 'missing'
local room, action, username = ARGV[2], ARGV[3], ARGV[4]
if not redis.call('HGET', key('access', room), 'kind') then return 'missing' end
if action == 'mute' then
  redis.call('SADD', key('access-muted', room), username)
elseif action == 'unmute' then
  redis.call('SREM', key('access-muted', room), username)
elseif action == 'remove' then
  redis.call('SADD', key('access-removed', room), username)
  redis.call('SREM', key('access-members', room), username)
elseif action == 'readmit' then
  redis.call('SREM', key('access-removed', room), username)
end
return 'done'
