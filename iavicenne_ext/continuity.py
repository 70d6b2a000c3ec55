"""Continuity (docs/protocol.md, "Continuity"): what a person finds again in a new window,
tab or device: the rooms they are in, and their direct messages.

- **Remembered rooms.** Every chat-room join remembers the room for the identity (its
  username: every connection of the person, kernels included); ``list-my-rooms`` answers
  them, newest joined first, leaving out those the identity may no longer enter, and
  ``forget-room`` forgets one. A removal from a private room, and its deletion, forget it.
- **Kept direct messages.** A chat direct message (not a control message: those are the
  libraries' own traffic) is kept in its conversation, the two identities in the room,
  with the room's next ``direct_seq``; a ``join-room`` with ``direct_since`` replays the
  joining identity's own conversations after it. Nobody else's: the replay is by the
  verified username, and the recipient is the identity that holds the ``to`` name.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import iavicenne_protocol as p

from .access import may_enter
from .broker.base import BrokerUnavailable
from .broker.interfaces import AccessStore, DirectHistory, RememberedRooms
from .identity import Identity


class Continuity:
    """The hub's remembered rooms and kept direct messages, over the broker's interfaces."""

    def __init__(
        self,
        remembered: RememberedRooms,
        direct: DirectHistory,
        access_records: AccessStore,
        log: logging.Logger,
        *,
        max_message_bytes: int,
    ) -> None:
        self.remembered = remembered
        self.direct = direct
        self.access_records = access_records
        self.log = log
        self.max_message_bytes = max_message_bytes

    # -- remembered rooms ---------------------------------------------------------------
    async def joined(self, username: str, room: str) -> None:
        """`username` is in `room` now: remembered (an outage only costs the remembering)."""
        try:
            await self.remembered.remember_room(username, room, time.time())
        except BrokerUnavailable:
            self.log.debug("iavicenne: room %r not remembered for %r (broker unavailable)", room, username)

    async def my_rooms(self, who: Identity) -> list[str]:
        """The rooms `who` is in by its account, newest first, that it may still enter."""
        rooms = await self.remembered.remembered_rooms(who.username)
        return [room for room in rooms if may_enter(who, await self.access_records.get_access(room))]

    async def forget(self, username: str, room: str) -> bool:
        return await self.remembered.forget_room(username, room)

    async def forget_for(self, room: str, usernames: Iterable[str]) -> None:
        """`room` is no longer theirs (removed, or the room deleted)."""
        for username in sorted(set(usernames)):
            with contextlib.suppress(BrokerUnavailable):
                await self.remembered.forget_room(username, room)

    # -- kept direct messages -------------------------------------------------------------
    async def keep(
        self, room: str, sender: str, recipient: str, payload: dict[str, Any], frame: bytes
    ) -> tuple[bytes, dict[str, Any]]:
        """Keep a direct message's `frame` in its conversation: the frame to deliver (with its
        ``direct_seq``) and the ack's fields (``kept``, and why not: the option)."""
        if isinstance(payload.get(p.CONTROL_KEY), str):
            return frame, {}  # the libraries' own traffic (relays, descriptions): never kept
        if len(frame) > self.max_message_bytes:
            # delivered as before (a direct message may be larger), but not kept
            return frame, {"kept": False, "option": "max_message_bytes", "limit": self.max_message_bytes}
        direct_seq = await self.direct.direct_keep(room, sender, recipient, frame)
        return p.with_direct_seq(direct_seq, frame), {"kept": True, p.DIRECT_SEQ: direct_seq}

    async def replay(self, room: str, username: str, since: int) -> tuple[list[bytes], int]:
        return await self.direct.direct_replay(room, username, since)

    async def forget_direct(self, room: str) -> None:
        await self.direct.direct_forget(room)
