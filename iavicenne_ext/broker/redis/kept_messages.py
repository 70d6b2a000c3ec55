"""The Redis broker's kept messages rewritten in place (`HistoryEditor`) and read positions
(`ReadPositions`): a part of `RedisBroker`, apart for its size.

Keys (keys.py): ``T:revised:R`` holds the rewritten frames, merged back into the history by
seq (lua/common.lua, history.lua), since a stream entry cannot be replaced; ``T:read:R``
each person's position; ``read-rooms:<username>`` the rooms where a person has one.
"""

from __future__ import annotations

import contextlib

import iavicenne_protocol as p

from ..base import BrokerUnavailable, ReadState
from .keys import Keys
from .link import RedisLink

#: how many (person, room) pairs a server remembers having listed for unread counts
LISTED_READS = 10_000


class KeptMessages:
    """`HistoryEditor` and `ReadPositions` on Redis, for `RedisBroker` (which sets the attributes)."""

    _link: RedisLink
    _keys: Keys
    # (username, room) known to be in read-rooms:<username> (mark_read), bounded
    _listed_reads: set[tuple[str, str]]

    async def _add_to_total(self, delta: int) -> None:
        raise NotImplementedError  # RedisBroker's

    # -- kept messages rewritten in place (HistoryEditor): lua/rewrite_message.lua ---------
    async def kept_message(self, room: str, seq: int) -> bytes | None:
        frame = await self._link.run("kept_message", self._keys.tagged(room), room, seq)
        return p.with_seq(seq, frame) if frame else None

    async def rewrite_message(self, room: str, seq: int, expected: bytes, frame: bytes) -> bool:
        done, delta = await self._link.run(
            "rewrite_message", self._keys.tagged(room), room, seq, _without_seq(seq, expected), _without_seq(seq, frame)
        )
        if int(delta):
            await self._add_to_total(int(delta))
        return bool(done)

    # -- read positions (ReadPositions): lua/read_mark.lua ---------------------------------
    async def mark_read(self, room: str, username: str, seq: int) -> ReadState:
        state = await self._read(room, username, seq)
        # listed for the person's unread counts (pruned when read, read_rooms); once per
        # room and person while this server remembers it, not once per message read
        if state.read and (username, room) not in self._listed_reads:
            with contextlib.suppress(BrokerUnavailable):
                await self._link.command("SADD", self._keys.read_rooms(username), room)
                if len(self._listed_reads) >= LISTED_READS:
                    self._listed_reads.clear()
                self._listed_reads.add((username, room))
        return state

    async def read_state(self, room: str, username: str) -> ReadState:
        return await self._read(room, username, -1)

    async def _read(self, room: str, username: str, seq: int) -> ReadState:
        epoch, read, last = await self._link.run("read_mark", self._keys.tagged(room), room, username, seq)
        return ReadState(room, int(read), int(last), epoch.decode() if isinstance(epoch, bytes) else str(epoch))

    async def read_rooms(self, username: str) -> list[str]:
        key = self._keys.read_rooms(username)
        rooms = sorted(name.decode() for name in await self._link.command("SMEMBERS", key))
        gone = [room for room in rooms if not (await self.read_state(room, username)).read]
        if gone:
            await self._link.command("SREM", key, *gone)
            self._listed_reads.difference_update((username, room) for room in gone)
        return [room for room in rooms if room not in gone]


def _without_seq(seq: int, frame: bytes) -> bytes:
    """A frame as the stream keeps it: without the seq `protocol.with_seq` put first (a
    frame that carries another seq, or none, is kept whole: it matches no kept frame)."""
    head = b'{"seq":%d,' % seq
    return b"{" + frame[len(head) :] if frame.startswith(head) else frame
