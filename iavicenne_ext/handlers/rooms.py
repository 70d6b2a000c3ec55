"""The room socket (`{base_url}iavicenne/ws/mcp`): the seed's MCP protocol, and more.

Each method `_on_<type>` answers one client frame type. Unlike the seed, a connection
may be in several rooms at once, so `message` names its room (it may omit it while the
connection is in exactly one room, as seed clients do).
"""

from __future__ import annotations

from typing import Any

from .. import protocol as p
from ..rooms import RoomHub
from .base import Limits, ProtocolSocket


class RoomSocketHandler(ProtocolSocket):
    known_types = p.ROOM_REQUESTS

    def initialize(self, *, hub: RoomHub, limits: Limits) -> None:  # type: ignore[override]
        super().initialize(limits=limits, server_id=hub.server_id)
        self.hub = hub
        self.user_id = ""  # until `connect` (or the first join-room); no name is empty
        self.rooms: set[str] = set()
        self._handlers = {
            p.CONNECT: self._on_connect,
            p.JOIN_ROOM: self._on_join_room,
            p.LEAVE_ROOM: self._on_leave_room,
            p.MESSAGE: self._on_message,
            p.PRESENCE: self._on_presence,
            p.DIRECT_MESSAGE: self._on_direct_message,
            p.DISCONNECT: self._on_disconnect,
        }

    # -- requests -------------------------------------------------------------------
    async def _on_connect(self, request: p.Request) -> None:
        user_id = request.payload.get("user_id")
        if user_id is None or user_id == "":
            raise p.ProtocolError(p.ErrorCode.USER_ID_REQUIRED, "user_id is required for connection")
        user_id = p.check_name(user_id, "user_id")
        if self.rooms and user_id != self.user_id:
            raise p.ProtocolError(
                p.ErrorCode.ALREADY_CONNECTED,
                "cannot change user_id while in rooms; leave-room first",
            )
        self.user_id = user_id
        self.reply(p.CONNECT, request.ref, status="success", user_id=user_id, identity=self.identity)

    async def _on_join_room(self, request: p.Request) -> None:
        room = request.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "Room ID is required")
        since = request.payload.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "since must be a non-negative integer (a seq)")
        epoch = request.payload.get("epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "epoch must be a string")
        state = self._state_of(request.payload)
        if room not in self.rooms and len(self.rooms) >= self.limits.max_rooms:
            raise p.ProtocolError(
                p.ErrorCode.TOO_MANY_ROOMS,
                f"a connection may be in at most {self.limits.max_rooms} rooms; leave one first",
            )
        if not self.user_id:
            # no `connect` was sent: the Jupyter user's name is the display name
            self.user_id = p.check_name(self.identity.get("name") or self.identity["username"], "user_id")
        if room in self.rooms:
            # already a member: a fresh snapshot (and replay, if asked), staying in the room
            await self.hub.rejoin(self, room, state=state or {}, since=since, epoch=epoch, ref=request.ref)
            return
        self.rooms.add(room)
        try:
            joined = await self.hub.join(self, room, state=state or {}, since=since, epoch=epoch, ref=request.ref)
        except BaseException:
            self.rooms.discard(room)
            raise
        if not joined:  # the socket closed while joining
            self.rooms.discard(room)
        elif self._gone:  # the socket closed right after
            await self._leave_all(closing=True)

    async def _on_leave_room(self, request: p.Request) -> None:
        rooms = [request.room] if request.room is not None else sorted(self.rooms)
        if not rooms or rooms[0] not in self.rooms:
            raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, "Not connected to any room" if not self.rooms else f"Not in room {rooms[0]!r}")
        for room in rooms:
            self.rooms.discard(room)
            await self.hub.leave(self, room)
            self.reply(p.ROOM_LEFT, request.ref, room=room)

    async def _on_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        published = await self.hub.publish(self, room, request.payload, request.ref)
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room, seq=published.seq, duplicate=published.duplicate)

    async def _on_presence(self, request: p.Request) -> None:
        room = self._room_of(request)
        state = self._state_of(request.payload)
        if state is None:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "presence needs payload.state, a JSON object")
        await self.hub.set_state(self, room, state)
        self._ack(request, room)

    async def _on_direct_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        to = request.raw.get("to")
        if to is None:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "direct-message needs 'to', the user_id of a member of the room")
        to = p.check_name(to, "to")
        sent = await self.hub.direct(self, room, to, request.payload, request.ref)
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room, duplicate=not sent)

    async def _on_disconnect(self, request: p.Request) -> None:
        await self._leave_all(closing=False)
        self.close(p.CLOSE_NORMAL, "disconnect requested")

    # -- helpers --------------------------------------------------------------------
    async def _leave_all(self, *, closing: bool) -> None:
        rooms, self.rooms = self.rooms, set()
        for room in sorted(rooms):
            try:
                await self.hub.leave(self, room, closing=closing)
            except Exception:
                self.log.exception("iavicenne: %s could not leave %s", self.key, room)
            if not closing:
                self.reply(p.ROOM_LEFT, room=room)

    def _room_of(self, request: p.Request) -> str:
        if request.room is not None:
            if request.room not in self.rooms:
                raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, f"Not in room {request.room!r}; join-room first")
            return request.room
        if not self.rooms:
            raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, "Not connected to any room")
        if len(self.rooms) > 1:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "room is required when the connection is in several rooms")
        return next(iter(self.rooms))

    @staticmethod
    def _state_of(payload: dict[str, Any]) -> dict[str, Any] | None:
        state = payload.get("state")
        if state is not None and not isinstance(state, dict):
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "state must be a JSON object")
        return state

    def _ack(self, request: p.Request, room: str) -> None:
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room)
