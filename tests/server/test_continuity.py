"""Presence per connection, remembered rooms and kept direct messages (issue 21, 4 and 5).

Alice, bob and carol (carol the hostile one) on one server with the memory broker, and on
two servers sharing the Redis at 127.0.0.1:6379 (alice on the first, bob and carol on the
second), so every frame here also crosses servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from access_support import KINDS, Deployment, deployed

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"continuity-{request.param}"), "continuity")


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room name of the test's own (the servers live for the module)."""
    return "c-" + request.node.originalname.removeprefix("test_")[:40]


async def join(client: WSClient, room: str, user_id: str, **payload: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Join `room`: its room-joined and the frames replayed after it (up to our user-joined)."""
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": payload, "ref": "j"})
    joined = await client.expect(p.ROOM_JOINED, where=lambda f: f.get("room") == room)
    replayed: list[dict[str, Any]] = []
    while True:
        frame = await client.recv()
        if frame.get("type") == p.USER_JOINED and frame.get("user_id") == user_id and frame.get("room") == room:
            return joined, replayed
        replayed.append(frame)


async def request(client: WSClient, frame: dict[str, Any], answer: str) -> dict[str, Any]:
    await client.send({**frame, "ref": "q"})
    return await client.expect(answer, where=lambda f: f.get("ref") == "q")


def presence_of(user_id: str, room: str) -> Any:
    return lambda f: f.get("type") == p.PRESENCE and f.get("user_id") == user_id and f.get("room") == room


# -- presence -------------------------------------------------------------------------------
async def test_each_connection_of_a_person_reaches_the_others(deployment: Deployment, room: str) -> None:
    lab = await deployment.socket("alice")
    await join(lab, room, "alice", state={"kind": "lab", "status": "reviewing"})
    bob = await deployment.socket("bob")
    joined, _ = await join(bob, room, "bob")
    alice_row = next(m for m in joined["members"] if m["user_id"] == "alice")
    assert alice_row["connections"] == 1
    # her kernel joins after the Lab window: its state and the count reach bob
    kernel = await deployment.socket("alice")
    await join(kernel, room, "alice", state={"kind": "kernel", "notebook": "eda.ipynb"})
    seen = await bob.expect(p.PRESENCE, where=presence_of("alice", room))
    assert seen["connections"] == 2 and seen["state"] == {"kind": "kernel", "notebook": "eda.ipynb"}
    await lab.expect(p.PRESENCE, where=presence_of("alice", room))  # her other window sees it too
    # a state change of one connection is the person's status
    await kernel.send({"type": p.PRESENCE, "room": room, "payload": {"state": {"status": "running"}}})
    assert (await bob.expect(p.PRESENCE, where=presence_of("alice", room)))["state"] == {"status": "running"}
    # the kernel leaves: one connection, and the status is the window's again
    await kernel.send({"type": p.LEAVE_ROOM, "room": room})
    seen = await bob.expect(p.PRESENCE, where=presence_of("alice", room))
    assert seen["connections"] == 1 and seen["state"] == {"kind": "lab", "status": "reviewing"}
    # REST says the same
    status, body = await deployment.api("bob", "GET", f"rooms/{room}")
    assert status == 200, body
    row = next(m for m in body["members"] if m["user_id"] == "alice")
    assert (row["connections"], row["state"]) == (1, {"kind": "lab", "status": "reviewing"})
    # carol, in the room, gets the same view and cannot make it say otherwise
    carol = await deployment.socket("carol")
    joined, _ = await join(carol, room, "carol")
    assert next(m for m in joined["members"] if m["user_id"] == "alice")["state"] == row["state"]
    await carol.send({"type": p.PRESENCE, "room": room, "payload": {"state": {"display_name": "alice"}}, "ref": "x"})
    refused = await carol.expect(p.ERROR, where=lambda f: f.get("ref") == "x")
    assert refused["code"] == p.ErrorCode.NAME_TAKEN
    # the window closes last: user-left
    await lab.send({"type": p.LEAVE_ROOM, "room": room})
    await bob.expect(p.USER_LEFT, where=lambda f: f.get("user_id") == "alice" and f.get("room") == room)


async def test_batched_presence_carries_the_connection_count(deployment: Deployment, room: str) -> None:
    bob = await deployment.socket("bob")
    await join(bob, room, "bob", presence=p.PresenceMode.BATCHED)
    first = await deployment.socket("alice")
    await join(first, room, "alice")
    second = await deployment.socket("alice")
    await join(second, room, "alice")
    counts: list[int] = []

    async def counted() -> bool:
        frame = await bob.expect(p.PRESENCE_BATCH)
        counts.extend(e.get("connections", 1) for e in frame["joined"] + frame["updated"] if e["user_id"] == "alice")
        return bool(counts) and counts[-1] == 2

    while not await counted():
        pass


# -- remembered rooms -------------------------------------------------------------------------
async def test_rooms_are_remembered_for_the_person_and_forgotten_by_them_only(deployment: Deployment, room: str) -> None:
    first = await deployment.socket("alice")
    for name in (f"{room}-a", f"{room}-b"):
        await join(first, name, "alice")
    first.close()
    # another tab, another device (with Redis, another server): the same rooms, newest first
    other = await deployment.socket("alice")
    mine = await request(other, {"type": p.LIST_MY_ROOMS}, p.MY_ROOMS)
    assert mine["rooms"][:2] == [f"{room}-b", f"{room}-a"]
    carol = await deployment.socket("carol")
    assert not {f"{room}-a", f"{room}-b"} & set((await request(carol, {"type": p.LIST_MY_ROOMS}, p.MY_ROOMS))["rooms"])
    # carol cannot forget alice's rooms for her
    answer = await request(carol, {"type": p.FORGET_ROOM, "room": f"{room}-a"}, p.ROOM_FORGOTTEN)
    assert answer["forgotten"] is False
    answer = await request(other, {"type": p.FORGET_ROOM, "room": f"{room}-a"}, p.ROOM_FORGOTTEN)
    assert answer == {**answer, "room": f"{room}-a", "forgotten": True}
    mine = await request(other, {"type": p.LIST_MY_ROOMS}, p.MY_ROOMS)
    assert f"{room}-a" not in mine["rooms"] and f"{room}-b" in mine["rooms"]
    await other.send({"type": p.FORGET_ROOM, "ref": "n"})
    assert (await other.expect(p.ERROR, where=lambda f: f.get("ref") == "n"))["code"] == p.ErrorCode.ROOM_REQUIRED


async def test_a_removed_member_no_longer_has_the_room(deployment: Deployment, room: str) -> None:
    status, body = await deployment.api("alice", "POST", "rooms", {"room": room, "members": ["bob"]})
    assert status == 201, body
    bob = await deployment.socket("bob")
    await join(bob, room, "bob")
    assert room in (await request(bob, {"type": p.LIST_MY_ROOMS}, p.MY_ROOMS))["rooms"]
    status, body = await deployment.api("alice", "DELETE", f"rooms/{room}/members/bob")
    assert status == 200, body
    await bob.expect(p.ROOM_LEFT, where=lambda f: f.get("room") == room)
    assert room not in (await request(bob, {"type": p.LIST_MY_ROOMS}, p.MY_ROOMS))["rooms"]


# -- kept direct messages ---------------------------------------------------------------------
async def test_direct_messages_are_replayed_to_the_two_people_only(deployment: Deployment, room: str) -> None:
    alice, bob, carol = [await deployment.socket(name) for name in ("alice", "bob", "carol")]
    for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        await join(client, room, name)

    async def direct(client: WSClient, to: str, payload: dict[str, Any], ref: str, **extra: Any) -> dict[str, Any]:
        await client.send({"type": p.DIRECT_MESSAGE, "room": room, "to": to, "payload": payload, "ref": ref, **extra})
        return await client.expect(p.ACK, where=lambda f: f.get("ref") == ref)

    ack = await direct(alice, "bob", {"content": "the token is in the vault"}, "d1")
    assert ack["kept"] is True and isinstance(ack["direct_seq"], int)
    first_seq = ack["direct_seq"]
    live = await bob.expect(p.DIRECT_MESSAGE)
    assert live["direct_seq"] == ack["direct_seq"]
    await direct(bob, "alice", {"content": "thanks"}, "d2")
    # carol poses as bob in the frame and the payload: the server says who sent it
    await direct(carol, "alice", {"content": "it is me, bob", "user_id": "bob"}, "d3", user_id="bob")
    spoofed = await alice.expect(p.DIRECT_MESSAGE, where=lambda f: f["message"]["content"] == "it is me, bob")
    assert (spoofed["user_id"], spoofed["identity"]["username"]) == ("carol", "carol")
    # a control message is the libraries' traffic: delivered, never kept
    ack = await direct(alice, "bob", {p.CONTROL_KEY: p.ControlKind.DESCRIBE, "q": "1"}, "c1")
    assert "kept" not in ack
    # a recipient who is not in the room is refused, as before
    await carol.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "erin", "payload": {"content": "x"}, "ref": "u"})
    assert (await carol.expect(p.ERROR, where=lambda f: f.get("ref") == "u"))["code"] == p.ErrorCode.UNKNOWN_USER

    async def replay(name: str, since: int = 0) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        client = await deployment.socket(name)
        joined, frames = await join(client, room, name, direct_since=since)
        client.close()
        return joined, [(f["user_id"], f["message"]["content"]) for f in frames if f["type"] == p.DIRECT_MESSAGE]

    # a reload: each finds their own conversations, in order, and nobody else's
    joined, bobs = await replay("bob")
    assert bobs == [("alice", "the token is in the vault"), ("bob", "thanks")]
    _, alices = await replay("alice")
    assert alices == [("alice", "the token is in the vault"), ("bob", "thanks"), ("carol", "it is me, bob")]
    _, carols = await replay("carol")
    assert carols == [("carol", "it is me, bob")]
    _, erins = await replay("erin")
    assert erins == []
    assert joined[p.DIRECT_SEQ] == first_seq + 2  # the room's last: carol's
    # direct_since: only what came after
    _, later = await replay("bob", first_seq)
    assert later == [("bob", "thanks")]


async def test_a_direct_message_too_large_to_keep_is_delivered_and_says_so(deployment: Deployment, room: str) -> None:
    alice, bob = [await deployment.socket(name) for name in ("alice", "bob")]
    await join(alice, room, "alice")
    await join(bob, room, "bob")
    await alice.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "bob", "payload": {"content": "x" * 70_000}, "ref": "big"})
    ack = await alice.expect(p.ACK, where=lambda f: f.get("ref") == "big")
    assert (ack["kept"], ack["option"], ack["limit"]) == (False, "max_message_bytes", 65536)
    assert len((await bob.expect(p.DIRECT_MESSAGE))["message"]["content"]) == 70_000
    await join(bob, room, "bob", direct_since=0)  # a fresh snapshot: nothing of it replayed
    assert not [f for f in await bob.silent() if f.get("type") == p.DIRECT_MESSAGE]


async def test_invalid_direct_since_is_an_error_frame(deployment: Deployment, room: str) -> None:
    alice = await deployment.socket("alice")
    for bad in (-1, "0", True, 1.5):
        await alice.send({"type": p.JOIN_ROOM, "room": room, "payload": {"direct_since": bad}, "ref": "b"})
        error = await alice.expect(p.ERROR, where=lambda f: f.get("ref") == "b")
        assert error["code"] == p.ErrorCode.INVALID_FIELD and "direct_since" in error["message"]
    await asyncio.sleep(0)
