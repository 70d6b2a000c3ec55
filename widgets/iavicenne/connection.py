"""The connection core: one WebSocket endpoint kept open, whatever the network does.

`Endpoint` is what `RoomClient` and `SignalingClient` share: it connects, restores the
session on every new socket (the subclass's ``_restore``: connect, rejoin), resends what
the server did not acknowledge (an `Outbox`), matches replies to requests by ``ref``,
and reconnects with `Backoff` after a drop. A refusal that must not be retried (a wrong
token, a taken name, a superseded peer) stops it for good: every waiting call raises it.
A rate budget reached (``rate-limited``, or ``limit-exceeded`` naming a per-second
option) is back-pressure: what was refused is written again a little later, and a
``rate-limited`` event tells whoever paces its sends (the peer-link relay).
The browser client's ``connection.js`` is the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

import iavicenne_protocol as p

from .delivery import Outbox
from .discovery import ServerInfo, discover_server
from .errors import AuthenticationError, ClientError, ConnectionClosed, ServerNotFound, ServerUnreachable, Superseded, error_from
from .events import EventEmitter, EventStream

log = logging.getLogger("iavicenne.client")


class Disconnected(Exception):
    """The socket closed while a request waited; the reconnect repeats what matters."""


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


class Endpoint:
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
        self._outbox = Outbox()
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

    async def __aenter__(self) -> Endpoint:
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
            if ws.protocol is not None:
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
                with contextlib.suppress(asyncio.CancelledError, Disconnected):
                    await restore  # a fatal error of the restore propagates
                for _, future in list(self._replies.values()):
                    if not future.done():
                        future.set_exception(Disconnected())
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
        except Disconnected:
            return  # the reader has seen the close; the next socket restores again
        except BaseException:
            ws.close()  # fatal (e.g. our name is taken now): end the reader too
            raise
        if ws.protocol is None:  # closed meanwhile
            return
        # resend what was not acknowledged, then let new frames through: no await in
        # between, so a frame sent now cannot overtake an older one
        for data in self._outbox.frames():
            self._write(ws, data)
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
            try:
                await asyncio.wait([w for w in (waiter, supervisor) if w is not None], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()  # also when this wait is cancelled: no task left behind
            if supervisor is not None and supervisor.done() and not self._ready.is_set():
                raise self._failure or ConnectionClosed("the client stopped")

    def _stop(self, error: BaseException) -> None:
        """Stop for good: every waiting send and request fails with `error`."""
        if self._failure is None:
            self._failure = error
        self._ready.clear()
        self._outbox.fail_all(error)
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
        ref = frame.setdefault("ref", self._ref())
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
        data = json.dumps(frame)
        future = self._outbox.add(ref, data, room)
        if self._ready.is_set():
            self._write(self._ws, data)
        return future

    def _resend_soon(self, delay: float) -> None:
        """Write the outbox again after `delay` (after a rate-limit notice: frames were dropped)."""
        if self._resend is not None:
            return

        def resend() -> None:
            self._resend = None
            if self._ready.is_set():
                for data in self._outbox.frames():
                    self._write(self._ws, data)

        self._resend = asyncio.get_running_loop().call_later(delay, resend)

    # -- reading ----------------------------------------------------------------------
    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        ref = frame.get("ref")
        if kind == p.ACK:
            if ref is not None:
                self._outbox.ack(ref, frame)
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
        slow_down = is_back_pressure(frame)
        if slow_down:
            # a budget per second was reached: what was refused is sent again later (the
            # server remembers refs, so what it did carry out is not carried out twice)
            self._resend_soon(_retry_after(frame))
            self.events.emit("rate-limited", frame)
        if ref is not None and ref in self._outbox:
            if code == p.ErrorCode.UNAVAILABLE:
                self._resend_soon(1.0)  # the broker is down: the server did not carry it out
                return
            if not slow_down:
                self._outbox.fail(ref, error_from(frame))
            return
        if slow_down:
            log.info("iavicenne: %s: %s (%s)", self.path, frame.get("message"), code)
            return
        log.warning("iavicenne: %s: %s (%s)", self.path, frame.get("message"), code)
        self.events.emit("error", error_from(frame))


#: budgets per second (IAvicenne options): reaching one is back-pressure, not a refusal
RATE_OPTIONS = frozenset({"messages_per_second", "burst", "bytes_per_second", "burst_bytes"})


def is_back_pressure(frame: dict[str, Any]) -> bool:
    """Whether an error frame says "not now" (a rate budget) rather than "never"."""
    code = frame.get("code")
    return code == p.ErrorCode.RATE_LIMITED or (code == p.ErrorCode.LIMIT_EXCEEDED and frame.get("option") in RATE_OPTIONS)


def _retry_after(frame: dict[str, Any]) -> float:
    after = frame.get("retry_after")
    return min(10.0, max(0.1, float(after))) if isinstance(after, (int, float)) and not isinstance(after, bool) else 1.0


__all__ = ["RATE_OPTIONS", "Backoff", "Endpoint", "is_back_pressure"]
