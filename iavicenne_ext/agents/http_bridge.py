"""``{base_url}iavicenne/mcp``: the MCP SDK's streamable-HTTP transport, served by Tornado.

The SDK's `StreamableHTTPSessionManager` is an ASGI app; Jupyter is a Tornado app on one
port. `McpHandler` is a Jupyter handler (so Jupyter's authentication, host check and
authorizer apply, as to every Jupyter API) that hands each request to the session manager
as an ASGI ``http`` scope and writes what it answers back, streaming (SSE) as it comes. No
other port, nothing unauthenticated: a request without a valid token (``Authorization:
Bearer <token>`` or ``token <token>``, Jupyter's identity provider reads both) is refused
(403) before the SDK sees it, as is one without the ("write", "iavicenne") permission.

Each MCP session belongs to the identity that opened it: the ASGI scope carries an
`AuthenticatedUser` whose principal is the username, and the SDK answers a request for a
session with another principal as if the session did not exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import JupyterHandler
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from tornado import web
from tornado.iostream import StreamClosedError

from ..handlers import AUTH_RESOURCE
from ..identity import identity_of
from .service import AgentService
from .tools import AGENT_SCOPE_KEY, IDENTITY_SCOPE_KEY

#: the principal's issuer in the SDK's session-ownership check
ISSUER = "jupyter"


class McpHandler(JupyterHandler):
    """POST (requests), GET (the server's event stream), DELETE (end a session)."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, *, service: AgentService) -> None:
        self.service = service
        self._disconnected = asyncio.Event()

    def set_default_headers(self) -> None:
        """No page headers (CSP, ...): the SDK's answers are JSON and event streams."""

    def compute_etag(self) -> None:
        return None  # an event stream is never cached

    def on_connection_close(self) -> None:
        self._disconnected.set()

    # Jupyter's own mark on every method (allow_unauthenticated_access=False checks it): a
    # request without credentials is refused (403; a GET is sent to the login page)
    @web.authenticated
    async def post(self) -> None:
        await self._serve()

    @web.authenticated
    async def get(self) -> None:
        await self._serve()

    @web.authenticated
    async def delete(self) -> None:
        await self._serve()

    async def _serve(self) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "write", AUTH_RESOURCE)):
            raise web.HTTPError(403, "not authorized to use iAvicenne rooms")
        who = identity_of(self, user)
        agent = parse_qs(self.request.query).get("agent", [""])[0]
        token = AccessToken(token="-", client_id=who.username, scopes=[], subject=who.username, claims={"iss": ISSUER})
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.request.method,
            "scheme": self.request.protocol,
            "path": self.request.path,
            "raw_path": self.request.path.encode(),
            "query_string": self.request.query.encode(),
            "root_path": "",
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.request.headers.get_all()
            ],
            "client": (self.request.remote_ip, 0),
            "server": (self.request.host_name, None),
            "user": AuthenticatedUser(token),
            IDENTITY_SCOPE_KEY: who,
            AGENT_SCOPE_KEY: agent,
        }
        if not self.service.running:
            await self.service.start()
        await self.service.manager.handle_request(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        body = getattr(self, "_body_given", None)
        if body is None:
            self._body_given = True
            return {"type": "http.request", "body": self.request.body or b"", "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.set_status(message["status"])
            self.clear_header("Content-Type")
            for name, value in message.get("headers", ()):
                self.add_header(name.decode("latin-1"), value.decode("latin-1"))
            return
        if message["type"] != "http.response.body" or self._disconnected.is_set():
            return
        body = message.get("body", b"")
        if body:
            self.write(body)
        if message.get("more_body", False):
            try:
                await self.flush()
            except StreamClosedError:
                self._disconnected.set()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A JSON error (what MCP clients read), never a page nor a traceback."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.log_message if isinstance(error, web.HTTPError) and error.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": status_code, "message": message}})
