-- Prepended to every script. Every script gets the key prefix as ARGV[1] and builds its
-- keys from it (the layout is in keys.py): the sweeper must reach rooms it only learns
-- inside the script. This targets a single Redis (or a primary with replicas), not
-- Redis Cluster.
local P = ARGV[1]
local function key(kind, room) return P .. ':' .. kind .. ':' .. room end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A room's life: its epoch, seq counter and history begin together. A new life (first
-- use, or after the empty room expired) gets a new epoch and no history.
local function ensure_room(room, candidate, ttl_ms)
  local meta = key('meta', room)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', key('history', room))
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    if redis.call('EXISTS', key('presence', room)) == 0 then
      redis.call('PEXPIRE', meta, ttl_ms)
    end
  end
  return epoch
end

-- 'first' | 'again' | 'taken' | 'present' (the connection was already registered)
local function add_entry(room, sid, conn, user, username, entry)
  local presence = key('presence', room)
  if redis.call('HEXISTS', presence, conn) == 1 then
    redis.call('HSET', presence, conn, entry)
    return 'present'
  end
  local owner = redis.call('HGET', key('owners', room), user)
  if owner and owner ~= username then return 'taken' end
  redis.call('HSET', presence, conn, entry)
  local count = redis.call('HINCRBY', key('users', room), user, 1)
  redis.call('HSET', key('owners', room), user, username)
  redis.call('SADD', P .. ':conns:' .. sid, room .. '\31' .. user .. '\31' .. conn)
  redis.call('SADD', P .. ':rooms', room)
  -- members keep the room's history alive; the last one to leave starts its TTL
  redis.call('PERSIST', key('meta', room))
  redis.call('PERSIST', key('history', room))
  if count == 1 then return 'first' end
  return 'again'
end

-- The removed entry's JSON when its user has no connection left in the room, else false.
local function remove_entry(room, sid, user, conn, ttl_ms)
  redis.call('SREM', P .. ':conns:' .. sid, room .. '\31' .. user .. '\31' .. conn)
  local presence = key('presence', room)
  local entry = redis.call('HGET', presence, conn)
  if not entry then return false end
  redis.call('HDEL', presence, conn)
  local gone = false
  if redis.call('HINCRBY', key('users', room), user, -1) <= 0 then
    redis.call('HDEL', key('users', room), user)
    redis.call('HDEL', key('owners', room), user)
    gone = entry
  end
  if redis.call('HLEN', presence) == 0 then
    redis.call('SREM', P .. ':rooms', room)
    redis.call('PEXPIRE', key('meta', room), ttl_ms)
    redis.call('PEXPIRE', key('history', room), ttl_ms)
  end
  return gone
end

local function split_member(m)
  local a = string.find(m, '\31', 1, true)
  local b = string.find(m, '\31', a + 1, true)
  return string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), string.sub(m, b + 1)
end
