"""Every row and note of SEED-PROTOCOL.md's room table, answered as the seed answers it.

A seed client sends exactly these frames and reads exactly these fields, so each test
checks what such a client checks: the `type` strings, the fields, the error `message`
texts and who receives what. Clients authenticate with the server's token, as a seed
client pointed at Jupyter would. `room_support.connect` also checks, after each test,
that every frame read carried a UTC `timestamp`.
"""

from __future__ import annotations

import pytest
from room_support import Connect, closed, of_type

from iavicenne_ext.testing import WSClient


async def member(connect: Connect, user_id: str, room: str = "r1") -> WSClient:
    """A client that connected as `user_id` and joined `room`, its join frames read."""
    client = await connect()
    await client.join(room, user_id)
    await client.expect("user-joined", where=lambda f: f["user_id"] == user_id)
    return client


async def test_connect_answers_success_to_the_sender_only(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await connect()
    await alice.send({"type": "connect", "payload": {"user_id": "alice"}})
    reply = await alice.recv()
    assert reply["type"] == "connect"
    assert reply["status"] == "success"
    assert await bob.silent() == []


@pytest.mark.parametrize("payload", [{}, {"user_id": ""}, None], ids=["no-user_id", "empty-user_id", "no-payload"])
async def test_connect_without_user_id_is_an_error(connect: Connect, payload: dict | None) -> None:
    bob = await member(connect, "bob")
    alice = await connect()
    frame = {"type": "connect"} if payload is None else {"type": "connect", "payload": payload}
    await alice.send(frame)
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["message"] == "user_id is required for connection"
    assert await bob.silent() == []


async def test_join_room_answers_room_joined_then_own_user_joined(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await connect()
    await alice.send({"type": "connect", "payload": {"user_id": "alice"}})
    await alice.expect("connect")
    await alice.send({"type": "join-room", "payload": {}, "room": "r1"})

    joined = await alice.recv()
    assert joined["type"] == "room-joined"
    assert joined["room"] == "r1"
    own = await alice.recv()
    assert own["type"] == "user-joined"
    assert own["user_id"] == "alice"

    seen_by_bob = await bob.recv()
    assert seen_by_bob["type"] == "user-joined"
    assert seen_by_bob["user_id"] == "alice"
    assert await bob.silent() == []


async def test_join_room_without_room_is_an_error(connect: Connect) -> None:
    alice = await connect()
    await alice.send({"type": "connect", "payload": {"user_id": "alice"}})
    await alice.expect("connect")
    for frame in ({"type": "join-room", "payload": {}}, {"type": "join-room", "payload": {}, "room": ""}):
        await alice.send(frame)
        error = await alice.recv()
        assert error["type"] == "error"
        assert error["message"] == "Room ID is required"


async def test_leave_room_broadcasts_user_left_then_answers_room_left(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined", where=lambda f: f["user_id"] == "alice")

    await alice.send({"type": "leave-room"})
    first, second = await alice.recv(), await alice.recv()
    assert (first["type"], first["user_id"]) == ("user-left", "alice")
    assert second["type"] == "room-left"

    left = await bob.recv()
    assert left["type"] == "user-left"
    assert left["user_id"] == "alice"

    # alice is out: bob's messages no longer reach her
    await bob.send({"type": "message", "payload": {"content": "still here?"}, "room": "r1"})
    await bob.expect("message")
    assert await alice.silent() == []


async def test_message_reaches_the_whole_room_sender_included(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")
    outsider = await member(connect, "carol", room="r2")

    await alice.send({"type": "message", "payload": {"content": "hi"}, "room": "r1"})
    for client in (alice, bob):
        got = await client.recv()
        assert got["type"] == "message"
        assert got["user_id"] == "alice"
        assert got["message"] == {"content": "hi"}
    assert await outsider.silent() == []


async def test_message_without_room_goes_to_the_one_room_joined(connect: Connect) -> None:
    """Seed clients name no room in `message`: the connection's only room is meant."""
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")
    await alice.send({"type": "message", "payload": {"content": "hi"}})
    got = await bob.expect("message")
    assert (got["user_id"], got["message"]) == ("alice", {"content": "hi"})


async def test_message_while_in_no_room_is_an_error(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await connect()
    await alice.send({"type": "connect", "payload": {"user_id": "alice"}})
    await alice.expect("connect")
    await alice.send({"type": "message", "payload": {"content": "hi"}})
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["message"] == "Not connected to any room"
    assert await bob.silent() == []


async def test_disconnect_leaves_the_room_then_closes_the_socket(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")

    await alice.send({"type": "disconnect"})
    code, _reason = await closed(alice)
    assert code == 1000
    assert [f["type"] for f in alice.seen[-2:]] == ["user-left", "room-left"]

    left = await bob.recv()
    assert (left["type"], left["user_id"]) == ("user-left", "alice")
    assert await bob.silent() == []  # exactly one user-left, not a second one on close


async def test_not_json_is_an_error(connect: Connect) -> None:
    alice = await connect()
    await alice.send("this is not json {")
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["message"] == "Invalid JSON format"


@pytest.mark.parametrize("frame", [{"payload": {}}, {"type": "", "payload": {}}, {"type": None}])
async def test_no_type_is_an_error(connect: Connect, frame: dict) -> None:
    alice = await connect()
    await alice.send(frame)
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["message"] == "Message type is required"


async def test_unknown_type_is_an_error_naming_it(connect: Connect) -> None:
    alice = await connect()
    await alice.send({"type": "shout", "payload": {}})
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["message"] == "Unknown message type: shout"


async def test_socket_close_tells_the_room_user_left(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")
    alice.close()
    left = await bob.recv()
    assert (left["type"], left["user_id"]) == ("user-left", "alice")
    assert await bob.silent() == []


async def test_trailing_slash_path_is_the_same_endpoint(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await connect("iavicenne/ws/mcp/")
    await alice.join("r1", "alice")
    seen = await bob.expect("user-joined")
    assert seen["user_id"] == "alice"


# -- the notes under the table ---------------------------------------------------------


async def test_join_room_while_in_a_room_keeps_both_rooms(connect: Connect) -> None:
    """Documented difference: the seed left the old room; here a connection may be in several."""
    bob = await member(connect, "bob", room="r1")
    alice = await member(connect, "alice", room="r1")
    await bob.expect("user-joined")
    await alice.join("r2")
    assert await bob.silent() == []  # no user-left: alice is still in r1
    await alice.send({"type": "message", "payload": {"content": "to r1"}, "room": "r1"})
    got = await bob.expect("message")
    assert got["message"] == {"content": "to r1"}


async def test_every_server_frame_carries_a_utc_timestamp(connect: Connect) -> None:
    """One pass over every kind of frame the table lists; `connect` checks each one read."""
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await alice.send({"type": "message", "payload": {"content": "hi"}})
    await alice.send({"type": "nope"})
    await alice.send("{")
    await alice.send({"type": "leave-room"})
    await alice.send({"type": "message", "payload": {}})
    await alice.send({"type": "disconnect"})
    await closed(alice)
    kinds = {f["type"] for f in alice.seen} | {f["type"] for f in await bob.silent()}
    assert {"connect", "room-joined", "user-joined", "message", "error", "user-left", "room-left"} <= kinds
    assert len(of_type(alice.seen, "error")) == 3
