"""What the rooms-with-members tests share: analysts with groups, and a deployment of one
or two real Jupyter servers that alice and bob reach with their own tokens.

Imported by the test modules (pytest puts `tests/` on ``sys.path``) and by the servers'
own ``jupyter_server_config.py`` (for `GroupAnalysts`), which puts this folder on theirs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jupyter_server.auth.identity import User
from room_support import TwoAnalysts
from servers import connect as connect_to
from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix
from tornado import web
from tornado.httpclient import AsyncHTTPClient

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all

NAMES = ("alice", "bob", "carol", "erin")
#: the groups each analyst is in, as JupyterHub would grant them (read:users:groups)
GROUPS = {"alice": ["oncology"], "carol": ["oncology", "radiology"]}
TESTS = Path(__file__).resolve().parent

# a server process's identity provider: this module's, from this folder
SERVER_CONFIG = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from access_support import GroupAnalysts

c.ServerApp.identity_provider_class = GroupAnalysts
"""


class GroupAnalysts(TwoAnalysts):
    """`TwoAnalysts` with carol and erin too (``<name>-token``), and groups on the users."""

    analysts: ClassVar[dict[str, str]] = {f"{name}-token": name for name in NAMES}

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        user = await super().get_user(handler)
        if user is not None and user.username in GROUPS:
            user.groups = GROUPS[user.username]  # type: ignore[attr-defined]  # what identity_of reads
        return user


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"token {name}-token"}


async def call(base: str, name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """`method` on ``{base}iavicenne/api/{path}`` as `name`: the status and the JSON body."""
    if body is None and method in ("POST", "PUT"):
        data: str | None = ""
    elif body is None:
        data = None
    else:
        data = body if isinstance(body, str) else json.dumps(body)
    response = await AsyncHTTPClient().fetch(
        f"{base}{p.REST_PATH}{path}",
        method=method,
        headers=headers(name),
        body=data,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    assert response.headers.get("Content-Type", "").startswith("application/json"), (response.code, response.body)
    return response.code, json.loads(response.body or b"null")


@dataclass
class Deployment:
    """One server for everybody (memory broker), or two sharing a Redis: alice on the
    first, bob on the second, so every check also crosses servers."""

    broker: str
    servers: list[JupyterProcess]
    home: dict[str, int] = field(default_factory=lambda: {"alice": 0, "bob": 1, "carol": 1, "erin": 0})

    def server(self, name: str) -> JupyterProcess:
        return self.servers[self.home[name] % len(self.servers)]

    async def socket(self, name: str, user_id: str | None = None, endpoint: str = "mcp") -> WSClient:
        return await connect_to(self.server(name), user_id, token=f"{name}-token", endpoint=endpoint)

    async def api(self, name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call(self.server(name).url, name, method, path, body)

    async def peer(self, name: str, room: str, peer_id: str | None = None) -> tuple[WSClient, dict[str, Any]]:
        """A signaling socket of `name` that asked to join `room`: the socket and the answer."""
        client = await self.socket(name, endpoint="signaling")
        await client.send({"type": p.JOIN, "room": room, "payload": {"peer_id": peer_id or name}})
        return client, await _answer(client)


async def _answer(client: WSClient) -> dict[str, Any]:
    """The next `joined` or `error` frame."""
    while True:
        frame = await client.recv()
        if frame.get("type") in (p.JOINED, p.ERROR):
            return frame


def configured(server: JupyterProcess, server_config: str = SERVER_CONFIG) -> JupyterProcess:
    """`server` with `server_config` (by default this module's identity provider: alice,
    bob, carol, erin, with groups)."""
    server.config.mkdir(parents=True, exist_ok=True)
    (server.config / "jupyter_server_config.py").write_text(server_config)
    return server


#: what the rooms-with-members tests run on: one server on the default store, and two
#: servers sharing a Redis (alice on one, bob on the other)
KINDS = ["sqlite", "redis"]


def deployed(
    kind: str,
    workdir: Path,
    label: str,
    *,
    homes: dict[str, int] | None = None,
    server_config: str = SERVER_CONFIG,
    **options: Any,
) -> Iterator[Deployment]:
    """A module fixture's body: the `Deployment` of `kind` ("sqlite", "memory" or "redis")
    with `options`, stopped (and its Redis keys dropped) when the module is done."""
    if kind == "redis":
        url, prefix = shared_redis_url(), unique_prefix(label)
        servers = [configured(jupyter_on_redis(workdir, url, prefix, f"server{i}", **options), server_config) for i in range(2)]
    else:
        url, prefix = "", ""
        servers = [configured(JupyterProcess(workdir, name=kind, options={"broker": kind, **options}), server_config)]
    try:
        yield Deployment(kind, start_all(servers), **({} if homes is None else {"home": dict(homes)}))
    finally:
        stop_all(servers)
        if prefix:
            drop_prefix(url, prefix)
