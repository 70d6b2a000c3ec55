"""Pytest fixtures: a Jupyter server with iAvicenne, and WebSocket clients for it.

Use with ``pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]``.
Override `iavicenne_config` to set ``IAvicenne`` options for a test module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from . import protocol as p

FrameFilter = Callable[[dict[str, Any]], bool]


class WSClient:
    """A test client over a real WebSocket: send frames, wait for the ones you expect."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.write_message(frame, binary=isinstance(frame, bytes))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        if raw is None:
            raise ConnectionError(f"closed: {self.ws.close_code} {self.ws.close_reason}")
        frame = json.loads(raw)
        self.seen.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 5.0, where: FrameFilter | None = None) -> dict[str, Any]:
        """The next frame of type `kind` (matching `where`), skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} frame within {timeout} s; saw {self.seen[-5:]}")
            frame = await self.recv(left)
            if frame.get("type") == kind and (where is None or where(frame)):
                return frame

    async def silent(self, timeout: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within `timeout` (usually asserted to be none of some kind)."""
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.recv(timeout))
        except (asyncio.TimeoutError, TimeoutError):
            return got

    async def join(self, room: str, user_id: str | None = None, **payload: Any) -> dict[str, Any]:
        if user_id is not None:
            await self.send({"type": p.CONNECT, "payload": {"user_id": user_id}})
            await self.expect(p.CONNECT)
        await self.send({"type": p.JOIN_ROOM, "room": room, "payload": payload})
        joined = await self.expect(p.ROOM_JOINED, where=lambda f: f.get("room") == room)
        return joined

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    """``IAvicenne`` options for the test server; override in a module to change them."""
    return {}


@pytest.fixture
def jp_server_config(iavicenne_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"iavicenne_ext": True}},
        "IAvicenne": iavicenne_config,
    }


@pytest.fixture
def iav_connect(jp_ws_fetch: Any) -> Callable[..., Awaitable[WSClient]]:
    """Open a room socket (``iavicenne/ws/mcp``) authenticated with the server's token."""
    clients: list[WSClient] = []

    async def connect(path: str = "iavicenne/ws/mcp", **kwargs: Any) -> WSClient:
        ws = await jp_ws_fetch(*path.split("/"), **kwargs)
        client = WSClient(ws)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
