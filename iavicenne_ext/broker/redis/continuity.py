"""The Redis broker's continuity (`RememberedRooms`, `DirectHistory`), for every server.

Keys (keys.py has the others; ``T`` a room's tagged prefix, ``R`` the room, ``a``/``b`` the
two usernames of a conversation in code point order, ``\\x1f`` between names):

``{-}:remembered:<username>``  sorted set room -> when joined (epoch seconds), at most
                  ``max_remembered_rooms`` (the oldest dropped), in the deployment's slot
``T:direct:R\\x1fa\\x1fb``  list of ``"<direct_seq> <frame>"``, oldest first, at most
                  ``direct_history_size`` entries and ``direct_history_bytes`` bytes
``T:direct-bytes:R\\x1fa\\x1fb``  the bytes of those frames
``T:direct-of:R\\x1f<username>``  set of ``a\\x1fb``: that identity's conversations in R
``T:direct-users:R``  the usernames with a conversation in R (what `direct_forget` walks)
``T:direct-seq:R``  the room's last direct_seq (never expires, so it never goes back)

A conversation's keys expire ``direct_history_ttl`` after its last kept message.
"""

from __future__ import annotations

import iavicenne_protocol as p

from .keys import Keys
from .link import RedisLink


class RedisContinuity:
    """Mixed into `RedisBroker`, which sets the link, the keys and the budgets."""

    _link: RedisLink
    _keys: Keys
    max_remembered_rooms: int
    direct_history_size: int
    direct_history_bytes: int
    direct_history_ttl: float

    def _remembered_key(self, username: str) -> str:
        return self._keys.global_key(f"remembered:{username}")

    # -- RememberedRooms --------------------------------------------------------------
    async def remember_room(self, username: str, room: str, at: float) -> None:
        key = self._remembered_key(username)
        await self._link.command("ZADD", key, at, room)
        await self._link.command("ZREMRANGEBYRANK", key, 0, -(self.max_remembered_rooms + 1))

    async def remembered_rooms(self, username: str) -> list[str]:
        raw = await self._link.command("ZREVRANGE", self._remembered_key(username), 0, -1)
        return [item.decode() for item in raw]

    async def forget_room(self, username: str, room: str) -> bool:
        return bool(await self._link.command("ZREM", self._remembered_key(username), room))

    # -- DirectHistory ----------------------------------------------------------------
    async def direct_keep(self, room: str, sender: str, recipient: str, frame: bytes) -> int:
        first, second = sorted((sender, recipient))
        seq = await self._link.run(
            "direct_keep",
            self._keys.tagged(room),
            room,
            first,
            second,
            frame,
            self.direct_history_size,
            self.direct_history_bytes,
            max(1, int(self.direct_history_ttl * 1000)),
        )
        return int(seq)

    async def direct_replay(self, room: str, username: str, since: int) -> tuple[list[bytes], int]:
        last, found = await self._link.run("direct_replay", self._keys.tagged(room), room, username, since)
        kept = []
        for item in found:
            seq, _, frame = bytes(item).partition(b" ")
            kept.append((int(seq), frame))
        kept.sort(key=lambda entry: entry[0])
        return [p.with_direct_seq(seq, frame) for seq, frame in kept], int(last)

    async def direct_forget(self, room: str) -> None:
        await self._link.run("direct_forget", self._keys.tagged(room), room)
