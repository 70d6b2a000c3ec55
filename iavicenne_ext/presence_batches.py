"""Presence changes as one ``presence-batch`` frame per room and tick (docs/protocol.md, "Large rooms").

A connection that asked for ``presence: "batched"`` gets the presence changes of other
users as one frame per room and tick, encoded once for all of them, instead of one frame
per change: N joins then cost N x (page) plus one frame per member and tick, not N x N
frames. In a large room the batches come less often, so that presence never takes more
than its share of the server (`frames_per_second`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import iavicenne_protocol as p

from .broker.base import BrokerUnavailable
from .broker.events import PresenceFrame
from .broker.interfaces import PresenceManager

if TYPE_CHECKING:
    from .local_rooms import LocalRoom

# a presence-batch is written to this many connections, then the loop serves others
BATCH_SLICE = 256


@dataclass(slots=True)
class PresenceChange:
    """What a room's next presence-batch says of one user: present before the batch or not,
    present now or not, and its entry (user_id, identity, state) when present."""

    before: bool
    now: bool
    entry: dict[str, Any] | None


class PresenceBatches:
    """The presence-batches of this server's rooms (`LocalRoom.pending`, `.batched`)."""

    def __init__(
        self,
        presence: PresenceManager,
        rooms: dict[str, LocalRoom],
        log: logging.Logger,
        *,
        interval: float,
        frames_per_second: float,
    ) -> None:
        self.presence = presence
        self.rooms = rooms  # the hub's local rooms: a batch goes only to a room still there
        self.log = log
        self.interval = interval
        self.frames_per_second = frames_per_second
        self._flushes: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def deliver(self, event: PresenceFrame, local: LocalRoom) -> None:
        """One user-joined / user-left / presence frame: as it is to the connections that
        want each change, into the room's next presence-batch for the others."""
        room, frame, skip = event.room, event.frame, event.skip
        for key, conn in list(local.each.items()):
            if key != skip:
                conn.send(frame)
        if local.joining:
            for key, waiting in local.joining.items():
                if key != skip and key not in local.batched:
                    waiting.append((0, frame))
        self._note_change(local, json.loads(frame))
        if local.flushing:
            return
        loop = asyncio.get_running_loop()
        if len(local.batched) <= BATCH_SLICE and loop.time() >= local.flushed_at + self.interval:
            # the first change after a quiet spell, in a room of few batched connections:
            # written now, as the seed's frame would be, when the broker knows the count now
            count = self.presence.member_count_now(room)
            if count is not None:
                pending, local.pending = local.pending, {}
                local.flushed_at = loop.time()
                batch = self._batch_frame(room, pending, count)
                if batch is not None:
                    for _ in self._write_batch(local, batch):
                        pass
                return
        self._schedule_flush(room, local)

    def _schedule_flush(self, room: str, local: LocalRoom) -> None:
        local.flushing = True
        loop = asyncio.get_running_loop()
        # a batch is one frame per batched connection: in a large room they come less
        # often, so that presence never takes more than its share of the server
        spacing = max(self.interval, len(local.batched) / self.frames_per_second)
        loop.call_at(max(loop.time(), local.flushed_at + spacing), self._start_flush, room, local)

    @staticmethod
    def _note_change(local: LocalRoom, frame: dict[str, Any]) -> None:
        user_id = str(frame.get("user_id"))
        known = local.pending.pop(user_id, None)  # popped: it goes last, the latest change
        kind = frame.get("type")
        # before the batch's first change of this user: present, unless that change is its join
        before = known.before if known is not None else kind != p.USER_JOINED
        if kind == p.USER_LEFT:
            local.pending[user_id] = PresenceChange(before, False, None)
            return
        entry = {"user_id": user_id, "identity": frame.get("identity", {}), "state": frame.get("state", {})}
        if "connections" in frame:  # the user's connections in the room now (a join or leave of one of them)
            entry["connections"] = frame["connections"]
        local.pending[user_id] = PresenceChange(before, True, entry)

    def _start_flush(self, room: str, local: LocalRoom) -> None:
        task = asyncio.ensure_future(self._flush(room, local))
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("iavicenne: a presence-batch was not sent", exc_info=task.exception())

    async def _flush(self, room: str, local: LocalRoom) -> None:
        """Send the room's presence-batch: the net change since the last one, per user.

        A user who joined and left within the batch is in neither list; one who left and
        came back (or changed state) is in ``updated``. So a member view that applies the
        batch (set the ``joined`` and ``updated`` entries, drop the ``left`` ones) ends as
        the room is, whether or not it already had some of these changes (a snapshot taken
        meanwhile).
        """
        try:
            count: int | None = await self.presence.member_count(room)
        except BrokerUnavailable:
            count = None  # the batch still goes; its count is only a hint
        # changes that arrived while counting go in this batch; those that arrive while it
        # is being sent, in the next one (scheduled once this one is out: batches never cross)
        pending, local.pending = local.pending, {}
        try:
            if self.rooms.get(room) is local and local.batched:
                await self._send_batch(room, local, pending, count)
        finally:
            local.flushing = False
            local.flushed_at = asyncio.get_running_loop().time()
            if local.pending and self.rooms.get(room) is local:
                self._schedule_flush(room, local)

    async def _send_batch(self, room: str, local: LocalRoom, pending: dict[str, PresenceChange], count: int | None) -> None:
        frame = self._batch_frame(room, pending, count)
        if frame is None:
            return
        # a slice at a time: in a room of thousands the joins and messages of the meantime
        # are not held up behind the whole room's frames
        for _ in self._write_batch(local, frame):
            await asyncio.sleep(0)

    @staticmethod
    def _batch_frame(room: str, pending: dict[str, PresenceChange], count: int | None) -> bytes | None:
        joined: list[bytes] = []
        updated: list[bytes] = []
        left: list[str] = []
        for user_id, change in pending.items():
            if change.now:
                (updated if change.before else joined).append(p.encode(change.entry or {}))
            elif change.before:
                left.append(user_id)
        if not (joined or updated or left):
            return None
        fields: dict[str, Any] = {"joined": p.raw_list(joined), "left": left, "updated": p.raw_list(updated)}
        if count is not None:
            fields["member_count"] = count
        return p.encoded(p.PRESENCE_BATCH, room=room, **fields)

    @staticmethod
    def _write_batch(local: LocalRoom, frame: bytes) -> Iterator[None]:
        """Write `frame` to the connections batched now (a later joiner's snapshot has these
        changes), yielding after each BATCH_SLICE of them."""
        for at, key in enumerate(list(local.batched)):
            if at and at % BATCH_SLICE == 0:
                yield None
            conn = local.members.get(key)
            if conn is not None:
                conn.send(frame)
            else:
                waiting = local.joining.get(key)
                if waiting is not None:  # sent once its snapshot is
                    waiting.append((0, frame))
