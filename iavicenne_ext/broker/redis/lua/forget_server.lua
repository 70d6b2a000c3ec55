-- In the deployment's slot, once a dead server's entries are swept from its rooms: it is
-- forgotten, and marked stale so that, were it only stalled, it learns it was swept.
-- ARGV: deployment's tagged prefix, server id, stale ttl ms
redis.call('DEL', P .. ':rooms-of:' .. ARGV[2])
redis.call('ZREM', P .. ':servers', ARGV[2])
redis.call('SET', P .. ':stale:' .. ARGV[2], 1, 'PX', ARGV[3])
return 0
