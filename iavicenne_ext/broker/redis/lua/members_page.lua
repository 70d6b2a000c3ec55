-- A page of a room's members, in user_id order, and how many there are: the page's time,
-- whatever the room's size (the indexes of common.lua), read in one step so the count and
-- the page are of the same moment.
-- ARGV: tagged prefix, room, after (user_id the page starts after; '' : the first), limit
-- -> {count, more (1: users follow the page), user_id, n, n x entry JSON, user_id, n, ...}
local room, after, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local members, conns = key('members', room), key('member-conns', room)
local users, presence = key('users', room), key('presence', room)
-- A room whose members joined before these indexes existed (a server upgraded while the
-- room was in use) is indexed here, once: the sizes differ only then, and comparing them
-- costs nothing.
if redis.call('ZCARD', members) ~= redis.call('HLEN', users) or redis.call('ZCARD', conns) ~= redis.call('HLEN', presence) then
  redis.call('DEL', members, conns)
  for _, user in ipairs(redis.call('HKEYS', users)) do redis.call('ZADD', members, 0, user) end
  local all = redis.call('HGETALL', presence)
  for i = 1, #all, 2 do
    redis.call('ZADD', conns, 0, cjson.decode(all[i + 1]).user_id .. '\0' .. all[i])
  end
end
local start = '-'
if after ~= '' then start = '(' .. after end
local listed = redis.call('ZRANGEBYLEX', members, start, '+', 'LIMIT', 0, limit + 1)
local more = 0
if #listed > limit then more = 1 end
local answer = {redis.call('ZCARD', members), more}
for i = 1, math.min(limit, #listed) do
  local user = listed[i]
  answer[#answer + 1] = user
  local at = #answer + 1
  answer[at] = 0
  -- one user's connections: the lex range 'user NUL' .. 'user \1' (a user_id has no NUL)
  for _, m in ipairs(redis.call('ZRANGEBYLEX', conns, '[' .. user .. '\0', '(' .. user .. '\1')) do
    local entry = redis.call('HGET', presence, string.sub(m, #user + 2))
    if entry then
      answer[#answer + 1] = entry
      answer[at] = answer[at] + 1
    end
  end
end
return answer
