"""Coalesced writes (issue 15, bursts): what one client is sent within a turn of the event
loop is written in one write, and nothing of what the protocol promises is lost by it.

The server is a separate ``jupyter server`` process (tests/servers.py) with identities
of their own (``<name>-token`` is the user ``<name>``), so that a burst a client sends
reaches the server in few reads, as it does from a real client, and is handled, and
written, in few turns. One test runs in this process's test server instead, to watch
the server's writes and check that they do carry several frames.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket as sockets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from room_support import ALICE, BOB, Connect, RawSocket, with_analysts
from servers import JupyterProcess
from servers import connect as connect_to
from tornado.iostream import IOStream

from iavicenne_ext.pytest_plugin import WSClient

MAX_OUTBOUND = 256 * 1024  # the per-connection budget of the server below: quick to reach
IDENTITIES = ["alice", "bob", "carol", "dave", "mallory"]

_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

class Analysts(TwoAnalysts):
    analysts = {{name + "-token": name for name in {names!r}}}

c.ServerApp.identity_provider_class = Analysts
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    workdir = tmp_path_factory.mktemp("coalescing")
    process = JupyterProcess(
        workdir, options={"broker": "memory", "max_outbound_bytes": MAX_OUTBOUND, "max_message_bytes": 128 * 1024}
    )
    process.config.mkdir(parents=True)
    (process.config / "jupyter_server_config.py").write_text(
        _CONFIG.format(tests=str(Path(__file__).resolve().parents[1]), names=IDENTITIES)
    )
    process.launch().wait_serving()
    yield process
    process.stop()


async def member(server: JupyterProcess, name: str, room: str) -> WSClient:
    client = await connect_to(server, name, token=f"{name}-token")
    await client.join(room)
    return client


def masked_text_frame(frame: dict[str, Any]) -> bytes:
    """One small client-to-server text frame (masked, as RFC 6455 wants from a client)."""
    data = json.dumps(frame).encode()
    mask = os.urandom(4)
    assert len(data) < 126  # one length byte
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


PRESENCE = {"user-joined", "user-left", "presence"}


async def frames(client: WSClient, count: int) -> list[dict[str, Any]]:
    """The next `count` frames that are not presence (members joining before the burst)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await client.recv(30)
        if frame["type"] not in PRESENCE:
            got.append(frame)
    return got


def payload(n: int) -> dict[str, Any]:
    # sizes on both sides of the 126-byte and 64 KiB framing thresholds, and non-ASCII text
    size = (10, 118, 125, 126, 127, 3000, 65_400, 65_536)[n % 8]
    return {"n": n, "text": "é" * (n % 5) + "x" * size}


async def test_a_burst_reaches_every_member_whole_in_order_and_once(server: JupyterProcess) -> None:
    """A burst of messages with refs: each member gets every message once, in seq order,
    byte for byte; the sender gets its own echo, then its ack, for each one."""
    room = "burst"
    bob = await member(server, "bob", room)
    carol = await member(server, "carol", room)
    alice = await member(server, "alice", room)
    count = 120
    # every client reads all along: one that stops reading is a slow consumer (MAX_OUTBOUND)
    reading = {
        name: asyncio.ensure_future(frames(client, 2 * count if name == "alice" else count))
        for name, client in (("alice", alice), ("bob", bob), ("carol", carol))
    }
    for n in range(count):  # sent back to back, not waiting for anything
        await alice.send({"type": "message", "room": room, "payload": payload(n), "ref": f"m{n}"})

    sender_frames = await asyncio.wait_for(reading["alice"], 60)
    kinds = [(f["type"], f["message"]["n"] if f["type"] == "message" else f.get("ref")) for f in sender_frames]
    assert kinds == [pair for n in range(count) for pair in (("message", n), ("ack", f"m{n}"))]
    seqs = [f["seq"] for f in sender_frames if f["type"] == "message"]
    assert seqs == list(range(seqs[0], seqs[0] + count))
    for name in ("bob", "carol"):
        got = await asyncio.wait_for(reading[name], 60)
        assert [f["type"] for f in got] == ["message"] * count
        assert [f["message"] for f in got] == [payload(n) for n in range(count)]
        assert [f["seq"] for f in got] == seqs
        assert all(f["user_id"] == "alice" and f["identity"]["username"] == "alice" for f in got)
    for reader in (bob, carol):
        assert not [f for f in await reader.silent(0.3) if f["type"] == "message"], "a message came twice"
    for client in (alice, bob, carol):
        client.close()


async def test_bursts_of_two_publishers_interleave_in_one_order_for_everyone(server: JupyterProcess) -> None:
    """Two identities publishing at once: every member sees the same sequence, no gap, no repeat."""
    room = "two-publishers"
    carol = await member(server, "carol", room)
    alice = await member(server, "alice", room)
    bob = await member(server, "bob", room)
    count = 150

    async def burst(client: WSClient, name: str) -> None:
        for n in range(count):
            await client.send({"type": "message", "room": room, "payload": {"from": name, "n": n}})

    await asyncio.gather(burst(alice, "alice"), burst(bob, "bob"))
    seen = {}
    for name, reader in (("alice", alice), ("bob", bob), ("carol", carol)):
        got = [await reader.expect("message") for _ in range(2 * count)]
        seen[name] = [(f["seq"], f["message"]["from"], f["message"]["n"]) for f in got]
        seqs = [seq for seq, _, _ in seen[name]]
        assert seqs == list(range(seqs[0], seqs[0] + 2 * count))
        for publisher in ("alice", "bob"):  # each publisher's own order kept
            assert [n for _, who, n in seen[name] if who == publisher] == list(range(count))
    assert seen["alice"] == seen["bob"] == seen["carol"]
    for client in (alice, bob, carol):
        client.close()


async def test_a_slow_consumer_is_closed_and_another_user_loses_nothing(server: JupyterProcess) -> None:
    """carol never reads: closed with 1008 naming IAvicenne.max_outbound_bytes; bob, who
    reads, gets every message of the same burst (dave's: a budget of bytes of its own)."""
    room = "slow"
    bob = await member(server, "bob", room)
    dave = await member(server, "dave", room)
    loop = asyncio.get_running_loop()
    # the handshake blocks: off the event loop (the test's clients need it)
    carol = await loop.run_in_executor(None, RawSocket, server.port, "/iavicenne/ws/mcp", "carol-token")
    try:
        carol.send({"type": "join-room", "room": room, "payload": {}})
        await bob.expect("user-joined", where=lambda f: f["identity"]["username"] == "carol")
        big = "x" * 60_000
        # 7.8 MB (within dave's IAvicenne.burst_bytes): far beyond MAX_OUTBOUND and what
        # the kernel buffers for carol
        count = 130

        async def messages(client: WSClient) -> list[dict[str, Any]]:
            received: list[dict[str, Any]] = []
            while len(received) < count:
                frame = await client.recv(30)
                if frame["type"] == "message":
                    received.append(frame)
            return received

        reading = [asyncio.ensure_future(messages(client)) for client in (bob, dave)]
        for n in range(count):
            await dave.send({"type": "message", "room": room, "payload": {"n": n, "big": big}})
        for received in await asyncio.wait_for(asyncio.gather(*reading), 60):
            assert [f["message"]["n"] for f in received] == list(range(count))
            assert all(f["message"]["big"] == big for f in received)
        code, reason = await loop.run_in_executor(None, carol.read_until_close)
        assert code == 1008
        assert "IAvicenne.max_outbound_bytes" in reason and "max_outbound_bytes_total" not in reason

        def carol_left(frame: dict[str, Any]) -> bool:
            return frame["type"] == "user-left" and frame["user_id"] == "carol"

        if not any(map(carol_left, bob.seen)):  # read among the messages, or still to come
            await bob.expect("user-left", timeout=10, where=carol_left)
    finally:
        carol.close()
    for client in (dave, bob):
        client.close()


async def test_a_flooding_client_does_not_hold_up_another(server: JupyterProcess) -> None:
    """mallory sends thousands of frames in one write; bob's message, sent after them, is
    handled among them (its seq falls inside the flood's), not after the whole flood."""
    room = "flood"
    bob = await member(server, "bob", room)
    watcher = await member(server, "carol", room)
    loop = asyncio.get_running_loop()
    mallory = await loop.run_in_executor(None, RawSocket, server.port, "/iavicenne/ws/mcp", "mallory-token")
    try:
        mallory.send({"type": "join-room", "room": room, "payload": {}})
        # it reads what it is sent (its echoes), or it would be closed as a slow consumer
        draining = loop.run_in_executor(None, drain, mallory.sock)
        await bob.expect("user-joined", where=lambda f: f["identity"]["username"] == "mallory")
        count = 3000  # within the burst of JupyterProcess's raised rates
        flood = b"".join(masked_text_frame({"type": "message", "room": room, "payload": {"n": n}}) for n in range(count))
        await loop.run_in_executor(None, mallory.sock.sendall, flood)
        await bob.send({"type": "message", "room": room, "payload": {"bob": True}, "ref": "b"})
        bobs = (await bob.expect("ack", timeout=30))["seq"]
        frames = [await watcher.expect("message", timeout=30) for _ in range(count + 1)]
        by_mallory = [f["seq"] for f in frames if f["user_id"] == "mallory"]
        assert [f["message"].get("n") for f in frames if f["user_id"] == "mallory"] == list(range(count))
        assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)
        assert by_mallory[0] < bobs < by_mallory[-1], "bob's message waited for the whole flood"
    finally:
        mallory.sock.shutdown(sockets.SHUT_RDWR)
        mallory.close()
    await draining
    for client in (bob, watcher):
        client.close()


def drain(sock: sockets.socket) -> None:
    """Read and forget until the socket is closed."""
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


# -- in this process: the server's writes, watched ---------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def test_a_burst_is_written_in_fewer_writes_than_frames(iav_connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the feature is for: the frames of a burst share writes (each write whole frames)."""
    writes: list[bytes] = []
    original = IOStream.write

    def spy(self: IOStream, data: Any) -> Any:
        writes.append(bytes(data))
        return original(self, data)

    bob = await iav_connect(headers=BOB)
    await bob.join("watched", "bob")
    alice = await iav_connect(headers=ALICE)
    await alice.join("watched", "alice")
    await bob.expect("user-joined")
    monkeypatch.setattr(IOStream, "write", spy)
    count = 100
    await asyncio.gather(*(alice.send({"type": "message", "room": "watched", "payload": {"n": n}}) for n in range(count)))
    for client in (alice, bob):
        assert [(await client.expect("message"))["message"]["n"] for _ in range(count)] == list(range(count))
    monkeypatch.undo()

    # the server's writes are unmasked text frames; the clients' are masked (bit 0x80 of byte 1)
    server_writes = [w for w in writes if w[:1] == b"\x81" and not w[1] & 0x80]
    frames_per_write = [frames_in(w) for w in server_writes]
    assert sum(frames_per_write) == 2 * count  # every frame, to alice and to bob, in whole frames
    assert max(frames_per_write) > 1, "no write carried more than one frame"
    assert len(server_writes) < 2 * count


def frames_in(data: bytes) -> int:
    """The number of whole unmasked frames in `data` (AssertionError if one is cut)."""
    count, at = 0, 0
    while at < len(data):
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        elif length == 127:
            length, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
        json.loads(data[start : start + length])  # a whole JSON frame
        at = start + length
        count += 1
    assert at == len(data), "a write ends inside a frame"
    return count
