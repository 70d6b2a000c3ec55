"""The memory broker's continuity (`RememberedRooms`, `DirectHistory`): the rooms each
identity joined, and the kept direct messages of each conversation, in this process.

The state is in three plain attributes, each changed only by the methods named beside it,
so that a persistent broker built on `MemoryBroker` can write each change through:

- `remembered` (username -> room -> when joined, oldest first): `remember_room`,
  `forget_room`;
- `direct_logs` (`Conversation` -> `DirectLog`): `direct_keep`, `direct_forget`,
  `_expire_direct`;
- `direct_seqs` (room -> its last ``direct_seq``): `direct_keep` (never lowered, so a
  client's ``direct_since`` stays meaningful while the server lives).

`_direct_of` and `_direct_expiry` are indexes of `direct_logs`: `reindex_direct` rebuilds
them (after loading `direct_logs` from storage). Times are wall-clock (epoch seconds), so
that they mean the same after a restart. Each change calls a ``_persist_*`` hook (nothing
in memory; the SQLite store writes it through, broker/sqlite/).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple

import iavicenne_protocol as p


class Conversation(NamedTuple):
    """Two identities in one room; `first` <= `second` (a conversation has no direction)."""

    room: str
    first: str
    second: str

    @classmethod
    def of(cls, room: str, one: str, other: str) -> Conversation:
        return cls(room, *sorted((one, other)))


@dataclass(slots=True)
class DirectLog:
    """A conversation's kept frames, oldest first: (direct_seq, frame without it)."""

    frames: deque[tuple[int, bytes]] = field(default_factory=deque)
    size: int = 0  # bytes of `frames`
    touched: float = 0.0  # when its last frame was kept (epoch seconds)


class MemoryContinuity:
    """`RememberedRooms` and `DirectHistory` for `MemoryBroker` (which sets the budgets:
    `max_remembered_rooms`, `direct_history_size`, `direct_history_bytes`, `direct_history_ttl`)."""

    max_remembered_rooms: int
    direct_history_size: int
    direct_history_bytes: int
    direct_history_ttl: float

    def _init_continuity(self) -> None:
        self.remembered: dict[str, OrderedDict[str, float]] = {}
        self.direct_logs: dict[Conversation, DirectLog] = {}
        self.direct_seqs: dict[str, int] = {}
        # (room, username) -> its conversations there; (deadline, conversation) heap
        self._direct_of: dict[tuple[str, str], set[Conversation]] = {}
        self._direct_expiry: list[tuple[float, Conversation]] = []

    # -- RememberedRooms --------------------------------------------------------------
    async def remember_room(self, username: str, room: str, at: float) -> None:
        rooms = self.remembered.setdefault(username, OrderedDict())
        rooms.pop(room, None)
        rooms[room] = at
        self._persist_remembered(username, room, at)
        while len(rooms) > self.max_remembered_rooms:
            oldest, _ = rooms.popitem(last=False)
            self._persist_remembered(username, oldest, None)

    async def remembered_rooms(self, username: str) -> list[str]:
        return list(reversed(self.remembered.get(username, {})))

    async def forget_room(self, username: str, room: str) -> bool:
        rooms = self.remembered.get(username)
        if rooms is None or rooms.pop(room, None) is None:
            return False
        self._persist_remembered(username, room, None)
        if not rooms:
            del self.remembered[username]
        return True

    # -- DirectHistory ----------------------------------------------------------------
    async def direct_keep(self, room: str, sender: str, recipient: str, frame: bytes) -> int:
        now = time.time()
        self._expire_direct(now)
        seq = self.direct_seqs[room] = self.direct_seqs.get(room, 0) + 1
        conversation = Conversation.of(room, sender, recipient)
        log = self.direct_logs.get(conversation)
        if log is None:
            log = self.direct_logs[conversation] = DirectLog()
            for username in {sender, recipient}:
                self._direct_of.setdefault((room, username), set()).add(conversation)
        log.frames.append((seq, frame))
        log.size += len(frame)
        log.touched = now
        self._persist_direct(conversation, seq, frame, now)
        heapq.heappush(self._direct_expiry, (now + self.direct_history_ttl, conversation))
        cut = 0
        while log.frames and (len(log.frames) > self.direct_history_size or log.size > self.direct_history_bytes):
            cut, dropped = log.frames.popleft()
            log.size -= len(dropped)
        if cut:
            self._persist_direct_cut(conversation, cut)
        return seq

    async def direct_replay(self, room: str, username: str, since: int) -> tuple[list[bytes], int]:
        self._expire_direct(time.time())
        kept: list[tuple[int, bytes]] = []
        for conversation in self._direct_of.get((room, username), ()):
            kept.extend(item for item in self.direct_logs[conversation].frames if item[0] > since)
        kept.sort(key=lambda item: item[0])
        return [p.with_direct_seq(seq, frame) for seq, frame in kept], self.direct_seqs.get(room, 0)

    def reindex_direct(self) -> None:
        """Rebuild the indexes of `direct_logs` (for a store that loaded it)."""
        self._direct_of = {}
        self._direct_expiry = []
        for conversation, log in self.direct_logs.items():
            for username in {conversation.first, conversation.second}:
                self._direct_of.setdefault((conversation.room, username), set()).add(conversation)
            self._direct_expiry.append((log.touched + self.direct_history_ttl, conversation))
        heapq.heapify(self._direct_expiry)

    async def direct_forget(self, room: str) -> None:
        for conversation in [c for c in self.direct_logs if c.room == room]:
            self._drop_conversation(conversation)

    def _expire_direct(self, now: float) -> None:
        heap = self._direct_expiry
        while heap and heap[0][0] <= now:
            _, conversation = heapq.heappop(heap)
            log = self.direct_logs.get(conversation)
            if log is not None and log.touched + self.direct_history_ttl <= now:
                self._drop_conversation(conversation)

    def _drop_conversation(self, conversation: Conversation) -> None:
        if self.direct_logs.pop(conversation, None) is None:
            return
        self._persist_conversation_dropped(conversation)
        for username in {conversation.first, conversation.second}:
            key = (conversation.room, username)
            mine = self._direct_of.get(key)
            if mine is not None:
                mine.discard(conversation)
                if not mine:
                    del self._direct_of[key]

    # -- what a store built on the memory broker keeps (broker/sqlite/) -------------------
    def _persist_remembered(self, username: str, room: str, at: float | None) -> None:
        """`username` joined `room` at `at` (None: the room is forgotten for it)."""

    def _persist_direct(self, conversation: Conversation, seq: int, frame: bytes, at: float) -> None:
        """`frame` is kept in `conversation` as ``direct_seq`` `seq` (the room's last), at `at`."""

    def _persist_direct_cut(self, conversation: Conversation, seq: int) -> None:
        """The conversation's frames up to `seq` are no longer kept (its budgets)."""

    def _persist_conversation_dropped(self, conversation: Conversation) -> None:
        """The conversation is forgotten (its age, or its room's record deleted)."""
