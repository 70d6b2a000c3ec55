"""The SQLite store: the memory broker, with everything that must survive a restart kept in
one SQLite file (the default ``IAvicenne.broker``).

Memory stays the live state and the read path: presence, fan-out, dedup, each room's
bounded history, the shared documents, access records and names are the memory broker's
(memory.py), with its budgets, and a join reads its replay from memory as before. Every
change that must survive is written through: the memory broker calls a ``_persist_*``
hook as it makes the change, and this class turns it into a statement on the journal
(journal.py), committed in grouped transactions, one per turn of the event loop at most. At start the file
is read back into memory (`_load`): a restarted server has the same rooms, seqs and
epochs (so a client's ``since`` is recovered, not a ``gap``), documents, access records,
invitations and names. Pruning (the budgets, ``history_days``, a room forgotten
``history_ttl`` after its last member left) drops from memory, and the hooks delete it
from the file.

Why memory and a file rather than SQLite as the read path (measured, benchmarks/store.py):
a replay, a member list or one more message in a room of 10,000 messages costs what it
costs the memory broker, and the event loop never waits on the disk.

Acknowledged means kept: a message (a shared update, an access change) is fanned out at
once, as with the memory broker, but its sender's ack waits for the commit that holds it
(`Journal.committed`). When the commit fails (a full disk) the sender gets
``unavailable`` and, while the store cannot write, new changes that must be kept are
refused before anything is sent; the failed changes are written again until they are
kept (a resend of a message then gets its ack, marked duplicate).

A later feature that must survive adds a table (schema.py), a hook call where the memory
broker makes the change, the hook here, and a few lines of `_load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

from ...access import RoomAccess
from ..base import BrokerUnavailable, CreateOutcome, DedupKey, MemberOutcome, Published, ReadState, SharedAppended
from ..memory import MemoryBroker, _RoomState
from ..memory_continuity import Conversation, DirectLog
from ..search import Found, fts_query
from . import schema as sql
from .journal import Journal
from .schema import StoreError, open_store

DAY = 86400.0
# how often rooms and messages past their age are pruned while the server runs
PRUNE_INTERVAL = 60.0


class SQLiteBroker(MemoryBroker):
    """A `MemoryBroker` whose rooms survive a restart, in the SQLite file at `path`.

    `history_days`: messages older than that are dropped (0: no age limit). Raises
    `StoreError` when the file cannot be used (corrupt, locked, read-only).
    """

    def __init__(
        self,
        *,
        path: str,
        history_days: float = 0.0,
        log: logging.Logger | None = None,
        retry_interval: float = 1.0,
        prune_interval: float = PRUNE_INTERVAL,
        **budgets: Any,
    ) -> None:
        super().__init__(**budgets)
        self.path = path
        self.history_days = history_days
        self.prune_interval = prune_interval
        self.log = log or logging.getLogger("iavicenne")
        self._restoring = True  # `_load` puts back what the file holds: nothing to write
        db = open_store(path)
        self._journal = Journal(db, path, self.log, retry_interval=retry_interval)
        try:
            self._load(db)
        except sqlite3.Error as error:
            db.close()
            raise StoreError(path, f"{error} (the file is damaged)") from None
        finally:
            self._restoring = False
        self._pruning: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._journal.start(asyncio.get_running_loop())
        self._pruning = asyncio.create_task(self._prune_now_and_then())

    async def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
        await self._journal.close()

    @property
    def failing(self) -> str | None:
        """Why the store cannot be written now (a full disk...); None when it can."""
        return self._journal.failing

    def _writable(self) -> None:
        """Refuse a change that must be kept while the store cannot keep it: before it is
        made or sent, so that nobody sees what its sender is told was not done."""
        failing = self._journal.failing
        if failing is not None:
            raise BrokerUnavailable(f"not kept, send it again later: the store cannot be written ({failing})")

    # -- the operations whose answer says "kept" -----------------------------------------
    async def publish(self, room: str, frame: bytes, *, dedup: DedupKey | None = None) -> Published:
        self._writable()
        published = await super().publish(room, frame, dedup=dedup)
        if dedup is not None:  # a frame with a ref: its ack waits for the commit (the fan-out did not)
            await self._journal.committed()
        # without a ref no ack is sent (seed clients): nothing waits, the commit comes all the same
        return published

    async def shared_append(self, room: str, update: bytes, *, max_bytes: int) -> SharedAppended:
        self._writable()
        appended = await super().shared_append(room, update, max_bytes=max_bytes)
        if appended.refused is None:
            await self._journal.committed()
        return appended

    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        self._writable()
        outcome = await super().create_access(access, max_per_owner=max_per_owner)
        await self._journal.committed()
        return outcome

    async def add_member(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        self._writable()
        outcome = await super().add_member(room, username, max_members=max_members)
        await self._journal.committed()
        return outcome

    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        self._writable()
        outcome = await super().remove_member(room, username)
        await self._journal.committed()
        return outcome

    async def moderate(self, room: str, username: str, action: str) -> tuple[MemberOutcome, RoomAccess | None]:
        self._writable()
        outcome = await super().moderate(room, username, action)
        await self._journal.committed()
        return outcome

    async def delete_access(self, room: str) -> bool:
        self._writable()
        deleted = await super().delete_access(room)
        await self._journal.committed()
        return deleted

    async def rewrite_message(self, room: str, seq: int, expected: bytes, frame: bytes) -> bool:
        self._writable()
        rewritten = await super().rewrite_message(room, seq, expected, frame)
        if rewritten:  # an edit or a deletion is acknowledged once kept
            await self._journal.committed()
        return rewritten

    async def mark_read(self, room: str, username: str, seq: int) -> ReadState:
        state = await super().mark_read(room, username, seq)
        await self._journal.committed()
        return state

    async def direct_keep(self, room: str, sender: str, recipient: str, frame: bytes) -> int:
        self._writable()
        seq = await super().direct_keep(room, sender, recipient, frame)
        await self._journal.committed()  # a kept direct message is acked once in the file
        return seq

    async def remember_identity(self, username: str, name_skeleton: str) -> None:
        known = name_skeleton in self._identities
        await super().remember_identity(username, name_skeleton)
        if not known:
            await self._journal.committed()

    # -- search: the FTS5 index of the kept messages (schema.SEARCH), read in a thread ------
    async def search(self, rooms: list[str], words: list[str], limit: int) -> list[Found]:
        if not words or limit <= 0 or not rooms:
            return []
        params = (fts_query(words), json.dumps(list(dict.fromkeys(rooms))), limit)

        def read(db: sqlite3.Connection) -> list[Found]:
            return [Found(room, bytes(frame)) for room, frame in db.execute(sql.SEARCH_MESSAGES, params)]

        return await self._journal.query_in_thread(read)

    # -- the hooks: each change, as the memory broker makes it, onto the journal ------------
    def _persist_room(self, state: _RoomState) -> None:
        if not self._restoring:
            self._journal.write(sql.PUT_ROOM, (state.name, state.epoch, state.seq, _wall(state.emptied_at)))
            self._journal.write(sql.DROP_READS, (state.name,))  # read positions are of a life

    def _persist_room_dropped(self, state: _RoomState) -> None:
        for statement in (sql.DROP_ROOM, sql.DROP_MESSAGES, sql.DROP_READS, sql.DROP_DOC, sql.DROP_UPDATES):
            self._journal.write(statement, (state.name,))

    def _persist_emptied(self, state: _RoomState) -> None:
        self._journal.write(sql.SET_EMPTIED, (_wall(state.emptied_at), state.name))

    def _persist_message(self, state: _RoomState, seq: int, frame: bytes, dedup: DedupKey | None) -> None:
        now = time.time()
        self._journal.write(sql.PUT_MESSAGE, (state.name, seq, frame, now))
        if dedup is not None:
            self._journal.write(sql.PUT_DEDUP, (dedup.identity, dedup.room, dedup.user_id, dedup.ref, seq, now))

    def _persist_cut(self, state: _RoomState, seq: int) -> None:
        self._journal.write(sql.CUT_MESSAGES, (state.name, seq))
        if not state.history:  # the room's seq is then in the rooms table only
            self._journal.write(sql.CUT_SEQ, (seq, state.name))

    def _persist_rewrite(self, state: _RoomState, seq: int, frame: bytes) -> None:
        self._journal.write(sql.REWRITE_MESSAGE, (frame, state.name, seq))

    def _persist_read(self, room: str, username: str, seq: int) -> None:
        self._journal.write(sql.PUT_READ, (room, username, seq))

    def _persist_remembered(self, username: str, room: str, at: float | None) -> None:
        if at is None:
            self._journal.write(sql.DROP_REMEMBERED, (username, room))
        else:
            self._journal.write(sql.PUT_REMEMBERED, (username, room, at))

    def _persist_direct(self, conversation: Conversation, seq: int, frame: bytes, at: float) -> None:
        room, first, second = conversation
        self._journal.write(sql.PUT_DIRECT, (room, seq, first, second, frame, at))
        self._journal.write(sql.PUT_DIRECT_SEQ, (room, seq))

    def _persist_direct_cut(self, conversation: Conversation, seq: int) -> None:
        self._journal.write(sql.CUT_DIRECT, (*conversation, seq))

    def _persist_conversation_dropped(self, conversation: Conversation) -> None:
        self._journal.write(sql.DROP_CONVERSATION, tuple(conversation))

    def _persist_access(self, room: str, access: RoomAccess | None) -> None:
        if access is None:
            self._journal.write(sql.DROP_ACCESS, (room,))
        else:
            self._journal.write(sql.PUT_ACCESS, (room, json.dumps(access.to_json())))

    def _persist_identity(self, name_skeleton: str, username: str) -> None:
        self._journal.write(sql.PUT_IDENTITY, (name_skeleton, username))

    def _persist_shared_append(self, room: str, appended: SharedAppended, update: bytes) -> None:
        if appended.seq == 1:  # a new life of the document
            self._journal.write(sql.DROP_UPDATES, (room,))
            self._journal.write(sql.PUT_DOC, (room, appended.life))
        self._journal.write(sql.PUT_UPDATE, (room, appended.seq, update))

    def _persist_shared_compact(self, room: str, seq: int, merged: bytes) -> None:
        self._journal.write(sql.CUT_UPDATES, (room, seq))
        self._journal.write(sql.PUT_UPDATE, (room, seq, merged))

    def _persist_shared_forgotten(self, room: str) -> None:
        self._journal.write(sql.DROP_DOC, (room,))
        self._journal.write(sql.DROP_UPDATES, (room,))

    # -- start: the file back into memory ---------------------------------------------------
    def _load(self, db: sqlite3.Connection) -> None:
        """Put back what the file holds, through the memory broker's own steps (its budgets
        apply: what they or `history_days` drop now is deleted from the file too)."""
        wall, mono = time.time(), time.monotonic()
        for room, epoch, seq, emptied_at in db.execute("SELECT room, epoch, seq, emptied_at FROM rooms"):
            state = self._room(room)
            state.epoch, state.seq = epoch, seq
            # nobody is in a room after a restart: its expiry runs from when it was emptied,
            # or from now for the rooms the server had members in when it stopped
            state.emptied_at = mono if emptied_at is None else mono - max(0.0, wall - emptied_at)
            self._schedule_expiry(state)
        cutoff = wall - self.history_days * DAY if self.history_days > 0 else None
        too_old: dict[str, int] = {}
        rows = db.execute("SELECT room, seq, frame, at FROM messages ORDER BY at, room, seq")
        for room, seq, frame, at in rows:
            kept = self._rooms.get(room)
            if kept is None:  # its room was dropped by a budget while loading
                continue
            kept.seq = max(kept.seq, seq)
            if cutoff is not None and at < cutoff:
                too_old[room] = seq
                continue
            self._keep(kept, seq, bytes(frame))
        for room, seq in too_old.items():
            self._journal.write(sql.CUT_MESSAGES, (room, seq))
        self._load_dedup(db, wall, mono)
        for room, username, seq in db.execute("SELECT room, username, seq FROM reads"):
            kept = self._rooms.get(room)
            if kept is not None:
                kept.reads[username] = min(seq, kept.seq)
                self._read_rooms.setdefault(username, set()).add(room)
        for room, record in db.execute("SELECT room, record FROM access"):
            access = RoomAccess.from_json(json.loads(record))
            self._access[room] = access
            self._owned.setdefault(access.owner, set()).add(room)
        for name_skeleton, username in db.execute("SELECT skeleton, username FROM identities"):
            self._identities[name_skeleton] = username
        self._load_shared(db)
        self._load_continuity(db)
        self._expire(mono)

    def _load_dedup(self, db: sqlite3.Connection, wall: float, mono: float) -> None:
        since = wall - self.dedup_ttl
        self._journal.write(sql.EXPIRE_DEDUP, (since,))
        rows = db.execute("SELECT identity, room, user_id, ref, seq, at FROM dedup WHERE at >= ? ORDER BY at", (since,))
        for identity, room, user_id, ref, seq, at in rows:
            records = self._records(identity, mono)
            self._remember(records, DedupKey(room, identity, user_id, ref), seq, mono - max(0.0, wall - at))

    def _load_continuity(self, db: sqlite3.Connection) -> None:
        """The remembered rooms (oldest joined first) and the kept direct messages."""
        for username, room, at in db.execute("SELECT username, room, at FROM remembered ORDER BY at"):
            self.remembered.setdefault(username, OrderedDict())[room] = at
        self.direct_seqs.update(db.execute("SELECT room, seq FROM direct_seqs"))
        rows = db.execute("SELECT room, seq, first, second, frame, at FROM direct_messages ORDER BY room, seq")
        for room, seq, first, second, frame, at in rows:
            log = self.direct_logs.setdefault(Conversation(room, first, second), DirectLog())
            log.frames.append((seq, bytes(frame)))
            log.size += len(frame)
            log.touched = max(log.touched, at)
        self.reindex_direct()
        self._expire_direct(time.time())

    def _load_shared(self, db: sqlite3.Connection) -> None:
        lives = dict(db.execute("SELECT room, life FROM shared_docs").fetchall())
        updates: dict[str, list[tuple[int, bytes]]] = {}
        for room, pos, data in db.execute("SELECT room, pos, data FROM shared_updates ORDER BY room, pos"):
            updates.setdefault(room, []).append((pos, bytes(data)))
        for room, life in lives.items():
            if room in self._rooms and updates.get(room):
                self._shared.restore(room, life, updates[room])
            else:  # its room is gone: the document went with it
                self._persist_shared_forgotten(room)

    # -- pruning while running --------------------------------------------------------------
    async def _prune_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval)
            try:
                await self.prune()
            except BrokerUnavailable as error:
                self.log.warning("iavicenne: the store %s was not pruned: %s", self.path, error)

    async def prune(self) -> None:
        """Drop the messages older than history_days, the dedup records older than dedup_ttl
        and the rooms emptied more than history_ttl ago (from memory and from the file)."""
        now = time.time()
        if self.history_days > 0:
            # the server's oldest messages first (the memory broker's heap), until one is young
            # enough: what this costs is what it drops, whatever the rooms (no index on age)
            cutoff = now - self.history_days * DAY
            while (state := self._room_of_the_oldest_message()) is not None and _sent_at(state.history[0][1]) < cutoff:
                self._drop_the_oldest_message()
        self._journal.write(sql.EXPIRE_DEDUP, (now - self.dedup_ttl,))
        self._expire(time.monotonic())


_TIMESTAMP = re.compile(rb'"timestamp":"([^"]+)"')


def _sent_at(frame: bytes) -> float:
    """When a kept frame was sent (its ``timestamp``, which every server frame carries)."""
    found = _TIMESTAMP.search(frame)
    try:
        return datetime.fromisoformat(found.group(1).decode()).timestamp() if found else time.time()
    except ValueError:
        return time.time()


def _wall(monotonic: float | None) -> float | None:
    """A `time.monotonic()` instant as wall-clock time (what survives a restart)."""
    return None if monotonic is None else time.time() - (time.monotonic() - monotonic)
