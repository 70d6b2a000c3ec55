-- Make Redis's entries of this server in the rooms of one tag exactly the local ones.
-- ARGV: tagged prefix, server id, history ttl ms, n, n x (room, conn, user_id, skeleton,
--       username, JSON), m, m x (room, user_id) of leaves that could not reach Redis
-- -> {{outcome per entry}, {room, entry JSON, ...} gone, {room, user_id, ...} absent}
local sid = ARGV[2]
local ttl = ARGV[3]
local n = tonumber(ARGV[4])
local wanted = {}
for j = 0, n - 1 do
  local b = 5 + j * 6
  wanted[ARGV[b] .. '\31' .. ARGV[b + 2] .. '\31' .. ARGV[b + 1]] = true
end
local gone, reported = {}, {}
for _, m in ipairs(redis.call('SMEMBERS', P .. ':conns:' .. sid)) do
  if not wanted[m] then
    local room, user, conn = split_member(m)
    local entry = remove_entry(room, sid, user, conn, ttl)
    if entry then
      gone[#gone + 1] = room
      gone[#gone + 1] = entry
      reported[room .. '\31' .. user] = true
    end
  end
end
local outcomes = {}
for j = 0, n - 1 do
  local b = 5 + j * 6
  outcomes[j + 1] = add_entry(ARGV[b], sid, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5])
end
-- a leave whose entry Redis no longer has (it lost its data): left if nobody holds the user
local absent = {}
local b = 5 + n * 6
for j = 0, tonumber(ARGV[b]) - 1 do
  local room, user = ARGV[b + 1 + j * 2], ARGV[b + 2 + j * 2]
  if not reported[room .. '\31' .. user] and redis.call('HEXISTS', key('users', room), user) == 0 then
    absent[#absent + 1] = room
    absent[#absent + 1] = user
    reported[room .. '\31' .. user] = true
  end
end
return {outcomes, gone, absent}
