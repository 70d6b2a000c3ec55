-- Remove a dead server's entries from the rooms of one tag, atomically: exactly one
-- sweeper learns which users thereby left.
-- ARGV: tagged prefix, server id, history ttl ms -> {room, entry JSON, ...} of users gone
local sid = ARGV[2]
local conns = P .. ':conns:' .. sid
local gone = {}
for _, m in ipairs(redis.call('SMEMBERS', conns)) do
  local room, user, conn = split_member(m)
  local entry = remove_entry(room, sid, user, conn, ARGV[3])
  if entry then
    gone[#gone + 1] = room
    gone[#gone + 1] = entry
  end
end
redis.call('DEL', conns)
return gone
