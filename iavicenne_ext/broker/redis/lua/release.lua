-- ARGV: tagged prefix, dedup key, identity
redis.call('DEL', P .. ':dedup:' .. ARGV[2])
redis.call('ZREM', P .. ':dedup-of:' .. ARGV[3], ARGV[2])
return 0
