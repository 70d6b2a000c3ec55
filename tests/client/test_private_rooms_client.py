"""Private rooms from the clients (`iavicenne.client.RoomsAPI`, ``create_room``,
``invite``, ``remove_member``): what alice and bob see from their kernels.

pytest-jupyter's server with two identities of their own (alice and bob, tokens
alice-token and bob-token: `room_support.TwoAnalysts`). alice makes a private room from
Python; bob's client gets the server's refusal as an exception that says whom to ask, on
join, in listings and when he tries to invite himself; once invited he joins and reads
the room's history; removed, he is taken out at once and cannot come back. The notebook
API does the same through `join` and the panel.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from room_support import eventually, with_analysts

from iavicenne import (
    AuthenticationError,
    Backoff,
    ClientError,
    Forbidden,
    RequestFailed,
    RoomClient,
    ServerInfo,
    create_room,
    join,
    list_rooms,
)
from iavicenne.room import RoomSession

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def client(opened: list[Any], base: str, token: str) -> RoomClient:
    """A kernel's client with no user_id: it joins under its identity's name."""
    made = RoomClient(ServerInfo(base, token), backoff=FAST)
    opened.append(made)
    await made.start()
    return made


def listed(rooms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {room["room"]: room for room in rooms}


@pytest.mark.timeout(60)
async def test_a_private_room_refuses_bob_until_alice_invites_him(base: str, opened: list[Any]) -> None:
    alice = await client(opened, base, "alice-token")
    bob = await client(opened, base, "bob-token")

    record = await alice.create_room("q3")
    assert (record["room"], record["access"], record["owner"], record["members"]) == ("q3", "private", "alice", [])
    room = await alice.join("q3")
    assert alice.user_id == "alice" and alice.identity["username"] == "alice"  # the server's name, not $USER
    await room.send("the Q3 figures, first draft")

    # bob: refused on join, with whom to ask; the room is not in his listing; nor can he
    # invite himself, make it his, or read its members
    with pytest.raises(Forbidden) as refused:
        await bob.join("q3")
    assert str(refused.value).startswith("room 'q3' is private: ask its owner (alice) to invite you")
    assert "q3" not in bob.rooms
    assert "q3" not in listed(await bob.list_rooms())
    with pytest.raises(RequestFailed) as self_invite:
        await bob.invite("q3", "bob")
    assert self_invite.value.code in ("unknown-room", "forbidden")
    with pytest.raises(RequestFailed) as taken:
        await bob.create_room("q3")
    assert taken.value.frame["status"] == 409
    mine = listed(await alice.list_rooms())["q3"]
    assert (mine["access"], mine["owner"], mine["invited"]) == ("private", "alice", [])
    # the server is still there for him: a public room works
    lobby = await bob.join("lobby")
    await lobby.send("hello")

    # invited, he joins and reads what was said before
    assert (await alice.invite("q3", "bob"))["members"] == ["bob"]
    at_bob = await bob.join("q3")
    assert [m.text for m in await at_bob.recent(10)] == ["the Q3 figures, first draft"]
    assert listed(await bob.list_rooms())["q3"]["access"] == "private"
    await eventually(lambda: "bob" in room.members, what="bob in alice's room")
    assert room.members["bob"]["identity"]["username"] == "bob"

    # removed: taken out at once, told so, and refused when he comes back
    removed: list[dict[str, Any]] = []
    at_bob.on("removed", removed.append)
    assert (await alice.remove_member("q3", "bob"))["members"] == []
    await eventually(lambda: removed, what="bob told he was removed")
    assert removed == [{"room": "q3", "reason": "removed"}]
    assert "q3" not in bob.rooms and at_bob.left
    with pytest.raises(ClientError, match="left room 'q3'"):
        await at_bob.send("still here?")
    await eventually(lambda: "bob" not in room.members, what="bob gone from alice's room")
    with pytest.raises(Forbidden):
        await bob.join("q3")

    # only the owner ends it
    with pytest.raises(RequestFailed):
        await bob.delete_room("q3")
    await alice.delete_room("q3")
    assert "q3" not in listed(await alice.list_rooms()) or listed(await alice.list_rooms())["q3"]["access"] == "public"


@pytest.mark.timeout(60)
async def test_the_clients_say_plainly_what_is_wrong(base: str, opened: list[Any]) -> None:
    alice = await client(opened, base, "alice-token")
    with pytest.raises(ValueError, match="access is one of public, group, private"):
        await alice.create_room("q4", access="secret")
    with pytest.raises(ValueError, match="needs group="):
        await alice.create_room("q4", access="group")
    with pytest.raises(ValueError, match="list of usernames"):
        await alice.create_room("q4", members="bob")
    with pytest.raises(AuthenticationError, match="HTTP 403"):
        await list_rooms(url=base, token="not-a-token")
    # a group room for a group alice is not in: the server's refusal
    with pytest.raises(RequestFailed) as refused:
        await alice.create_room("q4", access="group", group="finance")
    assert refused.value.frame["status"] in (400, 403)
    assert "q4" not in listed(await alice.list_rooms())


@pytest.mark.timeout(90)
async def test_from_a_notebook_create_room_invite_and_the_panel_says_why(base: str, opened: list[Any]) -> None:
    record = await create_room("forecast", members=[], url=base, token="alice-token")
    assert record["owner"] == "alice"
    alice = join("forecast", url=base, token="alice-token", display=False, backoff=FAST, peers=False)
    opened.append(alice)
    await alice.ready()
    assert alice.user_id == "alice"

    bob = join("forecast", url=base, token="bob-token", display=False, backoff=FAST, peers=False)
    opened.append(bob)
    with pytest.raises(Forbidden, match=r"ask its owner \(alice\) to invite you"):
        await bob.ready()
    assert bob.state == "offline"
    assert "ask its owner (alice) to invite you" in bob.panel.errors.text.value

    await alice.invite("bob")
    await bob.rejoin()
    assert bob.online and "alice" in bob.members
    await alice.wait_for_member("bob")

    await alice.remove_member("bob")
    await eventually(lambda: bob.state == "offline", what="bob's panel offline")
    assert "its owner removed you" in bob.panel.errors.text.value
    await eventually(lambda: "bob" not in alice.members, what="bob gone from alice's panel")
    assert isinstance(bob, RoomSession) and alice.errors == []
    await asyncio.sleep(0)
