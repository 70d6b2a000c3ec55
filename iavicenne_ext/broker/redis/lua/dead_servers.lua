-- In the deployment's slot: the servers whose heartbeat is older than the timeout, each
-- with the rooms it had members in. Their entries are removed room by room (sweep_room.lua),
-- then the server is forgotten (forget_server.lua).
-- ARGV: deployment's tagged prefix, timeout ms -> {server id, {room...}, ...}
local dead = redis.call('ZRANGEBYSCORE', P .. ':servers', '-inf', '(' .. (now_ms() - tonumber(ARGV[2])), 'LIMIT', 0, 16)
local out = {}
for _, sid in ipairs(dead) do
  out[#out + 1] = sid
  out[#out + 1] = redis.call('SMEMBERS', P .. ':rooms-of:' .. sid)
end
return out
