-- The kept direct messages of one username's conversations in a room after a direct_seq.
-- ARGV: tagged prefix, room, username, since -> {the room's last direct_seq, entries
-- "<direct_seq> <frame>" in no particular order}
local room, name, since = ARGV[2], ARGV[3], tonumber(ARGV[4])
local found = {}
for _, pair in ipairs(redis.call('SMEMBERS', key('direct-of', room .. '\31' .. name))) do
  for _, item in ipairs(redis.call('LRANGE', key('direct', room .. '\31' .. pair), 0, -1)) do
    local space = string.find(item, ' ', 1, true)
    if tonumber(string.sub(item, 1, space - 1)) > since then found[#found + 1] = item end
  end
end
return {redis.call('GET', key('direct-seq', room)) or '0', found}
