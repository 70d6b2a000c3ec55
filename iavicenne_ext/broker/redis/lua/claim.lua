-- ARGV: tagged prefix, dedup key, dedup ttl ms, identity, dedup keys per identity
-- -> 1 when claimed now, 0 when it was claimed (or published) before
if redis.call('EXISTS', P .. ':dedup:' .. ARGV[2]) == 1 then return 0 end
remember(ARGV[2], 0, ARGV[3], ARGV[4], tonumber(ARGV[5]))
return 1
