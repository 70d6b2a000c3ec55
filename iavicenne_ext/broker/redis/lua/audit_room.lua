-- A sweeper's check of one room listed in history-rooms: once its history is gone
-- (expired, deleted, evicted under maxmemory), its bytes leave history-total.
-- ARGV: tagged prefix, room -> {delta of history-total, 1 when the room holds no bytes any more}
local room = ARGV[2]
if redis.call('EXISTS', key('history', room)) == 0 then
  forget_sizes(room)
  return {DELTA, 1}
end
return {0, 0}
