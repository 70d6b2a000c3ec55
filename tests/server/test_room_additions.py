"""What the room endpoint adds to the seed (docs/protocol.md, "(added)"), on a real server.

Two real users: the server runs with `room_support.TwoAnalysts`, so `alice-token` and
`bob-token` authenticate two different Jupyter users, as on a JupyterHub; the server's
own token is a third one. The module keeps only HISTORY messages per room, so a client
that missed more is told it cannot recover them.
"""

from __future__ import annotations

import getpass
from typing import Any

import pytest
from room_support import ALICE, BOB, Connect, of_type, with_analysts

from iavicenne_ext.testing import WSClient

HISTORY = 5


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    return {"history_size": HISTORY}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def analyst(
    connect: Connect, headers: dict[str, str], room: str = "r1", user_id: str | None = None, **payload: Any
) -> tuple[WSClient, dict[str, Any]]:
    """A connection of alice or bob that joined `room`: the client and its `room-joined`."""
    client = await connect(headers=headers)
    joined = await client.join(room, user_id, **payload)
    await client.expect("user-joined", where=lambda f: f["user_id"] == joined["user_id"])
    return client, joined


async def say(client: WSClient, content: str, room: str = "r1", **extra: Any) -> None:
    await client.send({"type": "message", "room": room, "payload": {"content": content}, **extra})


# -- identity ----------------------------------------------------------------------------


async def test_identity_is_attached_to_presence_and_messages(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice, joined = await analyst(connect, ALICE, user_id="Dr A")
    alice_seen = await bob.expect("user-joined")
    assert alice_seen["user_id"] == "Dr A"
    assert alice_seen["identity"]["username"] == "alice"
    members = {m["user_id"]: m["identity"]["username"] for m in joined["members"]}
    assert members == {"Dr A": "alice", "bob": "bob"}

    await say(alice, "hi")
    got = await bob.expect("message")
    assert got["user_id"] == "Dr A"
    assert got["identity"] == {"username": "alice", "name": "alice", "display_name": "Alice"}


async def test_identity_cannot_be_spoofed_by_the_client(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice = await connect(headers=ALICE)
    forged = {"username": "bob", "name": "bob", "display_name": "Bob"}
    await alice.send({"type": "connect", "payload": {"user_id": "alice", "identity": forged}, "identity": forged})
    reply = await alice.expect("connect")
    assert reply["identity"]["username"] == "alice"
    await alice.send({"type": "join-room", "room": "r1", "payload": {"identity": forged}, "identity": forged})
    joined = await alice.expect("room-joined")
    assert {m["user_id"]: m["identity"]["username"] for m in joined["members"]}["alice"] == "alice"
    assert (await bob.expect("user-joined"))["identity"]["username"] == "alice"

    await alice.send({"type": "message", "room": "r1", "payload": {"content": "I am bob"}, "identity": forged, "user_id": "bob"})
    got = await bob.expect("message")
    assert got["identity"]["username"] == "alice"
    assert got["user_id"] == "alice"


async def test_user_id_defaults_to_the_jupyter_user_name(connect: Connect) -> None:
    alice = await connect(headers=ALICE)
    await alice.send({"type": "join-room", "room": "r1", "payload": {}})  # no connect first
    joined = await alice.expect("room-joined")
    assert joined["user_id"] == "alice"
    own = await alice.expect("user-joined")
    assert own["user_id"] == "alice"


async def test_server_token_holders_share_one_identity(connect: Connect) -> None:
    """Jupyter names each token request a new anonymous user; here the server's token is its owner."""
    first, second = await connect(), await connect()
    identities = []
    for client in (first, second):
        await client.send({"type": "connect", "payload": {"user_id": "owner"}})
        identities.append((await client.expect("connect"))["identity"])
    assert identities[0] == identities[1]
    assert identities[0]["username"] == getpass.getuser()  # IAvicenne.owner_name's default
    await first.join("r1")
    joined = await second.join("r1")  # same identity: not refused as name-taken
    assert [(m["user_id"], m["connections"]) for m in joined["members"]] == [("owner", 2)]


async def test_two_analysts_have_distinct_identities(connect: Connect) -> None:
    """Personal tokens are not mistaken for the server's token (both authenticate by token)."""
    _alice, _ = await analyst(connect, ALICE)
    _bob, joined = await analyst(connect, BOB)
    assert {m["user_id"]: m["identity"]["username"] for m in joined["members"]} == {"alice": "alice", "bob": "bob"}


async def test_user_id_held_by_another_identity_is_refused(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE, user_id="Dr A")
    bob = await connect(headers=BOB)
    await bob.send({"type": "connect", "payload": {"user_id": "Dr A"}})
    await bob.expect("connect")
    await bob.send({"type": "join-room", "room": "r1", "payload": {}})
    error = await bob.expect("error")
    assert error["code"] == "name-taken"
    assert "'Dr A'" in error["message"] and "another user_id" in error["message"]
    assert await alice.silent() == []  # no user-joined for the impostor

    # bob is not in r1: nothing he sends reaches it, and the room lists only alice
    await bob.send({"type": "message", "room": "r1", "payload": {"content": "I am alice"}})
    assert (await bob.expect("error"))["code"] == "not-in-room"
    assert await alice.silent() == []

    # the same user_id in another room is free
    await bob.send({"type": "join-room", "room": "r2", "payload": {}})
    assert (await bob.expect("room-joined"))["user_id"] == "Dr A"


async def test_another_identitys_username_is_refused_everywhere(connect: Connect) -> None:
    """Once alice has connected, nobody else appears as alice, in any room, even before she joins it."""
    await analyst(connect, ALICE)
    bob = await connect(headers=BOB)
    await bob.send({"type": "connect", "payload": {"user_id": "alice"}, "ref": "c"})
    error = await bob.expect("error")
    assert (error["code"], error["ref"]) == ("name-taken", "c")
    assert "'alice'" in error["message"]


# -- several rooms per connection ---------------------------------------------------


async def test_one_connection_in_several_rooms(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE, room="r1")
    await alice.join("r2")
    bob_r1, _ = await analyst(connect, BOB, room="r1", user_id="bob")
    bob_r2, _ = await analyst(connect, BOB, room="r2", user_id="bob")
    await alice.silent(0.1)

    await say(alice, "to r2", room="r2")
    got = await bob_r2.expect("message")
    assert (got["room"], got["message"]) == ("r2", {"content": "to r2"})
    assert of_type(await bob_r1.silent(), "message") == []

    await alice.send({"type": "message", "payload": {"content": "where?"}})
    error = await alice.expect("error")
    assert error["code"] == "room-required"
    assert "room is required" in error["message"]

    await say(alice, "nowhere", room="r3")
    error = await alice.expect("error")
    assert error["code"] == "not-in-room"
    assert "'r3'" in error["message"]

    # leaving one room keeps the other
    await alice.send({"type": "leave-room", "room": "r1"})
    assert (await alice.expect("room-left"))["room"] == "r1"
    await alice.send({"type": "message", "payload": {"content": "only r2 now"}})
    assert (await bob_r2.expect("message"))["message"] == {"content": "only r2 now"}


# -- presence -------------------------------------------------------------------------


async def test_room_joined_carries_a_snapshot_of_members(connect: Connect) -> None:
    await analyst(connect, ALICE, state={"notebook": "eda.ipynb"})
    await analyst(connect, BOB, room="r2")
    owner = await connect()
    joined = await owner.join("r1", "owner")
    snapshot = {m["user_id"]: m for m in joined["members"]}
    assert set(snapshot) == {"alice", "owner"}
    assert snapshot["alice"]["state"] == {"notebook": "eda.ipynb"}
    assert snapshot["alice"]["identity"]["username"] == "alice"
    assert snapshot["alice"]["connections"] == 1


async def test_user_joined_and_left_on_first_and_last_connection_only(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    kernel1, _ = await analyst(connect, ALICE)
    assert (await bob.expect("user-joined"))["user_id"] == "alice"

    kernel2, joined = await analyst(connect, ALICE)
    assert {m["user_id"]: m["connections"] for m in joined["members"]} == {"alice": 2, "bob": 1}
    assert of_type(await bob.silent(), "user-joined") == []

    kernel1.close()
    assert of_type(await bob.silent(), "user-left") == []
    await say(kernel2, "still here")
    assert (await bob.expect("message"))["user_id"] == "alice"

    await kernel2.send({"type": "leave-room", "room": "r1"})
    left = await bob.expect("user-left")
    assert left["user_id"] == "alice"


async def test_presence_state_update_reaches_the_room(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice, _ = await analyst(connect, ALICE)
    state = {"status": "busy", "notebook": "eda.ipynb", "cell": 3}
    await alice.send({"type": "presence", "room": "r1", "payload": {"state": state}, "ref": "p1"})
    update = await bob.expect("presence")
    assert (update["user_id"], update["room"], update["state"]) == ("alice", "r1", state)
    assert update["identity"]["username"] == "alice"
    ack = await alice.expect("ack")
    assert (ack["ref"], ack["room"]) == ("p1", "r1")

    late = await connect()
    joined = await late.join("r1", "owner")
    assert {m["user_id"]: m["state"] for m in joined["members"]}["alice"] == state


# -- order and history --------------------------------------------------------------


async def test_messages_get_a_monotonic_seq(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice, joined = await analyst(connect, ALICE)
    start = joined["seq"]
    for n in range(4):
        await say(alice if n % 2 else bob, f"m{n}")
    seqs = [(await bob.expect("message"))["seq"] for _ in range(4)]
    assert seqs == [start + 1, start + 2, start + 3, start + 4]
    _late, joined = await analyst(connect, ALICE)
    assert joined["seq"] == start + 4


async def test_since_replays_exactly_the_missed_messages(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE)
    bob, joined = await analyst(connect, BOB)
    epoch = joined["epoch"]
    await say(alice, "seen")
    last = (await bob.expect("message"))["seq"]
    bob.close()
    for n in range(3):
        await say(alice, f"missed {n}")

    bob = await connect(headers=BOB)
    await bob.send({"type": "join-room", "room": "r1", "payload": {"since": last, "epoch": epoch}})
    joined = await bob.recv()
    assert joined["type"] == "room-joined"
    assert (joined["since"], joined["recovered"], joined["seq"]) == (last, True, last + 3)
    replay = [await bob.recv() for _ in range(3)]
    assert [(f["type"], f["seq"], f["message"]["content"]) for f in replay] == [
        ("message", last + n + 1, f"missed {n}") for n in range(3)
    ]
    assert (await bob.recv())["type"] == "user-joined"
    await say(alice, "live")
    assert (await bob.expect("message"))["seq"] == last + 4
    assert of_type(await bob.silent(0.1), "message") == []


async def test_since_up_to_date_replays_nothing(connect: Connect) -> None:
    alice, joined = await analyst(connect, ALICE)
    await say(alice, "one")
    seq = (await alice.expect("message"))["seq"]
    bob = await connect(headers=BOB)
    await bob.send({"type": "join-room", "room": "r1", "payload": {"since": seq, "epoch": joined["epoch"]}})
    got = await bob.recv()
    assert (got["type"], got["recovered"]) == ("room-joined", True)
    assert (await bob.recv())["type"] == "user-joined"


async def test_since_older_than_history_is_not_recovered(connect: Connect) -> None:
    alice, joined = await analyst(connect, ALICE)
    for n in range(HISTORY + 3):
        await say(alice, f"m{n}")
    last = [await alice.expect("message") for _ in range(HISTORY + 3)][-1]["seq"]

    bob = await connect(headers=BOB)
    await bob.send({"type": "join-room", "room": "r1", "payload": {"since": joined["seq"] + 1, "epoch": joined["epoch"]}})
    got = await bob.recv()
    assert (got["type"], got["recovered"]) == ("room-joined", False)
    kept = [await bob.recv() for _ in range(HISTORY)]
    assert [f["seq"] for f in kept] == list(range(last - HISTORY + 1, last + 1))
    assert (await bob.recv())["type"] == "user-joined"


@pytest.mark.parametrize("bad", ["epoch", "seq"])
async def test_since_from_another_life_of_the_room_is_not_recovered(connect: Connect, bad: str) -> None:
    alice, joined = await analyst(connect, ALICE)
    await say(alice, "m")
    await alice.expect("message")
    payload = {"since": 1, "epoch": "not-this-room"} if bad == "epoch" else {"since": joined["seq"] + 50}
    bob = await connect(headers=BOB)
    await bob.send({"type": "join-room", "room": "r1", "payload": payload})
    got = await bob.expect("room-joined")
    assert got["recovered"] is False
    assert got["epoch"] == joined["epoch"]


async def test_join_room_again_replays_without_leaving(connect: Connect) -> None:
    """A client that suspects it missed something asks again in place: the others see nothing."""
    bob, _ = await analyst(connect, BOB)
    alice, joined = await analyst(connect, ALICE)
    await bob.expect("user-joined")
    await say(bob, "m1")
    await alice.expect("message")
    await bob.expect("message")

    await alice.send(
        {"type": "join-room", "room": "r1", "payload": {"since": joined["seq"], "epoch": joined["epoch"]}, "ref": "j2"}
    )
    again = await alice.recv()
    assert (again["type"], again["ref"], again["recovered"]) == ("room-joined", "j2", True)
    assert [m["user_id"] for m in again["members"]] == ["alice", "bob"]
    replay = await alice.recv()
    assert (replay["type"], replay["message"]) == ("message", {"content": "m1"})
    assert (await alice.recv())["type"] == "user-joined"

    assert await bob.silent() == []  # no user-left / user-joined for alice
    await say(bob, "m2")
    assert (await alice.expect("message"))["message"] == {"content": "m2"}


# -- ref, ack, no duplicates ---------------------------------------------------------


async def test_ref_is_acked_with_its_seq(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE)
    await say(alice, "hi", ref="m-1")
    message = await alice.expect("message")
    ack = await alice.expect("ack")
    assert ack == {**ack, "ref": "m-1", "room": "r1", "seq": message["seq"], "duplicate": False}
    assert message["ref"] == "m-1"


async def test_resend_with_the_same_ref_is_delivered_once(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice, _ = await analyst(connect, ALICE)
    await say(alice, "once", ref="m-1")
    first = await alice.expect("ack")
    await say(alice, "once", ref="m-1")
    again = await alice.expect("ack")
    assert (again["duplicate"], again["seq"]) == (True, first["seq"])

    # a reconnect of the same user (a new connection, same token) resends it too
    alice.close()
    alice, _ = await analyst(connect, ALICE)
    await say(alice, "once", ref="m-1")
    after_reconnect = await alice.expect("ack")
    assert (after_reconnect["duplicate"], after_reconnect["seq"]) == (True, first["seq"])

    got = of_type(await bob.silent(), "message")
    assert [m["message"]["content"] for m in got] == ["once"]


async def test_the_same_ref_from_another_user_is_not_a_duplicate(connect: Connect) -> None:
    bob, _ = await analyst(connect, BOB)
    alice, _ = await analyst(connect, ALICE)
    await say(alice, "from alice", ref="r-1")
    await say(bob, "from bob", ref="r-1")
    assert (await alice.expect("ack"))["duplicate"] is False
    assert (await bob.expect("ack"))["duplicate"] is False
    await bob.silent()
    got = of_type(bob.seen, "message")
    assert sorted(m["message"]["content"] for m in got) == ["from alice", "from bob"]


# -- direct messages ------------------------------------------------------------------


async def test_direct_message_reaches_only_the_target_users_connections(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE)
    bob1, _ = await analyst(connect, BOB)
    bob2, _ = await analyst(connect, BOB)
    owner = await connect()
    await owner.join("r1", "owner")
    await alice.silent(0.1)

    await alice.send({"type": "direct-message", "room": "r1", "to": "bob", "payload": {"content": "psst"}, "ref": "d1"})
    for bob in (bob1, bob2):
        got = await bob.expect("direct-message")
        assert (got["user_id"], got["to"], got["message"], got["room"]) == ("alice", "bob", {"content": "psst"}, "r1")
        assert got["identity"]["username"] == "alice"
    ack = await alice.expect("ack")
    assert ack["ref"] == "d1"
    assert of_type(alice.seen + await alice.silent(), "direct-message") == []
    assert of_type(await owner.silent(), "direct-message") == []


async def test_direct_message_to_a_missing_user_is_unknown_user(connect: Connect) -> None:
    alice, _ = await analyst(connect, ALICE)
    await analyst(connect, BOB, room="r2")  # bob exists, but not in r1
    for to in ("zed", "bob"):
        await alice.send({"type": "direct-message", "room": "r1", "to": to, "payload": {"content": "?"}})
        error = await alice.expect("error")
        assert error["code"] == "unknown-user"
        assert f"'{to}'" in error["message"]


async def test_a_direct_message_resent_with_its_ref_is_delivered_once(connect: Connect) -> None:
    """A client that lost its ack resends with the same ref; the target sees it once."""
    alice = await connect()
    bob = await connect()
    await alice.join("dm-dedup", "alice")
    await bob.join("dm-dedup", "bob")
    frame = {"type": "direct-message", "room": "dm-dedup", "to": "bob", "payload": {"n": 1}, "ref": "dm-1"}
    await alice.send(frame)
    first = await alice.expect("ack", where=lambda f: f.get("ref") == "dm-1")
    assert first["duplicate"] is False
    # a new connection of the same user, as after a reconnect
    again = await connect()
    await again.join("dm-dedup", "alice")
    await again.send(frame)
    second = await again.expect("ack", where=lambda f: f.get("ref") == "dm-1")
    assert second["duplicate"] is True
    await bob.silent(0.5)  # everything that arrives is recorded in bob.seen
    assert [f["message"] for f in bob.seen if f["type"] == "direct-message"] == [{"n": 1}]
