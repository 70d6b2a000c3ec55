"""The iAvicenne Python client: rooms and signaling over WebSocket, and it heals itself.

``RoomClient`` speaks the room endpoint (chat, presence, direct messages); a
``SignalingClient`` is one peer in one signaling room (what `PeerNetwork` builds on).
Both find the server by themselves (`discover_server`) and survive a dropped network or
a restarted server:

* **reconnect** with exponential backoff and jitter (`Backoff`), so a hundred kernels
  do not knock on a restarting server in the same millisecond;
* **rejoin** every room, and **recover** what was missed: each room remembers the last
  `seq` it delivered and its `epoch`; the rejoin asks ``since`` that seq and the server
  replays the rest (a ``gap`` event says when it could not, e.g. the history of a
  restarted in-memory server is gone). Frames are delivered once: a replayed seq that
  was already delivered is skipped;
* **resend** what the server did not acknowledge: every reliable frame carries a unique
  ``ref``, stays in an outbox until its ``ack``, and is written again, with the same
  ``ref``, after a reconnect. The server remembers refs (``dedup_ttl``), so a message
  whose ack was lost is not published twice.

Events (``message``, ``presence``, ``peer``, ``signal``, ``gap``, ``connected``,
``disconnected``, ``reconnecting``, ``error``, ``closed``) come as callbacks
(``client.on("message", cb)``) or async iterators (``async for m in room.messages()``).
Errors a user can cause are exceptions that say what to fix: `AuthenticationError`
(HTTP 403, a wrong token), `ServerUnreachable`, `NameTaken`, `ServerNotFound`.

The frame types and error codes are `iavicenne_ext.protocol`'s: defined once, imported
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from iavicenne_ext import protocol as p

from .events import EventEmitter, EventStream

log = logging.getLogger("iavicenne.client")

ROOMS_PATH = "iavicenne/ws/mcp"
SIGNALING_PATH = "iavicenne/ws/signaling"


# -- errors ------------------------------------------------------------------------------
class ClientError(Exception):
    """Something the client cannot do; the message says what to fix."""


class ServerNotFound(ClientError):
    """No server given and none found in the environment or the running-server list."""


class ServerUnreachable(ClientError):
    """Nothing answers at the server's address (refused, unresolvable, timed out)."""


class AuthenticationError(ClientError):
    """The server refused the token (HTTP 403)."""


class ConnectionClosed(ClientError):
    """The client was closed, or stopped for good after a fatal error."""


class RequestFailed(ClientError):
    """The server answered a request with an error frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.code: str = frame.get("code") or ""
        super().__init__(f"{frame.get('message', 'request failed')} (code {self.code or '?'})")


class NameTaken(RequestFailed):
    """The user_id or peer_id is held in that room by another user."""


class UnknownPeer(RequestFailed):
    """The target of a relay or a direct message is not in the room."""


class Superseded(RequestFailed):
    """A newer connection of the same user took this peer_id over; this one stopped."""


class _Disconnected(Exception):
    """The socket closed while a request waited; the reconnect repeats what matters."""


def error_from(frame: dict[str, Any]) -> RequestFailed:
    kind = {
        p.ErrorCode.NAME_TAKEN: NameTaken,
        p.ErrorCode.UNKNOWN_PEER: UnknownPeer,
        p.ErrorCode.UNKNOWN_USER: UnknownPeer,
        p.ErrorCode.SUPERSEDED: Superseded,
    }.get(frame.get("code") or "", RequestFailed)
    return kind(frame)


# -- finding the server ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A Jupyter server: its base URL (with its base_url path, ending in '/') and token."""

    url: str
    token: str
    source: str = "argument"  # where it was found: argument, an env var, or running-servers

    def ws_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        return urlunsplit((scheme, parts.netloc, parts.path + path, "", ""))


def _normalize(url: str, token: str | None) -> tuple[str, str | None]:
    """Accept what Jupyter prints (``http://host:8888/lab?token=...``) as well as a base URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ServerNotFound(f"not a server URL: {url!r}; expected e.g. http://127.0.0.1:8888/")
    if token is None:
        token = (parse_qs(parts.query).get("token") or [None])[0]
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path
    for tail in ("/lab", "/tree", "/notebooks"):  # a UI page, not the base URL
        if path.endswith(tail) or tail + "/" in path:
            path = path[: path.index(tail)]
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((scheme, parts.netloc, path, "", "")), token


def discover_server(url: str | None = None, token: str | None = None, *, runtime_dir: str | None = None) -> ServerInfo:
    """Find the Jupyter server to talk to.

    In order: the arguments; the environment (``IAVICENNE_URL`` / ``IAVICENNE_TOKEN``,
    then ``JUPYTER_SERVER_URL`` / ``JUPYTER_TOKEN``); then the running servers of this
    user (``jupyter server list``), preferring the one that started this kernel
    (``JPY_PARENT_PID``, set by Jupyter for its kernels), then the one whose root
    directory holds the current directory, then the only one.
    """
    env = os.environ
    source = "argument"
    if url is None:
        for var in ("IAVICENNE_URL", "JUPYTER_SERVER_URL"):
            if env.get(var):
                url, source = env[var], var
                break
    if token is None:
        for var in ("IAVICENNE_TOKEN", "JUPYTER_TOKEN"):
            if env.get(var):
                token = env[var]
                break
    if url is not None:
        base, token = _normalize(url, token)
        return ServerInfo(base, token or "", source)

    from jupyter_server.serverapp import list_running_servers  # only needed here

    servers = [s for s in list_running_servers(runtime_dir) if not s.get("sock")]
    if not servers:
        raise ServerNotFound(
            "no Jupyter server found: pass url= and token= (as printed by `jupyter server list`), "
            "or set IAVICENNE_URL and IAVICENNE_TOKEN"
        )
    parents = {os.getppid()}
    with contextlib.suppress(ValueError):
        parents.add(int(env.get("JPY_PARENT_PID") or 0))
    chosen = next((s for s in servers if s.get("pid") in parents), None)
    if chosen is None:
        cwd = os.path.realpath(os.getcwd())
        inside = [s for s in servers if s.get("root_dir") and cwd.startswith(os.path.realpath(s["root_dir"]))]
        if len(inside) == 1:
            chosen = inside[0]
        elif len(servers) == 1:
            chosen = servers[0]
    if chosen is None:
        urls = ", ".join(s["url"] for s in servers)
        raise ServerNotFound(f"several Jupyter servers run ({urls}); pass url= (and token=) to choose one")
    base, _ = _normalize(chosen["url"], None)
    return ServerInfo(base, token if token is not None else chosen.get("token", ""), "running-servers")


# -- reconnecting ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnect attempts: ``initial * factor**attempt``, at most `maximum`,
    of which a random part (`jitter`, 0..1) is drawn anew each time."""

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 8.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**attempt)
        return ceiling * (1 - self.jitter) + random.uniform(0, ceiling * self.jitter)


# -- events ------------------------------------------------------------------------------
@dataclass(slots=True)
class Message:
    """A chat message (``message``) or a direct message (``direct-message``) of a room."""

    room: str
    user_id: str
    content: dict[str, Any]  # the sender's payload; the seed's clients put text in "content"
    seq: int | None  # None for direct messages (not kept in history)
    identity: dict[str, Any]
    timestamp: str
    direct: bool = False
    ref: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> Any:
        return self.content.get("content")


@dataclass(slots=True)
class PresenceEvent:
    """``joined`` / ``left`` / ``state`` of one member, or a ``snapshot`` after (re)joining."""

    room: str
    kind: str
    user_id: str | None
    state: dict[str, Any]
    members: dict[str, dict[str, Any]]


@dataclass(slots=True)
class PeerEvent:
    """A peer ``joined`` or ``left`` the signaling room."""

    room: str
    kind: str
    peer_id: str
    rejoined: bool = False


@dataclass(slots=True)
class Signal:
    """An offer, answer or ICE candidate relayed from another peer."""

    kind: str  # p.OFFER, p.ANSWER or p.ICE_CANDIDATE
    source: str
    body: dict[str, Any] | None
    room: str


@dataclass(slots=True)
class Gap:
    """Messages of `room` after `since` could not all be recovered (history gone or too short)."""

    room: str
    since: int | None
    epoch_changed: bool


@dataclass(slots=True)
class _Outgoing:
    ref: str
    data: str
    future: asyncio.Future[dict[str, Any]]
    room: str | None


# -- the connection core ------------------------------------------------------------------
class _Endpoint:
    """One WebSocket endpoint kept open: (re)connects, restores the session, resends.

    A supervisor task owns the socket. For each socket it runs a reader and the
    subclass's `_restore` (connect, rejoin); once restored it rewrites the outbox and only
    then lets new frames through, so nothing is written before its room is joined and
    nothing overtakes an older unacknowledged frame.
    """

    path: ClassVar[str]

    def __init__(
        self,
        server: ServerInfo,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
    ) -> None:
        self.server = server
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.events = EventEmitter()
        self.reconnects = 0
        self._ws: WebSocketClientConnection | None = None
        self._ready = asyncio.Event()
        self._outbox: OrderedDict[str, _Outgoing] = OrderedDict()
        self._replies: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._ref_prefix = secrets.token_hex(6)
        self._refs = itertools.count(1)
        self._supervisor: asyncio.Task[None] | None = None
        self._resend: asyncio.TimerHandle | None = None
        self._closed = False
        self._failure: BaseException | None = None

    # -- public -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def unacknowledged(self) -> int:
        return len(self._outbox)

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        return self.events.on(kind, callback)

    def stream(self, *kinds: str) -> EventStream:
        return self.events.stream(*kinds)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._wait_ready(), timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._before_close()
        if self._ws is not None:
            self._ws.close(p.CLOSE_NORMAL, "client closed")
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        self._stop(ConnectionClosed("the client was closed"))

    async def __aenter__(self) -> _Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- subclass hooks ---------------------------------------------------------------
    async def _restore(self, ws: WebSocketClientConnection) -> None:
        """Re-establish the session on a fresh socket (connect, rejoin)."""

    def _handle(self, frame: dict[str, Any]) -> None:
        """A server frame that is not an ack or an error."""

    async def _before_close(self) -> None:
        """Say goodbye while the socket is still open."""

    # -- connecting -------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (the first time): raises `AuthenticationError`, `ServerUnreachable`,
        `NameTaken`... instead of retrying. `connect()` is construct-then-start; start by
        hand to register callbacks before the first frame can arrive."""
        ws = await self._open()  # the first connection raises its errors to the caller
        self._supervisor = asyncio.create_task(self._supervise(ws))
        await self._wait_ready()

    async def _open(self) -> WebSocketClientConnection:
        url = self.server.ws_url(self.path)
        headers = {"Authorization": f"token {self.server.token}"} if self.server.token else {}
        request = HTTPRequest(url, headers=headers, connect_timeout=self.connect_timeout, request_timeout=self.connect_timeout)
        try:
            ws = await websocket_connect(request, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout)
            # frames are small and often two in a row (a frame, then its ack): Nagle's
            # algorithm would hold the second until the peer's delayed ACK, ~40 ms
            ws.protocol.set_nodelay(True)
            return ws
        except HTTPClientError as error:
            if error.code == 403:
                raise AuthenticationError(
                    f"{self.server.url} refused the token (HTTP 403): pass the server's token as token=..., "
                    "or set IAVICENNE_TOKEN (`jupyter server list` shows it)"
                ) from None
            if error.code == 404:
                raise ClientError(
                    f"{url} does not exist (HTTP 404): is iAvicenne enabled on that server? "
                    "(`jupyter server extension enable iavicenne_ext`, then restart it)"
                ) from None
            if error.code == 599:  # tornado's code for a timeout or a dropped connection
                raise ServerUnreachable(f"{self.server.url} did not answer: {error.message}") from None
            raise ClientError(f"{url}: HTTP {error.code} {error.message}") from None
        except (OSError, StreamClosedError, asyncio.TimeoutError) as error:
            raise ServerUnreachable(
                f"cannot reach the Jupyter server at {self.server.url} ({error or type(error).__name__}): "
                "is it running, and is the URL right?"
            ) from None

    async def _reconnect(self) -> WebSocketClientConnection:
        attempt = 0
        while True:
            delay = self.backoff.delay(attempt)
            attempt += 1
            self.events.emit("reconnecting", {"attempt": attempt, "delay": delay})
            await asyncio.sleep(delay)
            try:
                ws = await self._open()
            except AuthenticationError:
                # a restarted server may have a new token: one found in the running-server
                # list can be found there again; a token that was given stays wrong
                if self.server.source != "running-servers" or attempt >= 3:
                    raise
                with contextlib.suppress(ServerNotFound):
                    self.server = discover_server()
                continue
            except ClientError as error:
                log.info("iavicenne: reconnect attempt %d to %s failed: %s", attempt, self.server.url, error)
                continue
            self.reconnects += 1
            return ws

    async def _supervise(self, ws: WebSocketClientConnection) -> None:
        try:
            while True:
                self._ws = ws
                reader = asyncio.create_task(self._read(ws))
                restore = asyncio.create_task(self._restore_then_flush(ws))
                await reader
                self._ready.clear()
                self._ws = None
                if not restore.done():
                    restore.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Disconnected):
                    await restore  # a fatal error of the restore propagates
                for _, future in list(self._replies.values()):
                    if not future.done():
                        future.set_exception(_Disconnected())
                if self._closed:
                    return
                if ws.close_code == p.CLOSE_SUPERSEDED:
                    raise Superseded({"code": p.ErrorCode.SUPERSEDED, "message": ws.close_reason or "superseded"})
                self.events.emit("disconnected", {"code": ws.close_code, "reason": ws.close_reason})
                ws = await self._reconnect()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            log.warning("iavicenne: %s stopped: %s", self.path, error)
            self._stop(error)
            if self._ws is not None:
                self._ws.close()

    async def _restore_then_flush(self, ws: WebSocketClientConnection) -> None:
        try:
            await self._restore(ws)
        except _Disconnected:
            return  # the reader has seen the close; the next socket restores again
        except BaseException:
            ws.close()  # fatal (e.g. our name is taken now): end the reader too
            raise
        if ws.protocol is None:  # closed meanwhile
            return
        # resend what was not acknowledged, then let new frames through: no await in
        # between, so a frame sent now cannot overtake an older one
        for outgoing in self._outbox.values():
            self._write(ws, outgoing.data)
        self._ready.set()
        self.events.emit("connected", {"url": self.server.url, "reconnects": self.reconnects})

    async def _read(self, ws: WebSocketClientConnection) -> None:
        while True:
            raw = await ws.read_message()
            if raw is None:
                return
            try:
                frame = json.loads(raw)
            except ValueError:
                log.warning("iavicenne: a frame that is not JSON: %.80r", raw)
                continue
            try:
                self._dispatch(frame)
            except Exception:
                log.exception("iavicenne: could not handle %.200r", frame)

    async def _wait_ready(self) -> None:
        while not self._ready.is_set():
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise ConnectionClosed("the client was closed")
            waiter = asyncio.ensure_future(self._ready.wait())
            supervisor = self._supervisor
            await asyncio.wait([w for w in (waiter, supervisor) if w is not None], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if supervisor is not None and supervisor.done() and not self._ready.is_set():
                raise self._failure or ConnectionClosed("the client stopped")

    def _stop(self, error: BaseException) -> None:
        """Stop for good: every waiting send and request fails with `error`."""
        if self._failure is None:
            self._failure = error
        self._ready.clear()
        for outgoing in self._outbox.values():
            if not outgoing.future.done():
                outgoing.future.set_exception(error)
        self._outbox.clear()
        for _, future in self._replies.values():
            if not future.done():
                future.set_exception(error)
        if self._resend is not None:
            self._resend.cancel()
        self.events.emit("closed", error)
        self.events.close()

    # -- writing ----------------------------------------------------------------------
    def _ref(self) -> str:
        return f"{self._ref_prefix}-{next(self._refs)}"

    @staticmethod
    def _write(ws: WebSocketClientConnection | None, data: str) -> None:
        if ws is None:
            return
        try:
            written = ws.write_message(data)
        except WebSocketClosedError:
            return  # the reader sees the close; the outbox keeps the frame
        written.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _request(self, ws: WebSocketClientConnection, frame: dict[str, Any], expect: str) -> dict[str, Any]:
        """Write `frame` on `ws` now (even before the session is restored); its reply."""
        ref = self._ref()
        frame["ref"] = ref
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ref] = (expect, future)
        try:
            self._write(ws, json.dumps(frame))
            return await future
        finally:
            self._replies.pop(ref, None)

    def _send_reliable(self, frame: dict[str, Any], room: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Queue `frame` until acknowledged, across reconnects; the future gets the ack."""
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ConnectionClosed("the client was closed")
        ref = frame.setdefault("ref", self._ref())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        outgoing = _Outgoing(ref, json.dumps(frame), future, room)
        self._outbox[ref] = outgoing
        if self._ready.is_set():
            self._write(self._ws, outgoing.data)
        return future

    def _drop_outgoing(self, room: str, error: BaseException) -> None:
        for ref, outgoing in list(self._outbox.items()):
            if outgoing.room == room:
                del self._outbox[ref]
                if not outgoing.future.done():
                    outgoing.future.set_exception(error)

    def _resend_soon(self, delay: float) -> None:
        """Write the outbox again after `delay` (after a rate-limit notice: frames were dropped)."""
        if self._resend is not None:
            return

        def resend() -> None:
            self._resend = None
            if self._ready.is_set():
                for outgoing in self._outbox.values():
                    self._write(self._ws, outgoing.data)

        self._resend = asyncio.get_running_loop().call_later(delay, resend)

    # -- reading ----------------------------------------------------------------------
    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        ref = frame.get("ref")
        if kind == p.ACK:
            outgoing = self._outbox.pop(ref, None) if ref is not None else None
            if outgoing is not None and not outgoing.future.done():
                outgoing.future.set_result(frame)
            return
        if kind == p.ERROR:
            self._on_error(frame)
            return
        self._handle(frame)
        waiting = self._replies.get(ref) if ref is not None else None
        if waiting is not None and waiting[0] == kind and not waiting[1].done():
            waiting[1].set_result(frame)

    def _on_error(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        code = frame.get("code")
        waiting = self._replies.get(ref) if ref is not None else None
        if waiting is not None:
            if not waiting[1].done():
                waiting[1].set_exception(error_from(frame))
            return
        outgoing = self._outbox.get(ref) if ref is not None else None
        if outgoing is not None:
            if code == p.ErrorCode.UNAVAILABLE:
                self._resend_soon(1.0)  # the broker is down: the server did not carry it out
                return
            del self._outbox[ref]
            if not outgoing.future.done():
                outgoing.future.set_exception(error_from(frame))
            return
        if code == p.ErrorCode.RATE_LIMITED:
            self._resend_soon(1.0)
        log.warning("iavicenne: %s: %s (%s)", self.path, frame.get("message"), code)
        self.events.emit("error", error_from(frame))


# -- rooms -------------------------------------------------------------------------------
class Room:
    """One joined room of a `RoomClient`: send, direct, presence, and its own events."""

    def __init__(self, client: RoomClient, name: str, state: dict[str, Any] | None) -> None:
        self.client = client
        self.name = name
        self.state = state or {}
        self.members: dict[str, dict[str, Any]] = {}
        self.seq: int | None = None  # the last seq delivered; None before the first join
        self.epoch: str | None = None
        self.events = EventEmitter()
        self.left = False
        self._joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joined.add_done_callback(lambda f: f.cancelled() or f.exception())

    def __repr__(self) -> str:
        return f"<Room {self.name!r} seq={self.seq} members={sorted(self.members)}>"

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        return self.events.on(kind, callback)

    def messages(self) -> EventStream:
        """An async iterator over this room's messages from now on."""
        return self.events.stream("message")

    def stream(self, *kinds: str) -> EventStream:
        return self.events.stream(*kinds)

    async def send(self, content: str | dict[str, Any]) -> dict[str, Any]:
        """Publish to the room; returns the server's ack (with the message's ``seq``) once it
        has it, however many reconnects that takes."""
        return await self.send_nowait(content)

    def send_nowait(self, content: str | dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        return self.client._send_reliable({"type": p.MESSAGE, "room": self.name, "payload": payload}, self.name)

    async def direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        """Send to every connection of member `to` only; `UnknownPeer` if it is not here."""
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        frame = {"type": p.DIRECT_MESSAGE, "room": self.name, "to": to, "payload": payload}
        return await self.client._send_reliable(frame, self.name)

    async def set_state(self, state: dict[str, Any]) -> None:
        """Set this connection's presence state (kept across reconnects)."""
        self._check_open()
        self.state = state
        await self.client._send_reliable({"type": p.PRESENCE, "room": self.name, "payload": {"state": state}}, self.name)

    async def leave(self) -> None:
        await self.client.leave(self.name)

    def _check_open(self) -> None:
        if self.left:
            raise ClientError(f"left room {self.name!r}; join it again to send")

    # -- frames from the client -------------------------------------------------------
    def _on_joined(self, frame: dict[str, Any]) -> None:
        epoch = frame.get("epoch")
        epoch_changed = self.epoch is not None and epoch != self.epoch
        if epoch_changed:
            self.seq = 0  # another life of the room: its seqs start again
        if self.seq is None:
            self.seq = frame.get("seq", 0)
        if frame.get("recovered") is False or epoch_changed:
            gap = Gap(self.name, frame.get("since"), epoch_changed)
            self._emit("gap", gap)
        self.epoch = epoch
        self.members = {m["user_id"]: m for m in frame.get("members", [])}
        self._emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
        if not self._joined.done():
            self._joined.set_result(None)

    def _on_message(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if isinstance(seq, int):
            if self.seq is not None and seq <= self.seq:
                return  # replayed after a reconnect, already delivered
            self.seq = seq
        message = Message(
            room=self.name,
            user_id=frame.get("user_id", ""),
            content=frame.get("message") or {},
            seq=seq,
            identity=frame.get("identity") or {},
            timestamp=frame.get("timestamp", ""),
            ref=frame.get("ref"),
            raw=frame,
        )
        self._emit("message", message)

    def _on_presence(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        user_id = frame.get("user_id")
        if user_id is None:
            return
        if kind == p.USER_LEFT:
            self.members.pop(user_id, None)
            event = "left"
        else:
            member = self.members.setdefault(user_id, {"user_id": user_id, "connections": 1})
            member["identity"] = frame.get("identity", member.get("identity", {}))
            member["state"] = frame.get("state", member.get("state", {}))
            event = "joined" if kind == p.USER_JOINED else "state"
        state = frame.get("state") or {}
        self._emit("presence", PresenceEvent(self.name, event, user_id, state, dict(self.members)))

    def _emit(self, kind: str, event: Any) -> None:
        self.events.emit(kind, event)
        self.client.events.emit(kind, event)


class RoomClient(_Endpoint):
    """A connection to the room endpoint; `join` rooms, then `room.send(...)`.

    ``client = await RoomClient.connect(user_id="alice")`` finds the server itself
    (see `discover_server`), or takes ``url=`` and ``token=``.
    """

    path = ROOMS_PATH

    def __init__(self, server: ServerInfo, *, user_id: str | None = None, **options: Any) -> None:
        super().__init__(server, **options)
        if user_id is not None:
            p.check_name(user_id, "user_id")
        self.user_id = user_id
        self.identity: dict[str, Any] = {}
        self.rooms: dict[str, Room] = {}
        # direct messages have no seq: a resend after a lost ack is recognised by its ref
        self._direct_seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    async def connect(cls, url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any) -> RoomClient:
        client = cls(discover_server(url, token), user_id=user_id, **options)
        await client.start()
        return client

    async def join(self, room: str, *, state: dict[str, Any] | None = None) -> Room:
        """Join `room` (kept across reconnects); `NameTaken` if another user holds our user_id there."""
        p.check_name(room, "room")
        existing = self.rooms.get(room)
        if existing is not None:
            await existing._joined
            return existing
        handle = Room(self, room, state)
        self.rooms[room] = handle
        try:
            while not handle._joined.done():
                # disconnected now: the restore of the next socket joins it (or we do, if
                # that restore had started before the room was added)
                await self._wait_ready()
                if not handle._joined.done():
                    await self._join_quietly(self._ws, handle)
            await handle._joined
        except BaseException:
            if self.rooms.get(room) is handle:
                del self.rooms[room]
            raise
        return handle

    async def leave(self, room: str) -> None:
        handle = self.rooms.pop(room, None)
        if handle is None:
            return
        handle.left = True
        self._drop_outgoing(room, ClientError(f"left room {room!r} before this was acknowledged"))
        if self._ready.is_set() and self._ws is not None:
            with contextlib.suppress(_Disconnected, RequestFailed):
                await self._request(self._ws, {"type": p.LEAVE_ROOM, "room": room}, expect=p.ROOM_LEFT)
        handle.events.close()

    async def _restore(self, ws: WebSocketClientConnection) -> None:
        if self.user_id is not None:
            reply = await self._request(ws, {"type": p.CONNECT, "payload": {"user_id": self.user_id}}, expect=p.CONNECT)
            self.identity = reply.get("identity") or {}
        await asyncio.gather(*(self._join_quietly(ws, room) for room in list(self.rooms.values())))

    async def _join_quietly(self, ws: WebSocketClientConnection | None, room: Room) -> None:
        """Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect."""
        payload: dict[str, Any] = {}
        if room.state:
            payload["state"] = room.state
        if room.seq is not None:
            payload["since"] = room.seq
            if room.epoch is not None:
                payload["epoch"] = room.epoch
        if ws is None:
            return
        try:
            reply = await self._request(ws, {"type": p.JOIN_ROOM, "room": room.name, "payload": payload}, expect=p.ROOM_JOINED)
        except _Disconnected:
            return
        except RequestFailed as error:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.left = True
            self._drop_outgoing(room.name, error)
            if not room._joined.done():
                room._joined.set_exception(error)
            else:  # refused on a rejoin: say so, the room is gone from this client
                room._emit("error", error)
            return
        if self.user_id is None:
            self.user_id = reply.get("user_id")

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        room = self.rooms.get(frame.get("room") or "")
        if room is None:
            return
        if kind == p.MESSAGE:
            room._on_message(frame)
        elif kind == p.ROOM_JOINED:
            room._on_joined(frame)
        elif kind in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE):
            room._on_presence(frame)
        elif kind == p.DIRECT_MESSAGE:
            ref = frame.get("ref")
            if ref is not None:
                key = (frame.get("user_id", ""), ref)
                if key in self._direct_seen:
                    return
                self._direct_seen[key] = None
                if len(self._direct_seen) > 10_000:
                    self._direct_seen.popitem(last=False)
            room._emit(
                "message",
                Message(
                    room=room.name,
                    user_id=frame.get("user_id", ""),
                    content=frame.get("message") or {},
                    seq=None,
                    identity=frame.get("identity") or {},
                    timestamp=frame.get("timestamp", ""),
                    direct=True,
                    ref=ref,
                    raw=frame,
                ),
            )

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.DISCONNECT}))


# -- signaling ---------------------------------------------------------------------------
class SignalingClient(_Endpoint):
    """One peer (`peer_id`) in one signaling room: peers come and go, signals are relayed.

    ``await SignalingClient.connect("lab", "alice")``; `peers` is who else is there;
    ``peer`` events (`PeerEvent`) and ``signal`` events (`Signal`) follow. Relays are
    reliable like room messages (ref, ack, resent after a reconnect) and a relay to a
    peer that is not there raises `UnknownPeer`.
    """

    path = SIGNALING_PATH

    def __init__(self, server: ServerInfo, room: str, peer_id: str, **options: Any) -> None:
        super().__init__(server, **options)
        self.room = p.check_name(room, "room")
        self.peer_id = p.check_name(peer_id, "peer_id")
        self.peers: set[str] = set()
        self.ice_servers: list[dict[str, Any]] = []
        self._signals_seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    async def connect(cls, room: str, peer_id: str, url: str | None = None, token: str | None = None, **options: Any) -> SignalingClient:
        client = cls(discover_server(url, token), room, peer_id, **options)
        await client.start()
        return client

    async def relay(self, kind: str, target: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """Send an offer, answer or ICE candidate to `target`; returns once the server relayed it."""
        field = {p.OFFER: "offer", p.ANSWER: "answer", p.ICE_CANDIDATE: "candidate"}[kind]
        frame = {"type": kind, "room": self.room, "payload": {"target_peer_id": target, field: body}}
        return await self._send_reliable(frame, self.room)

    async def wait_for_peer(self, peer_id: str, timeout: float | None = None) -> None:
        """Wait until `peer_id` is in the room."""
        if peer_id in self.peers:
            return
        arrived = asyncio.get_running_loop().create_future()

        def on_peer(event: PeerEvent) -> None:
            if event.kind == "joined" and event.peer_id == peer_id and not arrived.done():
                arrived.set_result(None)

        off = self.on("peer", on_peer)
        try:
            if peer_id not in self.peers:
                await asyncio.wait_for(arrived, timeout)
        finally:
            off()

    async def _restore(self, ws: WebSocketClientConnection) -> None:
        joined = await self._request(ws, {"type": p.JOIN, "room": self.room, "payload": {"peer_id": self.peer_id}}, expect=p.JOINED)
        self.ice_servers = joined.get("ice_servers") or []
        now = set(joined.get("peers") or [])
        before, self.peers = self.peers, now
        # what changed while we were away, as if we had seen it
        for peer_id in sorted(before - now):
            self.events.emit("peer", PeerEvent(self.room, "left", peer_id))
        for peer_id in sorted(now - before):
            self.events.emit("peer", PeerEvent(self.room, "joined", peer_id))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == p.PEER_JOINED:
            peer_id = frame["peer_id"]
            if peer_id == self.peer_id:
                return
            self.peers.add(peer_id)
            self.events.emit("peer", PeerEvent(self.room, "joined", peer_id, bool(frame.get("rejoined"))))
        elif kind == p.PEER_LEFT:
            peer_id = frame["peer_id"]
            self.peers.discard(peer_id)
            self.events.emit("peer", PeerEvent(self.room, "left", peer_id))
        elif kind in p.RELAYED:
            source = frame.get("source_peer_id", "")
            ref = frame.get("ref")
            if ref is not None:  # a resend whose ack was lost: relayed twice, handled once
                key = (source, ref)
                if key in self._signals_seen:
                    return
                self._signals_seen[key] = None
                if len(self._signals_seen) > 10_000:
                    self._signals_seen.popitem(last=False)
            field = {p.OFFER: "offer", p.ANSWER: "answer", p.ICE_CANDIDATE: "candidate"}[kind]
            self.events.emit("signal", Signal(kind, source, frame.get(field), frame.get("room", self.room)))

    def _on_error(self, frame: dict[str, Any]) -> None:
        if frame.get("code") == p.ErrorCode.SUPERSEDED and frame.get("ref") is None:
            error = Superseded(frame)
            self._stop(error)
            if self._ws is not None:
                self._ws.close()
            return
        super()._on_error(frame)

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.LEAVE}))


async def connect(url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any) -> RoomClient:
    """``await connect(user_id="alice")``: a `RoomClient` to the server found by `discover_server`."""
    return await RoomClient.connect(url, token, user_id=user_id, **options)


__all__ = [
    "AuthenticationError",
    "Backoff",
    "ClientError",
    "ConnectionClosed",
    "Gap",
    "Message",
    "NameTaken",
    "PeerEvent",
    "PresenceEvent",
    "RequestFailed",
    "Room",
    "RoomClient",
    "ServerInfo",
    "ServerNotFound",
    "ServerUnreachable",
    "Signal",
    "SignalingClient",
    "Superseded",
    "UnknownPeer",
    "connect",
    "discover_server",
]
