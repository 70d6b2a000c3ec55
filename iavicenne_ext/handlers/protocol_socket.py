"""What every iAvicenne WebSocket shares: Jupyter auth, identity, its account, its lifetime.

The identity (`who`, and its public part `identity` that frames carry) is read from who
authenticated the handshake (identity.py), with the connection's name policy (names.py).

A `ProtocolSocket` authenticates like every Jupyter endpoint, checks the origin as
Jupyter does, and protects the server and the other users from its client: its frames
are dispatched by frame_dispatch.py, written by outbound.py, counted by budgets.py, and
kept alive by keep_alive.py. The room and signaling sockets (rooms.py, signaling.py)
fill `frame_handlers` and `_leave_all`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Coroutine
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from tornado import web
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketProtocol, WebSocketProtocol13

import iavicenne_protocol as p

from .. import names
from ..broker.base import BrokerUnavailable
from ..identity import Identity, identity_of
from ..rooms import RoomHub
from . import AUTH_RESOURCE
from .budgets import Quotas
from .frame_dispatch import FrameDispatch

_connection_numbers = itertools.count(1)


class ProtocolSocket(FrameDispatch):
    """Base of the room and signaling sockets; subclasses fill `frame_handlers` and `_leave_all`.

    A Jupyter WebSocket (`WebSocketMixin`, `JupyterHandler`) through `OutboundSocket`.
    """

    auth_resource = AUTH_RESOURCE

    def initialize(self, *, hub: RoomHub, quotas: Quotas) -> None:
        self.hub = hub
        self.start_outbound(quotas)
        self.start_dispatch(quotas.limits)
        self.key = f"{hub.server_id}:{next(_connection_numbers)}"
        self.who = Identity("", "", "")  # until the handshake is authenticated
        self.identity = {}
        self.name_policy = names.FREE
        self.account = None  # the identity's, once the socket is open and counted
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

    def on_close(self) -> None:
        self._mark_gone()
        super().on_close()
        if self.account is not None:
            self.quotas.close(self.account)
        self.in_background(self._leave_all(closing=True), "leaving the rooms of a closed socket")

    def slow_consumer_closed(self) -> None:
        # closing may wait for the client to read; leave its rooms now
        self.in_background(self._leave_all(closing=True), "leaving the rooms of a slow consumer")

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

    # -- what the hub tells a connection (rooms.py) -------------------------------------
    def superseded(self, room: str) -> None:
        """A newer connection took this one's place in `room`; only signaling peers are taken over."""

    def evicted(self, room: str) -> None:
        """This identity was removed from hub room `room`; overridden by subclasses."""

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
