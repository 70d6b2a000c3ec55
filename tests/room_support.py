"""What the room-endpoint tests share: two analysts with their own tokens, and checks
every test wants (each server frame carries an ISO 8601 UTC `timestamp`).

Imported by the test modules (pytest puts `tests/` on ``sys.path``). The `connect`
fixture built on these checks is in conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from jupyter_server.auth.identity import PasswordIdentityProvider, User
from tornado import web

from iavicenne_ext.testing import WSClient

ALICE = {"Authorization": "token alice-token"}
BOB = {"Authorization": "token bob-token"}

Connect = Callable[..., Awaitable[WSClient]]


class TwoAnalysts(PasswordIdentityProvider):
    """Jupyter's own token and cookie login, plus a personal token for alice and for bob.

    Set as ``ServerApp.identity_provider_class``: this is how a JupyterHub-like
    deployment looks to the extension — several real users, each with a token. Like
    Jupyter and JupyterHub, a token-authenticated request is marked as such (which skips
    the origin check for scripts).
    """

    analysts: ClassVar[dict[str, str]] = {"alice-token": "alice", "bob-token": "bob"}

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        name = self.analysts.get(self.get_token(handler) or "")
        if name is None:
            return await self._get_user(handler)
        handler._token_authenticated = True  # type: ignore[attr-defined]
        return User(username=name, name=name, display_name=name.title())


def with_analysts(config: dict[str, Any]) -> dict[str, Any]:
    config["ServerApp"]["identity_provider_class"] = TwoAnalysts
    return config


def assert_timestamped(frames: list[dict[str, Any]]) -> None:
    for frame in frames:
        stamp = frame.get("timestamp")
        assert isinstance(stamp, str), f"no timestamp in {frame}"
        parsed = datetime.fromisoformat(stamp)
        assert parsed.utcoffset() == timedelta(0), f"timestamp not in UTC: {frame}"


async def closed(client: WSClient, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """Read until the server closes the socket; its close code and reason."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        assert left > 0, f"the socket was not closed within {timeout} s; saw {client.seen[-5:]}"
        try:
            await client.recv(left)
        except ConnectionError:
            return client.ws.close_code, client.ws.close_reason
        except TimeoutError:
            continue


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == kind]


async def eventually(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until `condition()` is true, polling; fail saying `what` did not happen in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.02)
