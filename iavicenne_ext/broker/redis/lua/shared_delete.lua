-- Forget a room's shared document (its access record was deleted).
-- ARGV: tagged prefix, room -> delta of shared-total
forget_shared(ARGV[2])
return SHARED_DELTA
