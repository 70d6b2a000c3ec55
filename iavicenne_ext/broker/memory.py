"""The in-memory broker: every room's state in this process, for a single Jupyter server.

The default: nothing to install or run. Frames are delivered synchronously, so a seq is
handed out, stored and delivered in one step and the order is the seq order.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .. import protocol as p
from .base import Broker, History, JoinOutcome, PresenceEntry, Published


@dataclass(slots=True)
class _RoomState:
    epoch: str
    history: deque[tuple[int, bytes]]
    seq: int = 0
    entries: dict[str, PresenceEntry] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)  # user_id -> connections
    emptied_at: float | None = None


class MemoryBroker(Broker):
    def __init__(self, *, history_size: int, history_ttl: float, dedup_ttl: float, max_dedup_keys: int = 100_000) -> None:
        super().__init__(history_size=history_size, history_ttl=history_ttl, dedup_ttl=dedup_ttl)
        self._rooms: dict[str, _RoomState] = {}
        # dedup key -> (seq, accepted at); oldest first, bounded in count and in age
        self._accepted: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._max_dedup_keys = max_dedup_keys
        self._server_id = "mem-" + secrets.token_hex(4)

    @property
    def server_id(self) -> str:
        return self._server_id

    def _room(self, room: str) -> _RoomState:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _RoomState(secrets.token_hex(6), deque(maxlen=self.history_size))
        return state

    def _expire(self, now: float) -> None:
        """Forget rooms that have been empty longer than history_ttl, and old dedup keys."""
        stale = [
            name
            for name, state in self._rooms.items()
            if state.emptied_at is not None and now - state.emptied_at > self.history_ttl
        ]
        for name in stale:
            del self._rooms[name]
        accepted = self._accepted
        while accepted and (len(accepted) > self._max_dedup_keys or now - next(iter(accepted.values()))[1] > self.dedup_ttl):
            accepted.popitem(last=False)

    async def subscribe(self, room: str) -> None:
        pass  # one process: every frame is already here

    async def unsubscribe(self, room: str) -> None:
        pass

    async def publish(self, room: str, frame: bytes, *, dedup_key: str | None = None) -> Published:
        now = time.monotonic()
        if dedup_key is not None:
            known = self._accepted.get(dedup_key)
            if known is not None and now - known[1] <= self.dedup_ttl:
                return Published(known[0], True)
        state = self._room(room)
        state.seq += 1
        seq = state.seq
        if dedup_key is not None:
            self._accepted[dedup_key] = (seq, now)
            if len(self._accepted) > self._max_dedup_keys:
                self._accepted.popitem(last=False)
        framed = p.with_seq(seq, frame)
        state.history.append((seq, framed))
        self.deliver(room, framed, seq)
        return Published(seq, False)

    async def claim(self, dedup_key: str) -> bool:
        now = time.monotonic()
        known = self._accepted.get(dedup_key)
        if known is not None and now - known[1] <= self.dedup_ttl:
            return False
        self._accepted[dedup_key] = (0, now)
        self._accepted.move_to_end(dedup_key)
        if len(self._accepted) > self._max_dedup_keys:
            self._accepted.popitem(last=False)
        return True

    async def release(self, dedup_key: str) -> None:
        self._accepted.pop(dedup_key, None)

    async def emit(
        self, room: str, frame: bytes, *, to: str | None = None, skip: str | None = None, supersede: bool = False
    ) -> None:
        self.deliver(room, frame, 0, to, skip, supersede)

    async def join(self, room: str, entry: PresenceEntry) -> JoinOutcome:
        self._expire(time.monotonic())
        state = self._room(room)
        if entry.user_id in state.users:
            holder = next(e for e in state.entries.values() if e.user_id == entry.user_id)
            if holder.identity.get("username") != entry.identity.get("username"):
                return JoinOutcome.TAKEN
        state.entries[entry.conn] = entry
        state.emptied_at = None
        count = state.users.get(entry.user_id, 0)
        state.users[entry.user_id] = count + 1
        return JoinOutcome.FIRST if count == 0 else JoinOutcome.AGAIN

    async def leave(self, room: str, conn: str, user_id: str) -> bool:
        state = self._rooms.get(room)
        if state is None or state.entries.pop(conn, None) is None:
            return False
        left = state.users[user_id] - 1
        if left:
            state.users[user_id] = left
            return False
        del state.users[user_id]
        if not state.entries:
            state.emptied_at = time.monotonic()
        return True

    async def set_state(self, room: str, conn: str, state: dict[str, Any], state_at: float) -> None:
        room_state = self._rooms.get(room)
        entry = room_state.entries.get(conn) if room_state else None
        if entry is not None:
            entry.state = state
            entry.state_at = state_at

    async def entries(self, room: str) -> list[PresenceEntry]:
        state = self._rooms.get(room)
        return list(state.entries.values()) if state else []

    async def is_present(self, room: str, user_id: str) -> bool:
        state = self._rooms.get(room)
        return state is not None and user_id in state.users

    async def rooms(self) -> dict[str, list]:
        return {name: await self.members(name) for name, state in self._rooms.items() if state.entries}

    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        state = self._room(room)
        if since is None:
            return History([], state.seq, state.epoch, True)
        if epoch is not None and epoch != state.epoch:
            # another life of the room: its seqs are not the client's seqs
            return History([m for _, m in state.history], state.seq, state.epoch, False)
        missed = [m for s, m in state.history if s > since]
        oldest = state.history[0][0] if state.history else state.seq + 1
        recovered = since <= state.seq and since >= oldest - 1
        return History(missed, state.seq, state.epoch, recovered)

    async def room_exists(self, room: str) -> bool:
        self._expire(time.monotonic())
        return room in self._rooms
