"""The memory broker's shared documents (`SharedStore`): each room's log of Yjs updates.

The logs of all rooms hold at most `total` bytes (``max_shared_bytes_total``, per server);
an update that would pass it is refused, and a forgotten document gives its bytes back.
The broker forgets a room's document with the room (memory.py `_drop`), so the
document's lifetime is the room's: history_ttl after its last member left.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

from .base import SharedAppended, SharedLog


@dataclass(slots=True, eq=False)
class _Log:
    life: str
    updates: list[bytes] = field(default_factory=list)
    size: int = 0
    seq: int = 0  # updates appended in this life
    solo: int = 0  # the last `solo` updates are each as appended (the first may be a merge)


class SharedLogs:
    """Every room's document log in this process, within `total` bytes together."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0  # bytes of every log
        self._logs: dict[str, _Log] = {}
        # a life names one life of one document; unique across restarts too (a store keeps
        # the documents, and a client's `life` from before a restart must not match a new one)
        self._lives = itertools.count(1)
        self._lifetime = secrets.token_hex(4)

    def load(self, room: str, life: str, since: int) -> SharedLog:
        log = self._logs.get(room)
        if log is None:
            return SharedLog([], 0)
        missing = log.seq - since
        if life == log.life and 0 <= missing <= log.solo:
            tail = log.updates[len(log.updates) - missing :] if missing else []
            return SharedLog(tail, log.size, log.seq, log.life, whole=False)
        return SharedLog(list(log.updates), log.size, log.seq, log.life)

    def append(self, room: str, update: bytes, max_bytes: int) -> SharedAppended:
        log = self._logs.get(room)
        size = 0 if log is None else log.size
        if size + len(update) > max_bytes:
            return SharedAppended(0, "", 0, "max_shared_bytes")
        if self.held + len(update) > self.total:
            return SharedAppended(0, "", 0, "max_shared_bytes_total")
        if log is None:
            log = self._logs[room] = _Log(f"m{self._lifetime}.{next(self._lives)}")
        log.updates.append(update)
        log.size += len(update)
        log.seq += 1
        log.solo += 1
        self.held += len(update)
        return SharedAppended(log.seq, log.life, len(log.updates))

    def compact(self, room: str, life: str, seq: int, merged: bytes) -> bool:
        log = self._logs.get(room)
        if log is None or log.life != life:
            return False
        keep = log.seq - seq
        prefix = len(log.updates) - keep
        if keep < 0 or keep > log.solo or prefix < 1:
            return False
        removed = sum(len(update) for update in log.updates[:prefix])
        log.updates[:prefix] = [merged]
        log.size += len(merged) - removed
        self.held += len(merged) - removed
        log.solo = keep
        return True

    def restore(self, room: str, life: str, updates: list[tuple[int, bytes]]) -> None:
        """Take back a document a store kept: its `life` and its updates as (number, update),
        oldest first; a first one numbered above 1 is a merge of the updates up to it."""
        if not updates:
            return
        log = self._logs[room] = _Log(life, [update for _, update in updates])
        log.size = sum(len(update) for update in log.updates)
        log.seq = updates[-1][0]
        log.solo = len(updates) - (1 if updates[0][0] > 1 else 0)
        self.held += log.size

    def forget(self, room: str) -> None:
        log = self._logs.pop(room, None)
        if log is not None:
            self.held -= log.size

    def __contains__(self, room: str) -> bool:
        return room in self._logs
