"""`RoomHub` driven directly, over a `MemoryBroker`, with fake connections: no server.

The hub's own work: joins with their snapshot and replay, the fan-out of messages to this
server's connections (one encoding, each recipient once), leaves, direct messages and
take-overs by typed broker events, and presence-batches for connections that asked for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

import iavicenne_protocol as p
from iavicenne_ext import names
from iavicenne_ext.broker import MemoryBroker
from iavicenne_ext.identity import Identity
from iavicenne_ext.rooms import RoomHub


@dataclass(eq=False)
class FakeConnection:
    """A client connection as the hub sees one: it keeps what the hub queued to it."""

    key: str
    user_id: str
    who: Identity
    name_policy: str = names.FREE
    sent: list[bytes] = field(default_factory=list)
    replayed: list[bytes] = field(default_factory=list)
    superseded_in: list[str] = field(default_factory=list)
    evicted_from: list[str] = field(default_factory=list)
    identity: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.identity = self.who.public()

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        (self.replayed if replay else self.sent).append(frame)

    def superseded(self, room: str) -> None:
        self.superseded_in.append(room)

    def evicted(self, room: str) -> None:
        self.evicted_from.append(room)

    def frames(self, kind: str | None = None) -> list[dict[str, Any]]:
        decoded = [json.loads(frame) for frame in self.sent]
        return [f for f in decoded if kind is None or f["type"] == kind]


@pytest.fixture
def hub() -> RoomHub:
    broker = MemoryBroker(history_size=100, history_ttl=60.0, dedup_ttl=60.0)
    return RoomHub(broker, logging.getLogger("iavicenne.test"), max_message_bytes=64 * 1024, presence_batch_interval=0.05)


def connection(n: int, user: str) -> FakeConnection:
    return FakeConnection(f"s:{n}", user, Identity(user, user, user.title()))


async def join(hub: RoomHub, conn: FakeConnection, room: str = "r", **options: Any) -> None:
    assert await hub.join(conn, room, state=None, since=None, epoch=None, **options)


async def test_a_join_gets_the_snapshot_and_the_others_get_user_joined(hub: RoomHub) -> None:
    alice, bob = connection(1, "alice"), connection(2, "bob")
    await join(hub, alice)
    await join(hub, bob)
    [joined] = bob.frames(p.ROOM_JOINED)
    assert [m["user_id"] for m in joined["members"]] == ["alice", "bob"]
    assert joined["member_count"] == 2 and joined["seq"] == 0
    assert [f["user_id"] for f in alice.frames(p.USER_JOINED)] == ["alice", "bob"]
    assert [f["user_id"] for f in bob.frames(p.USER_JOINED)] == ["bob"]  # its own, as the seed sends


async def test_a_message_reaches_every_connection_of_the_room_once_with_its_seq(hub: RoomHub) -> None:
    alice, bob, bob_again, carol = connection(1, "alice"), connection(2, "bob"), connection(3, "bob"), connection(4, "carol")
    for conn in (alice, bob, bob_again):
        await join(hub, conn)
    await join(hub, carol, "elsewhere")
    published = await hub.publish(alice, "r", {"content": "hi"}, "ref-1")
    again = await hub.publish(alice, "r", {"content": "hi"}, "ref-1")
    assert (published.seq, again.seq, again.duplicate) == (1, 1, True)
    for conn in (alice, bob, bob_again):
        assert [(f["seq"], f["message"]) for f in conn.frames(p.MESSAGE)] == [(1, {"content": "hi"})]
    assert carol.frames(p.MESSAGE) == []
    # the same bytes to each: encoded once
    assert {conn.sent[-1] for conn in (alice, bob, bob_again)} == {alice.sent[-1]}


async def test_a_late_joiner_gets_what_it_missed_as_a_replay(hub: RoomHub) -> None:
    alice, bob = connection(1, "alice"), connection(2, "bob")
    await join(hub, alice)
    for n in range(3):
        await hub.publish(alice, "r", {"n": n}, None)
    assert await hub.join(bob, "r", state=None, since=1, epoch=None)
    assert [json.loads(f)["seq"] for f in bob.replayed] == [2, 3]
    [joined] = bob.frames(p.ROOM_JOINED)
    assert (joined["since"], joined["recovered"], joined["seq"]) == (1, True, 3)


async def test_a_direct_message_reaches_only_its_users_connections(hub: RoomHub) -> None:
    alice, bob, carol = connection(1, "alice"), connection(2, "bob"), connection(3, "carol")
    for conn in (alice, bob, carol):
        await join(hub, conn)
    assert await hub.direct(alice, "r", "bob", {"text": "psst"}, "d-1")
    assert not await hub.direct(alice, "r", "bob", {"text": "psst"}, "d-1")  # a resend
    assert [f["message"] for f in bob.frames(p.DIRECT_MESSAGE)] == [{"text": "psst"}]
    assert alice.frames(p.DIRECT_MESSAGE) == [] and carol.frames(p.DIRECT_MESSAGE) == []
    with pytest.raises(p.ProtocolError):
        await hub.direct(alice, "r", "nobody", {"text": "?"}, None)


async def test_leaving_tells_the_others_once_the_users_last_connection_is_gone(hub: RoomHub) -> None:
    alice, bob, bob_again = connection(1, "alice"), connection(2, "bob"), connection(3, "bob")
    for conn in (alice, bob, bob_again):
        await join(hub, conn)
    await hub.leave(bob, "r")
    assert alice.frames(p.USER_LEFT) == []
    await hub.leave(bob_again, "r")
    assert [f["user_id"] for f in alice.frames(p.USER_LEFT)] == ["bob"]
    await hub.publish(alice, "r", {"content": "still here?"}, None)
    assert bob.frames(p.MESSAGE) == [] and bob_again.frames(p.MESSAGE) == []
    await hub.leave(alice, "r")
    assert hub.local == {}


async def test_batched_connections_get_presence_changes_as_one_frame_per_tick(hub: RoomHub) -> None:
    watcher, each = connection(1, "watcher"), connection(2, "each")
    await join(hub, watcher, batched=True)
    await join(hub, each)  # the first change after a quiet spell goes at once
    others = [connection(10 + n, f"user{n}") for n in range(5)]
    for conn in others:
        await join(hub, conn)
    await hub.leave(others[0], "r")
    await hub.set_state(others[1], "r", p.encode({"cell": 3}))
    await asyncio.sleep(0.2)
    batches = watcher.frames(p.PRESENCE_BATCH)
    assert len(watcher.frames(p.USER_JOINED)) == 1  # its own, then batches only
    # its own join went at once (a quiet room); the rest in one batch, where user0 came and went
    assert [sorted(m["user_id"] for m in b["joined"]) for b in batches] == [
        ["watcher"],
        ["each", "user1", "user2", "user3", "user4"],
    ]
    assert [b["left"] for b in batches] == [[], []] and batches[-1]["member_count"] == 6
    assert [m["state"] for b in batches for m in b["joined"] if m["user_id"] == "user1"] == [{"cell": 3}]
    # the connection that did not ask for batches got each change as it happened
    assert len(each.frames(p.USER_JOINED)) == 6 and len(each.frames(p.USER_LEFT)) == 1
    assert len(each.frames(p.PRESENCE)) == 1


async def test_a_signaling_take_over_supersedes_the_older_connection(hub: RoomHub) -> None:
    old, new, other = connection(1, "alice"), connection(2, "alice"), connection(3, "bob")
    assert await hub.signaling_join(old, "r") is False
    assert await hub.signaling_join(other, "r") is False
    assert await hub.signaling_join(new, "r") is True
    assert old.superseded_in == [p.SIGNALING_ROOM_PREFIX + "r"] and new.superseded_in == []
    assert [f["code"] for f in old.frames(p.ERROR)] == [p.ErrorCode.SUPERSEDED]
    assert other.frames() == [] and list(await hub.peers("r")) == ["alice", "bob"]
