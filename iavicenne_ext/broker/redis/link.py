"""The Redis broker's transport: the connection to Redis, lost and found again.

One `RedisLink` per server holds a pool of connections for requests, a lane for the
publish script (lane.py: one call per message, pipelined) and one pub/sub connection read
by a single task (pushes.py). Every request goes through `RedisLink.request`, the one
place where Redis errors are translated: unreachable (the link is given up, requests raise
`BrokerUnavailable` and one background task retries every ``retry_interval`` s) or refused
(`BrokerUnavailable` naming Redis's answer). Once Redis answers again, the broker's
``on_connected`` re-establishes what this server holds there before requests resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import BrokerUnavailable
from .keys import Keys
from .lane import ScriptLane, ScriptUnknown
from .pushes import PushParser
from .scripts import Scripts, source

#: what goes on the `ScriptLane`: the scripts and commands of every message, join and
#: leave, all small. The others (replays of up to max_replay_bytes, whole member lists,
#: the liveness scripts over every entry of a server) go through the pool, so that none
#: of them holds up the messages queued behind it.
_LANED_SCRIPTS = frozenset({"publish", "join", "leave", "set_state", "claim", "release", "access_get", "members_page"})
_LANED_COMMANDS = frozenset({"PUBLISH", "HEXISTS", "HLEN"})

#: Errors that mean "Redis is not reachable now" (as opposed to "Redis refused this request").
LOST = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

_MAX_CONNECTIONS = 64  # to Redis, per server; more concurrent requests wait their turn


class Unsupported(Exception):
    """Redis answers, but is not one this broker can use: retrying cannot fix that."""


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


class RedisLink:
    """This server's connection to Redis: requests, pub/sub, reconnection. See the module docstring."""

    def __init__(
        self,
        *,
        url: str,
        keys: Keys,
        server_id: str,
        socket_timeout: float,
        retry_interval: float,
        log: logging.Logger,
        on_connected: Callable[[], Awaitable[str]],
        on_message: Callable[[str, bytes], Awaitable[None]],
        on_subscribed: Callable[[str], Awaitable[None]],
        on_lost: Callable[[], None],
    ) -> None:
        self.url = url
        self.keys = keys
        self.server_id = server_id
        self.socket_timeout = socket_timeout
        self.retry_interval = retry_interval
        self.log = log
        self._on_connected = on_connected
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost

        self._client: aioredis.Redis | None = None
        self._scripts: Scripts | None = None
        self.available = False
        self.closing = False
        self._config_error: str | None = None
        # bumped whenever the connection is given up, so late errors of an old connection
        # do not tear down a newer one
        self.generation = 0
        self._pubsub: PubSub | None = None
        self._lane: ScriptLane | None = None  # of the current connection (lane.py)
        self._sub_lock = asyncio.Lock()
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []  # of the current connection: the reader, liveness
        self._reconnector: asyncio.Task[None] | None = None
        # dead pub/sub connections being closed: held until closed (the loop keeps only a
        # weak reference), and waited for by `close`
        self._closers: set[asyncio.Task[None]] = set()
        self._restored = ""  # what on_connected re-established, for the log

    # -- raw access, for the connection's own set-up and tasks --------------------------
    @property
    def client(self) -> aioredis.Redis:
        assert self._client is not None, "the link has not started"
        return self._client

    @property
    def scripts(self) -> Scripts:
        assert self._scripts is not None, "the link has not started"
        return self._scripts

    # -- requests ------------------------------------------------------------------------
    def down(self) -> BrokerUnavailable:
        if self.closing:
            return BrokerUnavailable("this Jupyter server is shutting down")
        if self._config_error is not None:
            return BrokerUnavailable(f"rooms are unavailable: {self._config_error}")
        return BrokerUnavailable(f"Redis is unreachable (retrying every {self.retry_interval:g} s); send it again later")

    @asynccontextmanager
    async def request(self) -> AsyncIterator[aioredis.Redis]:
        """A request to Redis: refused now when the link is down, and its errors translated.

        A lost connection becomes `BrokerUnavailable` and a reconnect; an error Redis
        answered (a full memory, a script error) becomes `BrokerUnavailable` naming it.
        """
        if not self.available or self.closing or self._client is None:
            raise self.down()
        generation = self.generation
        try:
            yield self._client
        except LOST as error:
            self.lost(error, generation)
            raise self.down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None

    async def run(self, script: str, *args: Any) -> Any:
        async with self.request():
            lane = self._lane
            if lane is not None and script in _LANED_SCRIPTS:
                try:
                    return await lane.script(self.scripts.sha(script), *args)
                except ScriptUnknown:
                    pass  # flushed from Redis meanwhile: the client loads it again (EVAL)
            return await self.scripts.run(script, *args)

    async def command(self, name: str, *args: Any) -> Any:
        async with self.request() as client:
            lane = self._lane
            if lane is not None and name in _LANED_COMMANDS:
                return await lane.command(name, *args)
            return await client.execute_command(name, *args)

    # -- life cycle ------------------------------------------------------------------
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
                client_name=f"iavicenne-{self.server_id}",
            )
        except ValueError as error:  # retrying cannot fix a malformed URL
            self._config_error = f"the server's Redis URL is invalid ({error})"
            self.log.error(
                "iavicenne: invalid IAvicenne.redis_url %s (%s); use redis://[:password@]host:port/db "
                "or rediss:// for TLS. Rooms are unavailable.",
                redact(self.url),
                error,
            )
            return
        self._client = aioredis.Redis.from_pool(pool)
        self._scripts = Scripts(self._client, self.keys.prefix)
        try:
            await self._establish()
        except Unsupported as error:
            self._unsupported(error)
        except (*LOST, RedisError, BrokerUnavailable) as error:
            self._teardown()
            self.log.warning(
                "iavicenne: cannot reach Redis at %s (%s); rooms are unavailable until it answers, retrying every %g s",
                redact(self.url),
                str(error) or type(error).__name__,
                self.retry_interval,
            )
            self._reconnector = asyncio.ensure_future(self._reconnect_loop())
        else:
            self.log.info("iavicenne: connected to Redis at %s (prefix %r)", redact(self.url), self.keys.prefix)

    async def close(self, farewell: Callable[[], Awaitable[None]]) -> None:
        """Stop the tasks, run `farewell` if Redis is reachable (bounded), then disconnect."""
        self.closing = True
        for task in (self._reconnector, *self._tasks):
            if task is not None:
                task.cancel()
        if self.available and self._client is not None:
            try:
                await asyncio.wait_for(farewell(), self.socket_timeout)
            except (*LOST, RedisError) as error:
                self.log.info("iavicenne: could not remove this server's members from Redis (%s); they will be swept", error)
        self.available = False
        self._teardown()
        if self._closers:  # bounded: a dead connection must not hold up the server's stop
            await asyncio.wait(set(self._closers), timeout=self.socket_timeout)
        if self._client is not None:
            await self._client.aclose()

    def lost(self, error: BaseException, generation: int) -> None:
        """Give up the connection of `generation` and start reconnecting (once)."""
        if self.closing or generation != self.generation:
            return
        if self.available:
            self.log.warning(
                "iavicenne: lost Redis at %s (%s); rooms are unavailable, retrying every %g s",
                redact(self.url),
                str(error) or type(error).__name__,
                self.retry_interval,
            )
        self.available = False
        self._teardown()
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.ensure_future(self._reconnect_loop())

    def spawn(self, work: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
        """Run `work` as a task of the current connection: cancelled when it is given up,
        and its failure gives it up (a bug must not leave the server deaf without a trace)."""
        task = asyncio.ensure_future(self._supervise(work, self.generation, what))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    async def _supervise(self, work: Callable[[], Awaitable[None]], generation: int, what: str) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except (*LOST, RedisError) as error:
            self.lost(error, generation)
        except Exception as error:
            self.log.exception("iavicenne: the %s failed; reconnecting", what)
            self.lost(error, generation)

    def _teardown(self) -> None:
        """Stop this connection's tasks, drop the pub/sub connection, fail the waiters."""
        self.generation += 1
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            closer = asyncio.ensure_future(self._close_quietly(pubsub))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        if self._lane is not None:
            lane, self._lane = self._lane, None
            closer = asyncio.ensure_future(lane.close())
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        for waiters in self._confirming.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(self.down())
        self._confirming.clear()
        self._on_lost()

    async def _close_quietly(self, pubsub: PubSub) -> None:
        try:
            await pubsub.aclose()
        except Exception as error:
            self.log.debug("iavicenne: closing a dead pub/sub connection: %s", error)

    async def _reconnect_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.retry_interval)
            try:
                await self._establish()
            except Unsupported as error:
                self._unsupported(error)
                return
            except (*LOST, RedisError, BrokerUnavailable) as error:
                self._teardown()
                self.log.debug("iavicenne: Redis at %s still unreachable: %s", redact(self.url), error)
                continue
            self.log.info("iavicenne: Redis at %s is back: %s", redact(self.url), self._restored)
            return

    def _unsupported(self, error: Unsupported) -> None:
        """Give up for good: one error line, and every request says why."""
        self._teardown()
        self._config_error = str(error)
        self.log.error("iavicenne: %s. Rooms are unavailable.", error)

    async def _check_kind(self, client: aioredis.Redis) -> None:
        """Refuse a Redis Cluster node: the scripts touch keys of many slots (docs/redis-cluster.md).

        Without this, every request would fail with a script error naming no option.
        """
        try:
            info = await client.info("cluster")
        except ResponseError:  # INFO renamed or refused (some managed services): not a cluster
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            raise Unsupported(
                f"Redis at {redact(self.url)} is a Redis Cluster node (cluster_enabled:1), which the Redis "
                "broker does not support yet: set IAvicenne.redis_url to a single Redis (a primary, with "
                "replicas if you like); see docs/redis-cluster.md in the project's repository"
            )

    async def _establish(self) -> None:
        """One attempt: connect, listen, let the broker re-establish its state, then mark available."""
        client = self.client
        generation = self.generation
        # connections of the previous Redis are dead sockets: drop them all
        await client.connection_pool.disconnect()
        await client.ping()
        await self._check_kind(client)
        # the lane's scripts must be known to Redis before their first EVALSHA (lane.py)
        for name in sorted(_LANED_SCRIPTS):
            await client.script_load(source(name))
        self._lane = await ScriptLane.open(client.connection_pool, self.keys.prefix)
        pubsub = client.pubsub()
        # a channel of our own keeps the subscription (and the reader) alive with no room
        await pubsub.subscribe(self.keys.server_channel(self.server_id))
        self._pubsub = pubsub
        self.spawn(lambda: self._read(pubsub), "Redis reader")
        self._restored = await self._on_connected()
        if generation != self.generation:
            raise self.down()  # the connection broke while we were setting it up
        self.available = True

    # -- pub/sub ------------------------------------------------------------------------
    async def subscribe(self, rooms: list[str]) -> None:
        """Subscribe and wait for Redis to confirm: only then is no later frame missed."""
        pubsub = self._pubsub
        if pubsub is None:
            raise self.down()
        loop = asyncio.get_running_loop()
        futures = []
        for room in rooms:
            future: asyncio.Future[None] = loop.create_future()
            self._confirming.setdefault(room, []).append(future)
            futures.append(future)
        async with self._sub_lock:
            await pubsub.subscribe(*(self.keys.channel(room) for room in rooms))
        await asyncio.wait_for(asyncio.gather(*futures), self.socket_timeout)

    async def unsubscribe(self, room: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # no connection, so no subscription to end
        async with self._sub_lock:
            await pubsub.unsubscribe(self.keys.channel(room))

    async def _read(self, pubsub: PubSub) -> None:
        """The one reader of this server: hand every room's message to the broker, in order.

        It reads the pub/sub connection's bytes itself, many messages at a time
        (pushes.py); redis-py only sends the (un)subscriptions on it.
        """
        connection = pubsub.connection
        assert connection is not None, "subscribed before reading"
        stream = connection._reader  # redis-py reads nothing from it: no reply is awaited there
        if stream is None:
            raise RedisConnectionError("the pub/sub connection is closed")
        parser = PushParser()
        on_message, on_subscribed, room_of = self._on_message, self._on_subscribed, self.keys.room_of
        while True:
            data = await stream.read(1 << 16)
            if not data:
                raise RedisConnectionError("Redis closed the pub/sub connection")
            for message in parser.feed(data):
                kind = message[0]
                if kind == b"message" and len(message) == 3:
                    room = room_of(message[1])
                    if room is not None:
                        await on_message(room, message[2])
                elif kind == b"subscribe" and len(message) == 3:
                    room = room_of(message[1])
                    if room is None:
                        continue
                    waiters = self._confirming.pop(room, None)
                    await on_subscribed(room)
                    for future in waiters or ():
                        if not future.done():
                            future.set_result(None)
