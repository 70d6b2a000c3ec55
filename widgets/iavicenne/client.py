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

**Rooms with members.** A room is public unless someone made it otherwise:
``await client.create_room("q3", members=["bob"])`` makes a private one (or
``access="group", group="analysts"``), ``invite`` / ``remove_member`` change who may
enter it (its owner only; a member may remove themself), ``delete_room`` ends it, and
``list_rooms`` lists the rooms we may enter with their access kind. These are REST calls
on the same server with the same token (`RoomsAPI`, ``iavicenne/api/rooms``); a refusal
is the server's own sentence as an exception: `Forbidden` (not yours, not a member),
`RequestFailed` (a room that exists, a bad name; its ``code`` says which).

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
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from tornado.websocket import WebSocketClientConnection

import iavicenne_protocol as p

from .connection import Disconnected, Endpoint
from .delivery import SeenSet, SeqTracker
from .discovery import ServerInfo, discover_server
from .errors import ClientError, RequestFailed, ServerUnreachable, http_error
from .events import EventEmitter, EventStream, Gap, Message, PresenceEvent

#: the payload key of a control message (see the module docstring)
CONTROL = p.CONTROL_KEY
#: who may enter a room (``access`` of `RoomsAPI.create_room`)
ACCESS_KINDS = (p.AccessKind.PUBLIC, p.AccessKind.GROUP, p.AccessKind.PRIVATE)


class RoomsAPI:
    """The rooms' REST API on one server (``{base}iavicenne/api/rooms``), with its token:
    list the rooms we may enter, make a private or group room, invite and remove members.

    Each method returns the server's JSON answer (a room's access record: ``room``,
    ``access``, ``owner``, ``members``, ``group``) and raises what the server refused with
    its own message (`iavicenne.errors.http_error`)."""

    def __init__(self, server: ServerInfo, *, request_timeout: float = 10.0) -> None:
        self.server = server
        self.request_timeout = request_timeout

    async def list_rooms(self) -> list[dict[str, Any]]:
        """The rooms we may enter (with members now, or a record), each with its ``access``
        kind, ``members`` and ``connections`` counts (and ``owner``, ``group``, ``invited``
        of a room that is not public)."""
        answer = await self._call("GET", "rooms")
        rooms = answer.get("rooms") if isinstance(answer, dict) else None
        return [room for room in rooms if isinstance(room, dict)] if isinstance(rooms, list) else []

    async def create_room(
        self, room: str, *, access: str = p.AccessKind.PRIVATE, members: Iterable[str] = (), group: str | None = None
    ) -> dict[str, Any]:
        """Make `room` with `access` ``"private"`` (we own it; `members` may enter too),
        ``"group"`` (the members of Hub group `group`) or ``"public"``; the new record.
        A room that exists, or already has members or history, is refused (``409``)."""
        p.check_name(room, "room")
        if access not in ACCESS_KINDS:
            raise ValueError(f"access is one of {', '.join(ACCESS_KINDS)}, not {access!r}")
        if access == p.AccessKind.GROUP and not group:
            raise ValueError("a group room needs group=<the Hub group whose members may enter>")
        if isinstance(members, str):
            raise ValueError("members is a list of usernames (members=['bob']), not one string")
        body: dict[str, Any] = {"room": room, "access": access, "members": list(members)}
        if group is not None:
            body["group"] = group
        return await self._call("POST", "rooms", body)

    async def invite(self, room: str, username: str) -> dict[str, Any]:
        """Let `username` (a user's identity name) enter our private room `room`; the record."""
        return await self._call("PUT", self._member_path(room, username))

    async def remove_member(self, room: str, username: str) -> dict[str, Any]:
        """Take `username` off `room`'s members (they are evicted at once); the record."""
        return await self._call("DELETE", self._member_path(room, username))

    async def delete_room(self, room: str) -> None:
        """End our room `room`: its record goes and everyone in it is evicted."""
        p.check_name(room, "room")
        await self._call("DELETE", f"rooms/{quote(room, safe='')}")

    @staticmethod
    def _member_path(room: str, username: str) -> str:
        p.check_name(room, "room")
        if not isinstance(username, str) or not username:
            raise ValueError("username is the member's identity name, a non-empty string")
        return f"rooms/{quote(room, safe='')}/members/{quote(username, safe='')}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = f"{self.server.url}{p.REST_PATH}{path}"
        headers = {"Accept": "application/json"}
        if self.server.token:
            headers["Authorization"] = f"token {self.server.token}"
        payload: str | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body)
        elif method in ("PUT", "POST"):
            payload = ""  # tornado wants a body for these
        try:
            response = await AsyncHTTPClient().fetch(
                url, method=method, headers=headers, body=payload, request_timeout=self.request_timeout
            )
        except HTTPClientError as error:
            if error.code == 599:  # tornado's "no answer" (refused, timed out)
                raise ServerUnreachable(f"{self.server.url} did not answer: {error.message}") from None
            body_text = error.response.body if error.response is not None else None
            raise http_error(error.code, body_text, url) from None
        except OSError as error:
            raise ServerUnreachable(f"{self.server.url} did not answer: {error}") from None
        return json.loads(response.body) if response.body else None


#: what every join asks for (docs/protocol.md, "Large rooms"): a first page of members, the
#: rest page by page, and the others' presence changes one frame per tick
LARGE_ROOM_JOIN: dict[str, Any] = {"members_limit": 100, "presence": p.PresenceMode.BATCHED}


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
        # large rooms: the list-members requests under way (ref -> the user_id their page
        # starts after), and which room-joined they follow (a newer one drops them)
        self._pages: dict[str, str] = {}
        self._generation = 0
        self._paging: asyncio.Task[None] | None = None

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

    async def invite(self, username: str) -> dict[str, Any]:
        """Let `username` enter this room (ours, private); the room's access record."""
        return await self.client.invite(self.name, username)

    async def remove_member(self, username: str) -> dict[str, Any]:
        """Take `username` off this room's members (they are evicted); the access record."""
        return await self.client.remove_member(self.name, username)

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
            frame = {"type": p.JOIN_ROOM, "room": self.name, "ref": ref, "payload": {**LARGE_ROOM_JOIN, **resume}}
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
        payload: dict[str, Any] = dict(LARGE_ROOM_JOIN)
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
            # the view was whole and kept up to date: the first page refreshes its part
            self._apply_page(frame.get("members", []), "", frame.get("members_next"))
            self._emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
            return
        gap = self.history.joined(frame)
        if gap is not None:
            self._emit("gap", Gap(self.name, gap.since, gap.epoch_changed))
        self._generation += 1
        self._pages.clear()
        self._apply_page(frame.get("members", []), "", frame.get("members_next"))
        cursor = frame.get("members_next")
        if isinstance(cursor, str):  # a large room: the rest, page by page, before the snapshot event
            self._paging = asyncio.ensure_future(self._page_rest(cursor, self._generation))
            return
        self._snapshot_done()

    def _snapshot_done(self) -> None:
        self._emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
        if not self._joined.done():
            self._joined.set_result(None)

    async def _page_rest(self, cursor: str, generation: int) -> None:
        """Ask for the pages after the first; each is applied as it arrives (`_on_members`),
        in order with the presence frames, so the view is the room's once the last is in."""
        client = self.client
        ws = client._ws
        try:
            while isinstance(cursor, str) and ws is not None and generation == self._generation:
                ref = client._ref()
                self._pages[ref] = p.read_members_cursor(cursor, "members_next")
                frame = {"type": p.LIST_MEMBERS, "room": self.name, "ref": ref, "payload": {"after": cursor}}
                reply = await client._request(ws, frame, expect=p.MEMBERS)
                cursor = reply.get("members_next")  # type: ignore[assignment]
        except (Disconnected, ClientError, p.ProtocolError):
            return  # the next socket joins again, and pages again (or the client closed)
        if generation == self._generation and not self.left:
            self._snapshot_done()

    def _apply_page(self, members: list[dict[str, Any]], after: str, cursor: Any) -> None:
        """Make the view's members between user_id `after` and the page's end the page's.

        Pages are in user_id order: a member of that range that is not in the page has
        left (or was never there: a view left from an earlier socket).
        """
        last = p.read_members_cursor(cursor, "members_next") if isinstance(cursor, str) else None
        listed = {m["user_id"]: m for m in members if isinstance(m, dict) and isinstance(m.get("user_id"), str)}
        for user_id in list(self.members):
            if user_id > after and (last is None or user_id <= last) and user_id not in listed:
                del self.members[user_id]
        self.members.update(listed)

    def _on_members(self, frame: dict[str, Any]) -> None:
        after = self._pages.pop(str(frame.get("ref")), None)
        if after is not None:
            self._apply_page(frame.get("members", []), after, frame.get("members_next"))

    def _on_presence_batch(self, frame: dict[str, Any]) -> None:
        """A presence-batch: the same events, one per user, as the seed's frames would give."""
        for user_id in frame.get("left") or []:
            if self.members.pop(user_id, None) is not None:
                self._emit("presence", PresenceEvent(self.name, "left", user_id, {}, dict(self.members)))
        for entry in [*(frame.get("joined") or []), *(frame.get("updated") or [])]:
            user_id = entry.get("user_id") if isinstance(entry, dict) else None
            if not isinstance(user_id, str):
                continue
            state = entry.get("state") or {}
            known = self.members.get(user_id)
            if known is None:
                self.members[user_id] = {"user_id": user_id, "connections": 1, **entry}
                self._emit("presence", PresenceEvent(self.name, "joined", user_id, state, dict(self.members)))
            elif known.get("state") != state or known.get("identity") != entry.get("identity"):
                known.update(entry)
                self._emit("presence", PresenceEvent(self.name, "state", user_id, state, dict(self.members)))

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
        if kind == p.USER_JOINED and user_id == self.client.user_id and not self.client.identity:
            # joined without `connect` into a room larger than the first page: our own
            # user-joined says who we are
            identity = frame.get("identity")
            if isinstance(identity, dict):
                self.client.identity = identity
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
                # answered: in a large room the other pages follow, then `_joined` is set
                if not handle._joined.done() and await self._join_quietly(self._ws, handle):
                    break
            await handle._joined
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

    async def _join_quietly(self, ws: WebSocketClientConnection | None, room: Room) -> bool:
        """Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect.

        True once the server answered (with the first page of members, in a large room).
        """
        if ws is None:
            return False
        try:
            frame = {"type": p.JOIN_ROOM, "room": room.name, "payload": room._join_payload()}
            reply = await self._request(ws, frame, expect=p.ROOM_JOINED)
        except Disconnected:
            return False
        except RequestFailed as error:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.left = True
            self._outbox.drop_room(room.name, error)
            if not room._joined.done():
                room._joined.set_exception(error)
            else:  # refused on a rejoin: say so, the room is gone from this client
                room._emit("error", error)
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
            room._on_message(frame)
        elif kind == p.ROOM_JOINED:
            room._on_joined(frame)
        elif kind in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE):
            room._on_presence(frame)
        elif kind == p.PRESENCE_BATCH:
            room._on_presence_batch(frame)
        elif kind == p.MEMBERS:
            room._on_members(frame)
        elif kind == p.ROOM_LEFT:
            self._evicted(room, frame)
        elif kind == p.SHARED:  # the room's shared document: iavicenne.shared's
            room._emit("shared", frame)
        elif kind == p.DIRECT_MESSAGE:
            ref = frame.get("ref")
            # direct messages have no seq: a resend after a lost ack is recognised by its ref
            if ref is None or self._direct_seen.add((frame.get("user_id", ""), ref)):
                room._on_message(frame, direct=True)

    def _evicted(self, room: Room, frame: dict[str, Any]) -> None:
        """The server took us out of `room` (its owner removed us, or deleted it): no
        rejoin; a ``removed`` event says so (`leave` pops the room before its own
        room-left arrives, so that one never gets here)."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        room.left = True
        reason = str(frame.get("reason") or p.LeftReason.REMOVED)
        self._outbox.drop_room(room.name, ClientError(f"taken out of room {room.name!r} ({reason}) before this was acknowledged"))
        room._emit("removed", {"room": room.name, "reason": reason})
        room.events.close()

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.DISCONNECT}))


async def connect(url: str | None = None, token: str | None = None, *, user_id: str | None = None, **options: Any) -> RoomClient:
    """``await connect(user_id="alice")``: a `RoomClient` to the server found by `discover_server`."""
    return await RoomClient.connect(url, token, user_id=user_id, **options)


async def create_room(
    room: str,
    *,
    access: str = p.AccessKind.PRIVATE,
    members: Iterable[str] = (),
    group: str | None = None,
    url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """``await create_room("q3", members=["bob"])``: make a private room (ours, `members`
    invited), a group's (``access="group", group=...``) or a public one, on the server
    `discover_server` finds; its access record. Then ``join("q3")`` as usual."""
    return await RoomsAPI(discover_server(url, token)).create_room(room, access=access, members=members, group=group)


async def list_rooms(url: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
    """The rooms we may enter that have members now, with their access kind."""
    return await RoomsAPI(discover_server(url, token)).list_rooms()


__all__ = ["ACCESS_KINDS", "CONTROL", "Room", "RoomClient", "RoomsAPI", "connect", "create_room", "list_rooms"]
