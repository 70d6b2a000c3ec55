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

Events (``message``, ``presence``, ``gap``, ``connected``, ``disconnected``,
``reconnecting``, ``rate-limited``, ``error``, ``closed``) come as callbacks
(``client.on("message", cb)``) or async iterators (``async for m in room.messages()``);
their types are in `iavicenne.events`.

**Recent history.** ``await room.recent(20)`` returns the last messages the server keeps
(what was said before we came): the protocol's ``since`` replay, asked for on the socket
we are joined on, so nothing changes for the others.

**Control messages.** A direct message whose payload carries the key ``"iavicenne"``
(`CONTROL`) is the library talking to itself across kernels (a peer link relayed
through the server, a connection describing itself): it is a ``control`` event, never
a ``message``. Errors a user can cause are exceptions that say what to fix
(`iavicenne.errors`): `AuthenticationError` (HTTP 403, a wrong token),
`ServerUnreachable`, `NameTaken`, `ServerNotFound`.

The frame types and error codes are `iavicenne_ext.protocol`'s: defined once, imported
here. Peers of a signaling room are `iavicenne.signaling`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from tornado.websocket import WebSocketClientConnection

from iavicenne_ext import protocol as p

from .connection import Disconnected, Endpoint
from .delivery import SeenSet, SeqTracker
from .discovery import ServerInfo, discover_server
from .errors import ClientError, RequestFailed
from .events import EventEmitter, EventStream, Gap, Message, PresenceEvent

#: the payload key of a control message (see the module docstring)
CONTROL = p.CONTROL_KEY


class _HistoryFetch:
    """A `recent` request under way: the replay between `since` and `upto` it collects."""

    def __init__(self, ref: str, since: int, upto: int) -> None:
        self.ref = ref
        self.since = since
        self.upto = upto
        self.replying = False  # our room-joined reply arrived: the replay follows
        self.messages: list[Message] = []
        self.done: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()


class Room:
    """One joined room of a `RoomClient`: send, direct, presence, and its own events."""

    def __init__(self, client: RoomClient, name: str, state: dict[str, Any] | None) -> None:
        self.client = client
        self.name = name
        self.state = state or {}
        self.members: dict[str, dict[str, Any]] = {}
        self.history = SeqTracker()
        self.events = EventEmitter()
        self.left = False
        self._joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joined.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._fetch: _HistoryFetch | None = None
        self._fetching = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<Room {self.name!r} seq={self.seq} members={sorted(self.members)}>"

    @property
    def seq(self) -> int | None:
        """The last seq delivered; None before the first join."""
        return self.history.seq

    @property
    def epoch(self) -> str | None:
        return self.history.epoch

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        return self.events.on(kind, callback)

    def messages(self) -> EventStream:
        """An async iterator over this room's messages from now on."""
        return self.events.stream("message")

    def stream(self, *kinds: str) -> EventStream:
        return self.events.stream(*kinds)

    async def send(self, content: str | dict[str, Any]) -> dict[str, Any]:
        """Publish to the room; returns the server's ack (with the message's ``seq``) once it
        has it, however many reconnects that takes."""
        return await self.send_nowait(content)

    def send_nowait(self, content: str | dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        return self.client._send_reliable({"type": p.MESSAGE, "room": self.name, "payload": payload}, self.name)

    async def direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        """Send to every connection of member `to` only; `UnknownPeer` if it is not here."""
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        frame = {"type": p.DIRECT_MESSAGE, "room": self.name, "to": to, "payload": payload}
        return await self.client._send_reliable(frame, self.name)

    async def set_state(self, state: dict[str, Any]) -> None:
        """Set this connection's presence state (kept across reconnects)."""
        self._check_open()
        self.state = state
        await self.client._send_reliable({"type": p.PRESENCE, "room": self.name, "payload": {"state": state}}, self.name)

    async def leave(self) -> None:
        await self.client.leave(self.name)

    async def recent(self, count: int, *, after: int | None = None, timeout: float = 10.0) -> list[Message]:
        """Up to `count` of the last messages the server keeps for this room, oldest first
        (only those after seq `after`, when given): what was said before we joined.

        They are returned, not emitted as ``message`` events: a callback waiting for a
        new message must not take an old one. An empty list when there is nothing, or
        when the server refuses (a replay is still being read) or the socket drops.
        """
        self._check_open()
        async with self._fetching:
            upto = self.seq or 0
            since = max(0, upto - count)
            if after is not None:
                since = max(since, after)
            if count <= 0 or since >= upto:
                return []
            client = self.client
            await client._wait_ready()
            ref = client._ref()
            fetch = self._fetch = _HistoryFetch(ref, since, upto)
            resume: dict[str, Any] = {"since": since}
            if self.epoch is not None:
                resume["epoch"] = self.epoch
            # no state in the payload: the others see no presence change
            frame = {"type": p.JOIN_ROOM, "room": self.name, "ref": ref, "payload": resume}
            try:
                await client._request(client._ws, frame, expect=p.ROOM_JOINED)  # type: ignore[arg-type]
                return await asyncio.wait_for(asyncio.shield(fetch.done), timeout)
            except (asyncio.TimeoutError, Disconnected, RequestFailed):
                return list(fetch.messages)
            finally:
                self._fetch = None

    def _check_open(self) -> None:
        if self.left:
            raise ClientError(f"left room {self.name!r}; join it again to send")

    # -- frames from the client -------------------------------------------------------
    def _join_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if self.state:
            payload["state"] = self.state
        payload.update(self.history.resume())
        return payload

    def _on_joined(self, frame: dict[str, Any]) -> None:
        fetch = self._fetch
        if fetch is not None and frame.get("ref") == fetch.ref:
            # the reply to `recent`: a fresh snapshot and the replay; where the room's
            # history stands for us does not change
            fetch.replying = True
            self.members = {m["user_id"]: m for m in frame.get("members", [])}
            self._emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
            return
        gap = self.history.joined(frame)
        if gap is not None:
            self._emit("gap", Gap(self.name, gap.since, gap.epoch_changed))
        self.members = {m["user_id"]: m for m in frame.get("members", [])}
        self._emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
        if not self._joined.done():
            self._joined.set_result(None)

    def _on_message(self, frame: dict[str, Any], *, direct: bool = False) -> None:
        seq = None if direct else frame.get("seq")
        fetch = self._fetch
        if (
            fetch is not None
            and fetch.replying
            and isinstance(seq, int)
            and fetch.since < seq <= fetch.upto
            and self.seq is not None
            and seq <= self.seq
        ):
            fetch.messages.append(self._message(frame, seq, direct))
            return
        if not direct and not self.history.accept(seq):
            return
        message = self._message(frame, seq, direct)
        if direct and isinstance(message.content.get(CONTROL), str):
            self._emit("control", message)
            return
        self._emit("message", message)

    def _message(self, frame: dict[str, Any], seq: int | None, direct: bool) -> Message:
        content = frame.get("message")
        return Message(
            room=self.name,
            user_id=frame.get("user_id", ""),
            content=content if isinstance(content, dict) else {},
            seq=seq,
            identity=frame.get("identity") or {},
            timestamp=frame.get("timestamp", ""),
            direct=direct,
            ref=frame.get("ref"),
            raw=frame,
        )

    def _on_presence(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        user_id = frame.get("user_id")
        if user_id is None:
            return
        if kind == p.USER_LEFT:
            self.members.pop(user_id, None)
            event = "left"
        else:
            member = self.members.setdefault(user_id, {"user_id": user_id, "connections": 1})
            member["identity"] = frame.get("identity", member.get("identity", {}))
            member["state"] = frame.get("state", member.get("state", {}))
            event = "joined" if kind == p.USER_JOINED else "state"
        state = frame.get("state") or {}
        self._emit("presence", PresenceEvent(self.name, event, user_id, state, dict(self.members)))
        fetch = self._fetch
        # the server ends a replay with our own user-joined: all of it has arrived
        if (
            fetch is not None
            and fetch.replying
            and kind == p.USER_JOINED
            and user_id == self.client.user_id
            and not fetch.done.done()
        ):
            fetch.done.set_result(list(fetch.messages))

    def _emit(self, kind: str, event: Any) -> None:
        self.events.emit(kind, event)
        self.client.events.emit(kind, event)


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
        self.identity: dict[str, Any] = {}
        self.rooms: dict[str, Room] = {}
        self._direct_seen = SeenSet()

    @classmethod
    async def connect(
        cls, url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any
    ) -> RoomClient:
        client = cls(discover_server(url, token), user_id=user_id, **options)
        await client.start()
        return client

    async def join(self, room: str, *, state: dict[str, Any] | None = None) -> Room:
        """Join `room` (kept across reconnects); `NameTaken` if another user holds our user_id there."""
        p.check_name(room, "room")
        existing = self.rooms.get(room)
        if existing is not None:
            await existing._joined
            return existing
        handle = Room(self, room, state)
        self.rooms[room] = handle
        try:
            while not handle._joined.done():
                # disconnected now: the restore of the next socket joins it (or we do, if
                # that restore had started before the room was added)
                await self._wait_ready()
                if not handle._joined.done():
                    await self._join_quietly(self._ws, handle)
            await handle._joined
        except BaseException:
            if self.rooms.get(room) is handle:
                del self.rooms[room]
            raise
        return handle

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

    async def _restore(self, ws: WebSocketClientConnection) -> None:
        if self.user_id is not None:
            reply = await self._request(ws, {"type": p.CONNECT, "payload": {"user_id": self.user_id}}, expect=p.CONNECT)
            self.identity = reply.get("identity") or {}
        await asyncio.gather(*(self._join_quietly(ws, room) for room in list(self.rooms.values())))

    async def _join_quietly(self, ws: WebSocketClientConnection | None, room: Room) -> None:
        """Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect."""
        if ws is None:
            return
        try:
            frame = {"type": p.JOIN_ROOM, "room": room.name, "payload": room._join_payload()}
            reply = await self._request(ws, frame, expect=p.ROOM_JOINED)
        except Disconnected:
            return
        except RequestFailed as error:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.left = True
            self._outbox.drop_room(room.name, error)
            if not room._joined.done():
                room._joined.set_exception(error)
            else:  # refused on a rejoin: say so, the room is gone from this client
                room._emit("error", error)
            return
        if self.user_id is None:
            self.user_id = reply.get("user_id")

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        room = self.rooms.get(frame.get("room") or "")
        if room is None:
            return
        if kind == p.MESSAGE:
            room._on_message(frame)
        elif kind == p.ROOM_JOINED:
            room._on_joined(frame)
        elif kind in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE):
            room._on_presence(frame)
        elif kind == p.SHARED:  # the room's shared document: iavicenne.shared's
            room._emit("shared", frame)
        elif kind == p.DIRECT_MESSAGE:
            ref = frame.get("ref")
            # direct messages have no seq: a resend after a lost ack is recognised by its ref
            if ref is None or self._direct_seen.add((frame.get("user_id", ""), ref)):
                room._on_message(frame, direct=True)

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.DISCONNECT}))


async def connect(url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any) -> RoomClient:
    """``await connect(user_id="alice")``: a `RoomClient` to the server found by `discover_server`."""
    return await RoomClient.connect(url, token, user_id=user_id, **options)


__all__ = ["CONTROL", "Room", "RoomClient", "connect"]
