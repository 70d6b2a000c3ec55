"""The Redis broker's transport: the connection to Redis, lost and found again.

One `RedisLink` per server talks to one Redis, or to every primary of a Redis Cluster
(found from the node `redis_url` names: ``CLUSTER SLOTS``). Each of them is a `RedisNode`:
a pool of connections for requests, a lane for the scripts of every frame (lane.py: one
call per message, pipelined) and one pub/sub connection read by a task of its own
(pushes.py). A request goes to the node of its key's hash slot; a room's keys and channel
share the room's tag (keys.py), so all of a room's requests and frames go through one
node, in order. On a cluster a room's frames use sharded pub/sub (SPUBLISH, SSUBSCRIBE):
only the room's shard carries them, not every node of the cluster bus.

Every request goes through `RedisLink.request`, the one
place where Redis errors are translated: unreachable (the link is given up, requests raise
`BrokerUnavailable` and one background task retries every ``retry_interval`` s) or refused
(`BrokerUnavailable` naming Redis's answer). A cluster that changed under the link (a
slot moved: ``MOVED``, ``ASK``; a shard down: ``CLUSTERDOWN``; a room's sharded
subscription ended by Redis) counts as unreachable: the requests refused were not applied,
and the link connects again to the cluster as it is now. Once Redis answers again, the
broker's ``on_connected`` re-establishes what this server holds there before requests resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MasterDownError, ReadOnlyError, RedisError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
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
_LANED_COMMANDS = frozenset({"PUBLISH", "SPUBLISH", "HEXISTS", "HLEN", "INCRBY", "SADD", "SREM"})

#: Errors that mean "Redis is not reachable now" (as opposed to "Redis refused this request").
LOST = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
#: Errors that mean "the cluster is not as the link knows it": the request was not applied,
#: and the link connects again to learn the slots anew (MOVED is an AskError).
TOPOLOGY = (AskError, TryAgainError, ClusterDownError, MasterDownError, ReadOnlyError)

SLOTS = 16384

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


class RedisNode:
    """One Redis the link talks to (the one Redis, or a primary of a cluster): a pool for
    requests, the scripts registered on it, its lane and its pub/sub connection."""

    def __init__(self, url: str, *, server_id: str, socket_timeout: float) -> None:
        self.url = url
        # A blocking pool: a burst of requests (hundreds of clients closing at once)
        # waits for a free connection instead of failing with MaxConnectionsError,
        # which would read as "Redis is down" and leave ghost members until a sweep.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=_MAX_CONNECTIONS,
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # fail fast, no hidden retries: a script is not idempotent, and the outage is
            # handled by the link (BrokerUnavailable now, reconnect in the background)
            retry=Retry(NoBackoff(), 0),
            client_name=f"iavicenne-{server_id}",
        )
        self.client = aioredis.Redis.from_pool(pool)
        self.scripts = Scripts(self.client)
        self.lane: ScriptLane | None = None
        self.pubsub: PubSub | None = None

    async def open(self, server_channel: str) -> None:
        """Load the lane's scripts, open the lane, listen on this server's own channel."""
        await self.client.ping()
        # the lane's scripts must be known to Redis before their first EVALSHA (lane.py)
        for name in sorted(_LANED_SCRIPTS):
            await self.client.script_load(source(name))
        self.lane = await ScriptLane.open(self.client.connection_pool)
        pubsub = self.client.pubsub()
        # a channel of our own keeps the subscription (and the reader) alive with no room
        await pubsub.subscribe(server_channel)
        self.pubsub = pubsub

    async def close(self) -> None:
        """Drop the lane, the pub/sub connection and the pool (of a given-up link: quietly)."""
        if self.lane is not None:
            await self.lane.close()
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def _check_state(node: RedisNode) -> None:
    state = await node.client.execute_command("CLUSTER", "INFO")
    text = state.decode() if isinstance(state, bytes) else str(state)
    if "cluster_state:ok" not in text:
        # a shard is down (or the cluster is still forming): not usable yet, try again
        raise ClusterDownError(f"the Redis Cluster's state is not ok at {redact(node.url)} (CLUSTER INFO)")


def _node_url(url: str, host: str, port: int) -> str:
    """`url` (its scheme, password, TLS options, db) for another node of the cluster."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@" if auth else ""
    netloc += f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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

        self._nodes: list[RedisNode] = []  # of the current connection: one, or a cluster's primaries
        self._slots: list[int] | None = None  # hash slot -> index in _nodes (a cluster only)
        self.available = False
        self.closing = False
        self._started = False
        self._config_error: str | None = None
        # bumped whenever the connection is given up, so late errors of an old connection
        # do not tear down a newer one
        self.generation = 0
        self._sub_lock = asyncio.Lock()
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}
        self._unsubscribing: set[bytes] = set()  # channels this link asked to leave
        self._tasks: list[asyncio.Task[None]] = []  # of the current connection: the readers, liveness
        self._reconnector: asyncio.Task[None] | None = None
        # nodes of given-up connections being closed: held until closed (the loop keeps
        # only a weak reference), and waited for by `close`
        self._closers: set[asyncio.Task[None]] = set()
        self._restored = ""  # what on_connected re-established, for the log
        self._reason = ""  # why the last attempt to connect failed, for the errors of requests
        self._known: list[str] = []  # the URLs of the cluster's primaries when last connected

    # -- routing ---------------------------------------------------------------------------
    def node(self, key: str | bytes) -> RedisNode:
        """The node holding `key`'s hash slot (the one Redis, when not a cluster)."""
        nodes = self._nodes
        if not nodes:
            raise self.down()
        if self._slots is None:
            return nodes[0]
        return nodes[self._slots[key_slot(key.encode() if isinstance(key, str) else key)]]

    @property
    def cluster(self) -> bool:
        """Whether the current connection is to a Redis Cluster (found at connect)."""
        return self._slots is not None

    @property
    def publish_command(self) -> str:
        """How a room's frames are published: SPUBLISH (sharded) on a cluster, PUBLISH elsewhere."""
        return "SPUBLISH" if self.cluster else "PUBLISH"

    # -- requests ------------------------------------------------------------------------
    def down(self) -> BrokerUnavailable:
        if self.closing:
            return BrokerUnavailable("this Jupyter server is shutting down")
        if self._config_error is not None:
            return BrokerUnavailable(f"rooms are unavailable: {self._config_error}")
        reason = f": {self._reason}" if self._reason else ""
        return BrokerUnavailable(f"Redis is unreachable{reason} (retrying every {self.retry_interval:g} s); send it again later")

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """A request to Redis: refused now when the link is down, and its errors translated.

        A lost connection, or a cluster that changed (TOPOLOGY), becomes `BrokerUnavailable`
        and a reconnect; an error Redis answered (a full memory, a script error) becomes
        `BrokerUnavailable` naming it.
        """
        if not self.available or self.closing or not self._nodes:
            raise self.down()
        generation = self.generation
        try:
            yield
        except (*LOST, *TOPOLOGY) as error:
            self.lost(error, generation)
            raise self.down() from None
        except RedisError as error:
            raise BrokerUnavailable(f"Redis refused the request: {error}") from None

    async def run(self, script: str, tagged: str, *args: Any) -> Any:
        """Run `script` in the slot of `tagged` (keys.py), as a request."""
        async with self.request():
            return await self.run_now(script, tagged, *args)

    async def command(self, name: str, key: str | bytes, *args: Any) -> Any:
        """Send command `name` whose first key is `key`, as a request."""
        async with self.request():
            return await self.command_now(name, key, *args)

    async def run_now(self, script: str, tagged: str, *args: Any) -> Any:
        """`run` for the connection's own set-up and tasks: not refused while connecting,
        and its errors not translated (the task's supervisor gives the connection up)."""
        node = self.node(tagged)
        lane = node.lane
        if lane is not None and script in _LANED_SCRIPTS:
            try:
                return await lane.script(node.scripts.sha(script), tagged, *args)
            except ScriptUnknown:
                pass  # flushed from Redis meanwhile: the client loads it again (EVAL)
        return await node.scripts.run(script, tagged, *args)

    async def command_now(self, name: str, key: str | bytes, *args: Any) -> Any:
        node = self.node(key)
        lane = node.lane
        if lane is not None and name in _LANED_COMMANDS:
            return await lane.command(name, key, *args)
        return await node.client.execute_command(name, key, *args)

    async def publish_now(self, room: str, message: bytes) -> None:
        """Publish `message` on `room`'s channel, through the room's shard on a cluster."""
        await self.command_now(self.publish_command, self.keys.channel(room), message)

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, or log one line and keep trying in the background; never raises."""
        try:
            aioredis.ConnectionPool.from_url(self.url)  # only parses the URL
        except ValueError as error:  # retrying cannot fix a malformed URL
            self._config_error = f"the server's Redis URL is invalid ({error})"
            self.log.error(
                "iavicenne: invalid IAvicenne.redis_url %s (%s); use redis://[:password@]host:port/db "
                "or rediss:// for TLS. Rooms are unavailable.",
                redact(self.url),
                error,
            )
            return
        self._started = True
        try:
            await self._establish()
        except Unsupported as error:
            self._unsupported(error)
        except (*LOST, RedisError, BrokerUnavailable) as error:
            self._teardown()
            self._reason = str(error) or type(error).__name__
            self.log.warning(
                "iavicenne: cannot reach Redis at %s (%s); rooms are unavailable until it answers, retrying every %g s",
                redact(self.url),
                str(error) or type(error).__name__,
                self.retry_interval,
            )
            self._reconnector = asyncio.ensure_future(self._reconnect_loop())
        else:
            kind = f"Redis Cluster of {len(self._nodes)} primaries" if self.cluster else "Redis"
            self.log.info("iavicenne: connected to %s at %s (prefix %r)", kind, redact(self.url), self.keys.prefix)

    async def close(self, farewell: Callable[[], Awaitable[None]]) -> None:
        """Stop the tasks, run `farewell` if Redis is reachable (bounded), then disconnect."""
        self.closing = True
        for task in (self._reconnector, *self._tasks):
            if task is not None:
                task.cancel()
        if self.available and self._nodes:
            try:
                await asyncio.wait_for(farewell(), self.socket_timeout)
            except (*LOST, RedisError) as error:
                self.log.info("iavicenne: could not remove this server's members from Redis (%s); they will be swept", error)
        self.available = False
        self._teardown()
        if self._closers:  # bounded: a dead connection must not hold up the server's stop
            await asyncio.wait(set(self._closers), timeout=self.socket_timeout)

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
        """Stop this connection's tasks, drop its nodes' connections, fail the waiters."""
        self.generation += 1
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        nodes, self._nodes, self._slots = self._nodes, [], None
        for node in nodes:
            closer = asyncio.ensure_future(self._close_quietly(node))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        for waiters in self._confirming.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(self.down())
        self._confirming.clear()
        self._unsubscribing.clear()
        self._on_lost()

    async def _close_quietly(self, node: RedisNode) -> None:
        try:
            await node.close()
        except Exception as error:
            self.log.debug("iavicenne: closing a dead connection to %s: %s", redact(node.url), error)

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
                self._reason = str(error) or type(error).__name__
                self.log.debug("iavicenne: Redis at %s still unreachable: %s", redact(self.url), self._reason)
                continue
            self.log.info("iavicenne: Redis at %s is back: %s", redact(self.url), self._restored)
            return

    def _unsupported(self, error: Unsupported) -> None:
        """Give up for good: one error line, and every request says why."""
        self._teardown()
        self._config_error = str(error)
        self.log.error("iavicenne: %s. Rooms are unavailable.", error)

    async def _discover(self, seed: RedisNode) -> None:
        """The nodes of this connection: `seed` alone, or, on a cluster, every primary."""
        try:
            info = await seed.client.info("cluster")
        except ResponseError:  # INFO renamed or refused (some managed services): not a cluster
            info = {}
        if str(info.get("cluster_enabled", "0")) != "1":
            self._nodes, self._slots = [seed], None
            return
        version = str((await seed.client.info("server")).get("redis_version", "0"))
        if int(version.split(".")[0] or 0) < 7:
            raise Unsupported(
                f"Redis at {redact(self.url)} is a Redis Cluster node of Redis {version}: rooms on a cluster need "
                "Redis 7 or newer (sharded pub/sub); upgrade the cluster, or set IAvicenne.redis_url to a single Redis"
            )
        await _check_state(seed)
        slots: list[int] = [-1] * SLOTS
        nodes: dict[tuple[str, int], int] = {}
        ordered: list[RedisNode] = []
        seed_address = (urlsplit(seed.url).hostname or "", urlsplit(seed.url).port or 6379)
        for start, end, primary, *_replicas in await seed.client.execute_command("CLUSTER", "SLOTS"):
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            address = (host or seed_address[0], int(primary[1]))
            if address not in nodes:
                nodes[address] = len(ordered)
                if address == seed_address:
                    ordered.append(seed)
                else:
                    ordered.append(
                        RedisNode(_node_url(self.url, *address), server_id=self.server_id, socket_timeout=self.socket_timeout)
                    )
            slots[int(start) : int(end) + 1] = [nodes[address]] * (int(end) - int(start) + 1)
        if -1 in slots:
            raise ClusterDownError("the Redis Cluster does not serve every hash slot (CLUSTER SLOTS)")
        if seed not in ordered:  # the seed is a replica: it only told us where the primaries are
            await seed.close()
        self._nodes, self._slots = ordered, slots
        # A primary just restarted says "fail" for a moment after the others say "ok" again
        # (it rejoins), and answers CLUSTERDOWN meanwhile: begin once every primary agrees.
        for node in ordered:
            await _check_state(node)

    async def _establish(self) -> None:
        """One attempt: connect to every node, listen, let the broker re-establish its state,
        then mark available."""
        generation = self.generation
        # the node redis_url names first, then the primaries seen last time: a cluster
        # whose first node is down is still found through the others
        seeds = [self.url, *(url for url in self._known if url != self.url)]
        for index, url in enumerate(seeds):
            seed = RedisNode(url, server_id=self.server_id, socket_timeout=self.socket_timeout)
            self._nodes = [seed]  # closed by _teardown, should anything below fail
            try:
                await seed.client.ping()
                break
            except LOST:
                if index == len(seeds) - 1:
                    raise
                self._nodes = []
                await self._close_quietly(seed)
        await self._discover(seed)
        if self.cluster:
            self._known = [node.url for node in self._nodes]
        for node in self._nodes:
            await node.open(self.keys.server_channel(self.server_id))
            self.spawn(lambda node=node: self._read(node), f"Redis reader of {redact(node.url)}")  # type: ignore[misc]
        self._restored = await self._on_connected()
        if generation != self.generation:
            raise self.down()  # the connection broke while we were setting it up
        self.available, self._reason = True, ""

    # -- pub/sub ------------------------------------------------------------------------
    async def subscribe(self, rooms: list[str]) -> None:
        """Subscribe and wait for Redis to confirm: only then is no later frame missed."""
        if not self._nodes:
            raise self.down()
        loop = asyncio.get_running_loop()
        futures = []
        by_node: dict[int, list[bytes]] = {}
        for room in rooms:
            future: asyncio.Future[None] = loop.create_future()
            self._confirming.setdefault(room, []).append(future)
            futures.append(future)
            channel = self.keys.channel(room)
            self._unsubscribing.discard(channel)
            by_node.setdefault(id(self.node(channel)), []).append(channel)
        async with self._sub_lock:
            for node in self._nodes:
                channels = by_node.get(id(node))
                if channels and node.pubsub is not None:
                    if self.cluster:
                        # one SSUBSCRIBE per channel: Redis refuses channels of several
                        # slots in one (CROSSSLOT); each is only a write, not a round trip
                        for channel in channels:
                            await node.pubsub.ssubscribe(channel)
                    else:
                        await node.pubsub.subscribe(*channels)
        await asyncio.wait_for(asyncio.gather(*futures), self.socket_timeout)

    async def unsubscribe(self, room: str) -> None:
        if not self._nodes:
            return  # no connection, so no subscription to end
        channel = self.keys.channel(room)
        pubsub = self.node(channel).pubsub
        if pubsub is None:
            return
        async with self._sub_lock:
            if self.cluster:
                self._unsubscribing.add(channel)
                await pubsub.sunsubscribe(channel)
            else:
                await pubsub.unsubscribe(channel)

    async def _read(self, node: RedisNode) -> None:
        """The reader of one node's pub/sub connection: hand every room's message to the
        broker, in order. It reads the connection's bytes itself, many messages at a time
        (pushes.py); redis-py only sends the (un)subscriptions on it.
        """
        connection = node.pubsub.connection if node.pubsub is not None else None
        assert connection is not None, "subscribed before reading"
        stream = connection._reader  # redis-py reads nothing from it: no reply is awaited there
        where = redact(node.url)
        if stream is None:
            raise RedisConnectionError(f"the pub/sub connection to {where} is closed")
        parser = PushParser()
        on_message, on_subscribed, room_of = self._on_message, self._on_subscribed, self.keys.room_of
        while True:
            data = await stream.read(1 << 16)
            if not data:
                raise RedisConnectionError(f"Redis at {where} closed the pub/sub connection")
            for message in parser.feed(data):
                kind = message[0]
                if (kind == b"message" or kind == b"smessage") and len(message) == 3:
                    room = room_of(message[1])
                    if room is not None:
                        await on_message(room, message[2])
                elif (kind == b"subscribe" or kind == b"ssubscribe") and len(message) == 3:
                    room = room_of(message[1])
                    if room is None:
                        continue
                    waiters = self._confirming.pop(room, None)
                    await on_subscribed(room)
                    for future in waiters or ():
                        if not future.done():
                            future.set_result(None)
                elif kind == b"sunsubscribe" and len(message) == 3:
                    if message[1] in self._unsubscribing:
                        self._unsubscribing.discard(message[1])
                    elif room_of(message[1]) is not None:
                        # Redis ended it: the room's slot moved (resharding, a failover);
                        # connect again to the cluster as it is now, and catch up
                        raise RedisConnectionError(f"Redis at {where} ended the subscription of {message[1]!r} (its slot moved)")
