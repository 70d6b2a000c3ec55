-- A sweeper's check of one room listed in shared-rooms: once its shared document is gone
-- (expired with its room, evicted under maxmemory), its bytes leave shared-total.
-- ARGV: tagged prefix, room -> {delta of shared-total, 1 when the room holds no bytes any more}
local room = ARGV[2]
if redis.call('EXISTS', key('shared-meta', room)) == 0 then
  forget_shared(room)
  return {SHARED_DELTA, 1}
end
return {0, 0}
