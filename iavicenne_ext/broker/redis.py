"""The Redis broker: rooms shared by every Jupyter server that uses the same Redis.

Each server keeps its sockets; Redis keeps what the servers share. Per room (keys under
``{prefix}``, ``R`` the room name):

``{prefix}:room:R``      pub/sub channel; a server subscribes while it has members in R
``{prefix}:meta:R``      hash ``epoch`` (random id of this life of the room), ``seq``
``{prefix}:history:R``   stream of the last ``history_size`` frames, entry id ``<seq>-0``
``{prefix}:presence:R``  hash connection key -> `PresenceEntry` JSON
``{prefix}:users:R``     hash user_id -> number of connections (FIRST/AGAIN/left)
``{prefix}:owners:R``    hash user_id -> identity ``username`` holding it (TAKEN)

and per deployment / server: ``{prefix}:rooms`` (set of rooms with members),
``{prefix}:servers`` (sorted set server id -> last heartbeat, Redis clock),
``{prefix}:conns:<server>`` (set of ``room \\x1f user_id \\x1f conn`` of that server),
``{prefix}:stale:<server>`` (set when a server was declared dead), ``{prefix}:dedup:<key>``.

Every state change is one Lua script, so it is atomic across servers: `publish` dedups,
takes the next seq, stores and PUBLISHes in one step, so every server receives a room's
frames in seq order. A published payload is an envelope, one JSON header line
(``{"seq":..,"epoch":..,"to":..,"skip":..}``) then the frame bytes, decoded once per
server and handed to the hub, which writes the same bytes to every local member.

Liveness: each server refreshes its heartbeat every ``presence_refresh`` s and sweeps the
servers whose heartbeat is older than ``presence_timeout``; the sweep removes their entries
atomically, so exactly one server learns which users thereby left and emits their
``user-left``. A restarted server has a new id; its old life is swept like a dead server.

Faults: when Redis cannot be reached, requests raise `BrokerUnavailable` (the socket turns
that into an ``unavailable`` error frame), leaves are kept and applied later, and one
background task retries every ``retry_interval`` s. Once Redis answers, it resubscribes every
room with local members, replays what those members missed, and makes Redis's view of this
server's connections match the local one (re-registering or removing entries).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.commands.core import AsyncScript
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import protocol as p
from .base import Broker, BrokerUnavailable, History, JoinOutcome, Member, PresenceEntry, Published, fold_members

# Errors that mean "Redis is not reachable now" (as opposed to "Redis refused this request").
_LOST = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

_MAX_CONNECTIONS = 64  # to Redis, per server; more concurrent requests wait their turn
_SEP = "\x1f"  # between room, user_id and conn in a server's set; names cannot contain it
_STALE_TTL_MS = 24 * 3600 * 1000  # how long a swept server may take to notice it was swept

# -- Lua ---------------------------------------------------------------------------------
# Every script gets the key prefix as ARGV[1] and builds its keys from it: the sweeper
# must reach rooms it only learns inside the script. This targets a single Redis (or a
# primary with replicas), not Redis Cluster.
_LUA_COMMON = r"""
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
"""

# ARGV: prefix, room, frame, candidate epoch, history size, history ttl ms, dedup key|'', dedup ttl ms
_LUA_PUBLISH = r"""
local room = ARGV[2]
local dedup = ARGV[7]
if dedup ~= '' then
  local known = redis.call('GET', P .. ':dedup:' .. dedup)
  if known then return {tonumber(known), 1} end
end
local epoch = ensure_room(room, ARGV[4], ARGV[6])
local meta = key('meta', room)
local history = key('history', room)
local seq = redis.call('HINCRBY', meta, 'seq', 1)
-- like protocol.with_seq: the frame was encoded before its seq was known
local framed = '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2)
-- exact MAXLEN: the oldest kept seq is then known, so `recovered` is exact
redis.call('XADD', history, 'MAXLEN', ARGV[5], seq .. '-0', 'f', framed)
if redis.call('EXISTS', key('presence', room)) == 0 then
  redis.call('PEXPIRE', meta, ARGV[6])
  redis.call('PEXPIRE', history, ARGV[6])
end
if dedup ~= '' then
  redis.call('SET', P .. ':dedup:' .. dedup, seq, 'PX', ARGV[8])
end
redis.call('PUBLISH', key('room', room), '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '"}\n' .. framed)
return {seq, 0}
"""

# ARGV: prefix, room, candidate epoch, history ttl ms, first stream id to return | '',
#       the client's epoch | ''  -> {epoch, seq, oldest kept seq (seq + 1 when none), frames...}
_LUA_HISTORY = r"""
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
local out = {epoch, seq, oldest}
if start ~= '' then
  for _, row in ipairs(redis.call('XRANGE', history, start, '+')) do
    out[#out + 1] = row[2][2]
  end
end
return out
"""

# ARGV: prefix, room, server id, conn, user_id, username, entry JSON
_LUA_JOIN = r"""
local sid = ARGV[3]
-- entries must belong to a server the sweepers know, or nobody would remove them
if not redis.call('ZSCORE', P .. ':servers', sid) then
  redis.call('ZADD', P .. ':servers', now_ms(), sid)
end
return add_entry(ARGV[2], sid, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""

# ARGV: prefix, room, server id, user_id, conn, history ttl ms -> 1 when the user left the room
_LUA_LEAVE = r"""
if remove_entry(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
return 0
"""

# ARGV: prefix, room, conn, entry JSON
_LUA_SET_STATE = r"""
local presence = key('presence', ARGV[2])
if redis.call('HEXISTS', presence, ARGV[3]) == 1 then
  redis.call('HSET', presence, ARGV[3], ARGV[4])
end
return 0
"""

# ARGV: prefix, server id -> 1 when this server had been swept meanwhile
_LUA_HEARTBEAT = r"""
redis.call('ZADD', P .. ':servers', now_ms(), ARGV[2])
return redis.call('DEL', P .. ':stale:' .. ARGV[2])
"""

# ARGV: prefix, timeout ms, history ttl ms, stale ttl ms -> {room, entry JSON, ...} of users gone
_LUA_SWEEP = r"""
local servers = P .. ':servers'
local dead = redis.call('ZRANGEBYSCORE', servers, '-inf', '(' .. (now_ms() - tonumber(ARGV[2])), 'LIMIT', 0, 16)
local gone = {}
for _, sid in ipairs(dead) do
  local conns = P .. ':conns:' .. sid
  for _, m in ipairs(redis.call('SMEMBERS', conns)) do
    local room, user, conn = split_member(m)
    local entry = remove_entry(room, sid, user, conn, ARGV[3])
    if entry then
      gone[#gone + 1] = room
      gone[#gone + 1] = entry
    end
  end
  redis.call('DEL', conns)
  redis.call('ZREM', servers, sid)
  redis.call('SET', P .. ':stale:' .. sid, 1, 'PX', ARGV[4])
end
return gone
"""

# Make Redis's entries of this server exactly the local ones.
# ARGV: prefix, server id, history ttl ms, n, n x (room, conn, user_id, username, JSON),
#       m, m x (room, user_id) of leaves that could not reach Redis
# -> {swept (0/1), {outcome per entry}, {room, entry JSON, ...} gone, {room, user_id, ...} absent}
_LUA_RECONCILE = r"""
local sid = ARGV[2]
local ttl = ARGV[3]
local swept = redis.call('DEL', P .. ':stale:' .. sid)
redis.call('ZADD', P .. ':servers', now_ms(), sid)
local n = tonumber(ARGV[4])
local wanted = {}
for j = 0, n - 1 do
  local b = 5 + j * 5
  wanted[ARGV[b] .. '\31' .. ARGV[b + 2] .. '\31' .. ARGV[b + 1]] = true
end
local gone, reported = {}, {}
for _, m in ipairs(redis.call('SMEMBERS', P .. ':conns:' .. sid)) do
  if not wanted[m] then
    local room, user, conn = split_member(m)
    local entry = remove_entry(room, sid, user, conn, ttl)
    if entry then
      gone[#gone + 1] = room
      gone[#gone + 1] = entry
      reported[room .. '\31' .. user] = true
    end
  end
end
local outcomes = {}
for j = 0, n - 1 do
  local b = 5 + j * 5
  outcomes[j + 1] = add_entry(ARGV[b], sid, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4])
end
-- a leave whose entry Redis no longer has (it lost its data): left if nobody holds the user
local absent = {}
local b = 5 + n * 5
for j = 0, tonumber(ARGV[b]) - 1 do
  local room, user = ARGV[b + 1 + j * 2], ARGV[b + 2 + j * 2]
  if not reported[room .. '\31' .. user] and redis.call('HEXISTS', key('users', room), user) == 0 then
    absent[#absent + 1] = room
    absent[#absent + 1] = user
    reported[room .. '\31' .. user] = true
  end
end
return {swept, outcomes, gone, absent}
"""


def _presence_frame(kind: str, room: str, entry: PresenceEntry) -> bytes:
    """A user-joined / user-left frame, in the hub's one shape for it."""
    return p.presence_frame(kind, room, entry.user_id, entry.identity, entry.state)


def _envelope(frame: bytes, *, to: str | None = None, skip: str | None = None, supersede: bool = False) -> bytes:
    """A frame without seq as published: the header line, then the frame's bytes."""
    header: dict[str, Any] = {"seq": 0, "to": to, "skip": skip}
    if supersede:
        header["supersede"] = True
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + frame


def redact(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


@dataclass(slots=True)
class _Leave:
    """A leave that could not reach Redis; applied when it is back."""

    room: str
    entry: PresenceEntry


class RedisBroker(Broker):
    """Rooms in Redis, shared by every server with the same URL and prefix. See the module docstring."""

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        history_size: int,
        history_ttl: float,
        dedup_ttl: float,
        presence_refresh: float = 5.0,
        presence_timeout: float = 20.0,
        retry_interval: float = 2.0,
        socket_timeout: float = 5.0,
        log: logging.Logger | None = None,
        **budgets: int,  # history_bytes_per_room, history_bytes_total, max_replay_bytes, max_dedup_per_identity
    ) -> None:
        super().__init__(history_size=history_size, history_ttl=history_ttl, dedup_ttl=dedup_ttl, **budgets)
        if presence_timeout <= presence_refresh:
            raise ValueError(
                f"presence_timeout ({presence_timeout:g} s) must be longer than presence_refresh "
                f"({presence_refresh:g} s), or live servers would be declared dead; raise "
                "IAvicenne.presence_timeout (e.g. to 4 x presence_refresh)"
            )
        self.url = url
        self.prefix = prefix
        self.presence_refresh = presence_refresh
        self.presence_timeout = presence_timeout
        self.retry_interval = retry_interval
        self.socket_timeout = socket_timeout
        self.log = log or logging.getLogger("iavicenne")
        # a new id per process life: the entries of a previous life are swept, never reused
        self._server_id = "r" + secrets.token_hex(6)
        self._channel_prefix = f"{prefix}:room:".encode()
        self._history_ttl_ms = max(1, int(history_ttl * 1000))
        self._dedup_ttl_ms = max(1, int(dedup_ttl * 1000))

        self._redis: aioredis.Redis | None = None
        self._available = False
        self._closing = False
        # bumped whenever the connection is given up, so late errors of an old connection
        # do not tear down a newer one
        self._generation = 0
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._sub_lock = asyncio.Lock()
        self._scripts: dict[str, AsyncScript] = {}
        self._config_error: str | None = None

        # What this server holds, so it can be re-established after an outage: rooms with
        # local members (subscriptions), and every local presence entry.
        self._wanted: set[str] = set()
        self._entries: dict[tuple[str, str], PresenceEntry] = {}
        self._entries_version = 0
        self._deferred: list[_Leave] = []
        # Per subscribed room, the (epoch, seq) of the last frame delivered here: after a
        # reconnect, what members missed is replayed from the history, and frames that
        # arrive twice (replay, then live) are delivered once.
        self._last: dict[str, tuple[str, int]] = {}
        self._fresh: set[str] = set()  # subscribe sent, confirmation pending: not tracked yet
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}
        self._echo_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    # -- life cycle -------------------------------------------------------------------
    @property
    def server_id(self) -> str:
        return self._server_id

    @property
    def available(self) -> bool:
        return self._available

    async def start(self) -> None:
        """Connect, or log one line and keep trying in the background; never raises."""
        try:
            # A blocking pool: a burst of requests (hundreds of clients closing at once)
            # waits for a free connection instead of failing with MaxConnectionsError,
            # which would read as "Redis is down" and leave ghost members until a sweep.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=_MAX_CONNECTIONS,
                timeout=self.socket_timeout,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                # fail fast, no hidden retries: a script is not idempotent, and the outage is
                # handled here (BrokerUnavailable now, reconnect in the background)
                retry=Retry(NoBackoff(), 0),
                client_name=f"iavicenne-{self._server_id}",
            )
            self._redis = aioredis.Redis.from_pool(pool)
        except ValueError as error:  # retrying cannot fix a malformed URL
            self._config_error = f"the server's Redis URL is invalid ({error})"
            self.log.error(
                "iavicenne: invalid IAvicenne.redis_url %s (%s); use redis://[:password@]host:port/db "
                "or rediss:// for TLS. Rooms are unavailable.",
                redact(self.url),
                error,
            )
            return
        redis_ = self._redis
        self._scripts = {
            name: redis_.register_script(_LUA_COMMON + body)
            for name, body in (
                ("publish", _LUA_PUBLISH),
                ("history", _LUA_HISTORY),
                ("join", _LUA_JOIN),
                ("leave", _LUA_LEAVE),
                ("set_state", _LUA_SET_STATE),
                ("heartbeat", _LUA_HEARTBEAT),
                ("sweep", _LUA_SWEEP),
                ("reconcile", _LUA_RECONCILE),
            )
        }
        try:
            await self._establish()
        except (*_LOST, RedisError, BrokerUnavailable) as error:
            self._teardown()
            self.log.warning(
                "iavicenne: cannot reach Redis at %s (%s); rooms are unavailable until it answers, retrying every %g s",
                redact(self.url),
                str(error) or type(error).__name__,
                self.retry_interval,
            )
            self._reconnector = asyncio.ensure_future(self._reconnect_loop())
        else:
            self.log.info("iavicenne: connected to Redis at %s (prefix %r)", redact(self.url), self.prefix)

    async def close(self) -> None:
        """Leave every room at once (other servers need not wait for the sweep), then disconnect."""
        self._closing = True
        for task in (self._reconnector, self._presence_task):
            if task is not None:
                task.cancel()
        if self._available and self._redis is not None:
            self._entries.clear()
            try:
                await asyncio.wait_for(self._reconcile(announce=False), self.socket_timeout)
                await self._redis.zrem(f"{self.prefix}:servers", self._server_id)
            except (*_LOST, RedisError) as error:
                self.log.info("iavicenne: could not remove this server's members from Redis (%s); they will be swept", error)
        self._available = False
        self._teardown()
        if self._redis is not None:
            await self._redis.aclose()

    # -- connection -------------------------------------------------------------------
    def _down(self) -> BrokerUnavailable:
        if self._closing:
            return BrokerUnavailable("this Jupyter server is shutting down")
        if self._config_error is not None:
            return BrokerUnavailable(f"rooms are unavailable: {self._config_error}")
        return BrokerUnavailable(f"Redis is unreachable (retrying every {self.retry_interval:g} s); send it again later")

    def _lost(self, error: BaseException, generation: int) -> None:
        """Give up the connection of `generation` and start reconnecting (once)."""
        if self._closing or generation != self._generation:
            return
        if self._available:
            self.log.warning(
                "iavicenne: lost Redis at %s (%s); rooms are unavailable, retrying every %g s",
                redact(self.url),
                str(error) or type(error).__name__,
                self.retry_interval,
            )
        self._available = False
        self._teardown()
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.ensure_future(self._reconnect_loop())

    def _teardown(self) -> None:
        """Stop the reader and the presence task, drop the pub/sub connection, fail waiters."""
        self._generation += 1
        current = asyncio.current_task()
        for task in (self._reader, self._presence_task):
            if task is not None and task is not current:
                task.cancel()
        self._reader = self._presence_task = None
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            asyncio.ensure_future(self._close_quietly(pubsub))
        self._fresh.clear()
        for waiters in self._confirming.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(self._down())
        self._confirming.clear()
        for echoes in self._echo_waiters.values():
            for _, future in echoes:
                if not future.done():
                    future.set_result(None)
        self._echo_waiters.clear()

    @staticmethod
    async def _close_quietly(pubsub: PubSub) -> None:
        try:
            await pubsub.aclose()
        except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
            pass

    async def _reconnect_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.retry_interval)
            try:
                await self._establish()
            except (*_LOST, RedisError, BrokerUnavailable) as error:
                self._teardown()
                self.log.debug("iavicenne: Redis at %s still unreachable: %s", redact(self.url), error)
                continue
            self.log.info(
                "iavicenne: Redis at %s is back: %d room(s) resubscribed, %d connection(s) re-registered",
                redact(self.url),
                len(self._wanted),
                len(self._entries),
            )
            return

    async def _establish(self) -> None:
        """One attempt: connect, subscribe, re-register presence, then mark available."""
        assert self._redis is not None
        generation = self._generation
        # connections of the previous Redis are dead sockets: drop them all
        await self._redis.connection_pool.disconnect()
        await self._redis.ping()
        await self._scripts["heartbeat"](args=[self.prefix, self._server_id])
        pubsub = self._redis.pubsub()
        # a channel of our own keeps the subscription (and the reader) alive with no room
        await pubsub.subscribe(f"{self.prefix}:server:{self._server_id}")
        self._pubsub = pubsub
        self._reader = asyncio.ensure_future(self._read(pubsub, generation))
        rooms = sorted(self._wanted)
        if rooms:
            await self._subscribe(rooms)
        # leaves may happen meanwhile (they never wait for Redis): repeat until stable
        while True:
            version = self._entries_version
            await self._reconcile(announce=True)
            if version == self._entries_version:
                break
        if generation != self._generation:
            raise self._down()  # the connection broke while we were setting it up
        self._available = True
        self._presence_task = asyncio.ensure_future(self._presence_loop(generation))

    # -- pub/sub ------------------------------------------------------------------------
    async def _subscribe(self, rooms: list[str]) -> None:
        """Subscribe and wait for Redis to confirm: only then is no later frame missed."""
        pubsub = self._pubsub
        if pubsub is None:
            raise self._down()
        loop = asyncio.get_running_loop()
        futures = []
        for room in rooms:
            future: asyncio.Future[None] = loop.create_future()
            self._confirming.setdefault(room, []).append(future)
            futures.append(future)
        async with self._sub_lock:
            await pubsub.subscribe(*(self._channel_prefix + room.encode() for room in rooms))
        await asyncio.wait_for(asyncio.gather(*futures), self.socket_timeout)

    async def subscribe(self, room: str) -> None:
        if not self._available or self._closing:
            raise self._down()
        self._wanted.add(room)
        self._last.pop(room, None)
        self._fresh.add(room)
        generation = self._generation
        try:
            await self._subscribe([room])
        except (*_LOST, RedisError) as error:
            self._wanted.discard(room)
            self._lost(error, generation)
            raise self._down() from None
        except BrokerUnavailable:
            self._wanted.discard(room)
            raise

    async def unsubscribe(self, room: str) -> None:
        # never raises: with Redis down, there is no subscription to end anyway
        self._wanted.discard(room)
        self._last.pop(room, None)
        self._fresh.discard(room)
        pubsub = self._pubsub
        if pubsub is None or not self._available:
            return
        generation = self._generation
        try:
            async with self._sub_lock:
                await pubsub.unsubscribe(self._channel_prefix + room.encode())
        except (*_LOST, RedisError) as error:
            self._lost(error, generation)

    async def _read(self, pubsub: PubSub, generation: int) -> None:
        """The one reader of this server: decode each envelope once, hand it to the hub."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "message":
                    channel: bytes = message["channel"]
                    if channel.startswith(self._channel_prefix):
                        await self._on_frame(channel[len(self._channel_prefix) :].decode(), message["data"])
                elif kind == "subscribe":
                    channel = message["channel"]
                    if channel.startswith(self._channel_prefix):
                        await self._on_subscribed(channel[len(self._channel_prefix) :].decode())
        except asyncio.CancelledError:
            raise
        except (*_LOST, RedisError) as error:
            self._lost(error, generation)
        except Exception as error:  # a bug must not leave the server deaf without a trace
            self.log.exception("iavicenne: the Redis reader failed; reconnecting")
            self._lost(error, generation)

    async def _on_subscribed(self, room: str) -> None:
        waiters = self._confirming.pop(room, None)
        if room in self._fresh:
            self._fresh.discard(room)
            self._last.pop(room, None)  # frames before this point were of an older subscription
        elif room in self._last:
            await self._catch_up(room)  # a resubscription after an outage
        for future in waiters or ():
            if not future.done():
                future.set_result(None)

    async def _on_frame(self, room: str, data: bytes) -> None:
        if room not in self._wanted:
            return  # no local member any more (the unsubscription is on its way)
        head, _, frame = data.partition(b"\n")
        header = json.loads(head)
        seq: int = header.get("seq") or 0
        if seq and room not in self._fresh:
            epoch: str = header["epoch"]
            last = self._last.get(room)
            if last is not None:
                if last[0] == epoch and seq <= last[1]:
                    return  # already delivered by a catch-up
                if last[0] != epoch or seq > last[1] + 1:
                    await self._catch_up(room, until=(epoch, seq))
            self._last[room] = (epoch, seq)
        self.deliver(room, frame, seq, header.get("to"), header.get("skip"), bool(header.get("supersede")))
        if seq and self._echo_waiters:
            self._release_echoes(room, seq)

    async def _catch_up(self, room: str, until: tuple[str, int] | None = None) -> None:
        """Deliver what this server's members missed after the last frame they got.

        `until` is a live frame that revealed the gap: only what comes before it is
        delivered here. Members are told plainly what cannot be replayed.
        """
        epoch, since = self._last[room]
        history = await self._history(room, since, epoch)
        if history.epoch != epoch:
            # Redis lost the room (restarted without persistence, flushed): a new life
            self.log.warning("iavicenne: the history of room %r started over in Redis (new epoch)", room)
            self._notify(
                room,
                f"the history of room {room!r} started over (Redis lost it): seq numbers begin again "
                f"under epoch {history.epoch}, and messages after seq {since} may be missing",
                since=since,
                epoch=history.epoch,
            )
        elif not history.recovered:
            self.log.warning("iavicenne: frames of room %r after seq %d were lost on this server", room, since)
            self._notify(
                room,
                f"messages of room {room!r} after seq {since} were lost while this server could not "
                "reach Redis; join-room again with since to get what is left",
                since=since,
            )
        # the frames returned are contiguous and end at history.seq
        first = history.seq - len(history.messages) + 1
        delivered = since if history.epoch == epoch else first - 1
        for seq, frame in enumerate(history.messages, first):
            if until is not None and (until[0] != history.epoch or seq >= until[1]):
                break
            self.deliver(room, frame, seq)
            delivered = seq
        self._last[room] = (history.epoch, delivered)
        if self._echo_waiters:
            self._release_echoes(room, delivered)

    def _notify(self, room: str, text: str, **extra: Any) -> None:
        self.deliver(room, p.encode(p.error_frame(p.ErrorCode.UNAVAILABLE, text, room=room, **extra)))

    def _release_echoes(self, room: str, seq: int) -> None:
        echoes = self._echo_waiters.get(room)
        if not echoes:
            return
        keep = []
        for wanted, future in echoes:
            if wanted <= seq:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((wanted, future))
        if keep:
            self._echo_waiters[room] = keep
        else:
            del self._echo_waiters[room]

    async def _await_echo(self, room: str, seq: int) -> None:
        """Return once this server delivered `seq` locally, as the memory broker does before acking."""
        last = self._last.get(room)
        if room not in self._wanted or (last is not None and last[1] >= seq):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echo_waiters.setdefault(room, []).append((seq, future))
        try:
            await asyncio.wait_for(future, self.socket_timeout)
        except asyncio.TimeoutError:
            pass  # the frame is stored and published; the reader is just late

    # -- requests ------------------------------------------------------------------------
    async def _run(self, script: str, *args: Any) -> Any:
        """Run one script; a lost connection becomes `BrokerUnavailable` and a reconnect."""
        if not self._available or self._closing:
            raise self._down()
        generation = self._generation
        try:
            return await self._scripts[script](args=[self.prefix, *args])
        except _LOST as error:
            self._lost(error, generation)
            raise self._down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None

    async def _command(self, name: str, *args: Any) -> Any:
        if not self._available or self._closing or self._redis is None:
            raise self._down()
        generation = self._generation
        try:
            return await self._redis.execute_command(name, *args)
        except _LOST as error:
            self._lost(error, generation)
            raise self._down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None

    def _key(self, kind: str, room: str) -> str:
        return f"{self.prefix}:{kind}:{room}"

    async def publish(self, room: str, frame: bytes, *, dedup_key: str | None = None, owner: str = "") -> Published:
        seq, duplicate = await self._run(
            "publish",
            room,
            frame,
            secrets.token_hex(6),
            self.history_size,
            self._history_ttl_ms,
            dedup_key or "",
            self._dedup_ttl_ms,
        )
        if not duplicate:
            await self._await_echo(room, seq)
        return Published(int(seq), bool(duplicate))

    async def claim(self, dedup_key: str, *, owner: str = "") -> bool:
        key = f"{self.prefix}:dedup:{dedup_key}"
        return bool(await self._command("SET", key, 0, "NX", "PX", self._dedup_ttl_ms))

    async def release(self, dedup_key: str, *, owner: str = "") -> None:
        await self._command("DEL", f"{self.prefix}:dedup:{dedup_key}")

    async def emit(
        self, room: str, frame: bytes, *, to: str | None = None, skip: str | None = None, supersede: bool = False
    ) -> None:
        if self._closing:
            # the server is stopping: `close` has told every room its members left, and
            # the sockets emitting now are closing too
            return
        await self._command("PUBLISH", self._channel_prefix + room.encode(), _envelope(frame, to=to, skip=skip, supersede=supersede))

    # -- presence -------------------------------------------------------------------------
    async def join(self, room: str, entry: PresenceEntry) -> JoinOutcome:
        outcome = await self._run(
            "join",
            room,
            self._server_id,
            entry.conn,
            entry.user_id,
            entry.identity.get("username") or "",
            json.dumps(entry.to_json(), separators=(",", ":")),
        )
        if outcome == b"taken":
            return JoinOutcome.TAKEN
        self._entries[(room, entry.conn)] = entry
        self._entries_version += 1
        # 'present': this very connection was registered already, so the user was too
        return JoinOutcome.FIRST if outcome == b"first" else JoinOutcome.AGAIN

    async def leave(self, room: str, conn: str, user_id: str) -> bool:
        """Remove a connection; this server's own leaves never raise (see below).

        A leave of this server's connection that cannot reach Redis now is kept and applied
        when Redis is back (its user-left is sent then), so closing sockets never fail on
        an outage. A connection of another server (a signaling take-over removes the older
        connection of a peer, wherever it is) is removed like any request: now, or
        `BrokerUnavailable`.
        """
        entry = self._entries.pop((room, conn), None)
        if entry is not None:
            self._entries_version += 1
        if self._closing:
            return False  # `close` removes this server's entries itself
        server = conn.rpartition(":")[0]  # connection keys are "<server id>:<n>"
        if entry is None:
            if server == self._server_id:
                return False  # never registered (refused) or already left
            return bool(await self._run("leave", room, server, user_id, conn, self._history_ttl_ms))
        if not self._available:
            self._deferred.append(_Leave(room, entry))
            return False
        generation = self._generation
        try:
            gone = await self._scripts["leave"](args=[self.prefix, room, self._server_id, user_id, conn, self._history_ttl_ms])
        except (*_LOST, RedisError) as error:
            self._deferred.append(_Leave(room, entry))
            if isinstance(error, _LOST):
                self._lost(error, generation)
            return False
        return bool(gone)

    async def set_state(self, room: str, conn: str, state: bytes, state_at: float) -> None:
        entry = self._entries.get((room, conn))
        if entry is None:
            return
        updated = PresenceEntry(entry.conn, entry.user_id, entry.identity, state, state_at)
        await self._run("set_state", room, conn, json.dumps(updated.to_json(), separators=(",", ":")))
        entry.state, entry.state_at = state, state_at

    async def entries(self, room: str) -> list[PresenceEntry]:
        raw = await self._command("HVALS", self._key("presence", room))
        return [PresenceEntry.from_json(json.loads(item)) for item in raw]

    async def is_present(self, room: str, user_id: str) -> bool:
        return bool(await self._command("HEXISTS", self._key("users", room), user_id))

    async def rooms(self) -> dict[str, list[Member]]:
        names = sorted(n.decode() for n in await self._command("SMEMBERS", f"{self.prefix}:rooms"))
        if not names:
            return {}
        assert self._redis is not None
        generation = self._generation
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hvals(self._key("presence", name))
            values = await pipe.execute()
        except _LOST as error:
            self._lost(error, generation)
            raise self._down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None
        rooms = {}
        for name, raw in zip(names, values):
            members = fold_members([PresenceEntry.from_json(json.loads(item)) for item in raw])
            if members:
                rooms[name] = members
        return rooms

    async def _reconcile(self, *, announce: bool, swept: bool = False) -> None:
        """Make Redis's entries of this server the local ones; send the presence diffs.

        Users registered again are announced (`user-joined`) only if this server had been
        swept (`swept`, or the script finds the mark): then the others were told they left.
        After Redis merely lost its data, nobody was told anything, so nothing is said.
        """
        entries = list(self._entries.items())
        deferred, self._deferred = self._deferred, []
        args: list[Any] = [self.prefix, self._server_id, self._history_ttl_ms, len(entries)]
        for (room, conn), entry in entries:
            args += [room, conn, entry.user_id, entry.identity.get("username") or "", json.dumps(entry.to_json(), separators=(",", ":"))]
        args.append(len(deferred))
        for leave in deferred:
            args += [leave.room, leave.entry.user_id]
        assert self._redis is not None
        try:
            marked, outcomes, gone, absent = await self._scripts["reconcile"](args=args)
        except BaseException:
            self._deferred[:0] = deferred  # not applied: keep them for the next attempt
            raise
        frames: list[tuple[str, bytes, str | None]] = []
        for room, raw in zip(gone[::2], gone[1::2]):
            frames.append(self._left(room.decode(), PresenceEntry.from_json(json.loads(raw))))
        identities = {(leave.room, leave.entry.user_id): leave.entry for leave in deferred}
        for room, user in zip(absent[::2], absent[1::2]):
            frames.append(self._left(room.decode(), identities[(room.decode(), user.decode())]))
        for ((room, _conn), entry), outcome in zip(entries, outcomes):
            if outcome == b"taken":
                self.log.warning(
                    "iavicenne: %s lost user_id %r in room %r to another user while Redis was unreachable",
                    entry.conn,
                    entry.user_id,
                    room,
                )
            elif outcome == b"first" and (swept or marked) and announce:
                # the others were told this user left when this server was swept
                frame = _presence_frame(p.USER_JOINED, room, entry)
                frames.append((room, frame, entry.conn))
        for room, frame, skip in frames:
            await self._redis.publish(self._channel_prefix + room.encode(), _envelope(frame, skip=skip))

    @staticmethod
    def _left(room: str, entry: PresenceEntry) -> tuple[str, bytes, str | None]:
        return room, _presence_frame(p.USER_LEFT, room, entry), None

    async def _presence_loop(self, generation: int) -> None:
        """Refresh this server's heartbeat; sweep servers that stopped refreshing theirs."""
        assert self._redis is not None
        timeout_ms = int(self.presence_timeout * 1000)
        loop = asyncio.get_running_loop()
        # Right after Redis comes back, every heartbeat in it is as old as the outage:
        # give the other servers one presence_timeout to reconnect before judging them.
        sweep_from = loop.time() + self.presence_timeout
        try:
            while True:
                await asyncio.sleep(self.presence_refresh)
                swept = await self._scripts["heartbeat"](args=[self.prefix, self._server_id])
                if swept:
                    # this server was silent too long (a stalled loop, a network cut) and was
                    # declared dead: register its connections again
                    self.log.warning("iavicenne: this server was declared gone by the others; re-registering its members")
                    await self._reconcile(announce=True, swept=True)
                if loop.time() < sweep_from:
                    continue
                gone = await self._scripts["sweep"](args=[self.prefix, timeout_ms, self._history_ttl_ms, _STALE_TTL_MS])
                if gone:
                    self.log.info("iavicenne: removed %d member(s) of servers that stopped refreshing", len(gone) // 2)
                for room, raw in zip(gone[::2], gone[1::2]):
                    # this server removed them, so it alone tells the room they left
                    entry = PresenceEntry.from_json(json.loads(raw))
                    frame = _presence_frame(p.USER_LEFT, room.decode(), entry)
                    await self._redis.publish(self._channel_prefix + room, _envelope(frame))
        except asyncio.CancelledError:
            raise
        except (*_LOST, RedisError) as error:
            self._lost(error, generation)
        except Exception as error:
            self.log.exception("iavicenne: the presence task failed; reconnecting")
            self._lost(error, generation)

    # -- history ---------------------------------------------------------------------------
    async def _history(self, room: str, since: int | None, epoch: str | None) -> History:
        """History without the availability check (the reader catches up while reconnecting)."""
        assert self._redis is not None
        # stream ids are unsigned 64-bit: a client's absurd `since` must not make XRANGE fail
        start = "" if since is None else f"{min(since + 1, 2**63)}-0"
        raw = await self._scripts["history"](
            args=[self.prefix, room, secrets.token_hex(6), self._history_ttl_ms, start, epoch or ""]
        )
        current, seq, oldest = raw[0].decode(), int(raw[1]), int(raw[2])
        messages: list[bytes] = list(raw[3:])
        if since is None:
            return History([], seq, current, True)
        if epoch is not None and epoch != current:
            return History(messages, seq, current, False)
        # exactly what MemoryBroker answers: every message after `since` is still kept
        recovered = since <= seq and since >= oldest - 1
        return History(messages, seq, current, recovered)

    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        if not self._available or self._closing:
            raise self._down()
        generation = self._generation
        try:
            return await self._history(room, since, epoch)
        except _LOST as error:
            self._lost(error, generation)
            raise self._down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None

    async def room_exists(self, room: str) -> bool:
        return bool(await self._command("EXISTS", self._key("meta", room), self._key("presence", room)))
