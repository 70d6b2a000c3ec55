"""A room's shared document (issue 14), as alice and bob would use it from their kernels.

Each test runs on real Jupyter servers: one with the memory broker, and two sharing the
Redis at 127.0.0.1:6379 (alice on the first, bob on the second, so every update also
crosses servers). Alice and bob are `access_support.GroupAnalysts` identities with their
own tokens; bob is also the one who tries what he must not.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pycrdt
import pytest
from access_support import KINDS, Deployment, configured, deployed
from room_support import eventually
from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne import RoomClient
from iavicenne.shared import SharedState, share
from iavicenne_ext.testing import WSClient, start_all, stop_all
from iavicenne_protocol import SyncMessage, decode_sync

SMALL: dict[str, Any] = {"max_shared_bytes": 20_000, "max_shared_update_bytes": 8_000, "shared_compact_every": 20}


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"shared-{request.param}"), "shared", **SMALL)


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    return "s-" + request.node.originalname.removeprefix("test_")[:40]


class Kernels:
    """The Python clients a test opened (as a kernel's session holds them), closed at the end."""

    def __init__(self, deployment: Deployment, clients: list[Any]) -> None:
        self.deployment = deployment
        self.clients = clients  # `opened`: closed on the test's loop at the end

    async def open(self, name: str, room: str) -> tuple[RoomClient, SharedState]:
        server = self.deployment.server(name)
        client = await RoomClient.connect(url=server.url, token=f"{name}-token", user_id=name)
        self.clients.append(client)
        state = share(await client.join(room))
        await state.synced(10)
        return client, state


@pytest.fixture
def kernels(deployment: Deployment, opened: list[Any]) -> Kernels:
    return Kernels(deployment, opened)


def sync_frame(room: str, step: int, payload: bytes, ref: str = "s") -> dict[str, Any]:
    return {"type": p.SHARED, "room": room, "ref": ref, "payload": {"sync": SyncMessage(step, payload).b64()}}


async def reply(client: WSClient, ref: str) -> dict[str, Any]:
    while True:
        frame = await client.recv()
        if frame.get("ref") == ref and frame.get("type") in (p.SHARED, p.ACK, p.ERROR):
            return frame


async def test_alice_and_bob_edit_the_same_keys_at_once_and_converge(kernels: Kernels, room: str) -> None:
    _alice, alice = await kernels.open("alice", room)
    _bob, bob = await kernels.open("bob", room)
    alice["questions"] = []
    await eventually(lambda: "questions" in bob, what="bob seeing alice's list")
    seen: list[frozenset[str]] = []
    bob.observe(lambda change: seen.append(change.keys))
    for i in range(20):  # interleaved, without waiting for each other
        alice["threshold"] = i
        bob["threshold"] = 100 + i
        alice["questions"].append(f"alice {i}")
        bob["questions"].append(f"bob {i}")
    await eventually(lambda: alice.to_py() == bob.to_py() and len(alice["questions"]) == 40, what="convergence")
    assert sorted(alice.to_py()["questions"]) == sorted([f"alice {i}" for i in range(20)] + [f"bob {i}" for i in range(20)])
    assert alice["threshold"] in (19, 119)  # one of the two last writes, the same everywhere
    assert any("questions" in keys for keys in seen)


async def test_a_newcomer_gets_the_whole_document_in_one_exchange(kernels: Kernels, room: str, deployment: Deployment) -> None:
    _alice, alice = await kernels.open("alice", room)
    alice.update({"threshold": 0.3, "filter": {"age": ">= 18"}, "questions": ["why?"]})
    alice["notes"] = pycrdt.Text("look at Q3")
    await asyncio.sleep(0.3)
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room})
    await bob.expect(p.ROOM_JOINED)
    await bob.send(sync_frame(room, p.SyncStep.STEP1, pycrdt.Doc().get_state()))
    answer = await reply(bob, "s")  # one request, one answer: the whole document
    data = base64.b64decode(answer["sync"])
    assert data[:2] == bytes([p.SYNC_MESSAGE, p.SyncStep.STEP2]) and answer["max_bytes"] == SMALL["max_shared_bytes"]
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(decode_sync(answer["sync"], max_bytes=len(data)).payload)
    shared = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
    assert shared.to_py() == {"threshold": 0.3, "filter": {"age": ">= 18"}, "questions": ["why?"], "notes": "look at Q3"}


async def test_edits_made_while_disconnected_merge_after_reconnect(kernels: Kernels, room: str) -> None:
    alice_client, alice = await kernels.open("alice", room)
    _bob, bob = await kernels.open("bob", room)
    alice["questions"] = ["first"]
    await eventually(lambda: "questions" in bob, what="bob seeing the list")
    ws = alice_client._ws
    assert ws is not None
    # alice's network drops; both go on editing
    ws.close()
    await eventually(lambda: not alice_client.connected, what="alice offline")
    alice["questions"].append("alice offline")
    alice["alice_only"] = 1
    bob["questions"].append("bob meanwhile")
    await eventually(lambda: alice_client.connected, timeout=20, what="alice reconnected")
    await eventually(lambda: alice.to_py() == bob.to_py() and len(bob["questions"]) == 3, timeout=20, what="the merge")
    assert set(bob.to_py()["questions"]) == {"first", "alice offline", "bob meanwhile"} and bob["alice_only"] == 1


async def test_writes_before_join_are_sent_on_join(kernels: Kernels, room: str, deployment: Deployment) -> None:
    _alice, alice = await kernels.open("alice", room)
    state = SharedState(room)
    state["written_before_join"] = "yes"
    server = deployment.server("bob")
    client = await RoomClient.connect(url=server.url, token="bob-token", user_id="bob")
    kernels.clients.append(client)
    state.attach(await client.join(room))
    await eventually(lambda: alice.get("written_before_join") == "yes", what="the early write reaching alice")


async def test_bob_not_invited_to_a_private_room_cannot_read_or_write_its_document(
    kernels: Kernels, room: str, deployment: Deployment
) -> None:
    status, _record = await deployment.api("alice", "POST", "rooms", {"room": room, "access": "private"})
    assert status == 201
    _alice, alice = await kernels.open("alice", room)
    alice["secret"] = "the Q3 figures"
    await asyncio.sleep(0.2)
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room, "ref": "j"})
    assert (await reply(bob, "j"))["code"] == p.ErrorCode.FORBIDDEN
    await bob.send(sync_frame(room, p.SyncStep.STEP1, pycrdt.Doc().get_state(), ref="read"))
    refused = await reply(bob, "read")
    assert refused["type"] == p.ERROR and refused["code"] == p.ErrorCode.NOT_IN_ROOM
    forged: pycrdt.Doc = pycrdt.Doc()
    forged.get(p.SHARED_ROOT, type=pycrdt.Map)["secret"] = "overwritten by bob"
    await bob.send(sync_frame(room, p.SyncStep.UPDATE, forged.get_update(), ref="write"))
    assert (await reply(bob, "write"))["code"] == p.ErrorCode.NOT_IN_ROOM
    assert not [f for f in bob.seen if f.get("type") == p.SHARED]
    await asyncio.sleep(0.3)
    assert alice.to_py() == {"secret": "the Q3 figures"}


async def test_malformed_and_oversized_updates_get_an_error_and_corrupt_nothing(
    kernels: Kernels, room: str, deployment: Deployment
) -> None:
    _alice, alice = await kernels.open("alice", room)
    alice["threshold"] = 0.3
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room})
    await bob.expect(p.ROOM_JOINED)
    hostile = [
        {"type": p.SHARED, "room": room, "ref": "h1", "payload": {"sync": "not base64!"}},
        {"type": p.SHARED, "room": room, "ref": "h2", "payload": {}},
        sync_frame(room, p.SyncStep.UPDATE, b"\xff" * 40, ref="h3"),
        {"type": p.SHARED, "room": room, "ref": "h4", "payload": {"sync": base64.b64encode(b"\x00\x02\x05ab").decode()}},
        sync_frame(room, 7, b"\x00\x00", ref="h5"),
    ]
    for frame in hostile:
        await bob.send(frame)
        error = await reply(bob, frame["ref"])
        assert (error["type"], error["code"]) == (p.ERROR, p.ErrorCode.INVALID_FIELD), error
    big: pycrdt.Doc = pycrdt.Doc()
    big.get(p.SHARED_ROOT, type=pycrdt.Map)["blob"] = "x" * (SMALL["max_shared_update_bytes"] + 100)
    await bob.send(sync_frame(room, p.SyncStep.UPDATE, big.get_update(), ref="big"))
    error = await reply(bob, "big")
    assert (error["code"], error["option"]) == (p.ErrorCode.LIMIT_EXCEEDED, "max_shared_update_bytes"), error
    assert "IAvicenne.max_shared_update_bytes" in error["message"]
    # the server is up and the document intact: a newcomer reads it
    _carol, carol = await kernels.open("carol", room)
    assert carol.to_py() == {"threshold": 0.3} == alice.to_py()


async def test_the_document_size_bound_refuses_what_would_pass_it_and_keeps_the_rest(kernels: Kernels, room: str) -> None:
    _alice, alice = await kernels.open("alice", room)
    _bob, bob = await kernels.open("bob", room)
    alice["kept"] = "a" * 5_000
    await eventually(lambda: "kept" in bob, what="the first value")
    step = 6_000  # each under max_shared_update_bytes; four of them pass max_shared_bytes
    for i in range(4):
        bob[f"big{i}"] = "b" * step
        await asyncio.sleep(0.3)
    await eventually(lambda: bob.errors, what="bob's refused update")
    error = bob.errors[0]
    assert getattr(error, "code", None) == p.ErrorCode.LIMIT_EXCEEDED and "IAvicenne.max_shared_bytes" in str(error)
    # bob's copy was reset to the room's: what was accepted is there, the refused key is not
    await eventually(lambda: bob.to_py() == alice.to_py(), what="bob's copy back to the room's")
    assert alice["kept"] == "a" * 5_000 and "big0" in alice and "big3" not in alice


async def test_a_linked_widget_follows_in_the_other_kernel(kernels: Kernels, room: str) -> None:
    import ipywidgets

    _alice, alice = await kernels.open("alice", room)
    _bob, bob = await kernels.open("bob", room)
    alice_slider = ipywidgets.FloatSlider(value=0.5, min=0, max=1)
    bob_slider = ipywidgets.FloatSlider(value=0.1, min=0, max=1)
    alice.link(alice_slider, "value", key="threshold")
    await eventually(lambda: "threshold" in bob, what="alice's value shared")
    bob.link(bob_slider, "value", key="threshold")
    await eventually(lambda: bob_slider.value == 0.5, what="bob's slider taking the room's value")
    alice_slider.value = 0.8
    await eventually(lambda: bob_slider.value == 0.8, what="bob's slider following alice's")
    bob_slider.value = 0.2
    await eventually(lambda: alice_slider.value == 0.2, what="alice's slider following bob's")


async def test_with_redis_the_document_survives_every_server_restarting(
    tmp_path_factory: pytest.TempPathFactory, opened: list[Any]
) -> None:
    url, prefix = shared_redis_url(), unique_prefix("shared-restart")
    workdir = tmp_path_factory.mktemp("shared-restart")
    servers = [configured(jupyter_on_redis(workdir, url, prefix, f"server{i}", **SMALL)) for i in range(2)]
    deployment = Deployment("redis", start_all(servers))
    try:
        kernels = Kernels(deployment, opened)
        alice_client, alice = await kernels.open("alice", "s-restart")
        for i in range(SMALL["shared_compact_every"] * 2):  # compacted on the way, at least once
            alice["threshold"] = i
            alice.setdefault("questions", []).append(f"q{i}")
            await asyncio.sleep(0.01)
        expected = alice.to_py()
        await eventually(lambda: not alice_client.unacknowledged, what="alice's updates acknowledged")
        await alice_client.close()
        stop_all(servers)  # every server of the deployment is gone; only Redis keeps the room
        start_all(servers)
        _bob_client, bob = await kernels.open("bob", "s-restart")
        assert bob.to_py() == expected
        assert len(bob["questions"]) == SMALL["shared_compact_every"] * 2
    finally:
        stop_all(servers)
        drop_prefix(url, prefix)


def test_the_vendored_yjs_is_what_was_checked_against_npm() -> None:
    """static/vendor/ is what `vendor_js` wrote from npm's yjs and lib0 tarballs (their sha512
    pinned in vendor_js.PACKAGES; .ci/run compares with npm again): every file as listed,
    by sha256, in the SHA256SUMS it wrote, and no file beside them."""
    from iavicenne_ext import vendor_js

    present = vendor_js.on_disk()
    listed = present.get(vendor_js.SUMS)
    assert listed is not None, f"no {vendor_js.SUMS} in static/vendor/: run {vendor_js.COMMAND}"
    assert vendor_js.sums(present) == listed, f"static/vendor/ was changed by hand: run {vendor_js.COMMAND}"
    assert any(path.startswith("yjs/") for path in present) and "LICENSE-yjs" in present


def test_the_benchmark_runs_end_to_end_and_prints_both_paths() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "shared_state.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in done.stdout.splitlines()
        if line.split()[:1] in (["message"], ["shared"]) and "/" not in line
    }
    assert set(rows) == {"message", "shared"}, done.stdout
    for median, p99, per_second in rows.values():
        assert 0 < float(median) <= float(p99) and float(per_second) > 0, done.stdout


async def test_a_deleted_private_room_does_not_hand_its_document_to_the_public(
    kernels: Kernels, room: str, deployment: Deployment
) -> None:
    status, _record = await deployment.api("alice", "POST", "rooms", {"room": room, "access": "private"})
    assert status == 201
    alice_client, alice = await kernels.open("alice", room)
    alice["secret"] = "the Q3 figures"
    await eventually(lambda: not alice_client.unacknowledged, what="alice's update acknowledged")
    status, _body = await deployment.api("alice", "DELETE", f"rooms/{room}")
    assert status in (200, 204)
    # the room is public now, under the same name: bob may enter, and finds nothing of it
    _bob, bob = await kernels.open("bob", room)
    assert bob.to_py() == {}


async def test_bob_removed_from_a_private_room_no_longer_reads_or_writes_its_document(
    kernels: Kernels, room: str, deployment: Deployment
) -> None:
    assert (await deployment.api("alice", "POST", "rooms", {"room": room, "access": "private", "members": ["bob"]}))[0] == 201
    _alice_client, alice = await kernels.open("alice", room)
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room})
    await bob.expect(p.ROOM_JOINED)
    alice["before"] = 1
    await bob.expect(p.SHARED)  # a member: he gets alice's update
    assert (await deployment.api("alice", "DELETE", f"rooms/{room}/members/bob"))[0] == 200
    left = await bob.expect(p.ROOM_LEFT)
    assert left["reason"] == p.LeftReason.REMOVED
    alice["after"] = "not for bob"
    forged: pycrdt.Doc = pycrdt.Doc()
    forged.get(p.SHARED_ROOT, type=pycrdt.Map)["after"] = "bob was here"
    await bob.send(sync_frame(room, p.SyncStep.UPDATE, forged.get_update(), ref="late"))
    assert (await reply(bob, "late"))["code"] == p.ErrorCode.NOT_IN_ROOM
    await asyncio.sleep(0.3)
    assert not [f for f in bob.seen[bob.seen.index(left) :] if f.get("type") == p.SHARED]
    assert alice.to_py() == {"before": 1, "after": "not for bob"}
