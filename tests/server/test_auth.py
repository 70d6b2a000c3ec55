"""Authentication, authorization and origin checks of every iAvicenne endpoint.

The endpoints behave as Jupyter's own: the server's token (header or ``?token=``) or the
login cookie authenticates; a browser session (cookie) from a foreign Origin is refused;
a token-authenticated script is not subject to the origin check.

How the tests get a login cookie, as a browser does: GET ``{base_url}login`` sets the
``_xsrf`` cookie; POST ``{base_url}login`` with that ``_xsrf`` (form field and cookie) and
the token as ``password`` answers 302 with the login cookie (``username-<host>-<port>``).
The cookie is bound to the host name, so every request here uses ``127.0.0.1``.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from room_support import ALICE, BOB, with_analysts
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.routing import PathMatches, Rule
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

ROOM_SOCKET = "iavicenne/ws/mcp"
REST = ["iavicenne/api/rooms", "iavicenne/api/rooms/r1", "iavicenne/api/search?q=r1"]


class NoWritingForBob(Authorizer):
    """bob may read the room list but not use rooms; everyone else may do anything."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (user.username == "bob" and resource == "iavicenne" and action == "write")


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    config = with_analysts(jp_server_config)
    config["ServerApp"]["authorizer_class"] = NoWritingForBob
    return config


@pytest.fixture
def url(http_server: Any, jp_http_port: int, jp_base_url: str) -> Any:
    """Addresses on the running test server, by path (``scheme`` "ws" for WebSockets)."""

    def make(path: str, scheme: str = "http", **params: str) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{scheme}://127.0.0.1:{jp_http_port}{jp_base_url}{path}{query}"

    return make


async def ws_status(address: str, headers: dict[str, str] | None = None) -> int:
    """101 when the WebSocket opens, else the HTTP status of the refused handshake."""
    try:
        ws = await websocket_connect(HTTPRequest(address, headers=headers or {}))
    except HTTPClientError as error:
        return error.code
    ws.close()
    return 101


async def http_status(address: str, headers: dict[str, str] | None = None, method: str = "GET", **kwargs: Any) -> int:
    response = await AsyncHTTPClient().fetch(
        address, method=method, headers=headers or {}, raise_error=False, follow_redirects=False, **kwargs
    )
    return response.code


async def login_cookie(token: str, url: Any) -> str:
    """The ``Cookie`` header of a browser that logged in with the server's token."""
    client = AsyncHTTPClient()
    page = await client.fetch(url("login"))
    xsrf = re.search(r"_xsrf=([^;]+)", "; ".join(page.headers.get_list("Set-Cookie"))).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": token})
    login = await client.fetch(
        url("login"), method="POST", body=form, headers={"Cookie": f"_xsrf={xsrf}"}, follow_redirects=False, raise_error=False
    )
    assert login.code == 302, login.body
    cookies = [c.split(";")[0] for c in login.headers.get_list("Set-Cookie") if c.startswith("username-")]
    assert cookies, login.headers
    return "; ".join([*cookies, f"_xsrf={xsrf}"])


# -- no credentials ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [ROOM_SOCKET, ROOM_SOCKET + "/"])
async def test_room_socket_without_token_is_403(url: Any, path: str) -> None:
    assert await ws_status(url(path, "ws")) == 403
    assert await ws_status(url(path, "ws"), {"Authorization": "token wrong-token"}) == 403
    assert await ws_status(url(path, "ws", token="wrong-token")) == 403


@pytest.mark.parametrize("path", REST)
async def test_rest_without_token_is_403(url: Any, path: str) -> None:
    assert await http_status(url(path)) == 403
    assert await http_status(url(path), {"Authorization": "token wrong-token"}) == 403


async def test_the_servers_token_opens_every_endpoint(jp_serverapp: Any, url: Any) -> None:
    token = jp_serverapp.identity_provider.token
    assert await ws_status(url(ROOM_SOCKET, "ws"), {"Authorization": f"token {token}"}) == 101
    assert await ws_status(url(ROOM_SOCKET, "ws", token=token)) == 101
    assert await http_status(url("iavicenne/api/rooms"), {"Authorization": f"token {token}"}) == 200


# -- origin ---------------------------------------------------------------------------------


async def test_cookie_session_from_a_foreign_origin_is_403(jp_serverapp: Any, url: Any, jp_http_port: int) -> None:
    cookie = await login_cookie(jp_serverapp.identity_provider.token, url)
    own = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{jp_http_port}"}
    foreign = {"Cookie": cookie, "Origin": "https://evil.example"}
    # the cookie is good: the same session from the server's own origin is let in
    assert await ws_status(url(ROOM_SOCKET, "ws"), own) == 101
    assert await http_status(url("iavicenne/api/rooms"), own) == 200
    # the same cookie sent by a page of another site is refused
    assert await ws_status(url(ROOM_SOCKET, "ws"), foreign) == 403
    assert await ws_status(url(ROOM_SOCKET + "/", "ws"), foreign) == 403
    for path in REST:
        assert await http_status(url(path), foreign) == 403


async def test_a_token_authenticated_script_is_not_origin_checked(jp_serverapp: Any, url: Any) -> None:
    """As in Jupyter: a token is not sent by a browser on its own, so it proves intent."""
    token = jp_serverapp.identity_provider.token
    headers = {"Authorization": f"token {token}", "Origin": "https://elsewhere.example"}
    assert await ws_status(url(ROOM_SOCKET, "ws"), headers) == 101


# -- authorization ----------------------------------------------------------------------


async def test_a_user_not_authorized_to_write_cannot_use_rooms(url: Any) -> None:
    assert await ws_status(url(ROOM_SOCKET, "ws"), BOB) == 403
    assert await http_status(url("iavicenne/api/rooms"), BOB) == 200  # reading is allowed
    assert await ws_status(url(ROOM_SOCKET, "ws"), ALICE) == 101


# -- every handler of the extension, including future ones -----------------------------


def extension_rules(app: Application) -> list[tuple[PathMatches, Any]]:
    """Every URL rule of the web app whose pattern belongs to iAvicenne, as its path matcher
    (a `Rule` types its matcher as any `Matcher`, which has no pattern) and its handler class."""
    found: list[tuple[PathMatches, Any]] = []
    routers: list[Any] = [app.default_router, app.wildcard_router]
    while routers:
        rule: Rule
        for rule in routers.pop().rules:
            if hasattr(rule.target, "rules"):
                routers.append(rule.target)
            elif isinstance(rule.matcher, PathMatches) and "iavicenne" in rule.matcher.regex.pattern:
                found.append((rule.matcher, rule.target))
    return found


def example_path(matcher: PathMatches) -> str:
    """A concrete path the rule matches: each group filled with a valid room-like name."""
    pattern = matcher.regex.pattern.rstrip("$")
    path = re.sub(r"\((?:[^()\\]|\\.)*\)", "probe", pattern).replace("/?", "")
    path = path.replace("\\", "")
    assert matcher.regex.fullmatch(path) or matcher.regex.match(path), (pattern, path)
    return path


LOCKED_DOWN = {
    "ServerApp": {
        "jpserver_extensions": {"iavicenne_ext": True, "jupyter_server_terminals": False},
        "allow_unauthenticated_access": False,
    },
    "IAvicenne": {},
}


@pytest.mark.parametrize("jp_server_config", [LOCKED_DOWN])
async def test_no_extension_handler_is_reachable_without_authentication(jp_serverapp: Any, url: Any) -> None:
    """With ``allow_unauthenticated_access=False`` (jupyter_server >= 2.13), every handler
    of the extension is marked as authenticated (Jupyter's own check) and actually refuses
    a request without credentials, whatever its method. The rules are read from the
    running web app, so a handler added later is covered without touching this test.
    """
    assert jp_serverapp.allow_unauthenticated_access is False
    web_app = jp_serverapp.web_app
    rules = extension_rules(web_app)
    assert {target.__name__ for _, target in rules} >= {"RoomSocketHandler", "RoomListHandler", "RoomMembersHandler"}

    unmarked = [line for matcher, target in rules for line in web_app._check_handler_auth(matcher.regex.pattern, target)]
    assert unmarked == [], "methods without @ws_authenticated / @web.authenticated:\n" + "\n".join(unmarked)

    base = url("")[: -len(jp_serverapp.base_url)]
    login_path = jp_serverapp.base_url + "login"
    reachable = []
    for matcher, target in rules:
        path = example_path(matcher)
        if issubclass(target, WebSocketHandler):
            status = await ws_status("ws" + base[4:] + path)
            if status != 403:
                reachable.append(f"WebSocket {path} -> {status}")
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            body = None if method in ("GET", "HEAD", "DELETE") else "{}"
            response = await AsyncHTTPClient().fetch(
                base + path, method=method, body=body, allow_nonstandard_methods=True, raise_error=False, follow_redirects=False
            )
            status = response.code
            # a page (the demo page) sends a visitor to the login page, as Jupyter's own do
            if status == 302 and urllib.parse.urlsplit(response.headers.get("Location", "")).path == login_path:
                continue
            # refused (401/403), or not a method of this handler (405); anything else ran it
            if status not in (401, 403, 405):
                reachable.append(f"{method} {path} -> {status}")
    assert reachable == [], "reachable without authentication:\n" + "\n".join(reachable)
