"""`iavicenne-migrate` (iavicenne_ext/migrate.py): a server's store copied into Redis, read
back by a Redis broker as the servers of the new deployment will.

Two identities and a hostile one: alice owns the rooms, bob is invited to her private room
and has a direct conversation with her; mallory is invited nowhere and removed from the
public room, and must stay out of both after the move as before it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from broker_support import dedup, message
from servers import drop_prefix, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne_ext.access import RoomAccess, may_enter
from iavicenne_ext.broker.base import History
from iavicenne_ext.broker.redis import RedisBroker
from iavicenne_ext.broker.sqlite import SQLiteBroker
from iavicenne_ext.broker.sqlite.schema import open_store
from iavicenne_ext.identity import Identity

PUBLIC, PRIVATE, DM_ROOM = "lobby", "secret", "dm-room"
BUDGETS: dict[str, Any] = {"history_size": 1000, "history_ttl": 600.0, "dedup_ttl": 600.0}


@pytest.fixture
def target() -> Iterator[tuple[str, str]]:
    url, prefix = shared_redis_url(), unique_prefix("migrate")
    try:
        yield url, prefix
    finally:
        drop_prefix(url, prefix)


def migrate(store: Path, url: str, prefix: str, *more: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "iavicenne_ext.migrate", "--store", str(store), "--redis-url", url, "--redis-prefix", prefix]
    return subprocess.run([*command, "--quiet", *more], capture_output=True, text=True, timeout=120, check=False)


def document(text: str) -> bytes:
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    doc["notes"] = pycrdt.Text()
    doc["notes"] += text
    return doc.get_update()


async def fill(path: Path) -> dict[str, History]:
    """alice's public room, her private room with bob invited, an edit, a DM to bob and a
    shared document; what the store then holds, as the test expects it back."""
    store = SQLiteBroker(path=str(path), **BUDGETS)
    await store.start()
    try:
        # alice's public room, where she removed mallory; her private room, bob invited
        await store.create_access(RoomAccess(PUBLIC, p.AccessKind.PUBLIC, "alice"), max_per_owner=10)
        await store.moderate(PUBLIC, "mallory", p.ModerationAction.REMOVE)
        await store.remember_identity("alice", "alice")
        for n in range(5):
            await store.publish(PUBLIC, message(f"hello {n}"), dedup=dedup(PUBLIC, "alice", "alice", f"a-{n}"))
        kept = message("typo")
        edited = await store.publish(PUBLIC, kept, dedup=dedup(PUBLIC, "alice", "alice", "a-typo"))
        fixed = p.with_seq(edited.seq, message("fixed"))
        assert await store.rewrite_message(PUBLIC, edited.seq, p.with_seq(edited.seq, kept), fixed)
        private = RoomAccess(PRIVATE, p.AccessKind.PRIVATE, "alice")
        await store.create_access(private, max_per_owner=10)
        await store.add_member(PRIVATE, "bob", max_members=10)
        await store.publish(PRIVATE, message("for bob only"), dedup=dedup(PRIVATE, "alice", "alice", "s-1"))
        await store.mark_read(PUBLIC, "bob", 3)
        await store.remember_room("bob", PRIVATE, 1000.0)
        await store.direct_keep(DM_ROOM, "alice", "bob", message("psst, bob"))
        await store.shared_append(PUBLIC, document("shared notes"), max_bytes=1 << 20)
        public = await store.history(PUBLIC, 0, None)  # all of it
        secret = await store.history(PRIVATE, 0, None)
    finally:
        await store.close()
    return {PUBLIC: public, PRIVATE: secret}


async def test_a_store_moves_into_redis_with_its_past(tmp_path: Path, target: tuple[str, str]) -> None:
    url, prefix = target
    path = tmp_path / "rooms.sqlite3"
    before = await fill(path)

    moved = migrate(path, url, prefix)
    assert moved.returncode == 0, moved.stderr
    assert "2 rooms, 7 messages, 2 access records, 1 shared documents, 1 direct messages" in moved.stdout

    broker = RedisBroker(url=url, prefix=prefix, **BUDGETS)
    await broker.start()
    try:
        for name, was in before.items():
            # a client that was there recovers from where it was, same seqs: continuity, not a gap
            now = await broker.history(name, 0, was.epoch)
            assert (now.epoch, now.seq, now.recovered) == (was.epoch, was.seq, True)
            assert [json.loads(f) for f in now.messages] == [json.loads(f) for f in was.messages]
            since = await broker.history(name, 1, was.epoch)
            assert since.recovered and since.messages == now.messages[1:]
        said = [json.loads(f) for f in (await broker.history(PUBLIC, 0, None)).messages]
        assert [(f["seq"], f["message"]["content"]) for f in said] == [*((n + 1, f"hello {n}") for n in range(5)), (6, "fixed")]
        assert [json.loads(f)["message"]["content"] for f in before[PRIVATE].messages] == ["for bob only"]

        access = await broker.get_access(PRIVATE)
        assert access is not None and access.owner == "alice" and access.members == {"bob"}
        assert may_enter(Identity("bob", "bob", "bob"), access)
        assert not may_enter(Identity("mallory", "mallory", "mallory"), access)
        lobby = await broker.get_access(PUBLIC)
        assert lobby is not None and lobby.removed == {"mallory"}
        assert may_enter(Identity("bob", "bob", "bob"), lobby)
        assert not may_enter(Identity("mallory", "mallory", "mallory"), lobby)  # still out
        assert await broker.identity_named("alice") == "alice"  # her name stays hers

        shared = await broker.shared_load(PUBLIC)
        doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
        for update in shared.updates:
            doc.apply_update(update)
        assert str(doc.get("notes", type=pycrdt.Text)) == "shared notes"

        to_bob, _ = await broker.direct_replay(DM_ROOM, "bob", 0)
        assert [json.loads(f)["message"]["content"] for f in to_bob] == ["psst, bob"]
        to_mallory, _ = await broker.direct_replay(DM_ROOM, "mallory", 0)
        assert to_mallory == []

        assert await broker.remembered_rooms("bob") == [PRIVATE]
        assert (await broker.mark_read(PUBLIC, "bob", -1)).read == 3
    finally:
        await broker.close()

    again = migrate(path, url, prefix)  # the prefix has rooms now: refused, nothing mixed
    assert again.returncode != 0 and "already holds rooms" in again.stderr and "--force" in again.stderr
    forced = migrate(path, url, prefix, "--force")  # asked for: the store's rooms replace theirs
    assert forced.returncode == 0, forced.stderr


def test_a_store_in_use_is_refused_in_one_line(tmp_path: Path, target: tuple[str, str]) -> None:
    url, prefix = target
    path = tmp_path / "rooms.sqlite3"
    held = open_store(str(path))  # as a running server holds it
    try:
        held.execute("INSERT INTO rooms (room, epoch, seq) VALUES ('r', 'e', 0)")
        refused = migrate(path, url, prefix)
    finally:
        held.close()
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is locked" in lines[0] and str(path) in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr
    with sqlite3.connect(path) as db:  # and nothing of it was touched
        assert db.execute("SELECT count(*) FROM rooms").fetchone() == (1,)
