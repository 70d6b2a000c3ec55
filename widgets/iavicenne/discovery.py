"""Finding the Jupyter server to talk to: `discover_server`, and what it finds (`ServerInfo`).

A kernel started by Jupyter finds its own server without being told (the environment,
then the running-server list); a script passes ``url=`` and ``token=``, or accepts what
Jupyter prints (``http://host:8888/lab?token=...``).

Under JupyterHub the rooms are not in the kernel's own server but in the room service
(a Hub-managed service): the kernel finds it by itself too, from ``$IAVICENNE_ROOMS_URL``
if the admin set it, else by asking its own server (``iavicenne/api/config``), and talks
to it with its own Hub token (``$JUPYTERHUB_API_TOKEN``), which is its user's identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

import iavicenne_protocol as p

from .errors import ServerNotFound

# what JupyterHub gives a user's server, and so its kernels: the server's own address and
# its Hub token (the user's identity, also for the room service)
HUB_SERVER_URL_VARIABLE = "JUPYTERHUB_SERVICE_URL"
HUB_TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
# where the admin says kernels reach the room service (c.Spawner.environment)
ROOMS_URL_VARIABLE = "IAVICENNE_ROOMS_URL"


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
        given = parse_qs(parts.query).get("token")
        token = given[0] if given else None
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
    then ``JUPYTER_SERVER_URL`` / ``JUPYTER_TOKEN``); under JupyterHub the room service
    (`discover_room_service`); then the running servers of this user (``jupyter server
    list``), preferring the one that started this kernel (``JPY_PARENT_PID``, set by
    Jupyter for its kernels), then the one whose root directory holds the current
    directory, then the only one.
    """
    env = os.environ
    if url is None and not any(env.get(var) for var in ("IAVICENNE_URL", "JUPYTER_SERVER_URL")):
        under_hub = discover_room_service(token)
        if under_hub is not None:
            return under_hub
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


def discover_room_service(token: str | None = None, *, timeout: float = 10.0) -> ServerInfo | None:
    """Under JupyterHub (a kernel of a user's server), the server that holds the rooms: the
    room service, or the user's own server when it keeps its rooms (``room_service=''``);
    None elsewhere. The token is `token`, else the kernel's ``$JUPYTERHUB_API_TOKEN``.

    Asks the own server's ``iavicenne/api/config`` each time (a local request, a few
    milliseconds): a reconnect then follows a service that moved.
    """
    env = os.environ
    hub_token = token or env.get(HUB_TOKEN_VARIABLE, "")
    own = env.get(HUB_SERVER_URL_VARIABLE, "")
    if not hub_token or not (own or env.get(ROOMS_URL_VARIABLE)):
        return None
    if env.get(ROOMS_URL_VARIABLE):
        base, _ = _normalize(env[ROOMS_URL_VARIABLE], "")
        return ServerInfo(base, hub_token, ROOMS_URL_VARIABLE)
    own_base, _ = _normalize(_loopback(own), "")
    request = urllib.request.Request(
        own_base + p.REST_PATH + "config", headers={"Authorization": f"token {hub_token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            config = json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:  # an iAvicenne without the room service: the rooms are there
            return ServerInfo(own_base, hub_token, HUB_SERVER_URL_VARIABLE)
        detail = _error_message(error)
        raise ServerNotFound(f"this kernel's Jupyter server ({own_base}) does not say where the rooms are: {detail}") from None
    except (OSError, ValueError) as error:
        raise ServerNotFound(f"this kernel's Jupyter server ({own_base}) is unreachable: {error}") from None
    rooms_url = config.get("rooms_url") if isinstance(config, dict) else None
    if not isinstance(rooms_url, str) or not rooms_url:
        raise ServerNotFound(f"this kernel's Jupyter server ({own_base}) answered no rooms_url in {p.REST_PATH}config")
    base, _ = _normalize(rooms_url, "")
    return ServerInfo(base, hub_token, "room-service" if base != own_base else HUB_SERVER_URL_VARIABLE)


def _loopback(url: str) -> str:
    """A server bound to every interface (0.0.0.0, as in containers) is reached on loopback."""
    parts = urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::", ""):
        netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url


def _error_message(error: urllib.error.HTTPError) -> str:
    """The server's JSON ``message`` (Jupyter's API errors), else the HTTP status."""
    try:
        message = json.loads(error.read() or b"{}").get("message")
    except (ValueError, AttributeError, OSError):
        message = None
    return f"HTTP {error.code}: {message}" if message else f"HTTP {error.code}"


__all__ = ["ServerInfo", "discover_room_service", "discover_server"]
