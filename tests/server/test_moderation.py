"""A room's owner mutes and removes members (issue 21, floods), and the per-identity message
budget a flood runs into.

alice owns the rooms; bob is the one who floods or misbehaves (and tries to moderate in
turn); carol is a bystander who must still read what is allowed. Each test runs on one real
Jupyter server with the memory broker, and on two servers sharing the Redis at
127.0.0.1:6379 (alice on the first, bob and carol on the second), so every mute and removal
is also enforced across servers. The identities are `access_support.GroupAnalysts'`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from access_support import KINDS, Deployment, deployed
from room_support import ALICE, BOB, Connect, with_analysts

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"moderation-{request.param}"), "moderation")


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room name of the test's own (the servers live for the module)."""
    return "m-" + request.node.originalname.removeprefix("test_")[:40]


async def sockets(deployment: Deployment, *names: str) -> list[WSClient]:
    return [await deployment.socket(name) for name in names]


async def create(deployment: Deployment, owner: str, room: str, **body: Any) -> dict[str, Any]:
    status, record = await deployment.api(owner, "POST", "rooms", {"room": room, **body})
    assert status == 201, record
    return record


async def join(client: WSClient, room: str) -> dict[str, Any]:
    """Ask to join `room`: the `room-joined`, or the `error` that refused it."""
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": {}, "ref": "j"})
    while True:
        frame = await client.recv()
        if frame.get("type") == p.ROOM_JOINED or (frame.get("type") == p.ERROR and frame.get("ref") == "j"):
            return frame


async def moderate(client: WSClient, room: str, username: str, action: str, ref: str = "mod") -> dict[str, Any]:
    """Send a ``moderate``: its ack, or the error that refused it."""
    await client.send({"type": p.MODERATE, "room": room, "payload": {"username": username, "action": action}, "ref": ref})
    return await _answer(client, ref)


async def _answer(client: WSClient, ref: str) -> dict[str, Any]:
    while True:
        frame = await client.recv()
        if frame.get("ref") == ref and frame.get("type") in (p.ACK, p.ERROR):
            return frame


async def moderated(client: WSClient) -> dict[str, Any]:
    """The first ``moderated`` frame `client` got (perhaps while waiting for another frame)."""
    for frame in client.seen:
        if frame.get("type") == p.MODERATED:
            return frame
    return await client.expect(p.MODERATED)


async def say(client: WSClient, room: str, text: str, ref: str) -> dict[str, Any]:
    """Send a room message: its ack, or the error that refused it."""
    await client.send({"type": p.MESSAGE, "room": room, "payload": {"content": text}, "ref": ref})
    return await _answer(client, ref)


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["message"]["content"] for f in frames if f.get("type") == p.MESSAGE]


async def test_the_owner_mutes_bob_for_everyone_and_a_reconnect_does_not_lift_it(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, access="public")
    alice, bob, carol = await sockets(deployment, "alice", "bob", "carol")
    for client in (alice, bob, carol):
        assert (await join(client, room))["type"] == p.ROOM_JOINED

    assert (await moderate(alice, room, "bob", p.ModerationAction.MUTE))["type"] == p.ACK
    for client in (alice, bob, carol):  # everyone is told, the muted one too (alice maybe before her ack)
        told = await moderated(client)
        assert (told["room"], told["username"], told["action"], told["by"]) == (room, "bob", "mute", "alice")

    refused = await say(bob, room, "BUY NOW", "b1")
    assert (refused["type"], refused["code"], refused["room"]) == (p.ERROR, p.ErrorCode.MUTED, room), refused
    assert "muted you" in refused["message"] and "(alice)" in refused["message"]
    assert (await say(carol, room, "carol still talks", "c1"))["type"] == p.ACK

    # a new connection of bob's (a reload, a kernel) is muted as well: it is in the record
    bob.close()
    again = await deployment.socket("bob", "bob#2")
    assert (await join(again, room))["type"] == p.ROOM_JOINED
    assert (await say(again, room, "BUY NOW again", "b2"))["code"] == p.ErrorCode.MUTED
    status, listing = await deployment.api("carol", "GET", f"rooms/{room}")
    assert status == 200 and listing["muted"] == ["bob"] and "removed" not in listing
    await alice.silent(0.3)
    await carol.silent(0.1)
    for reader in (alice, carol):  # carol's message only
        assert [t for t in texts(reader.seen) if "BUY" in t] == [] and "carol still talks" in texts(reader.seen)

    assert (await moderate(alice, room, "bob", p.ModerationAction.UNMUTE))["type"] == p.ACK
    await again.expect(p.MODERATED, where=lambda f: f["action"] == "unmute")
    assert (await say(again, room, "sorry", "b3"))["type"] == p.ACK
    assert (await carol.expect(p.MESSAGE, where=lambda f: f["message"]["content"] == "sorry"))["identity"]["username"] == "bob"


async def test_nobody_but_the_owner_moderates(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, access="public")
    alice, bob, carol = await sockets(deployment, "alice", "bob", "carol")
    for client in (alice, bob, carol):
        await join(client, room)

    for target, action in (("carol", "mute"), ("alice", "remove"), ("carol", "remove")):
        refused = await moderate(bob, room, target, action)
        assert (refused["type"], refused["code"], refused["room"]) == (p.ERROR, p.ErrorCode.FORBIDDEN, room), refused
        assert "only the owner" in refused["message"] and "alice's" in refused["message"]
    assert (await say(carol, room, "not muted", "c1"))["type"] == p.ACK

    # a room made by joining it has no owner: nobody moderates it
    assert (await join(bob, room + "-open"))["type"] == p.ROOM_JOINED
    refused = await moderate(bob, room + "-open", "carol", "mute")
    assert refused["code"] == p.ErrorCode.FORBIDDEN and "no owner" in refused["message"]

    # bad requests are refused plainly, the socket goes on
    for payload in (
        {"username": "bob", "action": "ban"},
        {"username": "", "action": "mute"},
        {"username": ["bob"], "action": "mute"},
    ):
        await alice.send({"type": p.MODERATE, "room": room, "payload": payload, "ref": "bad"})
        assert (await _answer(alice, "bad"))["code"] == p.ErrorCode.INVALID_FIELD
    assert (await moderate(alice, room, "alice", "mute"))["code"] == p.ErrorCode.INVALID_FIELD
    assert (await say(alice, room, "still here", "a1"))["type"] == p.ACK


async def test_the_owner_removes_carol_from_a_group_room_until_readmitted(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, access="group", group="oncology")
    alice, carol = await deployment.socket("alice"), await deployment.socket("carol")
    carol_kernel = await deployment.socket("carol", "carol#k")
    for client in (alice, carol, carol_kernel):
        assert (await join(client, room))["type"] == p.ROOM_JOINED

    assert (await moderate(alice, room, "carol", p.ModerationAction.REMOVE))["type"] == p.ACK
    for client in (carol, carol_kernel):  # every connection of hers leaves
        left = await client.expect(p.ROOM_LEFT)
        assert (left["room"], left["reason"]) == (room, p.LeftReason.REMOVED)
    await alice.expect(p.USER_LEFT, where=lambda f: f["identity"]["username"] == "carol")

    # her group lets her in no more, on a new connection either
    refused = await join(await deployment.socket("carol", "carol#3"), room)
    assert (refused["type"], refused["code"]) == (p.ERROR, p.ErrorCode.FORBIDDEN)
    assert "removed you" in refused["message"]
    assert room not in {r["room"] for r in (await deployment.api("carol", "GET", "rooms"))[1]["rooms"]}

    assert (await moderate(alice, room, "carol", p.ModerationAction.READMIT))["type"] == p.ACK
    assert (await join(await deployment.socket("carol", "carol#4"), room))["type"] == p.ROOM_JOINED


async def test_a_removal_from_a_private_room_revokes_the_invitation(deployment: Deployment, room: str) -> None:
    await create(deployment, "alice", room, members=["bob", "carol"])
    alice, bob, carol = await sockets(deployment, "alice", "bob", "carol")
    for client in (alice, bob, carol):
        assert (await join(client, room))["type"] == p.ROOM_JOINED

    assert (await moderate(bob, room, "carol", "remove"))["code"] == p.ErrorCode.FORBIDDEN  # bob is invited, not the owner
    assert (await moderate(alice, room, "bob", "remove"))["type"] == p.ACK
    assert (await bob.expect(p.ROOM_LEFT))["reason"] == p.LeftReason.REMOVED
    told = await moderated(carol)
    assert (told["username"], told["action"]) == ("bob", "remove")
    assert (await join(bob, room))["code"] == p.ErrorCode.FORBIDDEN
    status, record = await deployment.api("alice", "GET", f"rooms/{room}")
    assert status == 200 and (record["invited"], record["removed"]) == (["carol"], ["bob"])

    # inviting him again is how a private room's owner takes him back
    status, _ = await deployment.api("alice", "PUT", f"rooms/{room}/members/bob")
    assert status == 200
    assert (await join(await deployment.socket("bob", "bob#2"), room))["type"] == p.ROOM_JOINED


# -- the per-identity message budget (in-process server: options of its own) -------------------
@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


@pytest.mark.parametrize("iavicenne_config", [{"chat_messages_per_second": 2.0, "chat_messages_burst": 10}])
async def test_a_flood_reaches_limit_exceeded_naming_the_option(iav_connect: Connect) -> None:
    """bob's 40 messages at once over two connections: 10 (the burst) reach the room, the rest
    are refused one by one with ``limit-exceeded`` naming chat_messages_per_second; alice,
    another identity, still sends."""
    bob, bob_kernel, alice = await iav_connect(headers=BOB), await iav_connect(headers=BOB), await iav_connect(headers=ALICE)
    await alice.join("flood", "alice")
    await bob.join("flood", "bob")
    await bob_kernel.join("flood", "bob#k")
    senders = [bob if n % 2 else bob_kernel for n in range(40)]
    for n, sender in enumerate(senders):
        await sender.send({"type": p.MESSAGE, "room": "flood", "payload": {"content": f"spam {n}"}, "ref": f"s{n}"})
    answers = [await _answer(sender, f"s{n}") for n, sender in enumerate(senders)]
    accepted = [a for a in answers if a["type"] == p.ACK]
    refused = [a for a in answers if a["type"] == p.ERROR]
    assert 10 <= len(accepted) <= 12 and len(accepted) + len(refused) == 40, [a.get("code") for a in answers]
    first = refused[0]
    assert (first["code"], first["option"], first["limit"], first["room"]) == (
        p.ErrorCode.LIMIT_EXCEEDED,
        "chat_messages_per_second",
        2.0,
        "flood",
    )
    assert "IAvicenne.chat_messages_per_second = 2" in first["message"] and first["retry_after"] > 0
    await alice.send({"type": p.MESSAGE, "room": "flood", "payload": {"content": "calm"}, "ref": "a"})
    assert (await _answer(alice, "a"))["type"] == p.ACK
