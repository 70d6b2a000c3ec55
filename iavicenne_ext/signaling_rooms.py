"""Signaling rooms (the signaling socket's): hub rooms named ``protocol.SIGNALING_ROOM_PREFIX + room``.

A peer's presence entry is the broker's (its user_id is the peer_id), its frames are its
own: the hub subscribes and fans them out, but they have no history and no room-endpoint
presence frames.
"""

from __future__ import annotations

from typing import Any

import iavicenne_protocol as p

from .broker.base import JoinOutcome, PresenceEntry
from .broker.events import DirectFrame, RoomFrame, Supersede
from .local_rooms import Connection, signaling_room
from .room_admission import RoomAdmission


class SignalingRooms(RoomAdmission):
    """The hub's signaling rooms: peers by peer_id, frames relayed to one peer."""

    async def signaling_join(self, conn: Connection, room: str) -> bool:
        """Enter signaling room `room` as peer `conn.user_id`, receiving frames sent to it.

        True when the peer was already there through another connection: that one is
        superseded (its notice sent, its entry removed; it closes when the notice reaches
        it, on whichever server it is). `ProtocolError` (``name-taken``) when another
        identity holds the peer_id in the room.
        """
        key = signaling_room(room)
        peer_id = conn.user_id
        await self.check_access(conn, room)
        outcome = await self.presence.join(key, PresenceEntry(conn.key, peer_id, conn.identity))
        if outcome is JoinOutcome.TAKEN:
            raise p.ProtocolError(
                p.ErrorCode.NAME_TAKEN,
                f"peer_id {peer_id!r} is taken in room {room!r} by another user; join with another peer_id",
            )
        try:
            await self.check_access(conn, room)  # a record created meanwhile: see `_still_allowed`
        except p.ProtocolError:
            await self.presence.leave(key, conn.key, peer_id)
            raise
        try:
            await self.listen(conn, key)
        except BaseException:
            await self.presence.leave(key, conn.key, peer_id)
            raise
        if outcome is JoinOutcome.FIRST:
            return False
        notice = p.error_frame(
            p.ErrorCode.SUPERSEDED,
            f"peer_id {peer_id!r} in room {room!r} was taken over by a newer connection of the same user; "
            "this connection no longer takes part in the room",
            room=room,
        )
        await self.messages.emit(Supersede(key, p.encode(notice), to=peer_id, skip=conn.key))
        for entry in await self.presence.entries(key):
            if entry.user_id == peer_id and entry.conn != conn.key:
                await self.presence.leave(key, entry.conn, peer_id)
        return True

    async def announce_peer(self, conn: Connection, room: str, *, rejoined: bool) -> None:
        """Tell the others in signaling room `room` that peer `conn.user_id` is there."""
        extra: dict[str, Any] = {"rejoined": True} if rejoined else {}
        frame = p.encoded(p.PEER_JOINED, peer_id=conn.user_id, room=room, identity=conn.identity, **extra)
        await self.messages.emit(RoomFrame(signaling_room(room), frame, skip=conn.key))

    async def peers(self, room: str) -> dict[str, dict[str, Any]]:
        """The peers in signaling room `room`, on every server: peer_id -> its verified identity, by peer_id."""
        entries = sorted(await self.presence.entries(signaling_room(room)), key=lambda e: e.user_id)
        return {e.user_id: e.identity for e in entries}

    async def relay(self, conn: Connection, room: str, target: str, frame: bytes) -> None:
        """Deliver `frame` to peer `target` of signaling room `room` only, wherever it is.

        `ProtocolError` (``unknown-peer``) when the target is not in the room.
        """
        key = signaling_room(room)
        if not await self.presence.is_present(key, target):
            raise p.ProtocolError(
                p.ErrorCode.UNKNOWN_PEER,
                f"no peer {target!r} in room {room!r}: it left or never joined; wait for its peer-joined",
            )
        await self.messages.emit(DirectFrame(key, frame, to=target))

    async def signaling_leave(self, conn: Connection, room: str) -> None:
        """Leave signaling room `room`; `peer-left` goes to the others when this peer is gone from it."""
        key = signaling_room(room)
        await self.unlisten(conn, key)
        if await self.presence.leave(key, conn.key, conn.user_id):
            await self.messages.emit(RoomFrame(key, p.encoded(p.PEER_LEFT, peer_id=conn.user_id, room=room), skip=conn.key))

    async def signaling_drop(self, conn: Connection, room: str) -> None:
        """Stop delivering signaling room `room` to a superseded `conn` (its entry is gone already)."""
        await self.unlisten(conn, signaling_room(room))
