-- A room's access record. ARGV: prefix, room -> {} (none) | {kind, owner, group, member...}
local room = ARGV[2]
local fields = redis.call('HMGET', key('access', room), 'kind', 'owner', 'group')
if not fields[1] then return {} end
local answer = {fields[1], fields[2], fields[3] or ''}
for _, member in ipairs(redis.call('SMEMBERS', key('access-members', room))) do
  answer[#answer + 1] = member
end
return answer
