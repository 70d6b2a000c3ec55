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
local newest_first, complete = {}, 1
if start ~= '' then
  local budget, from = tonumber(ARGV[7]), '+'
  while true do
    local rows = redis.call('XREVRANGE', history, from, start, 'COUNT', 64)
    for _, row in ipairs(rows) do
      local size = #row[2][2]
      if size > budget then
        complete = 0
        break
      end
      budget = budget - size
      newest_first[#newest_first + 1] = row
    end
    if complete == 0 or #rows < 64 then break end
    from = '(' .. rows[#rows][1]
  end
end
local out = {epoch, seq, oldest, 0, complete, DELTA}
if #newest_first > 0 then out[4] = tonumber(string.match(newest_first[#newest_first][1], '^(%d+)')) end
for i = #newest_first, 1, -1 do out[#out + 1] = newest_first[i][2][2] end
return out
