"""Finding the Jupyter server to talk to: `discover_server`, and what it finds (`ServerInfo`).

A kernel started by Jupyter finds its own server without being told (the environment,
then the running-server list); a script passes ``url=`` and ``token=``, or accepts what
Jupyter prints (``http://host:8888/lab?token=...``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import ServerNotFound


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


__all__ = ["ServerInfo", "discover_server"]
