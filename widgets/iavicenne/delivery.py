"""Delivering each frame once, in order, across reconnects: the client's bookkeeping.

* `Outbox`: reliable frames waiting for their ``ack``, written again (same ``ref``)
  after a reconnect; the server remembers refs, so a resend is never published twice.
* `SeenSet`: the keys of frames handled recently: a frame relayed twice (a resend whose
  ack was lost) is handled once. Direct messages and signals have no seq; their
  ``(sender, ref)`` is the key.
* `SeqTracker`: where a room's history stands for this client (the last ``seq``
  delivered, the room's ``epoch``): what a rejoin asks for, and whether a message is new.

The browser client (``delivery.js``) has the same three classes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Outgoing:
    """One reliable frame: its ref, its encoded text, who waits for its ack, its room."""

    ref: str
    data: str
    future: asyncio.Future[dict[str, Any]]
    room: str | None


class Outbox:
    """Reliable frames waiting for their ``ack``, in the order they were sent (the order
    in which they are written again after a reconnect)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Outgoing] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, ref: object) -> bool:
        return ref in self._items

    def add(self, ref: str, data: str, room: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Keep `data` (the encoded frame) until `ack(ref)`; the future gets the ack frame."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._items[ref] = Outgoing(ref, data, future, room)
        return future

    def ack(self, ref: str, frame: dict[str, Any]) -> bool:
        """The server has it; whether `ref` was waiting."""
        item = self._items.pop(ref, None)
        if item is None:
            return False
        if not item.future.done():
            item.future.set_result(frame)
        return True

    def fail(self, ref: str, error: BaseException) -> bool:
        """The server refused it (or we gave up); whether `ref` was waiting."""
        item = self._items.pop(ref, None)
        if item is None:
            return False
        if not item.future.done():
            item.future.set_exception(error)
        return True

    def drop_room(self, room: str, error: BaseException) -> None:
        """Fail what was sent to `room` (the room was left, or refused us)."""
        for ref in [ref for ref, item in self._items.items() if item.room == room]:
            self.fail(ref, error)

    def fail_all(self, error: BaseException) -> None:
        for ref in list(self._items):
            self.fail(ref, error)

    def frames(self) -> Iterator[str]:
        """The encoded frames, oldest first."""
        return (item.data for item in list(self._items.values()))


class SeenSet:
    """Keys seen recently (at most `limit`, the oldest forgotten first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable) -> bool:
        """True the first time `key` is seen (within the last `limit` keys)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True


@dataclass(slots=True)
class Resumption:
    """What a ``room-joined`` frame revealed: messages after `since` could not all be
    recovered (the history is gone or too short), or the room started a new life."""

    since: int | None
    epoch_changed: bool


class SeqTracker:
    """The last `seq` delivered in a room (None before the first join) and its `epoch`
    (a new epoch is a new life of the room, whose seqs start again)."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.epoch: str | None = None

    def resume(self) -> dict[str, Any]:
        """What a (re)join asks for: ``since`` and ``epoch``, once something was seen."""
        payload: dict[str, Any] = {}
        if self.seq is not None:
            payload["since"] = self.seq
            if self.epoch is not None:
                payload["epoch"] = self.epoch
        return payload

    def joined(self, frame: dict[str, Any]) -> Resumption | None:
        """Take in a ``room-joined`` frame; the gap it reveals, if any."""
        epoch = frame.get("epoch")
        epoch_changed = self.epoch is not None and epoch != self.epoch
        if epoch_changed:
            self.seq = 0  # replayed messages of the new life are all new to us
        if self.seq is None:
            seq = frame.get("seq", 0)
            self.seq = seq if isinstance(seq, int) else 0
        self.epoch = epoch
        if frame.get("recovered") is False or epoch_changed:
            return Resumption(frame.get("since"), epoch_changed)
        return None

    def accept(self, seq: object) -> bool:
        """Whether a message with this seq is new (and then remember it as delivered)."""
        if not isinstance(seq, int):
            return True  # no seq: not ours to judge
        if self.seq is not None and seq <= self.seq:
            return False  # replayed after a reconnect, already delivered
        self.seq = seq
        return True
