"""What the room-endpoint tests share: two analysts with their own tokens, and checks
every test wants (each server frame carries an ISO 8601 UTC `timestamp`).

Imported by the test modules (pytest puts `tests/` on ``sys.path``). The `connect`
fixture built on these checks is in conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from jupyter_server.auth.identity import PasswordIdentityProvider, User
from tornado import web

import iavicenne_protocol as p
from iavicenne import Backoff, join
from iavicenne.room import RoomSession
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


class RawSocket:
    """A WebSocket client on a bare socket with a tiny receive buffer, for a client that never reads."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: token {token}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        return chunk

    def send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame).encode()
        mask = os.urandom(4)
        assert len(data) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)

    def read_until_close(self) -> tuple[int, str]:
        """Read (at last) everything the server sent, up to its close frame: code and reason."""
        self.sock.settimeout(5)
        while True:
            while len(self.buffer) < 2:
                self.buffer += self._recv()
            opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                while len(self.buffer) < 4:
                    self.buffer += self._recv()
                (length,), start = struct.unpack("!H", self.buffer[2:4]), 4
            elif length == 127:
                while len(self.buffer) < 10:
                    self.buffer += self._recv()
                (length,), start = struct.unpack("!Q", self.buffer[2:10]), 10
            while len(self.buffer) < start + length:
                self.buffer += self._recv()
            payload, self.buffer = self.buffer[start : start + length], self.buffer[start + length :]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def close(self) -> None:
        self.sock.close()


async def all_pages(client: WSClient, room: str, cursor: str | None, limit: int | None = None) -> list[dict[str, Any]]:
    """Follow members_next with list-members until the last page; the members listed."""
    listed: list[dict[str, Any]] = []
    n = 0
    while cursor is not None:
        n += 1
        payload: dict[str, Any] = {"after": cursor}
        if limit is not None:
            payload["limit"] = limit
        ref = f"page{n}"
        await client.send({"type": p.LIST_MEMBERS, "room": room, "ref": ref, "payload": payload})
        page = await client.expect(p.MEMBERS, where=lambda f: f.get("ref") == ref)  # noqa: B023 - awaited here
        assert page["room"] == room
        listed.extend(page["members"])
        cursor = page.get("members_next")
        assert (cursor is not None) == bool(page.get("members_more")), page
    return listed


def session(opened: list[Any], base: str, room: str, who: str, *, token: str | None = None, **kwargs: Any) -> RoomSession:
    """`who` joins `room` with their own token (alice, bob) or the given one (mallory: the server's)."""
    kwargs.setdefault("user_id", who)
    made = join(room, url=base, token=token or TOKENS[who], display=False, backoff=FAST, loopback=True, **kwargs)
    opened.append(made)
    return made


FAST = Backoff(initial=0.05, maximum=0.2)


TOKENS = {"alice": "alice-token", "bob": "bob-token"}
