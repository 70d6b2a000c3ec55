"""The room client: chat, presence and direct messages over WebSocket, and it heals itself.

``client = await connect(user_id="alice")`` (or ``RoomClient.connect``) finds the server
by itself (`iavicenne.discovery`); ``room = await client.join("analysis")``, then
``await room.send(...)``. What a connection survives (a dropped network, a restarted
server) is `iavicenne.connection`'s work; this module adds what is particular to rooms:

* **rejoin** every room, and **recover** what was missed: each room remembers the last
  `seq` it delivered and its `epoch` (a `SeqTracker`); the rejoin asks ``since`` that seq
  and the server replays the rest (a ``gap`` event says when it could not, e.g. the
  history of a restarted in-memory server is gone). A replayed seq that was already
  delivered is skipped; a direct message (no seq) resent after a lost ack is recognised
  by its ref (a `SeenSet`);
* **resend** what the server did not acknowledge (the connection's outbox).

Events (``message``, ``presence``, ``gap``, ``removed`` (the owner took us out of a
private room, or deleted it: ``{"room", "reason"}``), ``connected``, ``disconnected``,
``reconnecting``, ``rate-limited``, ``error``, ``closed``) come as callbacks
(``client.on("message", cb)``) or async iterators (``async for m in room.messages()``);
their types are in `iavicenne.events`. A joined room is a `Room` (`iavicenne.client_room`:
its members, recent history, control messages); errors a user can cause are exceptions
that say what to fix (`iavicenne.errors`): `AuthenticationError` (HTTP 403, a wrong
token), `ServerUnreachable`, `NameTaken`, `ServerNotFound`.

**Rooms with members.** ``await client.create_room("q3", members=["bob"])`` makes a
private room, ``invite`` / ``remove_member`` change who may enter it, ``delete_room``
ends it, ``list_rooms`` lists the rooms we may enter: REST calls on the same server with
the same token (`iavicenne.rooms_api.RoomsAPI`).

**Who we are.** ``client.identity`` is the identity the server verified for this
connection (``username``, ``name``, ``display_name``); without a `user_id` we join under
its name (the server's choice, never a guess from the environment).

The frame types and error codes are `iavicenne_protocol`'s: defined once, imported
here. Peers of a signaling room are `iavicenne.signaling`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from tornado.websocket import WebSocketClientConnection

import iavicenne_protocol as p

from .client_room import CONTROL, Room
from .connection import Disconnected, Endpoint
from .delivery import SeenSet
from .discovery import ServerInfo, discover_server
from .errors import ClientError, RequestFailed
from .rooms_api import ACCESS_KINDS, RoomsAPI, create_room, list_rooms


class RoomClient(Endpoint):
    """A connection to the room endpoint; `join` rooms, then `room.send(...)`.

    ``client = await RoomClient.connect(user_id="alice")`` finds the server itself
    (see `discover_server`), or takes ``url=`` and ``token=``.
    """

    path = p.ROOMS_PATH

    def __init__(self, server: ServerInfo, *, user_id: str | None = None, **options: Any) -> None:
        super().__init__(server, **options)
        if user_id is not None:
            p.check_name(user_id, "user_id")
        self.user_id = user_id
        self.identity: dict[str, Any] = {}  # ours, as the server verified it (connect / room-joined)
        self.rooms: dict[str, Room] = {}
        self.api = RoomsAPI(server)
        self._direct_seen = SeenSet()

    @classmethod
    async def connect(
        cls, url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any
    ) -> RoomClient:
        client = cls(discover_server(url, token), user_id=user_id, **options)
        await client.start()
        return client

    async def join(self, room: str, *, state: dict[str, Any] | None = None, direct_history: bool = False) -> Room:
        """Join `room` (kept across reconnects); `NameTaken` if another user holds our user_id there.

        `direct_history`: the kept direct messages of our conversations there come first, as
        ``message`` events with ``direct=True`` (docs/protocol.md, "Continuity").
        """
        p.check_name(room, "room")
        existing = self.rooms.get(room)
        if existing is not None:
            await existing.joined
            return existing
        handle = Room(self, room, state, direct_history=direct_history)
        self.rooms[room] = handle
        try:
            while not handle.joined.done():
                # disconnected now: the restore of the next socket joins it (or we do, if
                # that restore had started before the room was added)
                await self._wait_ready()
                # answered: in a large room the other pages follow, then `joined` is set
                if not handle.joined.done() and await self._join_quietly(self._ws, handle):
                    break
            await handle.joined
        except BaseException:
            if self.rooms.get(room) is handle:
                del self.rooms[room]
            raise
        return handle

    # -- rooms with members (REST) -----------------------------------------------------
    async def list_rooms(self) -> list[dict[str, Any]]:
        """The rooms we may enter that have members now, with their access kind (`RoomsAPI`)."""
        return await self.api.list_rooms()

    async def create_room(
        self, room: str, *, access: str = p.AccessKind.PRIVATE, members: Iterable[str] = (), group: str | None = None
    ) -> dict[str, Any]:
        """Make `room` private (ours; `members` invited), a group's or public (`RoomsAPI`)."""
        return await self.api.create_room(room, access=access, members=members, group=group)

    async def invite(self, room: str, username: str) -> dict[str, Any]:
        return await self.api.invite(room, username)

    async def remove_member(self, room: str, username: str) -> dict[str, Any]:
        return await self.api.remove_member(room, username)

    async def delete_room(self, room: str) -> None:
        await self.api.delete_room(room)

    async def export_room(self, room: str, format: str = "md") -> str:
        """Room `room`'s history as Markdown (``"md"``) or jupyterlab-chat ``.chat`` JSON (``"chat"``)."""
        return await self.api.export_room(room, format)

    async def search(self, q: str, room: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Kept messages saying every word of `q`, newest first, in the rooms we may enter
        (or `room` only): ``room``, ``seq``, ``author``, ``text``, ``time`` (`RoomsAPI.search`)."""
        return await self.api.search(q, room=room, limit=limit)

    async def unread(self) -> list[dict[str, Any]]:
        """Our unread counts, room by room (`RoomsAPI.unread`)."""
        return await self.api.unread()

    # -- continuity: the rooms the server remembers for us (docs/protocol.md) -----------
    async def my_rooms(self) -> list[str]:
        """The rooms our identity is in by its account (any of its windows, tabs, kernels
        joined them, on any device), newest first."""
        reply = await self._ask({"type": p.LIST_MY_ROOMS}, p.MY_ROOMS)
        return [room for room in reply.get("rooms") or [] if isinstance(room, str)]

    async def rejoin_my_rooms(self, *, state: dict[str, Any] | None = None, direct_history: bool = True) -> list[Room]:
        """Join every room of `my_rooms` (opt-in: a kernel joins what its code says); those
        that refuse us now (removed, deleted) are skipped."""
        joined = []
        for name in await self.my_rooms():
            try:
                joined.append(await self.join(name, state=state, direct_history=direct_history))
            except RequestFailed:
                continue
        return joined

    async def forget(self, room: str) -> bool:
        """Leave `room` for good: no window of ours rejoins it. True if it was remembered."""
        await self.leave(room)
        reply = await self._ask({"type": p.FORGET_ROOM, "room": p.check_name(room, "room")}, p.ROOM_FORGOTTEN)
        return bool(reply.get("forgotten"))

    async def _ask(self, frame: dict[str, Any], expect: str) -> dict[str, Any]:
        """`frame`'s answer on the socket connected now (waiting for one)."""
        while True:
            await self._wait_ready()
            ws = self._ws
            if ws is None:
                continue
            try:
                return await self._request(ws, frame, expect=expect)
            except Disconnected:
                continue

    async def leave(self, room: str) -> None:
        handle = self.rooms.pop(room, None)
        if handle is None:
            return
        handle.left = True
        self._outbox.drop_room(room, ClientError(f"left room {room!r} before this was acknowledged"))
        if self._ready.is_set() and self._ws is not None:
            with contextlib.suppress(Disconnected, RequestFailed):
                await self._request(self._ws, {"type": p.LEAVE_ROOM, "room": room}, expect=p.ROOM_LEFT)
        handle.events.close()

    # -- what a joined room asks of its client (iavicenne.client_room.RoomOwner) ---------
    @property
    def socket(self) -> WebSocketClientConnection | None:
        return self._ws

    def send_reliable(self, frame: dict[str, Any], room: str) -> asyncio.Future[dict[str, Any]]:
        return self._send_reliable(frame, room)

    async def wait_ready(self) -> None:
        await self._wait_ready()

    def new_ref(self) -> str:
        return self._ref()

    async def request(self, ws: WebSocketClientConnection, frame: dict[str, Any], expect: str) -> dict[str, Any]:
        return await self._request(ws, frame, expect)

    async def _restore(self, ws: WebSocketClientConnection) -> None:
        if self.user_id is not None:
            reply = await self._request(ws, {"type": p.CONNECT, "payload": {"user_id": self.user_id}}, expect=p.CONNECT)
            self.identity = reply.get("identity") or {}
        await asyncio.gather(*(self._join_quietly(ws, room) for room in list(self.rooms.values())))

    async def _join_quietly(self, ws: WebSocketClientConnection | None, room: Room) -> bool:
        """Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect.

        True once the server answered (with the first page of members, in a large room).
        """
        if ws is None:
            return False
        try:
            frame = {"type": p.JOIN_ROOM, "room": room.name, "payload": room.join_payload()}
            reply = await self._request(ws, frame, expect=p.ROOM_JOINED)
        except Disconnected:
            return False
        except RequestFailed as error:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.left = True
            self._outbox.drop_room(room.name, error)
            if not room.joined.done():
                room.joined.set_exception(error)
            else:  # refused on a rejoin: say so, the room is gone from this client
                room.emit("error", error)
            return True
        if self.user_id is None:
            self.user_id = reply.get("user_id")
        if not self.identity:  # joined without `connect`: our entry in the snapshot says who we are
            for member in reply.get("members") or []:
                if (
                    isinstance(member, dict)
                    and member.get("user_id") == self.user_id
                    and isinstance(member.get("identity"), dict)
                ):
                    self.identity = member["identity"]
        return True

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        room = self.rooms.get(frame.get("room") or "")
        if room is None:
            return
        if kind == p.MESSAGE:
            room.take_message(frame)
        elif kind == p.ROOM_JOINED:
            room.take_joined(frame)
        elif kind in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE):
            room.take_presence(frame)
        elif kind == p.PRESENCE_BATCH:
            room.take_presence_batch(frame)
        elif kind == p.MEMBERS:
            room.take_members(frame)
        elif kind == p.ROOM_LEFT:
            self._evicted(room, frame)
        elif kind == p.SHARED:  # the room's shared document: iavicenne.shared's
            room.emit("shared", frame)
        elif kind in (p.MESSAGE_EDITED, p.MESSAGE_DELETED):
            room.take_change(frame)
        elif kind == p.UNREAD:
            room.emit("unread", frame)
        elif kind == p.DIRECT_MESSAGE:
            ref = frame.get("ref")
            # direct messages have no seq: a resend after a lost ack is recognised by its ref
            if ref is None or self._direct_seen.add((frame.get("user_id", ""), ref)):
                room.take_message(frame, direct=True)

    def _evicted(self, room: Room, frame: dict[str, Any]) -> None:
        """The server took us out of `room` (its owner removed us, or deleted it): no
        rejoin; a ``removed`` event says so (`leave` pops the room before its own
        room-left arrives, so that one never gets here)."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        room.left = True
        reason = str(frame.get("reason") or p.LeftReason.REMOVED)
        self._outbox.drop_room(room.name, ClientError(f"taken out of room {room.name!r} ({reason}) before this was acknowledged"))
        room.emit("removed", {"room": room.name, "reason": reason})
        room.events.close()

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.DISCONNECT}))


async def connect(url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any) -> RoomClient:
    """``await connect(user_id="alice")``: a `RoomClient` to the server found by `discover_server`."""
    return await RoomClient.connect(url, token, user_id=user_id, **options)


__all__ = ["ACCESS_KINDS", "CONTROL", "Room", "RoomClient", "RoomsAPI", "connect", "create_room", "list_rooms"]
