"""What every iAvicenne WebSocket shares: Jupyter auth, limits, framing of errors.

A `ProtocolSocket` authenticates like every Jupyter endpoint, checks the origin as
Jupyter does, parses each text frame once with `protocol.parse_request`, turns any
`ProtocolError` into an error frame, and protects the server from its client: frame
size (close 1009), rate (error ``rate-limited``, excess dropped) and outbound buffer
(a consumer too slow to read is disconnected rather than growing our memory).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from .. import protocol as p
from ..broker.base import BrokerUnavailable

AUTH_RESOURCE = "iavicenne"

# tornado's frame writer (see ProtocolSocket._write_text); write_message if it ever goes
_FRAME_WRITER = callable(getattr(WebSocketProtocol13, "_write_frame", None))
_OPCODE_TEXT = 0x1


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits, from the app's traitlets."""

    max_frame_bytes: int
    messages_per_second: float
    burst: int
    max_rooms: int
    max_outbound_bytes: int


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


_connection_numbers = itertools.count(1)

Handler = Callable[[p.Request], Awaitable[None]]


class ProtocolSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """Base of the room and signaling sockets; subclasses fill `handlers` and `closed`."""

    auth_resource = AUTH_RESOURCE
    known_types: frozenset[str] = frozenset()

    def initialize(self, *, limits: Limits, server_id: str) -> None:  # type: ignore[override]
        self.limits = limits
        self.key = f"{server_id}:{next(_connection_numbers)}"
        self.identity: dict[str, Any] = {}
        self._bucket = TokenBucket(limits.messages_per_second, limits.burst)
        self._outbound = 0  # bytes queued to this client and not yet written to the socket
        self._replaying = 0  # of which: history replayed on the client's request
        self._dropped = 0
        self._last_limit_notice = 0.0
        self._gone = False
        self._handlers: dict[str, Handler] = {}

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
        self.identity = self._identity_of(user)
        await super().get(*args, **kwargs)

    def _identity_of(self, user: Any) -> dict[str, Any]:
        """The server-side identity attached to everything this connection does.

        Whoever holds a server's token is that server's owner, but Jupyter names every
        token-authenticated request as a new random anonymous user. Give them one stable
        identity per token instead, so two kernels of one analyst (or one kernel that
        reconnects) are the same user. The token itself is never shown, only a digest.
        """
        identity = {"username": user.username, "name": user.name, "display_name": user.display_name}
        token = getattr(self.identity_provider, "token", None)
        if token and self.identity_provider.is_token_authenticated(self) and self._presented(token):
            digest = hashlib.sha256(token.encode()).hexdigest()[:16]
            identity["username"] = f"token-{digest}"
            # the server runs as its owner: that login is the token holder's name
            identity["name"] = identity["display_name"] = getpass.getuser()
        return identity

    def _presented(self, token: str) -> bool:
        """True when this request carries the server's own token.

        Being token-authenticated is not enough: identity providers with personal tokens
        (JupyterHub, or any custom one) also mark their requests so, and those users must
        keep their own identity rather than become the server's owner.
        """
        presented = self.identity_provider.get_token(self) or ""
        return hmac.compare_digest(presented.encode(), token.encode())

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)  # starts Jupyter's keep-alive pings
        # frames are small and often two in a row (an ack, then a relayed frame): with
        # Nagle's algorithm the second waits for the client's delayed ACK, ~40 ms
        self.set_nodelay(True)
        self.log.debug("iavicenne: %s opened %s as %s", self.key, self.request.path, self.identity["username"])

    # -- outbound -------------------------------------------------------------------
    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Queue one encoded frame (as a text frame, no re-encoding).

        A `replay` frame is history the client asked for (``since``): written all at once
        and bounded by the room's history, it is not a sign of a slow consumer, so it does
        not count towards max_outbound_bytes.
        """
        if self._gone:
            return
        size = len(frame)
        waiting = self._outbound - self._replaying
        # a client with nothing waiting is not slow, however big this one frame is
        if not replay and waiting and waiting + size > self.limits.max_outbound_bytes:
            self._drop_slow_consumer()
            return
        try:
            written = self._write_text(frame)
        except WebSocketClosedError:
            self._gone = True
            return
        if written.done():  # already handed to the socket: nothing is waiting
            if not written.cancelled() and written.exception() is not None:
                self._gone = True
            return
        self._outbound += size
        if replay:
            self._replaying += size
        written.add_done_callback(lambda done, size=size, replay=replay: self._flushed(done, size, replay))

    def _write_text(self, frame: bytes) -> asyncio.Future[None]:
        """Write one text frame; the future is done once the frame is on the socket.

        `write_message` wraps every write in a new task. A broadcast to S members then
        leaves S tasks pending at once, and in a Jupyter server's large heap the garbage
        collector took over half of the fan-out time (benchmarks/fanout.py, 500 members).
        Tornado's own frame writer, which write_message calls, frames the bytes exactly
        the same way without the task; it is used for the usual uncompressed connection.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise WebSocketClosedError()
        if _FRAME_WRITER and type(conn) is WebSocketProtocol13 and getattr(conn, "_compressor", True) is None:
            try:
                return conn._write_frame(True, _OPCODE_TEXT, frame)
            except StreamClosedError:
                raise WebSocketClosedError() from None
        return self.write_message(frame)

    def _flushed(self, done: asyncio.Future[None], size: int, replay: bool) -> None:
        self._outbound -= size
        if replay:
            self._replaying -= size
        if not done.cancelled() and done.exception() is not None:
            self._gone = True  # the peer went away; on_close does the rest

    def reply(self, kind: str, ref: str | None = None, **fields: Any) -> None:
        """Send this client a frame of its own (built by `protocol.encoded`)."""
        self.send(p.encoded(kind, ref=ref, **fields))

    def superseded(self, room: str) -> None:
        """A newer connection took this one's place in `room`; only signaling peers are taken over."""

    def send_error_frame(self, code: str, message: str, ref: str | None = None, **extra: Any) -> None:
        # not `send_error`: that is tornado's, which answers a refused handshake (403)
        self.send(p.encode(p.error_frame(code, message, ref, **extra)))

    def _drop_slow_consumer(self) -> None:
        reason = f"slow consumer: more than {self.limits.max_outbound_bytes} bytes waiting to be read"
        self.log.warning("iavicenne: closing %s (%s): %s", self.key, self.identity.get("username"), reason)
        self._gone = True
        self.close(p.CLOSE_POLICY, reason)
        # closing may wait for the client to read; leave its rooms now
        asyncio.ensure_future(self._leave_all(closing=True))

    # -- inbound --------------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        if self._gone:
            return
        ref: str | None = None
        try:
            if not self._bucket.take():
                self._rate_limited(message)
                return
            request = p.parse_request(message, self.known_types)
            ref = request.ref
            await self._handlers[request.type](request)
        except p.ProtocolError as error:
            self.send_error_frame(error.code, error.message, ref if ref is not None else error.ref, **error.fields)
        except BrokerUnavailable as error:
            self.send_error_frame(p.ErrorCode.UNAVAILABLE, f"not delivered: {error}", ref)
        except Exception:
            self.log.exception("iavicenne: error handling a frame from %s", self.key)
            self.send_error_frame(p.ErrorCode.INTERNAL, "internal error; the request was not carried out", ref)

    def _rate_limited(self, message: str | bytes) -> None:
        """Drop the frame; say so at most once a second (the notice must not be a flood too)."""
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_limit_notice < 1.0:
            return
        self._last_limit_notice = now
        self.send_error_frame(
            p.ErrorCode.RATE_LIMITED,
            f"rate limited: more than {self.limits.messages_per_second:g} frames per second "
            f"(burst {self.limits.burst}); {self._dropped} frame(s) dropped, send them again later",
            dropped=self._dropped,
        )
        self._dropped = 0

    def on_close(self) -> None:
        self._gone = True
        super().on_close()
        asyncio.ensure_future(self._leave_all(closing=True))

    async def _leave_all(self, *, closing: bool) -> None:
        """Leave every room; overridden by subclasses."""
