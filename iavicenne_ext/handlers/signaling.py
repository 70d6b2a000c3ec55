"""The signaling socket (`{base_url}iavicenne/ws/signaling`): WebRTC offer/answer/ICE relay.

It answers the seed's signaling protocol (docs/protocol.md, "Signaling endpoint") and
adds: `joined` lists the peers already in the room and the ICE servers to use; a relay
to a peer that is not in the room gets an `unknown-peer` error instead of vanishing; a
`peer_id` held in the room by another identity is refused (`name-taken`).

One room per connection, as in the seed: `join` while in a room leaves it first.

Rooms, presence and delivery are the hub's and the broker's: a signaling room is carried
as the hub room ``"signaling/<room>"`` (no room name can contain '/', so it never meets
a chat room), each peer's presence entry is the broker's, and a relay is
``broker.emit(room, frame, to=target)``: it reaches only the target's connection, on
whichever server that connection is.

**Same identity, same peer_id: the newest connection takes over.** A kernel that
reconnects (network drop, its old socket not yet noticed dead) joins again with its
peer_id; it must not be refused. The new connection gets the peer_id; older connections
of that peer_id are removed from the room's presence, receive an ``error`` frame with
code ``superseded`` (through the broker: on whichever server they are), and are closed
with code 4000 as it passes, which tells a self-healing client not to reconnect. Others get `peer-joined` again, with
``"rejoined": true``, so they know links to the old connection may be gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import protocol as p
from ..broker.base import JoinOutcome, PresenceEntry
from ..ice import IceConfig
from ..rooms import RoomHub
from .base import Limits, ProtocolSocket

# the field that carries each relayed type's body, and its name in the seed's errors
_BODY = {p.OFFER: "offer", p.ANSWER: "answer", p.ICE_CANDIDATE: "candidate"}
_LABEL = {p.OFFER: "offer", p.ANSWER: "answer", p.ICE_CANDIDATE: "ICE candidate"}
# how a socket recognises the take-over notice among the frames it writes (p.encode's form)
_ERROR_PREFIX = b'{"type":"error"'
_SUPERSEDED_CODE = b'"code":"superseded"'


def hub_room(room: str) -> str:
    return p.SIGNALING_ROOM_PREFIX + room


class SignalingSocketHandler(ProtocolSocket):
    known_types = p.SIGNALING_REQUESTS

    def initialize(self, *, hub: RoomHub, limits: Limits, ice: IceConfig) -> None:  # type: ignore[override]
        super().initialize(limits=limits, server_id=hub.broker.server_id)
        self.hub = hub
        self.ice = ice
        # the hub addresses a connection by `user_id`: here, that is the peer_id
        self.user_id: str | None = None
        self.room: str | None = None
        self._handlers = {
            p.JOIN: self._on_join,
            p.LEAVE: self._on_leave,
            p.OFFER: self._on_relay,
            p.ANSWER: self._on_relay,
            p.ICE_CANDIDATE: self._on_relay,
        }

    # -- requests -------------------------------------------------------------------
    async def _on_join(self, request: p.Request) -> None:
        room = request.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "Room ID is required")
        peer_id = request.payload.get("peer_id")
        if peer_id is None or peer_id == "":
            raise p.ProtocolError(p.ErrorCode.PEER_ID_REQUIRED, "peer_id is required")
        peer_id = p.check_name(peer_id, "peer_id")
        broker = self.hub.broker
        if self.room == room and self.user_id == peer_id:
            await self._send_joined(room, request)  # already there: a fresh snapshot
            return
        if self.room is not None:
            await self._leave()

        key = hub_room(room)
        outcome = await broker.join(key, PresenceEntry(self.key, peer_id, self.identity))
        if outcome is JoinOutcome.TAKEN:
            raise p.ProtocolError(
                p.ErrorCode.NAME_TAKEN,
                f"peer_id {peer_id!r} is taken in room {room!r} by another user; join with another peer_id",
            )
        self.user_id = peer_id
        try:
            await self.hub.listen(self, key)
        except BaseException:
            await broker.leave(key, self.key, peer_id)
            raise
        self.room = room
        if outcome is JoinOutcome.AGAIN:
            await self._take_over(room, peer_id)
        await self._send_joined(room, request)
        announce: dict[str, Any] = {"type": p.PEER_JOINED, "peer_id": peer_id, "room": room}
        if outcome is JoinOutcome.AGAIN:
            announce["rejoined"] = True
        announce["timestamp"] = p.now_iso()
        await broker.emit(key, p.encode(announce), skip=self.key)
        if self._gone:  # the socket closed while joining
            await self._leave_all(closing=True)

    async def _on_leave(self, request: p.Request) -> None:
        if self.room is not None:
            await self._leave()
        if request.ref is not None:  # the seed answers nothing; an ack only when asked
            self.send_frame({"type": p.ACK, "ref": request.ref})

    async def _on_relay(self, request: p.Request) -> None:
        kind = request.type
        if self.room is None:
            raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, "Not connected to any room")
        if request.room is not None and request.room != self.room:
            raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, f"Not in room {request.room!r}; join it first")
        target = request.payload.get("target_peer_id")
        if target is None or target == "":
            raise p.ProtocolError(p.ErrorCode.TARGET_REQUIRED, f"target_peer_id is required for {_LABEL[kind]}")
        target = p.check_name(target, "target_peer_id")
        field = _BODY[kind]
        if field not in request.payload:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"{kind} needs payload.{field}")
        body = request.payload[field]
        if not isinstance(body, dict) and not (kind == p.ICE_CANDIDATE and body is None):
            # a null candidate is how browsers say "end of candidates"
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"payload.{field} must be a JSON object")
        key = hub_room(self.room)
        if not await self.hub.broker.is_present(key, target):
            raise p.ProtocolError(
                p.ErrorCode.UNKNOWN_PEER,
                f"no peer {target!r} in room {self.room!r}: it left or never joined; wait for its peer-joined",
            )
        frame = {"type": kind, field: body, "source_peer_id": self.user_id, "room": self.room}
        if request.ref is not None:  # lets the target drop a resend whose ack was lost
            frame["ref"] = request.ref
        frame["timestamp"] = p.now_iso()
        await self.hub.broker.emit(key, p.encode(frame), to=target)
        if request.ref is not None:
            self.send_frame({"type": p.ACK, "ref": request.ref, "room": self.room})

    # -- helpers --------------------------------------------------------------------
    async def _send_joined(self, room: str, request: p.Request) -> None:
        assert self.user_id is not None
        entries = await self.hub.broker.entries(hub_room(room))
        peers = sorted({e.user_id for e in entries} - {self.user_id})
        frame: dict[str, Any] = {
            "type": p.JOINED,
            "room": room,
            "peer_id": self.user_id,
            "peers": peers,
            "ice_servers": self.ice.for_peer(self.user_id),
        }
        if request.ref is not None:
            frame["ref"] = request.ref
        self.send_frame(frame)

    async def _take_over(self, room: str, peer_id: str) -> None:
        """Make this connection the only one of `peer_id` in `room` (see the module docstring)."""
        key = hub_room(room)
        broker = self.hub.broker
        notice = p.error_frame(
            p.ErrorCode.SUPERSEDED,
            f"peer_id {peer_id!r} in room {room!r} was taken over by a newer connection of the same user; "
            "this connection no longer takes part in the room",
            room=room,
        )
        await broker.emit(key, p.encode(notice), to=peer_id, skip=self.key)
        for entry in await broker.entries(key):
            if entry.user_id == peer_id and entry.conn != self.key:
                await broker.leave(key, entry.conn, peer_id)
        # an older connection closes when the notice reaches it (`send`), on whichever
        # server it is

    def send(self, frame: bytes) -> None:
        super().send(frame)
        if frame.startswith(_ERROR_PREFIX) and _SUPERSEDED_CODE in frame and self.room is not None:
            asyncio.ensure_future(self._superseded())

    async def _superseded(self) -> None:
        room, self.room = self.room, None
        if room is not None:
            await self.hub.unlisten(self, hub_room(room))
        if not self._gone:
            self._gone = True
            self.close(p.CLOSE_SUPERSEDED, "superseded by a newer connection of the same peer")

    async def _leave(self) -> None:
        """Leave the room; `peer-left` goes to the others when this peer is gone from it."""
        room, self.room = self.room, None
        if room is None or self.user_id is None:
            return
        key = hub_room(room)
        await self.hub.unlisten(self, key)
        if await self.hub.broker.leave(key, self.key, self.user_id):
            left = {"type": p.PEER_LEFT, "peer_id": self.user_id, "room": room, "timestamp": p.now_iso()}
            await self.hub.broker.emit(key, p.encode(left), skip=self.key)

    async def _leave_all(self, *, closing: bool) -> None:
        try:
            await self._leave()
        except Exception:
            self.log.exception("iavicenne: %s could not leave its signaling room", self.key)
