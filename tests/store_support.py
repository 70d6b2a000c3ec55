"""What the SQLite store's tests share: a real Jupyter server on the default broker (the
store) with alice, bob, carol, erin and mallory, each with a token, and what a reader sees
of a room after a restart.

Imported by the test modules (pytest puts `tests/` on ``sys.path``) and by the servers'
own ``jupyter_server_config.py`` (for `StoreAnalysts`), which puts this folder on theirs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pycrdt
from access_support import NAMES, GroupAnalysts, call
from servers import connect as connect_to

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient
from iavicenne_protocol import SyncMessage, decode_sync

TESTS = Path(__file__).resolve().parent

SERVER_CONFIG = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from store_support import StoreAnalysts

c.ServerApp.identity_provider_class = StoreAnalysts
"""


class StoreAnalysts(GroupAnalysts):
    """`GroupAnalysts`, and mallory (``mallory-token``), who is never invited anywhere."""

    analysts: ClassVar[dict[str, str]] = {f"{name}-token": name for name in (*NAMES, "mallory")}


def store_server(workdir: Path, name: str = "store", **options: Any) -> JupyterProcess:
    """A server (not started) on the default broker: the store, in its own data directory
    (``JupyterProcess`` gives each its own ``JUPYTER_DATA_DIR``)."""
    server = JupyterProcess(workdir, name=name, options=options)
    server.config.mkdir(parents=True, exist_ok=True)
    (server.config / "jupyter_server_config.py").write_text(SERVER_CONFIG)
    return server


def store_file(server: JupyterProcess) -> Path:
    """Where the server's store is by default: iavicenne/rooms.sqlite3 in its data directory."""
    return server.workdir / "data" / "iavicenne" / "rooms.sqlite3"


async def socket(server: JupyterProcess, name: str, user_id: str | None = None) -> WSClient:
    return await connect_to(server, user_id, token=f"{name}-token")


async def api(server: JupyterProcess, name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await call(server.url, name, method, path, body)


async def join(client: WSClient, room: str, **payload: Any) -> dict[str, Any]:
    """Ask to join `room`: the `room-joined`, or the `error` that refused it."""
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": payload, "ref": "j"})
    while True:
        frame = await client.recv()
        if frame.get("type") == p.ROOM_JOINED or (frame.get("type") == p.ERROR and frame.get("ref") == "j"):
            return frame


async def read_room(server: JupyterProcess, name: str, room: str, **payload: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`name` joins `room` with ``since=0`` (and `payload`): its `room-joined` (or the error
    that refused it) and the messages replayed to it."""
    client = await socket(server, name)
    try:
        joined = await join(client, room, since=0, **payload)
        if joined["type"] != p.ROOM_JOINED:
            return joined, []
        replayed: list[dict[str, Any]] = []
        while True:  # the replay, then the joiner's own user-joined
            frame = await client.recv(10)
            if frame.get("type") == p.MESSAGE:
                replayed.append(frame)
            elif frame.get("type") == p.USER_JOINED and frame.get("identity", {}).get("username") == name:
                return joined, replayed
    finally:
        client.close()


async def read_document(server: JupyterProcess, name: str, room: str) -> dict[str, Any]:
    """The room's shared document as `name` gets it in one sync exchange."""
    client = await socket(server, name)
    try:
        assert (await join(client, room))["type"] == p.ROOM_JOINED
        await client.send(sync_frame(room, p.SyncStep.STEP1, pycrdt.Doc().get_state(), ref="sync"))
        while True:
            frame = await client.recv(10)
            if frame.get("ref") == "sync":
                assert frame["type"] == p.SHARED, frame
                break
        doc: pycrdt.Doc = pycrdt.Doc()
        doc.apply_update(decode_sync(frame["sync"], max_bytes=1 << 24).payload)
        return dict(doc.get(p.SHARED_ROOT, type=pycrdt.Map).to_py() or {})
    finally:
        client.close()


def sync_frame(room: str, step: int, payload: bytes, ref: str) -> dict[str, Any]:
    return {"type": p.SHARED, "room": room, "ref": ref, "payload": {"sync": SyncMessage(step, payload).b64()}}


class Writer:
    """alice's document edits as y-sync updates: key ``k<n>`` set to n, one update each."""

    def __init__(self) -> None:
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self.map = self.doc.get(p.SHARED_ROOT, type=pycrdt.Map)

    def update(self, n: int) -> bytes:
        before = self.doc.get_state()
        self.map[f"k{n}"] = n
        return self.doc.get_update(before)


async def acks(client: WSClient, into: dict[str, dict[str, Any]]) -> None:
    """Collect `client`'s acks (and errors with a ref) by ref, until its socket closes."""
    try:
        while True:
            frame = await client.recv(30)
            if frame.get("type") in (p.ACK, p.ERROR) and frame.get("ref") is not None:
                into[frame["ref"]] = frame
    except (ConnectionError, asyncio.TimeoutError, TimeoutError):
        return
