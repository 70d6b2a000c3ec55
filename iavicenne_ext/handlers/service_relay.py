"""In a user's server under JupyterHub: the room service's sockets and REST API, relayed.

A page of a user's server (JupyterLab's panel, a notebook's page) has one credential: its
login to that server (the server's cookie, and the server's ``_xsrf`` that JupyterHub >= 4.1
asks of every cookie-authenticated request that is not a page navigation). The room
service is another server behind the Hub (``/services/<name>/``), with a login of its own
that only a page navigation through the Hub's OAuth can get; a ``fetch`` or a WebSocket
from the page cannot. So the page does not speak to the service: it speaks to its own
server, at the same paths as to any server holding rooms (``iavicenne/ws/mcp``,
``iavicenne/ws/signaling``, ``iavicenne/api/rooms...``, ``iavicenne/api/search``), and the server relays each socket
and call to the service with its own Hub token (``$JUPYTERHUB_API_TOKEN``, the one its
kernels speak to the service with, whose scopes the docs' configuration gives:
``access:services!service=<name>``, ``read:users:groups!user``).

The service authenticates that token with the Hub, so what it sees is the server's user,
exactly as for a kernel: a user's server can only ever act as its own user, whatever its
pages send. Nothing the page says is forwarded as identity: not its cookies, not its
``Authorization``, not a ``token`` in the address. The relay holds no broker credential
and no room state; who may use it is whoever may use this server (its owner, and whom
the Hub lets in, as for its kernels).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
    websocket_connect,
)

from ..hub import RoomServiceLocator, RoomServiceUnavailable, RoomsLocation
from . import AUTH_RESOURCE

TIMEOUT = 20.0  # seconds for the service to answer a call or a socket's handshake
# the largest frame relayed, either way: the service judges the page's frames by its own
# IAvicenne.max_frame_bytes (and closes with 1009, which the relay passes on); its own
# frames (a join's history, a page of members) may be larger than a client's, and kernels
# take up to tornado's default, 10 MiB
RELAY_FRAME_FLOOR = 10 * 1024 * 1024
# close codes an endpoint may send (RFC 6455 7.4): 1005 and 1006 only report, never travel
_SENDABLE = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))


def _query(arguments: str) -> str:
    """The query to forward: the page's, less any ``token`` (the page's credential is its own)."""
    kept = [(name, value) for name, value in parse_qsl(arguments, keep_blank_values=True) if name != "token"]
    return f"?{urlencode(kept)}" if kept else ""


class _Relay:
    """Where the service is, and the credential the relay speaks to it with."""

    locator: RoomServiceLocator
    log: Any

    async def service(self) -> RoomsLocation:
        try:
            return await self.locator.locate()
        except RoomServiceUnavailable as error:
            self.log.warning("iavicenne: no room service: %s", error)
            raise web.HTTPError(503, str(error)) from None

    def service_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.locator.api_token}"}


class ServiceRestRelay(_Relay, APIHandler):
    """`{base_url}iavicenne/api/rooms[/...]` (and ``.../search``): the service's REST API at
    the same path, as this server's user."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, *, locator: RoomServiceLocator, api: str = "rooms") -> None:
        self.locator = locator
        self.api = api  # the service's endpoint this route relays to

    async def relay(self, tail: str) -> None:
        location = await self.service()
        body = self.request.body or None
        headers = {**self.service_headers(), "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = self.request.headers.get("Content-Type", "application/json")
        request = HTTPRequest(
            f"{location.rooms_url}iavicenne/api/{self.api}{tail}{_query(self.request.query)}",
            method=self.request.method or "GET",
            headers=headers,
            body=body,
            allow_nonstandard_methods=True,  # a DELETE or a GET with a body is the service's to judge
            connect_timeout=TIMEOUT,
            request_timeout=TIMEOUT,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as error:
            raise web.HTTPError(502, f"the room service {self.locator.service!r} is unreachable: {error}") from None
        if response.code == 599:
            raise web.HTTPError(502, f"the room service {self.locator.service!r} did not answer: {response.error}")
        self.set_status(response.code, response.reason)
        # APIHandler.finish sets the type it is given: a room's Markdown export stays Markdown
        self.finish(response.body or b"", set_content_type=response.headers.get("Content-Type", "application/json"))

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, tail: str = "") -> None:
        await self.relay(tail or "")

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def post(self, tail: str = "") -> None:
        await self.relay(tail or "")

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def put(self, tail: str = "") -> None:
        await self.relay(tail or "")

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def delete(self, tail: str = "") -> None:
        await self.relay(tail or "")


class ServiceSocketRelay(_Relay, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """`{base_url}iavicenne/ws/mcp` and `.../ws/signaling`: the service's socket at the same
    path, opened with this server's token once the page's handshake is authenticated here;
    frames go through unchanged both ways, and a close on either side closes the other."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, *, locator: RoomServiceLocator, path: str, max_frame_bytes: int) -> None:
        self.locator = locator
        self.path = path  # the service's path, relative to its base URL
        self.max_frame_bytes = max_frame_bytes
        self.upstream: WebSocketClientConnection | None = None
        self.pump: asyncio.Task[None] | None = None

    def set_default_headers(self) -> None:
        """JupyterHandler's headers (CSP etc.) mean nothing for a WebSocket."""

    @property
    def max_message_size(self) -> int:  # the service's own limit is the one that speaks
        return max(RELAY_FRAME_FLOOR, self.max_frame_bytes)

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, WebSocketProtocol13):
            # Jupyter's pings (WebSocketMixin.open, in milliseconds) keep the page's socket
            # alive; tornado's own, which would read the same setting as seconds, are off
            # (as in ProtocolSocket)
            protocol.params.ping_interval = None
        return protocol

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)):
            raise web.HTTPError(403, "not authorized to use iAvicenne rooms")
        location = await self.service()
        url = f"{location.rooms_url}{self.path}{_query(self.request.query)}"
        url = "ws" + url[len("http") :] if url.startswith("http") else url
        request = HTTPRequest(url, headers=self.service_headers(), connect_timeout=TIMEOUT, request_timeout=TIMEOUT)
        # the service's socket first: a refusal there is the page's answer, as an HTTP status
        try:
            self.upstream = await websocket_connect(request, max_message_size=self.max_message_size, ping_interval=None)
        except HTTPClientError as error:
            raise web.HTTPError(error.code, f"the room service {self.locator.service!r} refused the socket: {error}") from None
        except (OSError, asyncio.TimeoutError) as error:
            raise web.HTTPError(502, f"the room service {self.locator.service!r} is unreachable: {error}") from None
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.set_nodelay(True)  # small frames, often two in a row (see ProtocolSocket.open)
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        """The service's frames to the page, one at a time: a page that reads slowly slows the
        reading here, and the service's outbound budget decides what happens to it."""
        upstream = self.upstream
        assert upstream is not None
        while True:
            message = await upstream.read_message()
            if message is None:
                break
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except WebSocketClosedError:
                break
        code = upstream.close_code
        if self.ws_connection is not None:
            self.close(code if code in _SENDABLE else None, upstream.close_reason if code in _SENDABLE else None)

    async def on_message(self, message: str | bytes) -> None:
        # awaited by tornado before the next frame is read: the service's pace is the page's
        if self.upstream is None:
            return
        try:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            self.close()

    def on_close(self) -> None:
        super().on_close()
        if self.upstream is not None:
            code = self.close_code
            self.upstream.close(code if code in _SENDABLE else None, self.close_reason if code in _SENDABLE else None)
