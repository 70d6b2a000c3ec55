-- ARGV: prefix, room, server id, conn, user_id, skeleton of user_id, username, entry JSON
-- -> 'first' | 'again' | 'taken' | 'present'
local sid = ARGV[3]
-- entries must belong to a server the sweepers know, or nobody would remove them
if not redis.call('ZSCORE', P .. ':servers', sid) then
  redis.call('ZADD', P .. ':servers', now_ms(), sid)
end
return add_entry(ARGV[2], sid, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
