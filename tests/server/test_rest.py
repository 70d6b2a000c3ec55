"""The REST API: which rooms exist with their member counts, and one room's members.

Members are users (all connections of a user fold into one entry), on a server with two
real analysts (`room_support.TwoAnalysts`) besides the token holder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from room_support import ALICE, BOB, Connect, with_analysts
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


@pytest.fixture
def get(jp_fetch: Any) -> Any:
    async def fetch(*path: str) -> Any:
        response = await jp_fetch("iavicenne", "api", "rooms", *path)
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.body)

    return fetch


async def refused(get: Any, *path: str) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as caught:
        await get(*path)
    assert caught.value.response is not None  # an HTTP answer, not a connection failure
    return caught.value.code, json.loads(caught.value.response.body)["message"]


async def test_room_list_counts_users_and_connections(connect: Connect, get: Any) -> None:
    assert await get() == {"rooms": []}
    for headers in (ALICE, ALICE, BOB):  # alice with two kernels
        await (await connect(headers=headers)).join("r1")
    await (await connect()).join("r2", "owner")

    assert await get() == {
        "rooms": [
            {"room": "r1", "members": 2, "connections": 3, "access": "public"},
            {"room": "r2", "members": 1, "connections": 1, "access": "public"},
        ]
    }


async def test_room_members_with_identity_and_state(connect: Connect, get: Any) -> None:
    alice = await connect(headers=ALICE)
    await alice.join("r1")
    await (await connect(headers=ALICE)).join("r1")
    bob = await connect(headers=BOB)
    await bob.join("r1", "Dr B")
    await alice.send({"type": "presence", "room": "r1", "payload": {"state": {"notebook": "eda.ipynb"}}, "ref": "p"})
    await alice.expect("ack")

    room = await get("r1")
    assert room["room"] == "r1"
    members = {m["user_id"]: m for m in room["members"]}
    assert set(members) == {"alice", "Dr B"}
    assert members["alice"]["connections"] == 2
    assert members["alice"]["state"] == {"notebook": "eda.ipynb"}
    assert members["alice"]["identity"]["username"] == "alice"
    assert members["Dr B"]["identity"]["username"] == "bob"
    assert await get("r1/") == room  # trailing slash


async def test_members_follow_leaves_and_closes(connect: Connect, get: Any) -> None:
    alice, bob = await connect(headers=ALICE), await connect(headers=BOB)
    await alice.join("r1")
    await bob.join("r1")
    await alice.send({"type": "leave-room", "room": "r1"})
    await alice.expect("room-left")
    assert [m["user_id"] for m in (await get("r1"))["members"]] == ["bob"]

    bob.close()
    for _ in range(50):  # the server sees the close a moment later
        if await get() == {"rooms": []}:
            break
        await alice.silent(0.05)
    assert await get() == {"rooms": []}
    # a room everyone left keeps its history for a while: it exists, with no members
    assert await get("r1") == {"room": "r1", "members": [], "access": "public"}


async def test_unknown_room_is_404(get: Any) -> None:
    code, message = await refused(get, "nowhere")
    assert code == 404
    assert "'nowhere'" in message


@pytest.mark.parametrize("name", ["bad!name", "x" * 65, "trailing ", "new\nline"])
async def test_invalid_room_name_is_400(get: Any, name: str) -> None:
    code, message = await refused(get, name)
    assert code == 400
    assert message.startswith("invalid room")


async def test_room_names_are_percent_decoded(connect: Connect, get: Any) -> None:
    owner = await connect()
    await owner.join("équipe 1", "owner")
    assert [m["user_id"] for m in (await get("équipe 1"))["members"]] == ["owner"]
    assert (await get())["rooms"][0]["room"] == "équipe 1"
