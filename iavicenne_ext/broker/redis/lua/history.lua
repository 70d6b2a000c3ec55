-- ARGV: prefix, room, candidate epoch, history ttl ms, first stream id to return | '',
--       the client's epoch | ''
-- -> {epoch, seq, oldest kept seq (seq + 1 when none), seq of the first frame returned,
--     frames (without seq)...}
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
local out = {epoch, seq, oldest, 0}
if start ~= '' then
  for _, row in ipairs(redis.call('XRANGE', history, start, '+')) do
    if #out == 4 then out[4] = tonumber(string.match(row[1], '^(%d+)')) end
    out[#out + 1] = row[2][2]
  end
end
return out
