-- Prepended to every script. Every script gets its tagged prefix as KEYS[1] (a room's
-- `prefix:{tag}`, or the deployment's `prefix:{-}`: the client routes the script to the
-- shard of that slot) and as ARGV[1], and builds every key from it (keys.py), so it
-- touches the keys of one hash slot only: on a Redis Cluster a script runs on one shard.
local P = ARGV[1]
local function key(kind, room) return P .. ':' .. kind .. ':' .. room end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The bytes of each room's kept frames, so that trimming by bytes never scans. Their sum
-- over the deployment (history-total) lives in another slot: the scripts that change a
-- room's bytes say by how much (DELTA), and the broker adds that to the sum.
local SIZES = P .. ':history-bytes'
local DELTA = 0

local function room_bytes(room)
  return tonumber(redis.call('HGET', SIZES, room) or '0')
end

local function forget_sizes(room)
  DELTA = DELTA - room_bytes(room)
  redis.call('HDEL', SIZES, room)
end

-- The history of a room left empty expires after ttl_ms, with the room's meta; its bytes
-- leave the sum when a sweeper's audit finds it gone (audit_room.lua).
-- The room's shared document (shared_*.lua), its rewritten messages (revised) and its
-- read positions live and die with it.
local function expire_room(room, ttl_ms)
  redis.call('PEXPIRE', key('meta', room), ttl_ms)
  redis.call('PEXPIRE', key('history', room), ttl_ms)
  redis.call('PEXPIRE', key('revised', room), ttl_ms)
  redis.call('PEXPIRE', key('read', room), ttl_ms)
  redis.call('PEXPIRE', key('shared', room), ttl_ms)
  redis.call('PEXPIRE', key('shared-meta', room), ttl_ms)
end

local function keep_room(room)
  redis.call('PERSIST', key('meta', room))
  redis.call('PERSIST', key('history', room))
  redis.call('PERSIST', key('revised', room))
  redis.call('PERSIST', key('read', room))
  redis.call('PERSIST', key('shared', room))
  redis.call('PERSIST', key('shared-meta', room))
end

-- The bytes of each room's shared document, kept apart from it (it expires, this does
-- not), so that their sum over the deployment (shared-total, in the deployment's slot)
-- gets them back when a sweeper's audit finds the document gone (shared_audit.lua).
local SHARED_SIZES = P .. ':shared-bytes'
local SHARED_DELTA = 0

local function forget_shared(room)
  redis.call('DEL', key('shared', room), key('shared-meta', room))
  SHARED_DELTA = SHARED_DELTA - tonumber(redis.call('HGET', SHARED_SIZES, room) or '0')
  redis.call('HDEL', SHARED_SIZES, room)
end

-- A kept message rewritten in place (an edit, a deletion: rewrite_message.lua) leaves the
-- stream (XDEL: a stream entry cannot be replaced) for `revised`, a sorted set scored by
-- seq whose members are '<seq>:<frame>'. The history is the stream and `revised` merged
-- by seq; a room's seqs are consecutive, so a seq missing from the stream is in `revised`.
local function revised_frame(member)
  return string.sub(member, string.find(member, ':', 1, true) + 1)
end

-- Drop the oldest of the stream's first entry and revised's first until the bounds hold
-- (a room with rewritten messages: rare, so one entry at a time).
local function trim_revised(room, max_count, max_bytes, keep, count, bytes)
  local history, revised = key('history', room), key('revised', room)
  local freed = 0
  while (count > max_count or bytes > max_bytes) and count > keep do
    local row = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
    local low = redis.call('ZRANGE', revised, 0, 0, 'WITHSCORES')
    local size
    if row and (#low == 0 or tonumber(string.match(row[1], '^(%d+)')) < tonumber(low[2])) then
      size = #row[2][2]
      redis.call('XDEL', history, row[1])
    elseif #low > 0 then
      size = #revised_frame(low[1])
      redis.call('ZREMRANGEBYRANK', revised, 0, 0)
    else
      break
    end
    bytes, freed, count = bytes - size, freed + size, count - 1
  end
  redis.call('HINCRBY', SIZES, room, -freed)
  DELTA = DELTA - freed
  return freed
end

-- Drop a room's oldest frames until it holds at most max_count frames and max_bytes
-- bytes, never its `keep` newest; returns the bytes freed.
local function trim(room, max_count, max_bytes, keep)
  local history = key('history', room)
  local count = redis.call('XLEN', history)
  local bytes = room_bytes(room)
  local rewritten = redis.call('ZCARD', key('revised', room))
  if rewritten > 0 then
    return trim_revised(room, max_count, max_bytes, keep, count + rewritten, bytes)
  end
  local freed, last = 0, nil
  while (count > max_count or bytes > max_bytes) and count > keep do
    local rows = redis.call('XRANGE', history, last and ('(' .. last) or '-', '+', 'COUNT', 64)
    if #rows == 0 then break end
    for _, row in ipairs(rows) do
      if not ((count > max_count or bytes > max_bytes) and count > keep) then break end
      local size = #row[2][2]
      bytes, freed, count, last = bytes - size, freed + size, count - 1, row[1]
    end
  end
  if last then
    redis.call('XTRIM', history, 'MINID', (tonumber(string.match(last, '^(%d+)')) + 1) .. '-0')
    redis.call('HINCRBY', SIZES, room, -freed)
    DELTA = DELTA - freed
  end
  return freed
end

-- Remember that dedup key `dedup` got `seq`, for ttl_ms. The keys of one identity are
-- indexed by expiry, and bounded: beyond `max`, that identity's oldest are forgotten,
-- never another identity's.
local function remember(dedup, seq, ttl_ms, identity, max)
  local now = now_ms()
  local index = P .. ':dedup-of:' .. identity
  redis.call('SET', P .. ':dedup:' .. dedup, seq, 'PX', ttl_ms)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, now + tonumber(ttl_ms), dedup)
  local excess = redis.call('ZCARD', index) - max
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', index, excess)
    for i = 1, #oldest, 2 do redis.call('DEL', P .. ':dedup:' .. oldest[i]) end
  end
  redis.call('PEXPIRE', index, ttl_ms)
end

-- A room's life: its epoch, seq counter and history begin together. A new life (first
-- use, or after the empty room expired) gets a new epoch and no history.
local function ensure_room(room, candidate, ttl_ms)
  local meta = key('meta', room)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', key('history', room), key('revised', room), key('read', room))
    forget_sizes(room)
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    if redis.call('EXISTS', key('presence', room)) == 0 then
      redis.call('PEXPIRE', meta, ttl_ms)
    end
  end
  return epoch
end

-- Every entry is also indexed for paged snapshots (members_page.lua): members (sorted set
-- of the room's user_ids, score 0, so ZRANGE BYLEX pages them in user_id order: UTF-8
-- byte order is code point order, Python's) and member-conns (user_id NUL conn, so one
-- user's connections are one lex range; user_ids never hold a NUL, protocol.NAME_RULE).
-- add_entry and remove_entry are the only writers of a room's presence, so the indexes
-- change in the same script step as the presence they index.
-- Names are claimed by skeleton (names.py, computed by the server: Lua knows no Unicode):
-- owners: skeleton -> username holding it; claims: skeleton -> user_ids present with it;
-- claim-of: user_id -> its skeleton, so a leave (or a sweep) knows which claim to release.
-- 'first' | 'again' | 'taken' | 'present' (the connection was already registered)
local function add_entry(room, sid, conn, user, claim, username, entry)
  local presence = key('presence', room)
  if redis.call('HEXISTS', presence, conn) == 1 then
    redis.call('HSET', presence, conn, entry)
    return 'present'
  end
  local owner = redis.call('HGET', key('owners', room), claim)
  if owner and owner ~= username then return 'taken' end
  redis.call('HSET', presence, conn, entry)
  redis.call('ZADD', key('member-conns', room), 0, user .. '\0' .. conn)
  local count = redis.call('HINCRBY', key('users', room), user, 1)
  if count == 1 then
    redis.call('ZADD', key('members', room), 0, user)
    redis.call('HSET', key('claim-of', room), user, claim)
    redis.call('HINCRBY', key('claims', room), claim, 1)
  end
  redis.call('HSET', key('owners', room), claim, username)
  redis.call('SADD', P .. ':conns:' .. sid, room .. '\31' .. user .. '\31' .. conn)
  -- members keep the room's history alive; the last one to leave starts its TTL
  keep_room(room)
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
  redis.call('ZREM', key('member-conns', room), user .. '\0' .. conn)
  local gone = false
  if redis.call('HINCRBY', key('users', room), user, -1) <= 0 then
    redis.call('HDEL', key('users', room), user)
    redis.call('ZREM', key('members', room), user)
    local claim = redis.call('HGET', key('claim-of', room), user)
    redis.call('HDEL', key('claim-of', room), user)
    if claim and redis.call('HINCRBY', key('claims', room), claim, -1) <= 0 then
      redis.call('HDEL', key('claims', room), claim)
      redis.call('HDEL', key('owners', room), claim)
    end
    gone = entry
  end
  if redis.call('HLEN', presence) == 0 then expire_room(room, ttl_ms) end
  return gone
end

local function split_member(m)
  local a = string.find(m, '\31', 1, true)
  local b = string.find(m, '\31', a + 1, true)
  return string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), string.sub(m, b + 1)
end

-- A room's access record: {} (none) | {kind, owner, group ('' for none), n, n x member,
-- m, m x muted, removed...} (the usernames its owner invited, muted and removed)
local function access_record(room)
  local fields = redis.call('HMGET', key('access', room), 'kind', 'owner', 'group')
  if not fields[1] then return {} end
  local answer = {fields[1], fields[2], fields[3] or ''}
  for _, kind in ipairs({'access-members', 'access-muted'}) do
    local names = redis.call('SMEMBERS', key(kind, room))
    answer[#answer + 1] = #names
    for _, name in ipairs(names) do answer[#answer + 1] = name end
  end
  for _, name in ipairs(redis.call('SMEMBERS', key('access-removed', room))) do
    answer[#answer + 1] = name
  end
  return answer
end
