"""What every broker backend must do: one suite, run against each backend by its factory.

A backend is proven by passing it: MemoryBroker, SQLiteBroker (on a file of its own, which
each test then opens again, as a restarted server would, and checks against what it kept)
and RedisBroker (on the shared Redis, under a prefix of its own, deleted afterwards)
today; a new backend adds one factory to `BACKENDS`. The tests speak only the interfaces (broker/interfaces.py) and check what the
room logic relies on: seqs, history and epochs, dedup claims, presence, access records
with their budgets, names and shared documents, with two identities where they share a
behaviour (one of them, mallory, trying to misuse it).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from broker_support import dedup, entry, message
from servers import drop_prefix, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne_ext.access import RoomAccess
from iavicenne_ext.broker import MemoryBroker, search
from iavicenne_ext.broker.base import CreateOutcome, JoinOutcome, MemberOutcome, ReadState
from iavicenne_ext.broker.events import (
    BrokerEvent,
    DirectFrame,
    Eviction,
    Moderation,
    PersonalFrame,
    PresenceFrame,
    Publication,
    RoomFrame,
    Supersede,
)
from iavicenne_ext.broker.interfaces import Broker
from iavicenne_ext.broker.search import Found
from iavicenne_ext.broker.sqlite import SQLiteBroker

#: the budgets a test does not set
DEFAULTS: dict[str, Any] = {"history_size": 100, "history_ttl": 60.0, "dedup_ttl": 60.0}


class Events(list[BrokerEvent]):
    """What a backend delivered to its hub, in order."""

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self) < count:
            assert loop.time() < deadline, f"{count} events not delivered within {timeout} s; got {self}"
            await asyncio.sleep(0.01)


#: budgets -> a started backend with its delivered events, closed (and its data gone) at the end
Backend = Callable[..., AbstractAsyncContextManager[tuple[Broker, Events]]]


@asynccontextmanager
async def memory_backend(**budgets: Any) -> AsyncIterator[tuple[Broker, Events]]:
    broker = MemoryBroker(**{**DEFAULTS, **budgets})
    events = Events()
    broker.attach(events.append)
    await broker.start()
    try:
        yield broker, events
    finally:
        await broker.close()


@asynccontextmanager
async def redis_backend(**budgets: Any) -> AsyncIterator[tuple[Broker, Events]]:
    from iavicenne_ext.broker.redis import RedisBroker  # redis is only imported when used

    url, prefix = shared_redis_url(), unique_prefix("contract")
    broker = RedisBroker(url=url, prefix=prefix, socket_timeout=2.0, **{**DEFAULTS, **budgets})
    events = Events()
    broker.attach(events.append)
    await broker.start()
    try:
        yield broker, events
    finally:
        await broker.close()
        drop_prefix(url, prefix)


@asynccontextmanager
async def sqlite_backend(**budgets: Any) -> AsyncIterator[tuple[Broker, Events]]:
    """A store on a file of its own; at the end it is opened again, as after a restart, and
    must hold what the broker held: every room's history (seq and epoch), every access
    record, every shared document."""
    with tempfile.TemporaryDirectory(prefix="iavicenne-store-") as folder:
        path = str(Path(folder) / "rooms.sqlite3")
        settings = {**DEFAULTS, **budgets}
        broker = SQLiteBroker(path=path, **settings)
        events = Events()
        broker.attach(events.append)
        await broker.start()
        try:
            yield broker, events
        finally:
            kept = await _kept(broker)
            await broker.close()
        again = SQLiteBroker(path=path, **settings)
        await again.start()
        try:
            assert await _kept(again) == kept, "the store did not keep what the broker held"
        finally:
            await again.close()


async def _kept(broker: Broker) -> dict[str, Any]:
    """What a restart must keep: each room's history, the access records, the documents."""
    rooms = sorted(broker._rooms)  # type: ignore[attr-defined]
    histories = {room: await broker.history(room, 0, None) for room in rooms}
    documents = {room: await broker.shared_load(room) for room in rooms}
    return {
        "history": {room: (h.messages, h.seq, h.epoch) for room, h in histories.items()},
        "access": await broker.all_access(),
        "shared": {room: (d.updates, d.size, d.seq, d.life) for room, d in documents.items()},
    }


BACKENDS: dict[str, Backend] = {"memory": memory_backend, "sqlite": sqlite_backend, "redis": redis_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


def seqs(frames: list[bytes]) -> list[int]:
    return [json.loads(frame)["seq"] for frame in frames]


def private(room: str, owner: str, *members: str) -> RoomAccess:
    return RoomAccess(room, p.AccessKind.PRIVATE, owner, None, frozenset(members))


# -- messages and history ----------------------------------------------------------------
async def test_publish_numbers_messages_delivers_them_in_order_and_keeps_them(backend: Backend) -> None:
    async with backend() as (broker, events):
        await broker.subscribe("r")
        frames = [message(f"m{n}") for n in range(1, 4)]
        published = [await broker.publish("r", frame) for frame in frames]
        assert [(m.seq, m.duplicate) for m in published] == [(1, False), (2, False), (3, False)]
        await events.wait(3)
        assert events == [Publication("r", p.with_seq(n, frame), n) for n, frame in enumerate(frames, 1)]
        history = await broker.history("r", 0, None)
        assert seqs(history.messages) == [1, 2, 3] and history.seq == 3 and history.recovered
        assert history.messages == [e.frame for e in events]
        assert await broker.room_exists("r") and not await broker.room_exists("never")


async def test_history_answers_what_followed_a_seq_of_the_same_epoch(backend: Backend) -> None:
    async with backend() as (broker, _):
        for n in range(5):
            await broker.publish("r", message(f"m{n}"))
        position = await broker.history("r", None, None)
        assert (position.messages, position.seq, position.recovered) == ([], 5, True)
        since = await broker.history("r", 3, position.epoch)
        assert seqs(since.messages) == [4, 5] and since.recovered and since.epoch == position.epoch
        other = await broker.history("r", 3, "another-life")
        assert seqs(other.messages) == [1, 2, 3, 4, 5] and not other.recovered
        fresh = await broker.history("fresh", None, None)
        assert fresh.seq == 0 and fresh.epoch != position.epoch


async def test_history_says_plainly_when_what_followed_is_gone(backend: Backend) -> None:
    async with backend(history_size=3) as (broker, _):
        for n in range(6):
            await broker.publish("r", message(f"m{n}"))
        gap = await broker.history("r", 1, None)
        assert seqs(gap.messages) == [4, 5, 6] and not gap.recovered
        kept = await broker.history("r", 3, None)
        assert seqs(kept.messages) == [4, 5, 6] and kept.recovered


async def test_a_replay_keeps_the_newest_within_max_replay_bytes(backend: Backend) -> None:
    size = len(p.with_seq(1, message("m0")))
    async with backend(max_replay_bytes=2 * size) as (broker, _):
        for n in range(5):
            await broker.publish("r", message(f"m{n}"))
        cut = await broker.history("r", 0, None)
        assert seqs(cut.messages) == [4, 5] and not cut.recovered


async def test_a_dedup_key_is_published_once(backend: Backend) -> None:
    async with backend() as (broker, _):
        first = await broker.publish("r", message("once"), dedup=dedup("r", "alice", "alice", "a-1"))
        again = await broker.publish("r", message("once"), dedup=dedup("r", "alice", "alice", "a-1"))
        assert (first.seq, first.duplicate) == (1, False) and (again.seq, again.duplicate) == (1, True)
        assert seqs((await broker.history("r", 0, None)).messages) == [1]


async def test_nobody_burns_another_identitys_refs(backend: Backend) -> None:
    """mallory sends with alice's user_id and ref: hers are her own keys, alice's still go through once."""
    async with backend() as (broker, _):
        stolen = await broker.publish("r", message("x"), dedup=dedup("r", "mallory", "alice", "a-1"))
        assert not stolen.duplicate
        assert await broker.claim(dedup("r", "mallory", "alice", "d-1", direct=True))
        mine = await broker.publish("r", message("hi"), dedup=dedup("r", "alice", "alice", "a-1"))
        assert (mine.seq, mine.duplicate) == (2, False)
        assert await broker.claim(dedup("r", "alice", "alice", "d-1", direct=True))


async def test_a_claim_holds_until_released_by_its_owner(backend: Backend) -> None:
    async with backend() as (broker, _):
        key = dedup("r", "alice", "alice", "d-1", direct=True)
        assert await broker.claim(key) and not await broker.claim(key)
        # mallory's release names her own key: alice's claim stands
        await broker.release(dedup("r", "mallory", "alice", "d-1", direct=True))
        assert not await broker.claim(key)
        await broker.release(key)
        assert await broker.claim(key)
        # a direct message's ref is apart from the room's published refs
        assert not (await broker.publish("r", message("m"), dedup=dedup("r", "alice", "alice", "d-1"))).duplicate


async def test_each_identity_keeps_its_own_dedup_budget(backend: Backend) -> None:
    async with backend(max_dedup_per_identity=3) as (broker, _):
        assert await broker.claim(dedup("r", "alice", "alice", "a-1", direct=True))
        for n in range(6):  # mallory's oldest go, never alice's
            assert await broker.claim(dedup("r", "mallory", "m", f"m-{n}", direct=True))
        assert not await broker.claim(dedup("r", "alice", "alice", "a-1", direct=True))
        assert not await broker.claim(dedup("r", "mallory", "m", "m-5", direct=True))
        assert await broker.claim(dedup("r", "mallory", "m", "m-0", direct=True))


async def test_emitted_events_reach_the_hub_as_they_were_sent(backend: Backend) -> None:
    async with backend() as (broker, events):
        await broker.subscribe("r")
        frame = p.encoded(p.ERROR, code=p.ErrorCode.SUPERSEDED, message="x")
        sent: list[Any] = [
            RoomFrame("r", frame),
            RoomFrame("r", frame, skip="s:1"),
            PresenceFrame("r", frame, skip="s:2"),
            PresenceFrame("r", frame),
            DirectFrame("r", frame, to="bob"),
            DirectFrame("r", frame, to="bob", skip="s:3"),
            Supersede("r", frame, to="bob", skip="s:4"),
            Eviction("r", frame, username="mallory"),
            PersonalFrame("r", frame, username="alice", skip="s:5"),
            Moderation("r", frame, username="mallory", muted=True),
            Moderation("r", frame, username="mallory", muted=False),
        ]
        for event in sent:
            await broker.emit(event)
        await events.wait(len(sent))
        assert events == sent
        await broker.unsubscribe("r")


# -- presence -------------------------------------------------------------------------------
async def test_a_user_is_present_while_any_of_its_connections_is(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.join("r", entry("s:1", "alice", "alice")) is JoinOutcome.FIRST
        assert await broker.join("r", entry("s:2", "alice", "alice")) is JoinOutcome.AGAIN
        assert await broker.join("r", entry("s:3", "bob", "bob")) is JoinOutcome.FIRST
        members = await broker.members("r")
        assert [(m.user_id, m.connections) for m in members] == [("alice", 2), ("bob", 1)]
        assert sorted(e.conn for e in await broker.entries("r")) == ["s:1", "s:2", "s:3"]
        assert await broker.member_count("r") == 2 and await broker.is_present("r", "alice")
        assert await broker.leave("r", "s:1", "alice") is False
        assert await broker.is_present("r", "alice")
        assert await broker.leave("r", "s:2", "alice") is True
        assert not await broker.is_present("r", "alice") and await broker.member_count("r") == 1
        assert list(await broker.rooms()) == ["r"]
        assert await broker.leave("r", "s:3", "bob") is True
        assert await broker.rooms() == {}


async def test_a_user_id_and_its_lookalikes_belong_to_the_identity_holding_it(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.join("r", entry("s:1", "bob", "bob")) is JoinOutcome.FIRST
        assert await broker.join("r", entry("s:2", "bob", "mallory")) is JoinOutcome.TAKEN
        assert await broker.join("r", entry("s:3", "Bob", "mallory")) is JoinOutcome.TAKEN
        assert await broker.join("other", entry("s:4", "bob", "mallory")) is JoinOutcome.FIRST
        assert [e.conn for e in await broker.entries("r")] == ["s:1"]
        await broker.leave("r", "s:1", "bob")
        assert await broker.join("r", entry("s:2", "bob", "mallory")) is JoinOutcome.FIRST


async def test_a_users_state_is_the_newest_of_its_connections(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.join("r", entry("s:1", "alice", "alice"))
        await broker.join("r", entry("s:2", "alice", "alice"))
        await broker.set_state("r", "s:2", p.encode({"cell": 2}), 20.0)
        await broker.set_state("r", "s:1", p.encode({"cell": 1}), 10.0)
        [member] = await broker.members("r")
        assert json.loads(member.state) == {"cell": 2}
        states = {e.conn: json.loads(e.state) for e in await broker.entries("r")}
        assert states == {"s:1": {"cell": 1}, "s:2": {"cell": 2}}


async def test_members_come_in_pages_in_user_id_order(backend: Backend) -> None:
    async with backend() as (broker, _):
        for n, user in enumerate(["dan", "alice", "eve", "bob", "carol"]):
            await broker.join("r", entry(f"s:{n}", user, user))
        first = await broker.members_page("r", "", 2)
        assert [json.loads(m)["user_id"] for m in first.members] == ["alice", "bob"]
        assert (first.count, first.next_after) == (5, "bob")
        second = await broker.members_page("r", "bob", 2)
        assert [json.loads(m)["user_id"] for m in second.members] == ["carol", "dan"]
        last = await broker.members_page("r", "dan", 2)
        assert [json.loads(m)["user_id"] for m in last.members] == ["eve"] and last.next_after is None
        assert (await broker.members_page("empty", "", 2)).count == 0
        # a backend that knows the count without waiting knows the same count
        assert broker.member_count_now("r") in (None, 5) and broker.member_count_now("empty") in (None, 0)


# -- access records -------------------------------------------------------------------------
async def test_access_records_are_created_once_within_each_owners_budget(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.create_access(private("a", "alice"), max_per_owner=2) is CreateOutcome.CREATED
        assert await broker.create_access(private("a", "mallory"), max_per_owner=2) is CreateOutcome.EXISTS
        assert await broker.create_access(private("b", "alice"), max_per_owner=2) is CreateOutcome.CREATED
        assert await broker.create_access(private("c", "alice"), max_per_owner=2) is CreateOutcome.BUDGET
        assert await broker.create_access(private("c", "mallory"), max_per_owner=2) is CreateOutcome.CREATED
        assert await broker.get_access("a") == private("a", "alice")
        assert sorted(await broker.all_access()) == ["a", "b", "c"]
        assert await broker.delete_access("b") and not await broker.delete_access("b")
        assert await broker.create_access(private("d", "alice"), max_per_owner=2) is CreateOutcome.CREATED


async def test_a_room_in_use_cannot_be_made_private(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.join("busy", entry("s:1", "bob", "bob"))
        await broker.publish("said", message("m"))
        await broker.join(p.SIGNALING_ROOM_PREFIX + "peers", entry("s:2", "p1", "bob"))
        for room in ("busy", "said", "peers"):
            assert await broker.create_access(private(room, "mallory"), max_per_owner=5) is CreateOutcome.EXISTS
        assert await broker.all_access() == {}


async def test_members_of_a_private_room_are_invited_within_max_members(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.create_access(private("a", "alice"), max_per_owner=5)
        outcome, access = await broker.add_member("a", "bob", max_members=2)
        assert outcome is MemberOutcome.DONE and access is not None and access.members == {"bob"}
        assert (await broker.add_member("a", "carol", max_members=2))[0] is MemberOutcome.DONE
        assert (await broker.add_member("a", "dan", max_members=2))[0] is MemberOutcome.FULL
        assert (await broker.add_member("a", "bob", max_members=2))[0] is MemberOutcome.DONE  # already in
        outcome, access = await broker.remove_member("a", "bob")
        assert outcome is MemberOutcome.DONE and access is not None and access.members == {"carol"}
        assert (await broker.add_member("nowhere", "bob", max_members=2))[0] is MemberOutcome.MISSING
        assert (await broker.remove_member("nowhere", "bob"))[0] is MemberOutcome.MISSING


async def test_the_owners_mutes_and_removals_are_kept_with_the_record(backend: Backend) -> None:
    async with backend() as (broker, _):
        group = RoomAccess("g", p.AccessKind.GROUP, "alice", "oncology")
        await broker.create_access(group, max_per_owner=5)
        await broker.create_access(private("a", "alice", "bob", "carol"), max_per_owner=5)
        outcome, access = await broker.moderate("g", "bob", p.ModerationAction.MUTE)
        assert (
            outcome is MemberOutcome.DONE and access is not None and (set(access.muted), set(access.removed)) == ({"bob"}, set())
        )
        await broker.moderate("g", "carol", p.ModerationAction.REMOVE)
        await broker.moderate("g", "mallory", p.ModerationAction.MUTE)
        await broker.moderate("g", "mallory", p.ModerationAction.UNMUTE)
        access = await broker.get_access("g")
        assert access is not None and (set(access.muted), set(access.removed), access.group) == ({"bob"}, {"carol"}, "oncology")
        assert (await broker.all_access())["g"] == access

        # removed from a private room: off the invited members too, back with an invitation
        outcome, access = await broker.moderate("a", "bob", p.ModerationAction.REMOVE)
        assert access is not None and (set(access.members), set(access.removed)) == ({"carol"}, {"bob"})
        outcome, access = await broker.add_member("a", "bob", max_members=5)
        assert access is not None and (set(access.members), set(access.removed)) == ({"bob", "carol"}, set())
        await broker.moderate("a", "carol", p.ModerationAction.REMOVE)
        outcome, access = await broker.moderate("a", "carol", p.ModerationAction.READMIT)
        assert access is not None and (set(access.members), set(access.removed)) == ({"bob"}, set())  # readmitted, not invited

        assert await broker.moderate("nowhere", "bob", p.ModerationAction.MUTE) == (MemberOutcome.MISSING, None)
        # a record deleted and made again starts with nobody muted or removed
        assert await broker.delete_access("g")
        await broker.create_access(group, max_per_owner=5)
        assert await broker.get_access("g") == group


async def test_deleting_a_record_forgets_what_was_said_in_the_room(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.create_access(private("a", "alice"), max_per_owner=5)
        await broker.publish("a", message("secret"))
        before = await broker.history("a", None, None)
        assert await broker.delete_access("a")
        assert await broker.get_access("a") is None
        after = await broker.history("a", 0, before.epoch)
        assert after.messages == [] and not (after.epoch == before.epoch and after.recovered)


# -- kept messages rewritten in place, read positions -------------------------------------------
def rewritten(seq: int, text: str) -> bytes:
    return p.with_seq(seq, message(text))


async def test_a_kept_message_is_rewritten_in_place_only_from_what_was_read(backend: Backend) -> None:
    """alice's edit replaces message 2 where it was; mallory's rewrite from a stale copy changes nothing."""
    async with backend() as (broker, _):
        for n in range(1, 4):
            await broker.publish("r", message(f"m{n}"))
        kept = await broker.kept_message("r", 2)
        assert kept is not None and json.loads(kept)["message"] == {"content": "m2"} and json.loads(kept)["seq"] == 2
        edited = rewritten(2, "m2, edited")
        assert await broker.rewrite_message("r", 2, kept, edited)
        assert not await broker.rewrite_message("r", 2, kept, rewritten(2, "mallory's stale overwrite"))
        assert await broker.kept_message("r", 2) == edited
        history = await broker.history("r", 0, None)
        assert seqs(history.messages) == [1, 2, 3] and history.recovered
        assert history.messages[1] == edited and b'm2"' not in b"".join(history.messages)
        assert [json.loads(f)["seq"] for f in (await broker.history("r", 1, history.epoch)).messages] == [2, 3]
        assert await broker.kept_message("r", 9) is None and await broker.kept_message("nowhere", 1) is None
        assert not await broker.rewrite_message("r", 9, edited, edited)


async def test_rewritten_messages_are_trimmed_and_replayed_in_seq_order(backend: Backend) -> None:
    async with backend(history_size=3) as (broker, _):
        for n in range(1, 4):
            await broker.publish("r", message(f"m{n}"))
        for seq in (1, 3):  # the oldest and the newest of the kept three
            kept = await broker.kept_message("r", seq)
            assert kept is not None and await broker.rewrite_message("r", seq, kept, rewritten(seq, f"e{seq}"))
        history = await broker.history("r", 0, None)
        assert [json.loads(f)["message"]["content"] for f in history.messages] == ["e1", "m2", "e3"]
        await broker.publish("r", message("m4"))  # history_size: the rewritten oldest goes first
        history = await broker.history("r", 0, None)
        assert [json.loads(f)["message"]["content"] for f in history.messages] == ["m2", "e3", "m4"]
        assert seqs(history.messages) == [2, 3, 4] and not history.recovered
        assert seqs((await broker.history("r", 1, history.epoch)).messages) == [2, 3, 4]
        assert (await broker.history("r", 1, history.epoch)).recovered
        assert await broker.kept_message("r", 1) is None


async def test_a_rewritten_message_counts_its_new_size_in_the_budgets(backend: Backend) -> None:
    size = len(p.with_seq(1, message("m1")))
    async with backend(max_replay_bytes=3 * size) as (broker, _):
        for n in range(1, 4):
            await broker.publish("r", message(f"m{n}"))
        kept = await broker.kept_message("r", 3)
        assert kept is not None and await broker.rewrite_message("r", 3, kept, rewritten(3, "x" * size))
        cut = await broker.history("r", 0, None)
        assert seqs(cut.messages) == [2, 3] and not cut.recovered


async def test_deleting_a_record_forgets_the_rewritten_messages_and_read_positions(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.create_access(private("a", "alice"), max_per_owner=5)
        await broker.publish("a", message("secret"))
        kept = await broker.kept_message("a", 1)
        assert kept is not None and await broker.rewrite_message("a", 1, kept, rewritten(1, "still secret"))
        await broker.mark_read("a", "alice", 1)
        assert await broker.delete_access("a")
        assert await broker.kept_message("a", 1) is None
        assert (await broker.history("a", 0, None)).messages == []
        assert (await broker.read_state("a", "alice")).read == 0


async def test_read_positions_are_each_persons_own_and_only_move_forward(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.read_state("r", "alice") == ReadState("r", 0, 0, "")
        for n in range(1, 6):
            await broker.publish("r", message(f"m{n}"))
        state = await broker.mark_read("r", "alice", 3)
        assert (state.read, state.seq, state.unread) == (3, 5, 2) and state.epoch
        assert (await broker.mark_read("r", "alice", 1)).read == 3  # never back
        assert (await broker.mark_read("r", "alice", 99)).read == 5  # never past the last seq
        assert (await broker.read_state("r", "alice")).unread == 0
        mallory = await broker.read_state("r", "mallory")  # alice's reading is not mallory's
        assert (mallory.read, mallory.unread) == (0, 5)
        assert await broker.read_rooms("alice") == ["r"] and await broker.read_rooms("mallory") == []
        await broker.publish("r", message("m6"))
        assert (await broker.read_state("r", "alice")).unread == 1


# -- names ------------------------------------------------------------------------------------
async def test_a_names_skeleton_belongs_to_the_first_identity_seen_with_it(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.identity_named("bob") is None
        await broker.remember_identity("bob", "bob")
        await broker.remember_identity("Bob", "bob")  # mallory's lookalike comes second
        assert await broker.identity_named("bob") == "bob"


# -- shared documents ---------------------------------------------------------------------------
async def test_a_shared_log_grows_within_its_budget_and_compacts_once(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert (await broker.shared_load("d")).updates == []
        one = await broker.shared_append("d", b"one", max_bytes=8)
        two = await broker.shared_append("d", b"two", max_bytes=8)
        assert (one.seq, one.count, two.seq, two.count, two.life) == (1, 1, 2, 2, one.life) and one.life
        assert (await broker.shared_append("d", b"three", max_bytes=8)).refused == "max_shared_bytes"
        log = await broker.shared_load("d")
        assert (log.updates, log.size, log.seq, log.whole) == ([b"one", b"two"], 6, 2, True)
        assert await broker.shared_compact("d", log.life, 2, b"12")
        assert not await broker.shared_compact("d", log.life, 1, b"stale")  # already merged beyond it
        assert not await broker.shared_compact("d", "another life", 2, b"stale")
        compacted = await broker.shared_load("d")
        assert (compacted.updates, compacted.size, compacted.seq) == ([b"12"], 2, 2)
        three = await broker.shared_append("d", b"three", max_bytes=8)
        assert (three.seq, three.count) == (3, 2)
        await broker.shared_delete("d")
        assert (await broker.shared_load("d")).updates == []


async def test_a_shared_log_answers_what_was_appended_since_an_update(backend: Backend) -> None:
    """What a server keeping the document needs: the updates after the last it applied, not the whole log."""
    async with backend() as (broker, _):
        for update in (b"a", b"b", b"c"):
            await broker.shared_append("d", update, max_bytes=100)
        life = (await broker.shared_load("d")).life
        tail = await broker.shared_load("d", life=life, since=1)
        assert (tail.updates, tail.seq, tail.whole, tail.size) == ([b"b", b"c"], 3, False, 3)
        assert (await broker.shared_load("d", life=life, since=3)).updates == []
        assert await broker.shared_compact("d", life, 2, b"ab")
        await broker.shared_append("d", b"d", max_bytes=100)
        assert (await broker.shared_load("d", life=life, since=2)).updates == [b"c", b"d"]
        # behind the compaction, or from another life of the document: the whole log
        behind = await broker.shared_load("d", life=life, since=1)
        assert (behind.updates, behind.whole) == ([b"ab", b"c", b"d"], True)
        assert (await broker.shared_load("d", life="gone", since=3)).whole
        # a document made anew is another life, whatever its count
        await broker.shared_delete("d")
        for update in (b"x", b"y", b"z", b"w", b"v"):
            again = await broker.shared_append("d", update, max_bytes=100)
        assert again.life != life
        assert (await broker.shared_load("d", life=life, since=3)).updates == [b"x", b"y", b"z", b"w", b"v"]


async def test_shared_documents_of_all_rooms_stay_within_their_total(backend: Backend) -> None:
    """mallory fills documents under new names; beyond the total she is refused and bob's document is intact."""
    async with backend(shared_bytes_total=20) as (broker, _):
        assert (await broker.shared_append("bob", b"bob's notes", max_bytes=100)).seq == 1
        assert (await broker.shared_append("m1", b"12345", max_bytes=100)).seq == 1
        refused = await broker.shared_append("m2", b"123456", max_bytes=100)
        assert (refused.seq, refused.refused) == (0, "max_shared_bytes_total")
        assert (await broker.shared_load("m2")).updates == []
        assert (await broker.shared_load("bob")).updates == [b"bob's notes"]
        # a deleted document gives its bytes back; a compaction counts what it changed
        await broker.shared_delete("m1")
        assert (await broker.shared_append("m2", b"123456", max_bytes=100)).seq == 1
        life = (await broker.shared_load("bob")).life
        assert await broker.shared_compact("bob", life, 1, b"bob")
        assert (await broker.shared_append("m3", b"1234567", max_bytes=100)).seq == 1
        assert (await broker.shared_append("m4", b"12345", max_bytes=100)).refused == "max_shared_bytes_total"


async def test_a_shared_document_expires_with_its_room(backend: Backend) -> None:
    async with backend(history_ttl=0.3) as (broker, _):
        await broker.join("p", entry("c1", "mallory", "mallory"))
        await broker.shared_append("p", b"mallory was here", max_bytes=100)
        await asyncio.sleep(0.5)
        assert (await broker.shared_load("p")).updates == [b"mallory was here"]  # kept while she is in
        await broker.leave("p", "c1", "mallory")
        await asyncio.sleep(0.6)
        assert (await broker.shared_load("p")).updates == []
        # a document written in a room nobody is in lives as long as such a room
        await broker.shared_append("q", b"left behind", max_bytes=100)
        await asyncio.sleep(0.6)
        assert (await broker.shared_load("q")).updates == []


async def test_a_private_room_never_inherits_a_public_document(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.shared_append("p", b"mallory's", max_bytes=100)
        outcome = await broker.create_access(private("p", "alice"), max_per_owner=2)
        # refused while the public room lives on; created, it starts with no document
        assert outcome is CreateOutcome.EXISTS or (await broker.shared_load("p")).updates == []


# -- presence of one user through several connections ------------------------------------
async def test_a_member_folds_its_own_connections_only(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.join("r", entry("c1", "alice", "alice"))
        await broker.join("r", entry("m1", "mallory", "mallory"))
        assert await broker.join("r", entry("c2", "alice", "alice")) is JoinOutcome.AGAIN
        await broker.set_state("r", "c2", p.encode({"status": "kernel"}), 2.0)
        alice = await broker.member("r", "alice")
        assert alice is not None and alice.connections == 2 and json.loads(alice.state) == {"status": "kernel"}
        await broker.set_state("r", "c1", p.encode({"status": "lab"}), 3.0)
        await broker.set_state("r", "m1", p.encode({"status": "mallory's"}), 9.0)  # another user: not alice's
        alice = await broker.member("r", "alice")
        assert alice is not None and json.loads(alice.state) == {"status": "lab"}
        assert not await broker.leave("r", "c1", "alice")
        alice = await broker.member("r", "alice")  # one connection left, its state the user's now
        assert alice is not None and alice.connections == 1 and json.loads(alice.state) == {"status": "kernel"}
        assert [m.to_json() for m in await broker.members("r") if m.user_id == "alice"] == [alice.to_json()]
        assert await broker.member("r", "bob") is None and await broker.member("nowhere", "alice") is None


# -- continuity: remembered rooms and kept direct messages ---------------------------------
async def test_rooms_are_remembered_per_identity_newest_first_and_forgotten(backend: Backend) -> None:
    async with backend(max_remembered_rooms=3) as (broker, _):
        for at, room in enumerate(["a", "b", "c"]):
            await broker.remember_room("alice", room, float(at))
        await broker.remember_room("mallory", "m", 1.0)
        await broker.remember_room("alice", "a", 10.0)  # joined again: the newest
        assert await broker.remembered_rooms("alice") == ["a", "c", "b"]
        await broker.remember_room("alice", "d", 11.0)  # over the budget: the oldest goes
        assert await broker.remembered_rooms("alice") == ["d", "a", "c"]
        assert await broker.forget_room("alice", "c") and not await broker.forget_room("alice", "c")
        assert not await broker.forget_room("mallory", "a")  # nobody forgets another's rooms
        assert await broker.remembered_rooms("alice") == ["d", "a"]
        assert await broker.remembered_rooms("mallory") == ["m"] and await broker.remembered_rooms("nobody") == []


def direct(sender: str, to: str, text: str) -> bytes:
    return p.encoded(p.DIRECT_MESSAGE, user_id=sender, to=to, message={"content": text}, room="r", identity={"username": sender})


async def test_direct_messages_are_kept_per_conversation_and_replayed_to_its_two_people(backend: Backend) -> None:
    async with backend() as (broker, _):
        assert await broker.direct_replay("r", "alice", 0) == ([], 0)
        first = await broker.direct_keep("r", "alice", "bob", direct("alice", "bob", "hi bob"))
        second = await broker.direct_keep("r", "bob", "alice", direct("bob", "alice", "hi alice"))
        other = await broker.direct_keep("r", "mallory", "carol", direct("mallory", "carol", "psst"))
        elsewhere = await broker.direct_keep("s", "alice", "bob", direct("alice", "bob", "in s"))
        assert (first, second, other) == (1, 2, 3) and elsewhere == 1  # one counter per room

        def texts(frames: list[bytes]) -> list[tuple[int, str]]:
            return [(json.loads(f)["direct_seq"], json.loads(f)["message"]["content"]) for f in frames]

        for username in ("alice", "bob"):
            frames, last = await broker.direct_replay("r", username, 0)
            assert texts(frames) == [(1, "hi bob"), (2, "hi alice")] and last == 3
        frames, _ = await broker.direct_replay("r", "alice", 1)
        assert texts(frames) == [(2, "hi alice")]
        frames, _ = await broker.direct_replay("r", "mallory", 0)  # her own conversation only
        assert texts(frames) == [(3, "psst")]
        assert (await broker.direct_replay("r", "eve", 0))[0] == []
        await broker.direct_forget("r")  # the room's access record was deleted
        assert (await broker.direct_replay("r", "alice", 0))[0] == []
        assert texts((await broker.direct_replay("s", "bob", 0))[0]) == [(1, "in s")]
        # the counter never goes back: a client's direct_since stays meaningful
        assert await broker.direct_keep("r", "alice", "bob", direct("alice", "bob", "again")) == 4


async def test_a_conversation_keeps_its_newest_within_its_budgets_and_no_other_pays(backend: Backend) -> None:
    async with backend(direct_history_size=3, direct_history_bytes=100_000) as (broker, _):
        await broker.direct_keep("r", "alice", "bob", direct("alice", "bob", "kept"))
        for n in range(10):  # mallory floods her conversation with bob
            await broker.direct_keep("r", "mallory", "bob", direct("mallory", "bob", f"flood {n}"))
        alice_frames, _ = await broker.direct_replay("r", "alice", 0)
        assert [json.loads(f)["message"]["content"] for f in alice_frames] == ["kept"]
        bob_frames, _ = await broker.direct_replay("r", "bob", 0)
        assert [json.loads(f)["message"]["content"] for f in bob_frames] == ["kept", "flood 7", "flood 8", "flood 9"]
    size = len(direct("alice", "bob", "x" * 100))
    async with backend(direct_history_bytes=2 * size + 10) as (broker, _):
        for n in range(4):
            await broker.direct_keep("r", "alice", "bob", direct("alice", "bob", str(n) * 100))
        frames, _ = await broker.direct_replay("r", "bob", 0)
        assert [json.loads(f)["message"]["content"][0] for f in frames] == ["2", "3"]


async def test_a_conversation_is_forgotten_after_its_ttl(backend: Backend) -> None:
    async with backend(direct_history_ttl=0.3) as (broker, _):
        await broker.direct_keep("r", "alice", "bob", direct("alice", "bob", "soon gone"))
        assert len((await broker.direct_replay("r", "bob", 0))[0]) == 1
        await asyncio.sleep(0.6)
        assert (await broker.direct_replay("r", "bob", 0))[0] == []


# -- search (broker/search.py) -------------------------------------------------------------
def said(found: list[Found]) -> list[tuple[str, int, str]]:
    return [(hit.room, json.loads(hit.frame)["seq"], json.loads(hit.frame)["message"]["content"]) for hit in found]


def tombstone(seq: int) -> bytes:
    """A deleted message as message_edits.py keeps it: no text."""
    return p.with_seq(seq, p.encode({"type": p.MESSAGE, "user_id": "u", "message": {}, "deleted": {"by": "alice"}}))


async def test_a_search_finds_only_in_the_rooms_it_names_and_only_what_is_said_now(backend: Backend) -> None:
    """mallory names only the room it may read: alice's private words, however exactly
    quoted, are not found; an edit is found by its new text only, a deletion not at all."""
    async with backend(history_size=4) as (broker, _):
        outcome = await broker.create_access(private("alices", "alice"), max_per_owner=10)
        assert outcome is CreateOutcome.CREATED
        await broker.publish("alices", message("the launch code is swordfish"))
        await broker.publish("open", message("Swordfish is a fish"))
        await broker.publish("open", message("lunch at noon"))
        await broker.publish("open", message("a typo that gets edited"))
        await broker.publish("open", message("a regret that gets deleted"))
        terms = search.terms
        assert "alices" in await broker.searchable_rooms()
        assert said(await broker.search(["open"], terms("the launch code is swordfish"), 10)) == []
        assert said(await broker.search(["open"], terms("SWORD"), 10)) == [("open", 1, "Swordfish is a fish")]
        both = said(await broker.search(["open", "alices"], terms("swordfish"), 10))
        assert sorted(both) == [("alices", 1, "the launch code is swordfish"), ("open", 1, "Swordfish is a fish")]
        edited = rewritten(3, "a mistake now corrected")
        for seq, frame in ((3, edited), (4, tombstone(4))):
            kept = await broker.kept_message("open", seq)
            assert kept is not None and await broker.rewrite_message("open", seq, kept, frame)
        assert said(await broker.search(["open"], terms("typo"), 10)) == []
        assert said(await broker.search(["open"], terms("corrected mistake"), 10)) == [("open", 3, "a mistake now corrected")]
        assert said(await broker.search(["open"], terms("regret"), 10)) == []
        assert said(await broker.search(["open"], terms("gets"), 10)) == []
        # newest first, within the limit; what history_size trims is not found any more
        await broker.publish("open", message("a fish for lunch"))  # seq 5: seq 1 leaves the history
        assert said(await broker.search(["open"], terms("fish"), 10)) == [("open", 5, "a fish for lunch")]
        assert said(await broker.search(["open"], terms("lunch"), 1)) == [("open", 5, "a fish for lunch")]
        assert [seq for _, seq, _ in said(await broker.search(["open"], terms("lunch"), 10))] == [5, 2]


async def test_a_search_reads_fts_syntax_as_text(backend: Backend) -> None:
    async with backend() as (broker, _):
        await broker.publish("r", message('she said "near" OR far * NEAR(x y) AND NOT'))
        await broker.publish("r", message("something else entirely"))
        expected = {'"near"': [1], "OR": [1], "far *": [1], "NEAR(x y)": [1], 'NOT "': [1], "^far": [1], "-else": [2]}
        expected |= {"col:near": [], "near*": [1], "{text}: else": [], "x + y": [1], "'": []}
        for query, seqs_found in expected.items():
            found = said(await broker.search(["r"], search.terms(query), 10))
            assert [seq for _, seq, _ in found] == seqs_found, query
        assert said(await broker.search(["r"], search.terms("NEAR OR"), 10)) == [
            ("r", 1, 'she said "near" OR far * NEAR(x y) AND NOT')
        ]
        assert await broker.search(["r"], search.terms('"* ( ) -'), 10) == []  # no word: nothing
        assert await broker.search([], search.terms("near"), 10) == []
