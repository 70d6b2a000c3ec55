"""Rooms with members: private and group rooms, as alice, bob and carol would use them.

Each test runs on one real Jupyter server with the memory broker, and on two servers
sharing the Redis at 127.0.0.1:6379 (alice on the first, bob and carol on the second), so
every refusal and every eviction is also checked across servers. The identities are
`access_support.GroupAnalysts`' (alice and carol in group "oncology", bob in none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from access_support import KINDS, Deployment, call, deployed
from jupyter_server.auth.authorizer import Authorizer
from room_support import of_type

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"access-{request.param}"), "access")


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room name of the test's own (the servers live for the module)."""
    return "q-" + request.node.originalname.removeprefix("test_")[:40]


async def create(deployment: Deployment, owner: str, room: str, **body: Any) -> dict[str, Any]:
    status, record = await deployment.api(owner, "POST", "rooms", {"room": room, **body})
    assert status == 201, record
    return record


async def join(client: WSClient, room: str, **payload: Any) -> dict[str, Any]:
    """Ask to join `room`: the `room-joined`, or the `error` that refused it."""
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": payload, "ref": "j"})
    while True:
        frame = await client.recv()
        if frame.get("type") == p.ROOM_JOINED or (frame.get("type") == p.ERROR and frame.get("ref") == "j"):
            return frame


async def listed(deployment: Deployment, name: str) -> dict[str, dict[str, Any]]:
    status, body = await deployment.api(name, "GET", "rooms")
    assert status == 200, body
    return {room["room"]: room for room in body["rooms"]}


def assert_forbidden(frame: dict[str, Any], room: str, owner: str = "alice") -> None:
    assert frame["type"] == p.ERROR, frame
    assert (frame["code"], frame["room"]) == (p.ErrorCode.FORBIDDEN, room), frame
    assert f"room {room!r} is private" in frame["message"] and f"({owner})" in frame["message"], frame


async def test_a_private_room_refuses_bob_on_join_replay_listing_members_and_signaling(deployment: Deployment, room: str) -> None:
    record = await create(deployment, "alice", room)
    assert record == {
        "room": room,
        "access": "private",
        "owner": "alice",
        "group": None,
        "members": [],
        "muted": [],
        "removed": [],
    }
    alice = await deployment.socket("alice")
    assert (await join(alice, room))["type"] == p.ROOM_JOINED
    await alice.send({"type": p.MESSAGE, "room": room, "payload": {"content": "the Q3 figures"}, "ref": "m"})
    await alice.expect(p.ACK)

    bob = await deployment.socket("bob")
    assert_forbidden(await join(bob, room), room)
    assert_forbidden(await join(bob, room, since=0), room)  # no history for a refused joiner
    assert not [f for f in bob.seen if f.get("type") in (p.MESSAGE, p.ROOM_JOINED, p.USER_JOINED)]
    assert not of_type(await alice.silent(0.3), p.USER_JOINED)  # alice saw nobody come in

    # REST: bob does not see the room exist; alice does, with its access
    assert room not in await listed(deployment, "bob")
    mine = (await listed(deployment, "alice"))[room]
    assert (mine["access"], mine["owner"], mine["invited"], mine["members"]) == ("private", "alice", [], 1)
    status, body = await deployment.api("bob", "GET", f"rooms/{room}")
    assert (status, body["error"]) == (404, p.ErrorCode.UNKNOWN_ROOM)
    status, body = await deployment.api("alice", "GET", f"rooms/{room}")
    assert status == 200 and [m["user_id"] for m in body["members"]] == ["alice"] and body["access"] == "private"

    # signaling under the room's name is the room's too
    _peer, answer = await deployment.peer("bob", room)
    assert_forbidden(answer, room)
    _alice_peer, answer = await deployment.peer("alice", room)
    assert answer["type"] == p.JOINED

    # and bob still uses public rooms as before
    assert (await join(bob, room + "-public"))["type"] == p.ROOM_JOINED


async def test_an_invitation_lets_bob_in_with_the_history(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room)
    alice = await deployment.socket("alice")
    await join(alice, room)
    await alice.send({"type": p.MESSAGE, "room": room, "payload": {"content": "before bob"}, "ref": "m"})
    await alice.expect(p.ACK)

    status, record = await deployment.api("alice", "PUT", f"rooms/{room}/members/bob")
    assert (status, record["members"]) == (200, ["bob"])
    bob = await deployment.socket("bob")
    joined = await join(bob, room, since=0)
    assert joined["type"] == p.ROOM_JOINED and joined["recovered"] is True
    history = await bob.expect(p.MESSAGE)
    assert (history["message"], history["identity"]["username"]) == ({"content": "before bob"}, "alice")
    seen = await alice.expect(p.USER_JOINED, where=lambda f: f["user_id"] == "bob")
    assert seen["identity"]["username"] == "bob"
    assert (await listed(deployment, "bob"))[room]["invited"] == ["bob"]

    # members may write to each other
    await alice.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "bob", "payload": {"content": "hi"}, "ref": "d"})
    assert (await alice.expect(p.ACK))["ref"] == "d"
    assert (await bob.expect(p.DIRECT_MESSAGE))["identity"]["username"] == "alice"

    # carol, not invited, is still refused
    carol = await deployment.socket("carol")
    assert_forbidden(await join(carol, room), room)


async def test_removing_bob_evicts_his_room_and_signaling_connections(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, members=["bob"])
    alice = await deployment.socket("alice")
    await join(alice, room)
    alice_peer, _ = await deployment.peer("alice", room)
    bob = await deployment.socket("bob")
    bob_kernel = await deployment.socket("bob")  # a second connection of bob, as one member
    assert (await join(bob, room))["type"] == p.ROOM_JOINED
    assert (await join(bob_kernel, room))["type"] == p.ROOM_JOINED
    bob_peer, answer = await deployment.peer("bob", room, "bob#k1")
    assert answer["type"] == p.JOINED and answer["peer_identities"] == {"alice": alice_peer_identity(answer)}
    await alice.expect(p.USER_JOINED, where=lambda f: f["user_id"] == "bob")

    status, record = await deployment.api("alice", "DELETE", f"rooms/{room}/members/bob")
    assert (status, record["members"]) == (200, [])
    for client in (bob, bob_kernel, bob_peer):
        left = await client.expect(p.ROOM_LEFT)
        assert (left["room"], left["reason"]) == (room, p.LeftReason.REMOVED)
    gone = await alice.expect(p.USER_LEFT, where=lambda f: f["user_id"] == "bob")
    assert gone["identity"]["username"] == "bob"
    assert (await alice_peer.expect(p.PEER_LEFT))["peer_id"] == "bob#k1"

    # bob is out: nothing he sends reaches the room, he cannot come back, nothing reaches him
    await bob.send({"type": p.MESSAGE, "room": room, "payload": {"content": "still here?"}})
    assert (await bob.expect(p.ERROR))["code"] == p.ErrorCode.NOT_IN_ROOM
    assert_forbidden(await join(bob, room, since=0), room)
    await alice.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "bob", "payload": {"content": "psst"}, "ref": "d"})
    assert (await alice.expect(p.ERROR, where=lambda f: f.get("ref") == "d"))["code"] == p.ErrorCode.UNKNOWN_USER
    status, _ = await deployment.api("bob", "GET", f"rooms/{room}")
    assert status == 404
    assert not of_type(await alice.silent(0.3), p.MESSAGE)
    # the socket stays usable for other rooms
    assert (await join(bob, room + "-other"))["type"] == p.ROOM_JOINED


def alice_peer_identity(answer: dict[str, Any]) -> dict[str, Any]:
    identity = answer["peer_identities"]["alice"]
    assert identity["username"] == "alice", identity
    return identity


async def test_deleting_the_room_evicts_everyone_and_forgets_its_history(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, members=["bob"])
    alice, bob = await deployment.socket("alice"), await deployment.socket("bob")
    await join(alice, room)
    await join(bob, room)
    await alice.send({"type": p.MESSAGE, "room": room, "payload": {"content": "private"}, "ref": "m"})
    await alice.expect(p.ACK)

    status, body = await deployment.api("bob", "DELETE", f"rooms/{room}")  # a member is not the owner
    assert (status, body["error"]) == (403, p.ErrorCode.FORBIDDEN)
    status, body = await deployment.api("alice", "DELETE", f"rooms/{room}")
    assert (status, body) == (200, {"room": room, "deleted": True})
    for client in (alice, bob):
        assert (await client.expect(p.ROOM_LEFT))["reason"] == p.LeftReason.REMOVED

    # the room is public now, and what was said in private is not replayed to anyone
    carol = await deployment.socket("carol")
    joined = await join(carol, room, since=0)
    assert joined["type"] == p.ROOM_JOINED
    assert not of_type(await carol.silent(0.3), p.MESSAGE)
    assert (await listed(deployment, "bob"))[room]["access"] == "public"
    status, _ = await deployment.api("alice", "DELETE", f"rooms/{room}")
    assert status == 404


async def test_only_the_owner_manages_members_and_a_member_may_leave(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room)
    # not a member: as if the room did not exist
    assert (await deployment.api("bob", "PUT", f"rooms/{room}/members/bob"))[0] == 404
    assert (await deployment.api("bob", "DELETE", f"rooms/{room}"))[0] == 404
    assert (await deployment.api("alice", "PUT", f"rooms/{room}/members/bob"))[0] == 200
    # a member cannot invite or remove others
    status, body = await deployment.api("bob", "PUT", f"rooms/{room}/members/carol")
    assert (status, body["error"]) == (403, p.ErrorCode.FORBIDDEN) and "(alice)" in body["message"]
    assert (await deployment.api("bob", "DELETE", f"rooms/{room}/members/alice"))[0] == 403
    # but may leave
    bob = await deployment.socket("bob")
    await join(bob, room)
    status, record = await deployment.api("bob", "DELETE", f"rooms/{room}/members/bob")
    assert (status, record["members"]) == (200, [])
    assert (await bob.expect(p.ROOM_LEFT))["reason"] == p.LeftReason.REMOVED
    # a public room has no members to manage
    assert (await deployment.api("alice", "PUT", f"rooms/{room}-none/members/bob"))[0] == 404


async def test_a_room_with_a_record_people_or_history_cannot_be_made_private(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room)
    status, body = await deployment.api("bob", "POST", "rooms", {"room": room})
    assert (status, body["error"]) == (409, p.ErrorCode.ROOM_EXISTS)
    # bob is in a public room: alice cannot lock him in (or out) by making it private
    bob = await deployment.socket("bob")
    await join(bob, room + "-busy")
    status, body = await deployment.api("alice", "POST", "rooms", {"room": room + "-busy"})
    assert (status, body["error"]) == (409, p.ErrorCode.ROOM_EXISTS)
    assert room + "-busy" not in {r for r, v in (await listed(deployment, "bob")).items() if v["access"] != "public"}


async def test_a_group_room_admits_the_members_of_its_group(deployment: Deployment, room: str) -> None:
    status, body = await deployment.api("bob", "POST", "rooms", {"room": room, "access": "group", "group": "oncology"})
    assert (status, body["error"]) == (403, p.ErrorCode.FORBIDDEN) and "'oncology'" in body["message"]
    record = await create(deployment, "alice", room, access="group", group="oncology")
    assert (record["access"], record["group"]) == ("group", "oncology")

    carol = await deployment.socket("carol")  # in oncology, on the other server
    assert (await join(carol, room))["type"] == p.ROOM_JOINED
    bob = await deployment.socket("bob")
    refused = await join(bob, room)
    assert refused["code"] == p.ErrorCode.FORBIDDEN and "group 'oncology'" in refused["message"]
    assert room in await listed(deployment, "carol")
    assert room not in await listed(deployment, "bob")
    # groups are never shown to others: carol's identity in frames has none
    alice = await deployment.socket("alice")
    joined = await join(alice, room)
    identities = {m["user_id"]: m["identity"] for m in joined["members"]}
    assert identities["carol"] == {"username": "carol", "name": "carol", "display_name": "Carol"}


# -- on one in-process server: budgets and bad input -------------------------------------------


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    return {"max_private_rooms_per_identity": 2, "max_room_members": 2}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    from access_support import GroupAnalysts

    jp_server_config["ServerApp"]["identity_provider_class"] = GroupAnalysts
    return jp_server_config


@pytest.fixture
def api(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> Any:
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

    async def request(name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call(base, name, method, path, body)

    return request


def assert_limit(answer: tuple[int, Any], option: str, limit: int) -> None:
    status, body = answer
    assert status == 403, body
    assert (body["error"], body["option"], body["limit"]) == (p.ErrorCode.LIMIT_EXCEEDED, option, limit), body
    assert f"IAvicenne.{option} = {limit}" in body["message"], body


async def test_budgets_refuse_with_the_option_that_raises_them(api: Any) -> None:
    for n in (1, 2):
        assert (await api("erin", "POST", "rooms", {"room": f"e{n}"}))[0] == 201
    assert_limit(await api("erin", "POST", "rooms", {"room": "e3"}), "max_private_rooms_per_identity", 2)
    # another identity's budget is its own
    assert (await api("bob", "POST", "rooms", {"room": "b1"}))[0] == 201
    # deleting one makes room for another
    assert (await api("erin", "DELETE", "rooms/e1"))[0] == 200
    assert (await api("erin", "POST", "rooms", {"room": "e3"}))[0] == 201

    assert_limit(await api("bob", "POST", "rooms", {"room": "b2", "members": ["a", "c", "d"]}), "max_room_members", 2)
    assert (await api("bob", "PUT", "rooms/b1/members/alice"))[0] == 200
    assert (await api("bob", "PUT", "rooms/b1/members/carol"))[0] == 200
    assert_limit(await api("bob", "PUT", "rooms/b1/members/erin"), "max_room_members", 2)
    assert (await api("bob", "PUT", "rooms/b1/members/carol"))[0] == 200  # already in: no new member


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({}, "room must be a string"),
        ({"room": "bad!name"}, "invalid room"),
        ({"room": "ok", "access": "secret"}, "access must be one of"),
        ({"room": "ok", "members": "bob"}, "members must be a list"),
        ({"room": "ok", "members": [1]}, "must be a username"),
        ({"room": "ok", "members": ["x" * 300]}, "must be a username"),
        ({"room": "ok", "access": "group"}, "needs 'group'"),
        ({"room": "ok", "access": "group", "group": "oncology", "members": ["bob"]}, "members are for a private room"),
        ({"room": "ok", "group": "oncology"}, "'group' is for a group room"),
    ],
)
async def test_a_malformed_body_is_a_400_json_error(api: Any, body: Any, says: str) -> None:
    status, answer = await api("alice", "POST", "rooms", body)
    assert status == 400, answer
    assert answer["error"] in (p.ErrorCode.INVALID_FIELD, p.ErrorCode.INVALID_JSON, p.ErrorCode.INVALID_FRAME), answer
    assert says in answer["message"], answer
    # and the server is fine
    status, rooms = await api("alice", "GET", "rooms")
    assert (status, rooms) == (200, {"rooms": []})


async def test_a_bad_member_name_in_the_path_is_400(api: Any) -> None:
    assert (await api("alice", "POST", "rooms", {"room": "r"}))[0] == 201
    status, answer = await api("alice", "PUT", "rooms/r/members/%00x")
    assert (status, answer["error"]) == (400, p.ErrorCode.INVALID_FIELD)


async def test_concurrent_creations_of_one_room_make_one_record(api: Any) -> None:
    results = await asyncio.gather(*(api(name, "POST", "rooms", {"room": "race"}) for name in ("alice", "bob", "carol")))
    assert sorted(status for status, _ in results) == [201, 409, 409]


async def test_look_alike_names_are_refused_on_every_server(deployment: Deployment, room: str) -> None:
    """The claims (by skeleton) and the usernames seen are the broker's: one deployment, one set of names."""
    alice = await deployment.socket("alice", "Dr Ana")
    assert (await join(alice, room))["type"] == p.ROOM_JOINED
    bob = await deployment.socket("bob")  # on the other server with Redis
    for look_alike in ("dr ana", "Dr An\u0430", "DR ANA"):
        await bob.send({"type": p.CONNECT, "payload": {"user_id": look_alike}})
        await bob.expect(p.CONNECT)
        refused = await join(bob, room)
        assert refused["code"] == p.ErrorCode.NAME_TAKEN, (look_alike, refused)
    # alice's username is hers in every room, even one she is not in
    await bob.send({"type": p.CONNECT, "payload": {"user_id": "Alice"}, "ref": "c"})
    refused = await bob.expect(p.ERROR, where=lambda f: f.get("ref") == "c")
    assert refused["code"] == p.ErrorCode.NAME_TAKEN and "looks like 'alice'" in refused["message"]
    await alice.silent(0.3)
    assert [f["user_id"] for f in of_type(alice.seen, p.USER_JOINED)] == ["Dr Ana"]  # her own, no impostor


class ReadOnlyBob(Authorizer):
    """Jupyter's authorizer: bob may read iAvicenne's rooms, not change them."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (user.username == "bob" and resource == "iavicenne" and action == "write")


def _read_only_bob() -> dict[str, Any]:
    from access_support import GroupAnalysts

    return {
        "ServerApp": {
            "jpserver_extensions": {"iavicenne_ext": True},
            "identity_provider_class": GroupAnalysts,
            "authorizer_class": ReadOnlyBob,
        },
        "IAvicenne": {},
    }


@pytest.mark.parametrize("jp_server_config", [_read_only_bob()])
async def test_changing_rooms_needs_jupyters_write_permission(api: Any) -> None:
    assert (await api("alice", "POST", "rooms", {"room": "q", "members": ["bob"]}))[0] == 201
    status, body = await api("bob", "POST", "rooms", {"room": "b"})
    assert (status, body["error"]) == (403, p.ErrorCode.FORBIDDEN)
    assert (await api("bob", "DELETE", "rooms/q/members/bob"))[0] == 403  # even leaving is a change
    status, body = await api("bob", "GET", "rooms")
    assert status == 200 and [room["room"] for room in body["rooms"]] == ["q"]
