"""What every iAvicenne WebSocket shares: Jupyter auth, identity, budgets, framing of errors.

The identity (`who`, and its public part `identity` that frames carry) is read from who
authenticated the handshake (identity.py), with the connection's name policy (names.py).

A `ProtocolSocket` authenticates like every Jupyter endpoint, checks the origin as
Jupyter does, parses each text frame once with `protocol.parse_request`, turns any
`ProtocolError` into an error frame, and protects the server and the other users from its
client (docs/protocol.md, "Limits"):

- per connection: frame size (close 1009), frames per second (error ``rate-limited``,
  excess dropped), bytes waiting to be read (a consumer too slow to read is closed, 1008);
- per identity (`Account`, over all its sockets): open sockets, rooms, bytes per second,
  the last counted before the frame is parsed, so a flood costs no JSON parsing;
- per server (`Quotas`): bytes waiting to be read by all clients; beyond it the sockets
  with the most bytes waiting are closed first.

Every refusal names the ``IAvicenne`` option that raises the limit (`protocol.limit_exceeded`).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import functools
import itertools
import re
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

import iavicenne_protocol as p

from .. import names
from ..broker.base import BrokerUnavailable
from ..identity import Identity, identity_of
from ..rooms import RoomHub

AUTH_RESOURCE = "iavicenne"

# tornado's frame writer (see ProtocolSocket._write_text); write_message if it ever goes
_FRAME_WRITER = callable(getattr(WebSocketProtocol13, "_write_frame", None))
_OPCODE_TEXT = 0x1
_FIN_TEXT = 0x80 | _OPCODE_TEXT


def text_frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame of `size` bytes (RFC 6455 5.2), as
    tornado's `_write_frame` writes it for a server: the frames queued for one client are
    framed here and written together (`ProtocolSocket.send`)."""
    if size < 126:
        return bytes((_FIN_TEXT, size))
    if size <= 0xFFFF:
        return struct.pack("!BBH", _FIN_TEXT, 126, size)
    return struct.pack("!BBQ", _FIN_TEXT, 127, size)


# How many frames of one client are handled one after the other without letting the
# event loop turn (ProtocolSocket.on_message): enough that a burst is handled, and its
# frames written, together; few enough that a flooding client cannot hold up the others.
MAX_FRAMES_PER_TURN = 64
# Room messages of one connection whose publish is waiting for the broker (Redis) while the
# next frames are read: tornado reads a frame only once the last one is handled, so without
# this a publisher's messages went one broker round trip at a time. They stay in order: the
# Redis broker sends its requests in call order on one connection (broker/redis/lane.py),
# and each one's ack or error is sent when its own publish is answered.
MAX_PUBLISHES_IN_FLIGHT = 32
# a frame that is a room message (a cheap look before parsing: see on_message)
_MESSAGE_TYPE = re.compile(rb'"type"\s*:\s*"message"')


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection, one identity and all clients may cost: the app's traitlets."""

    max_frame_bytes: int
    messages_per_second: float
    burst: int
    max_rooms: int  # per connection
    max_outbound_bytes: int
    max_connections_per_identity: int
    max_rooms_per_identity: int
    bytes_per_second: float
    burst_bytes: int
    max_outbound_bytes_total: int
    max_replay_bytes: int
    max_state_bytes: int
    max_state_depth: int
    max_state_keys: int


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # a full bucket lets one request larger than the burst through, which it then owes
        if self.tokens >= amount or self.tokens >= self.burst:
            self.tokens -= amount
            return True
        return False

    @property
    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.stamp) * self.rate >= self.burst

    def wait(self, amount: float) -> float:
        """Seconds until `take(amount)` would succeed."""
        missing = min(amount, self.burst) - self.tokens - (time.monotonic() - self.stamp) * self.rate
        return max(0.0, missing / self.rate) if self.rate > 0 else 1.0


class Account:
    """What one identity holds on this server, over all its room and signaling sockets."""

    __slots__ = ("bytes", "connections", "rooms", "username")

    def __init__(self, username: str, limits: Limits) -> None:
        self.username = username
        self.connections = 0
        self.rooms: dict[str, int] = {}  # hub room -> this identity's sockets in it
        self.bytes = TokenBucket(limits.bytes_per_second, limits.burst_bytes)

    def enter(self, room: str, limit: int) -> None:
        """Count one more socket in hub room `room`, or `too-many-rooms` when it is one room too many."""
        count = self.rooms.get(room, 0)
        if not count and len(self.rooms) >= limit:
            raise p.limit_exceeded(
                "max_rooms_per_identity",
                limit,
                f"too many rooms: {self.username} is in {len(self.rooms)} rooms on this server, over all "
                "its connections; leave one first",
                code=p.ErrorCode.TOO_MANY_ROOMS,
            )
        self.rooms[room] = count + 1

    def exit(self, room: str) -> None:
        """One socket of this identity has left `room` (the leave is done: only then may another be entered)."""
        count = self.rooms.get(room, 0) - 1
        if count > 0:
            self.rooms[room] = count
        else:
            self.rooms.pop(room, None)


class Quotas:
    """This server's accounts (one per identity) and the bytes queued to all its clients.

    One per server, made by the app and shared by every socket. An account is kept while
    it has sockets, rooms, or a bucket not yet full again: closing and reopening sockets
    does not refill a burst.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.accounts: dict[str, Account] = {}
        self.outbound = 0  # bytes queued to every open socket, not yet written to it
        self.waiting: set[ProtocolSocket] = set()  # the sockets with bytes queued
        self._released = 0  # bytes that left the queues since the heap was last trimmed
        self._trimming = False
        # the sockets with frames queued in this turn of the event loop, written at the
        # start of the next one (`write_queued`), each socket's frames in one write
        self._unwritten: list[ProtocolSocket] = []
        self.keep_alive = KeepAlive()

    def open(self, username: str) -> Account | None:
        """Count a new socket of `username`; None when it has max_connections_per_identity already."""
        account = self.accounts.get(username)
        if account is None:
            account = self.accounts[username] = Account(username, self.limits)
        if account.connections >= self.limits.max_connections_per_identity:
            return None
        account.connections += 1
        return account

    def close(self, account: Account) -> None:
        account.connections -= 1
        self.forget_idle(account)

    def forget_idle(self, account: Account) -> None:
        if not account.connections and not account.rooms and account.bytes.full:
            self.accounts.pop(account.username, None)

    def released(self, size: int) -> None:
        """`size` queued bytes were written or dropped: now and then, give the memory back."""
        self._released += size
        if self._released >= TRIM_AFTER_BYTES and not self._trimming and _MALLOC_TRIM is not None:
            self._trimming = True
            asyncio.get_running_loop().call_later(1.0, self._trim)

    def _trim(self) -> None:
        self._trimming = False
        self._released = 0
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)

    def queued(self, socket: ProtocolSocket) -> None:
        """`socket` has its first frame of this turn queued: write it in the next turn."""
        if not self._unwritten:
            # once per turn for all the sockets: each broadcast of the turn adds its frame
            # to every member's queue, and each member gets one write (one send call)
            asyncio.get_running_loop().call_soon(self.write_queued)
        self._unwritten.append(socket)

    def write_queued(self) -> None:
        """Write what every socket queued since the last turn, one write per socket."""
        sockets, self._unwritten = self._unwritten, []
        for socket in sockets:
            socket._write_queued()

    def shed(self) -> None:
        """Close the sockets with the most bytes waiting until the total is within its budget."""
        while self.outbound > self.limits.max_outbound_bytes_total and self.waiting:
            slowest = max(self.waiting, key=_bytes_waiting)
            slowest._drop_slow_consumer(
                f"slow consumer: the server's clients have more than {self.limits.max_outbound_bytes_total} bytes "
                "waiting (IAvicenne.max_outbound_bytes_total)"
            )


class KeepAlive:
    """Jupyter's keep-alive pings for every socket of the server, from one timer.

    `WebSocketMixin` gives each connection a PeriodicCallback of its own; ten thousand
    idle connections then hold ten thousand timers. Here the sockets wait in the order of
    their last ping (all share one interval) and a timer, once a second (or once an
    interval, if shorter), pings those whose interval is up (`WebSocketMixin.send_ping`: it also closes a socket whose pong is
    overdue), at most a second late.
    """

    TICK_MS = 1000

    def __init__(self) -> None:
        self.sockets: collections.deque[ProtocolSocket] = collections.deque()
        self._timer: PeriodicCallback | None = None
        self._interval = 0.0  # seconds

    def add(self, socket: ProtocolSocket, interval_ms: float) -> None:
        self._interval = interval_ms / 1000
        self.sockets.append(socket)
        if self._timer is None:
            self._timer = PeriodicCallback(self.tick, min(self.TICK_MS, interval_ms))
            self._timer.start()

    def tick(self) -> None:
        sockets = self.sockets
        now = IOLoop.current().time()
        while sockets and (_closing(sockets[0]) or now - sockets[0].last_ping >= self._interval):
            socket = sockets.popleft()
            if _closing(socket):  # closed or closing (a ping timeout, say): forgotten
                continue
            try:
                socket.send_ping()  # sets last_ping, or closes the socket
            except WebSocketClosedError:
                continue
            if not _closing(socket):
                sockets.append(socket)
        if not sockets and self._timer is not None:
            self._timer.stop()
            self._timer = None


def _bytes_waiting(socket: ProtocolSocket) -> int:
    return socket._outbound


def _closing(socket: ProtocolSocket) -> bool:
    conn = socket.ws_connection
    return conn is None or conn.is_closing()


def _is_message(frame: str | bytes) -> bool:
    """Whether a frame looks like a room message, before it is parsed (a frame whose
    payload holds such a key can only reorder its own sender's frames)."""
    data = frame.encode() if isinstance(frame, str) else frame
    return _MESSAGE_TYPE.search(data, 0, 512) is not None


async def _carry_on(started: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Run the rest of a coroutine already run up to its first wait (on `waiting_on`)."""
    await _Resumed(started, waiting_on)


class _Resumed:
    """Awaiting this runs `started` on from where it waits: what `await` does for a
    coroutine, from its second step on (the first was run by the caller)."""

    __slots__ = ("started", "waiting_on")

    def __init__(self, started: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.started = started
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        started, waiting_on = self.started, self.waiting_on
        while True:
            try:
                yield waiting_on  # the task waits on it, as it would have for `started`
            except BaseException as error:  # cancelled (or thrown into): passed on
                try:
                    waiting_on = started.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = started.send(None)
                except StopIteration:
                    return


# glibc keeps the heap pages of freed buffers: after a burst of queued frames (slow
# readers, a replay) the server's resident memory stayed ~100 MiB up once they were all
# written or dropped. After this many bytes left the queues, it is asked to give them back
# (malloc_trim), at most once a second; elsewhere (no glibc) nothing is done.
TRIM_AFTER_BYTES = 32 * 1024 * 1024


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _find_malloc_trim()

_connection_numbers = itertools.count(1)

Handler = Callable[[p.Request], Awaitable[None]]


class ProtocolSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Base of the room and signaling sockets; subclasses fill `handlers` and `closed`."""

    auth_resource = AUTH_RESOURCE
    known_types: frozenset[str] = frozenset()
    # frame type -> the name of the method that answers it (one table per class, not a
    # dict of bound methods per connection)
    frame_handlers: ClassVar[dict[str, str]] = {}

    def initialize(self, *, hub: RoomHub, quotas: Quotas) -> None:
        self.hub = hub
        self.quotas = quotas
        self.limits = limits = quotas.limits
        self.key = f"{hub.server_id}:{next(_connection_numbers)}"
        self.who = Identity("", "", "")  # until the handshake is authenticated
        self.identity: dict[str, Any] = {}
        self.name_policy = names.FREE
        self.account: Account | None = None  # the identity's, once the socket is open and counted
        self._bucket = TokenBucket(limits.messages_per_second, limits.burst)
        self._outbound = 0  # bytes queued to this client and not yet written to the socket
        self._replaying = 0  # of which: history replayed on the client's request
        # of which: the frames queued in this turn (headers and frames), written in the next
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._queued_replay = 0
        self._frames_this_turn = 0  # see on_message
        self._publishes: set[asyncio.Future[None]] = set()  # room messages in flight (on_message)
        self._publishing = False  # set by a handler about to wait for its publish only
        self._dropped = 0
        self._last_limit_notice = 0.0
        self._gone = False
        # work that outlives the frame or callback that started it (leaving the rooms of a
        # closed socket): held here, or the loop's weak reference lets it be collected;
        # made when first needed (an idle connection has none)
        self._background: set[asyncio.Task[None]] | None = None

    # -- tornado / jupyter plumbing -------------------------------------------------
    def set_default_headers(self) -> None:
        """JupyterHandler's headers (CSP etc.) mean nothing for a WebSocket."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.settings.get("websocket_compression_options", None)

    @property
    def max_message_size(self) -> int:  # tornado closes with 1009 beyond this
        return self.limits.max_frame_bytes

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "write", AUTH_RESOURCE)):
            raise web.HTTPError(403, "not authorized to use iAvicenne rooms")
        # from who authenticated, never from what the client says (identity.py)
        self.who = identity_of(self, user)
        self.identity = self.who.public()
        self.name_policy = names.policy_of(self, user)
        try:
            await self.hub.remember(self.who)
        except BrokerUnavailable:  # its names are protected again from its next socket
            self.log.debug("iavicenne: could not record identity %s: the broker is unavailable", self.who.username)
        await super().get(*args, **kwargs)

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, WebSocketProtocol13):
            # tornado would start its own pinging task per connection from `ping_interval`,
            # which WebSocketMixin overrides in milliseconds for Jupyter's pings (tornado
            # reads seconds: one ping every 8 hours): a task held by every idle connection
            # for nothing. Jupyter's pings, below, are the ones sent.
            protocol.params.ping_interval = None
        return protocol

    def open(self, *args: Any, **kwargs: Any) -> None:
        # not WebSocketMixin.open, which starts a PeriodicCallback per connection: the
        # server's `KeepAlive` sends the same pings (WebSocketMixin.send_ping, with its
        # ping_interval and ping_timeout) to every socket from one timer
        self.log.debug("Opening websocket %s", self.request.path)
        if self.ping_interval > 0:
            self.last_ping = self.last_pong = IOLoop.current().time()
            self.quotas.keep_alive.add(self, self.ping_interval)
        # the templates' namespace (ui modules bound to this handler): no WebSocket renders
        # one once it is open. Tornado drops it when the connection closes; dropped now,
        # it costs an idle connection nothing
        self.ui = None  # type: ignore[assignment]
        # frames are small and often two in a row (an ack, then a relayed frame): with
        # Nagle's algorithm the second waits for the client's delayed ACK, ~40 ms
        self.set_nodelay(True)
        username = self.identity["username"]
        self.account = self.quotas.open(username)
        if self.account is None:
            limit = self.limits.max_connections_per_identity
            error = p.limit_exceeded(
                "max_connections_per_identity",
                limit,
                f"too many connections: {username} has {limit} room and signaling sockets open on this server; close one first",
            )
            self.send_error_frame(error.code, error.message, **error.fields)
            self._mark_gone()
            self.close(p.CLOSE_POLICY, "too many connections of this identity (IAvicenne.max_connections_per_identity)")
            return
        self.log.debug("iavicenne: %s opened %s as %s", self.key, self.request.path, username)

    # -- outbound -------------------------------------------------------------------
    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Queue one encoded frame (as a text frame, no re-encoding).

        The frames queued for one client within a turn of the event loop are written
        together, framed as tornado frames them, in one write at the start of the next turn
        (`Quotas.write_queued`): a burst to S members then costs S writes (S send calls)
        per turn rather than S per frame. Frames keep their order: replies, errors and
        room frames all go through this queue, and `close` writes it before the close
        frame. A compressed connection (permessage-deflate) is written frame by frame.

        A `replay` frame is history the client asked for (``since``), bounded by
        max_replay_bytes and one replay at a time: it counts towards what is waiting, but
        being written all at once is no sign of a slow consumer, so it closes nothing.
        """
        if self._gone:
            return
        size = len(frame)
        queued = self._outbound
        # what the socket did not take yet is what the client is slow to read; frames
        # queued in this turn are not written yet, so a client with nothing waiting in its
        # stream is not slow, however big this frame or this turn's burst is (the server's
        # total, below, bounds that burst)
        if not replay and queued > self._queued_bytes and queued + size > self.limits.max_outbound_bytes:
            self._drop_slow_consumer(
                f"slow consumer: more than {self.limits.max_outbound_bytes} bytes waiting to be read "
                "(IAvicenne.max_outbound_bytes)"
            )
            return
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            self._mark_gone()
            return
        if self._coalescing(conn):
            if not self._queue:
                self.quotas.queued(self)
            self._queue.append(text_frame_header(size))
            self._queue.append(frame)
            self._queued_bytes += size
            if replay:
                self._queued_replay += size
        else:
            try:
                written = self._write_text(frame)
            except WebSocketClosedError:
                self._mark_gone()
                return
            if written.done():  # already handed to the socket: nothing is waiting
                if not written.cancelled() and written.exception() is not None:
                    self._mark_gone()
                return
            written.add_done_callback(functools.partial(self._flushed, size, size if replay else 0))
        self._count_waiting(queued, size, replay)

    def _count_waiting(self, queued: int, size: int, replay: bool) -> None:
        self._outbound = queued + size
        if replay:
            self._replaying += size
        quotas = self.quotas
        if not queued:
            quotas.waiting.add(self)
        quotas.outbound += size
        if quotas.outbound > self.limits.max_outbound_bytes_total:
            quotas.shed()

    @staticmethod
    def _coalescing(conn: Any) -> bool:
        """Whether this connection's frames are framed here and written together: tornado's
        own uncompressed, unmasked (server side) protocol; anything else gets write_message."""
        return (
            _FRAME_WRITER
            and type(conn) is WebSocketProtocol13
            and getattr(conn, "_compressor", True) is None
            and not conn.mask_outgoing
        )

    def _write_queued(self, *, closing: bool = False) -> None:
        """Write the frames queued in the last turn, whole frames in one write.

        Tornado writes its own frames (keep-alive pings, pongs, close) straight to the
        stream: they land between two of these writes, never inside a frame. `closing`:
        written even though the socket is marked gone (the notice before a close).
        """
        parts, size, replay = self._queue, self._queued_bytes, self._queued_replay
        if not parts:
            return
        self._queue, self._queued_bytes, self._queued_replay = [], 0, 0
        conn = self.ws_connection
        if (self._gone and not closing) or conn is None or conn.is_closing():
            self._mark_gone()
            self._flushed(size, replay, None)
            return
        assert isinstance(conn, WebSocketProtocol13) and conn.stream is not None  # `_coalescing`
        data = b"".join(parts)
        conn._wire_bytes_out += len(data)  # what tornado's _write_frame counts
        try:
            written = conn.stream.write(data)
        except StreamClosedError:
            self._mark_gone()
            self._flushed(size, replay, None)
            return
        if written.done():
            self._flushed(size, replay, written)
        else:
            written.add_done_callback(functools.partial(self._flushed, size, replay))

    def _write_text(self, frame: bytes) -> asyncio.Future[None]:
        """Write one text frame now; the future is done once the frame is on the socket.

        For a connection whose frames are not coalesced (compressed, or not tornado's
        protocol): `write_message`.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise WebSocketClosedError()
        return self.write_message(frame)

    def _flushed(self, size: int, replay: int, done: asyncio.Future[None] | None) -> None:
        """`size` bytes (`replay` of them history) left the queue: written, or dropped (done None)."""
        self._outbound -= size
        self._replaying -= replay
        self.quotas.released(size)
        if not self._gone:  # a gone socket's bytes left the server's total already
            self.quotas.outbound -= size
            if not self._outbound:
                self.quotas.waiting.discard(self)
        if done is not None and not done.cancelled() and done.exception() is not None:
            self._mark_gone()  # the peer went away; on_close does the rest

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close after the frames queued in this turn (an error or notice before the close
        frame is read by the client before it)."""
        self._write_queued(closing=True)
        super().close(code, reason)

    def _mark_gone(self) -> None:
        """Nothing more is written to this socket; what it has queued is released soon."""
        if self._gone:
            return
        self._gone = True
        # counted as released now: its buffer goes with the stream (tornado closes it
        # within seconds), and the server's budget must not close other sockets meanwhile
        self.quotas.outbound -= self._outbound
        self.quotas.waiting.discard(self)

    def reply(self, kind: str, ref: str | None = None, **fields: Any) -> None:
        """Send this client a frame of its own (built by `protocol.encoded`)."""
        self.send(p.encoded(kind, ref=ref, **fields))

    def superseded(self, room: str) -> None:
        """A newer connection took this one's place in `room`; only signaling peers are taken over."""

    def evicted(self, room: str) -> None:
        """This identity was removed from hub room `room`; overridden by subclasses."""

    def send_error_frame(self, code: str, message: str, ref: str | None = None, **extra: Any) -> None:
        # not `send_error`: that is tornado's, which answers a refused handshake (403)
        self.send(p.encode(p.error_frame(code, message, ref, **extra)))

    def _drop_slow_consumer(self, reason: str) -> None:
        self.log.warning(
            "iavicenne: closing %s (%s, %d bytes waiting): %s", self.key, self.identity.get("username"), self._outbound, reason
        )
        self._mark_gone()
        self._write_queued()  # dropped (gone): it would only wait in the stream of a client that does not read
        self.close(p.CLOSE_POLICY, reason)
        # closing may wait for the client to read; leave its rooms now
        self.in_background(self._leave_all(closing=True), "leaving the rooms of a slow consumer")

    # -- inbound --------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Handle one frame, at once when it needs no waiting (None), else in a task.

        Tornado reads the next frame only once this one is handled. Handed a coroutine, it
        makes it a task: every frame then costs turns of the event loop, and the frames of
        a burst are never handled, nor their broadcasts written, in the same turn. Most
        frames wait for nothing (the memory broker answers at once), so the coroutine is
        run here until it first waits; only then does a task carry on with it. After
        MAX_FRAMES_PER_TURN frames handled at once, the next waits for a turn, so that one
        client's burst does not hold up the others.
        """
        if self._publishes and not _is_message(message):
            # only room messages go on past publishes still in flight; anything else
            # (a leave, a join, a presence change) waits until those are answered
            return asyncio.ensure_future(self._after_publishes(message))
        handling = self._handle_frame(message)
        if self._frames_this_turn >= MAX_FRAMES_PER_TURN:
            self._frames_this_turn = 0
            return asyncio.ensure_future(handling)  # a task starts in the next turn
        self._publishing = False
        try:
            waiting_on = handling.send(None)
        except StopIteration:
            self._frames_this_turn += 1
            return None
        self._frames_this_turn = 0
        task = asyncio.ensure_future(_carry_on(handling, waiting_on))
        if self._publishing and len(self._publishes) < MAX_PUBLISHES_IN_FLIGHT:
            # a room message waiting for its publish only: read the next frame meanwhile
            self._publishes.add(task)
            task.add_done_callback(self._publishes.discard)
            return None
        return task

    async def _after_publishes(self, message: str | bytes) -> None:
        while self._publishes:
            await asyncio.wait(list(self._publishes))
        await self._handle_frame(message)

    async def _handle_frame(self, message: str | bytes) -> None:
        if self._gone:
            return
        ref: str | None = None
        try:
            if not self._bucket.take():
                self._rate_limited("messages_per_second")
                return
            # counted before parsing: a flood of big frames is dropped unparsed
            if self.account is not None and not self.account.bytes.take(len(message)):
                self._rate_limited("bytes_per_second")
                # and this socket is not read until the budget would hold the frame (at most
                # a second; tornado reads the next frame once this returns): the flood then
                # waits in the sender's socket instead of costing this server its reading
                await asyncio.sleep(min(1.0, self.account.bytes.wait(len(message))))
                return
            request = p.parse_request(message, self.known_types)
            ref = request.ref
            handler: Handler = getattr(self, self.frame_handlers[request.type])
            await handler(request)
        except p.ProtocolError as error:
            self.send_error_frame(error.code, error.message, ref if ref is not None else error.ref, **error.fields)
        except BrokerUnavailable as error:
            self.send_error_frame(p.ErrorCode.UNAVAILABLE, f"not delivered: {error}", ref)
        except Exception:
            self.log.exception("iavicenne: error handling a frame from %s", self.key)
            self.send_error_frame(p.ErrorCode.INTERNAL, "internal error; the request was not carried out", ref)

    def _rate_limited(self, option: str) -> None:
        """Drop the frame; say so at most once a second (the notice must not be a flood too)."""
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_limit_notice < 1.0:
            return
        self._last_limit_notice = now
        limits = self.limits
        dropped = f"{self._dropped} frame(s) dropped, send them again later"
        if option == "messages_per_second":
            limit: float = limits.messages_per_second
            what = f"rate limited: more than {limit:g} frames per second (burst {limits.burst}); {dropped}"
        else:
            limit = limits.bytes_per_second
            what = (
                f"rate limited: more than {limit:g} bytes per second from {self.identity['username']} over all "
                f"its connections (burst {limits.burst_bytes}); {dropped}"
            )
        error = p.limit_exceeded(option, limit, what, code=p.ErrorCode.RATE_LIMITED)
        self.send_error_frame(error.code, error.message, dropped=self._dropped, **error.fields)
        self._dropped = 0

    def on_close(self) -> None:
        self._mark_gone()
        super().on_close()
        if self.account is not None:
            self.quotas.close(self.account)
        self.in_background(self._leave_all(closing=True), "leaving the rooms of a closed socket")

    def in_background(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Run `work` without waiting for it: kept until it is done, and its failure logged
        (nothing awaits it, so asyncio would only say "exception never retrieved", late)."""
        task = asyncio.ensure_future(work)
        if self._background is None:
            self._background = set()
        self._background.add(task)
        task.add_done_callback(functools.partial(self._background_done, what))
        return task

    def _background_done(self, what: str, task: asyncio.Task[None]) -> None:
        if self._background is not None:
            self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.error("iavicenne: %s of %s failed", what, self.key, exc_info=error)

    # -- rooms of the identity --------------------------------------------------------
    def enter(self, room: str) -> None:
        """Count hub room `room` among the identity's (max_rooms_per_identity) before joining it."""
        assert self.account is not None  # frames are only handled on a counted socket
        self.account.enter(room, self.limits.max_rooms_per_identity)

    def exit(self, room: str) -> None:
        """`room` is left (or its join failed): it no longer counts among the identity's."""
        if self.account is not None:
            self.account.exit(room)
            self.quotas.forget_idle(self.account)

    async def _leave_all(self, *, closing: bool) -> None:
        """Leave every room; overridden by subclasses."""
