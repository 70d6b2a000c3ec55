-- What a room's history holds after a seq: the newest frames that fit in max_bytes, read
-- backwards in pages (XREVRANGE with COUNT), so a replay never holds Redis long.
-- ARGV: tagged prefix, room, candidate epoch, history ttl ms, first stream id to return | '',
--       the client's epoch | '', max bytes
-- -> {epoch, seq, oldest kept seq (seq + 1 when none), seq of the first frame returned,
--     1 when every frame from the first id is returned (0: cut at max bytes),
--     what history-total must change by (a new life forgets the old bytes),
--     frames (without seq), oldest first...}
local room = ARGV[2]
local epoch = ensure_room(room, ARGV[3], ARGV[4])
local start = ARGV[5]
-- another life of the room: its seqs are not the client's, send everything kept
if start ~= '' and ARGV[6] ~= '' and ARGV[6] ~= epoch then start = '-' end
local history = key('history', room)
local seq = tonumber(redis.call('HGET', key('meta', room), 'seq'))
local oldest = seq + 1
local first = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
-- rewritten messages (common.lua revised_frame): merged in by seq, newest first
local revised = key('revised', room)
local patches, next_patch = {}, 0
if redis.call('EXISTS', revised) == 1 then
  local low = redis.call('ZRANGE', revised, 0, 0, 'WITHSCORES')
  if #low > 0 and tonumber(low[2]) < oldest then oldest = tonumber(low[2]) end
  if start ~= '' then
    local from_seq = 0
    if start ~= '-' then from_seq = tonumber(string.match(start, '^(%d+)')) end
    local rows = redis.call('ZRANGEBYSCORE', revised, from_seq, '+inf', 'WITHSCORES')
    for i = 1, #rows, 2 do patches[#patches + 1] = {tonumber(rows[i + 1]), revised_frame(rows[i])} end
    next_patch = #patches
  end
end
local newest_first, complete = {}, 1
local budget = tonumber(ARGV[7])
-- take one frame (seq n) if it fits; false once the budget is spent
local function take(n, frame)
  if #frame > budget then
    complete = 0
    return false
  end
  budget = budget - #frame
  newest_first[#newest_first + 1] = {n, frame}
  return true
end
-- the rewritten ones newer than seq `n` (all of them: n = -1)
local function take_patches(n)
  while next_patch > 0 and patches[next_patch][1] > n do
    if not take(patches[next_patch][1], patches[next_patch][2]) then return false end
    next_patch = next_patch - 1
  end
  return true
end
if start ~= '' then
  local from = '+'
  while complete == 1 do
    local rows = redis.call('XREVRANGE', history, from, start, 'COUNT', 64)
    for _, row in ipairs(rows) do
      local n = tonumber(string.match(row[1], '^(%d+)'))
      if not take_patches(n) or not take(n, row[2][2]) then break end
    end
    if complete == 0 or #rows < 64 then break end
    from = '(' .. rows[#rows][1]
  end
  if complete == 1 then take_patches(-1) end
end
local out = {epoch, seq, oldest, 0, complete, DELTA}
if #newest_first > 0 then out[4] = newest_first[#newest_first][1] end
for i = #newest_first, 1, -1 do out[#out + 1] = newest_first[i][2] end
return out
