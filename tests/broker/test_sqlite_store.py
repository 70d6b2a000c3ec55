"""The SQLite store beyond the contract (test_contract.py runs it there too): what a restart
keeps and what retention drops, on a real file opened again as a restarted server would.

Two identities: alice writes; mallory's resend of alice's ref, and her own, after a
restart, are hers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from broker_support import dedup, entry, message

from iavicenne_ext.broker import search
from iavicenne_ext.broker.sqlite import SQLiteBroker, StoreError

Open = Callable[..., Any]


@pytest.fixture
def store(tmp_path: Path) -> Open:
    """Open the store at one path, as each start of a server would (close it at the end)."""
    path = str(tmp_path / "rooms.sqlite3")

    @asynccontextmanager
    async def opened(**budgets: Any) -> AsyncIterator[SQLiteBroker]:
        broker = SQLiteBroker(path=path, **{"history_size": 100, "history_ttl": 600.0, "dedup_ttl": 600.0, **budgets})
        await broker.start()
        try:
            yield broker
        finally:
            await broker.close()

    return opened


async def test_a_restart_keeps_seq_epoch_and_refs(store: Open) -> None:
    async with store() as broker:
        for n in range(3):
            await broker.publish("r", message(f"m{n}"), dedup=dedup("r", "alice", "alice", f"a-{n}"))
        epoch = (await broker.history("r", None, None)).epoch
    async with store() as broker:
        since = await broker.history("r", 1, epoch)
        assert (since.epoch, since.seq, since.recovered) == (epoch, 3, True)
        said = [json.loads(frame) for frame in since.messages]
        assert [(m["seq"], m["message"]["content"]) for m in said] == [(2, "m1"), (3, "m2")]
        # alice's resend of a kept message is not published again; mallory's own ref is hers
        again = await broker.publish("r", message("m2"), dedup=dedup("r", "alice", "alice", "a-2"))
        assert (again.seq, again.duplicate) == (3, True)
        mallory = await broker.publish("r", message("x"), dedup=dedup("r", "mallory", "alice", "a-2"))
        assert (mallory.seq, mallory.duplicate) == (4, False)


async def test_what_the_budgets_drop_is_gone_from_the_file(store: Open, tmp_path: Path) -> None:
    async with store(history_size=3) as broker:
        for n in range(10):
            await broker.publish("r", message(f"m{n}"))
    db = sqlite3.connect(tmp_path / "rooms.sqlite3")
    try:
        assert [row[0] for row in db.execute("SELECT seq FROM messages ORDER BY seq")] == [8, 9, 10]
    finally:
        db.close()
    async with store(history_size=3) as broker:
        kept = await broker.history("r", 0, None)
        assert [int(f.split(b'"seq":')[1].split(b",")[0]) for f in kept.messages] == [8, 9, 10] and kept.seq == 10


async def test_history_days_drops_old_messages_while_running_and_at_start(store: Open) -> None:
    day = 86400.0
    async with store(history_days=0.5 / day, prune_interval=3600) as broker:
        await broker.publish("r", message("old"))
        await asyncio.sleep(0.7)
        await broker.publish("r", message("new"))
        await broker.prune()
        kept = await broker.history("r", 0, None)
        assert len(kept.messages) == 1 and b"new" in kept.messages[0] and kept.seq == 2
        await asyncio.sleep(0.7)
    async with store(history_days=0.5 / day) as broker:  # older than that by now: not loaded
        kept = await broker.history("r", 0, None)
        assert kept.messages == [] and kept.seq == 2  # the seq goes on: no gap for a client at 2


async def test_a_room_nobody_is_in_is_forgotten_history_ttl_after_across_a_restart(store: Open) -> None:
    async with store(history_ttl=0.5) as broker:
        await broker.join("r", entry("c:1", "alice", "alice"))
        await broker.publish("r", message("m"))
        await broker.leave("r", "c:1", "alice")
    await asyncio.sleep(0.7)
    async with store(history_ttl=0.5) as broker:
        assert not await broker.room_exists("r")
    async with store(history_ttl=0.5) as broker:  # and gone from the file
        assert not await broker.room_exists("r")


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "rooms.sqlite3"
    path.write_bytes(b"mallory was here" * 1000)
    with pytest.raises(StoreError) as refused:
        SQLiteBroker(path=str(path), history_size=10, history_ttl=1.0, dedup_ttl=1.0)
    assert str(path) in str(refused.value) and "IAvicenne.store_path" in str(refused.value)
    assert "\n" not in str(refused.value)


async def test_edits_deletions_and_read_positions_survive_a_restart(store: Open, tmp_path: Path) -> None:
    """alice's edit and her deletion are what a restarted server replays (the deleted text
    is gone from the file too); alice's and bob's read positions are each their own."""
    async with store() as broker:
        for n in range(3):
            await broker.publish("r", message(f"m{n}"))
        kept = await broker.kept_message("r", 1)
        assert kept is not None
        edited = json.loads(kept)
        edited["message"]["content"] = "m0, edited"
        assert await broker.rewrite_message("r", 1, kept, json.dumps(edited).encode())
        secret = await broker.kept_message("r", 2)
        assert secret is not None
        gone = json.loads(secret)
        gone["message"]["content"] = ""
        assert await broker.rewrite_message("r", 2, secret, json.dumps(gone).encode())
        await broker.mark_read("r", "alice", 3)
        await broker.mark_read("r", "bob", 1)
        # mallory's stale rewrite (from what she read before the edit) does not land
        assert not await broker.rewrite_message("r", 1, kept, message("forged"))
    async with store() as broker:
        replay = [json.loads(frame)["message"]["content"] for frame in (await broker.history("r", 0, None)).messages]
        assert replay == ["m0, edited", "", "m2"]
        assert (await broker.read_state("r", "alice")).read == 3
        assert (await broker.read_state("r", "bob")).read == 1
        assert (await broker.read_state("r", "mallory")).read == 0
        assert await broker.read_rooms("alice") == ["r"]
    with sqlite3.connect(tmp_path / "rooms.sqlite3") as db:
        frames = b"".join(bytes(row[0]) for row in db.execute("SELECT frame FROM messages"))
    assert b"m1" not in frames and b"m0, edited" in frames


async def test_remembered_rooms_and_direct_messages_survive_a_restart(store: Open) -> None:
    """alice's rooms and her conversation with bob are back after a restart, for the two of
    them only (mallory, in the same room, replays nothing); the direct_seq goes on."""
    async with store(max_remembered_rooms=2) as broker:
        for n, room in enumerate(("old", "r", "team")):
            await broker.remember_room("alice", room, 1000.0 + n)
        assert await broker.forget_room("alice", "team")
        await broker.direct_keep("r", "alice", "bob", message("between us"))
        await broker.direct_keep("r", "bob", "alice", message("ok"))
    async with store(max_remembered_rooms=2) as broker:
        assert await broker.remembered_rooms("alice") == ["r"]  # "old" went over the budget
        frames, last = await broker.direct_replay("r", "bob", 0)
        assert last == 2
        assert [json.loads(frame)["message"]["content"] for frame in frames] == ["between us", "ok"]
        assert await broker.direct_replay("r", "mallory", 0) == ([], 2)
        assert await broker.direct_keep("r", "alice", "bob", message("again")) == 3
        await broker.direct_forget("r")
    async with store() as broker:
        assert (await broker.direct_replay("r", "alice", 0))[0] == []


async def test_the_search_index_follows_the_file_and_a_store_without_one_is_indexed_at_start(store: Open, tmp_path: Path) -> None:
    """What a budget cuts leaves the index with its message (the triggers); a store written
    before the index existed (its tables dropped here) is indexed when it is opened."""
    async with store(history_size=2) as broker:
        for text in ("alpha one", "alpha two", "alpha three"):
            await broker.publish("r", message(text))
        await broker.publish("mallorys", message("alpha from mallory"))
    path = tmp_path / "rooms.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        assert db.execute("SELECT count(*) FROM message_search_rows").fetchone() == (3,)  # seq 1 cut
        assert db.execute("SELECT count(*) FROM message_search").fetchone() == (3,)
        for statement in (
            "DROP TRIGGER messages_search_put",
            "DROP TRIGGER messages_search_rewrite",
            "DROP TRIGGER messages_search_cut",
            "DROP TABLE message_search",
            "DROP TABLE message_search_rows",
            "DELETE FROM meta WHERE key = 'search'",
        ):
            db.execute(statement)
    async with store(history_size=2) as broker:
        found = await broker.search(["r"], search.terms("ALPHA"), 10)
        assert [json.loads(hit.frame)["message"]["content"] for hit in found] == ["alpha three", "alpha two"]
