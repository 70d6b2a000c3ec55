-- In the deployment's slot. ARGV: deployment's tagged prefix, server id
-- -> 1 when this server had been swept meanwhile
redis.call('ZADD', P .. ':servers', now_ms(), ARGV[2])
return redis.call('DEL', P .. ':stale:' .. ARGV[2])
