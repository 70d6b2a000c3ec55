"""The signaling socket (`{base_url}iavicenne/ws/signaling`): WebRTC offer/answer/ICE relay.

It answers the seed's signaling protocol (docs/protocol.md, "Signaling endpoint") and
adds: `joined` lists the peers already in the room (with `peer_identities`, each peer's
verified identity) and the ICE servers to use; `peer-joined` carries the newcomer's
`identity` and every relayed frame the sender's `source_identity`, as the server
authenticated it; a relay to a peer that is not in the room gets an `unknown-peer` error
instead of vanishing; a `peer_id` held in the room by another identity (or a look-alike of
it) is refused (`name-taken`), and one outside the name policy too (`name-not-yours`).
A signaling room has the access of the chat room of the same name: a private or group room
refuses who may not enter it (`forbidden`), and a removal takes the identity's peers out.
A `relay` frame (a peer link's frame when no direct path opens) is routed as an offer is:
to the target peer's connection only, with the verified source, no claim and no history;
one larger than `protocol.RELAY_MAX_BYTES` is refused (`limit-exceeded`) and the socket
goes on, and it counts in the identity's bytes per second like every frame (base.py).

One room per connection, as in the seed: `join` while in a room leaves it first.

Rooms, presence and delivery are the hub's (`RoomHub.signaling_join`, `relay`, ...): a
signaling room is carried as its own hub room, each peer's presence entry is the broker's,
and a relay reaches only the target's connection, on whichever server that connection is.

**Same identity, same peer_id: the newest connection takes over.** A kernel that
reconnects (network drop, its old socket not yet noticed dead) joins again with its
peer_id; it must not be refused. The new connection gets the peer_id; older connections
of that peer_id are removed from the room's presence, receive an ``error`` frame with
code ``superseded`` (on whichever server they are), and are closed with code 4000 right
after it (`superseded`), which tells a self-healing client not to reconnect. Others get
`peer-joined` again, with ``"rejoined": true``, so they know links to the old connection
may be gone.
"""

from __future__ import annotations

from typing import ClassVar

import iavicenne_protocol as p

from ..ice import IceConfig
from ..rooms import RoomHub, signaling_room
from .budgets import Quotas
from .protocol_socket import ProtocolSocket

# how the seed's errors name each relayed type
_LABEL = {p.OFFER: "offer", p.ANSWER: "answer", p.ICE_CANDIDATE: "ICE candidate", p.RELAY: "relay"}
# the payload field of each relayed type's body (a relay's: data)
_BODY = {**p.RELAY_BODY, p.RELAY: p.RELAY_DATA}


class SignalingSocketHandler(ProtocolSocket):
    known_types = p.SIGNALING_REQUESTS
    frame_handlers: ClassVar[dict[str, str]] = {
        p.JOIN: "_on_join",
        p.LEAVE: "_on_leave",
        p.OFFER: "_on_relay",
        p.ANSWER: "_on_relay",
        p.ICE_CANDIDATE: "_on_relay",
        p.RELAY: "_on_relay",
    }

    def initialize(self, *, hub: RoomHub, quotas: Quotas, ice: IceConfig) -> None:  # type: ignore[override]
        super().initialize(hub=hub, quotas=quotas)
        self.ice = ice
        # the hub addresses a connection by `user_id`: here, that is the peer_id
        self.user_id = ""  # until `join`; no name is empty
        self.room: str | None = None

    # -- requests -------------------------------------------------------------------
    async def _on_join(self, request: p.Request) -> None:
        room = request.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "Room ID is required")
        peer_id = request.payload.get("peer_id")
        if peer_id is None or peer_id == "":
            raise p.ProtocolError(p.ErrorCode.PEER_ID_REQUIRED, "peer_id is required")
        peer_id = p.check_name(peer_id, "peer_id")
        await self.hub.check_name(self, peer_id, "peer_id", request.ref)
        if self.room == room and self.user_id == peer_id:
            await self._send_joined(room, request)  # already there: a fresh snapshot
            return
        if self.room is not None:
            await self._leave()

        self.enter(signaling_room(room))
        self.user_id = peer_id  # the hub addresses this connection by it
        try:
            took_over = await self.hub.signaling_join(self, room)
        except BaseException:
            self.user_id = ""
            self.exit(signaling_room(room))
            raise
        self.room = room
        await self._send_joined(room, request)
        await self.hub.announce_peer(self, room, rejoined=took_over)
        if self._gone:  # the socket closed while joining
            await self._leave_all(closing=True)
        else:
            await self.hub.confirm_access(self, room, signaling=True)

    async def _on_leave(self, request: p.Request) -> None:
        if self.room is not None:
            await self._leave()
        if request.ref is not None:  # the seed answers nothing; an ack only when asked
            self.reply(p.ACK, request.ref)

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
        # the ref lets the target drop a resend whose ack was lost
        frame = p.encoded(
            kind, ref=request.ref, **{field: body}, source_peer_id=self.user_id, room=self.room, source_identity=self.identity
        )
        if kind == p.RELAY and len(frame) > p.RELAY_MAX_BYTES:
            raise p.ProtocolError(
                p.ErrorCode.LIMIT_EXCEEDED,
                f"relay not sent: {len(frame)} bytes once forwarded, over the {p.RELAY_MAX_BYTES} a relay frame may "
                "carry; send it in smaller pieces",
                limit=p.RELAY_MAX_BYTES,
            )
        await self.hub.relay(self, self.room, target, frame)
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=self.room)

    # -- helpers --------------------------------------------------------------------
    async def _send_joined(self, room: str, request: p.Request) -> None:
        identities = {peer: identity for peer, identity in (await self.hub.peers(room)).items() if peer != self.user_id}
        self.reply(
            p.JOINED,
            request.ref,
            room=room,
            peer_id=self.user_id,
            peers=list(identities),
            ice_servers=self.ice.for_peer(self.user_id),
            peer_identities=identities,
        )

    def superseded(self, room: str) -> None:
        """The take-over notice was just queued: stop, and close once it is written."""
        if self.room is not None and room == signaling_room(self.room):
            self.in_background(self._superseded(), "closing a superseded signaling socket")

    def evicted(self, room: str) -> None:
        """This identity was removed from the room (its ``room-left`` is queued): leave it."""
        if self.room is not None and room == signaling_room(self.room):
            self.in_background(self._leave(), "leaving a signaling room this identity was removed from")

    async def _superseded(self) -> None:
        room, self.room = self.room, None
        if room is not None:
            try:
                await self.hub.signaling_drop(self, room)
            finally:
                self.exit(signaling_room(room))
        if not self._gone:
            self._mark_gone()
            self.close(p.CLOSE_SUPERSEDED, "superseded by a newer connection of the same peer")

    async def _leave(self) -> None:
        """Leave the room; `peer-left` goes to the others when this peer is gone from it."""
        room, self.room = self.room, None
        if room is None or not self.user_id:
            return
        try:
            await self.hub.signaling_leave(self, room)
        finally:
            self.exit(signaling_room(room))

    async def _leave_all(self, *, closing: bool) -> None:
        try:
            await self._leave()
        except Exception:
            self.log.exception("iavicenne: %s could not leave its signaling room", self.key)
