-- Remove the entries of servers whose heartbeat is older than the timeout, atomically:
-- exactly one server learns which users thereby left.
-- ARGV: prefix, timeout ms, history ttl ms, stale ttl ms -> {room, entry JSON, ...} of users gone
local servers = P .. ':servers'
local dead = redis.call('ZRANGEBYSCORE', servers, '-inf', '(' .. (now_ms() - tonumber(ARGV[2])), 'LIMIT', 0, 16)
local gone = {}
for _, sid in ipairs(dead) do
  local conns = P .. ':conns:' .. sid
  for _, m in ipairs(redis.call('SMEMBERS', conns)) do
    local room, user, conn = split_member(m)
    local entry = remove_entry(room, sid, user, conn, ARGV[3])
    if entry then
      gone[#gone + 1] = room
      gone[#gone + 1] = entry
    end
  end
  redis.call('DEL', conns)
  redis.call('ZREM', servers, sid)
  redis.call('SET', P .. ':stale:' .. sid, 1, 'PX', ARGV[4])
end
-- the sweepers also keep the history sizes true (see common.lua)
account_expired(32)
audit_sizes(32)
return gone
