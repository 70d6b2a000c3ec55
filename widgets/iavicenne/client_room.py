"""One room a `RoomClient` has joined (`Room`): send, direct, presence, its members and
its own events, and the frames of that room the client hands it.

**Members of a large room.** A join asks for a first page of members and the others'
presence changes one frame per tick (`LARGE_ROOM_JOIN`, docs/protocol.md "Large rooms");
the rest of the members come page by page, applied in order with the presence frames, so
the view is the room's once the last page is in (then a ``snapshot`` presence event).

**Recent history.** ``await room.recent(20)`` returns the last messages the server keeps
(what was said before we came): the protocol's ``since`` replay, asked for on the socket
we are joined on, so nothing changes for the others.

**Kept direct messages.** ``RoomClient.join(room, direct_history=True)`` asks for the kept
direct messages of our identity's conversations in the room (docs/protocol.md,
"Continuity"): they arrive as ``message`` events with ``direct=True``. Once the room's
``direct_seq`` is known (that join, or a live direct message), every rejoin after a
reconnect asks for what came after it, so none sent while we were away is lost.

**Control messages.** A direct message whose payload carries the key ``"iavicenne"``
(`CONTROL`) is the library talking to itself across kernels (a peer link relayed
through the server, a connection describing itself): it is a ``control`` event, never
a ``message``.

A room asks its client for what it needs through `RoomOwner` (the socket, requests,
reliable sends), so this module does not import `RoomClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from tornado.websocket import WebSocketClientConnection

import iavicenne_protocol as p

from .connection import Disconnected
from .delivery import SeenSet, SeqTracker
from .errors import ClientError, RequestFailed
from .events import EventEmitter, EventStream, Gap, Message, MessageChange, PresenceEvent

#: the payload key of a control message (see the module docstring)
CONTROL = p.CONTROL_KEY


class RoomOwner(Protocol):
    """What a `Room` needs from the client it belongs to (`iavicenne.client.RoomClient`)."""

    #: our user_id in the rooms (None until the server named us)
    user_id: str | None
    #: ours, as the server verified it (set from our own user-joined when nothing said it before)
    identity: dict[str, Any]

    @property
    def events(self) -> EventEmitter:
        """The client's events: a room's events are emitted there too."""
        ...

    @property
    def socket(self) -> WebSocketClientConnection | None:
        """The socket joined now (None while disconnected)."""
        ...

    def send_reliable(self, frame: dict[str, Any], room: str) -> asyncio.Future[dict[str, Any]]:
        """Send `frame` until the server acknowledges it, across reconnects; the ack."""
        ...

    async def wait_ready(self) -> None:
        """Until a socket is connected and its rooms joined again."""
        ...

    def new_ref(self) -> str:
        """A fresh ``ref`` for a request frame."""
        ...

    async def request(self, ws: WebSocketClientConnection, frame: dict[str, Any], expect: str) -> dict[str, Any]:
        """Send `frame` on `ws` and wait for its `expect` reply; `Disconnected` if `ws` drops."""
        ...

    @property
    def connected(self) -> bool: ...

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """A callback for the client's events (``connected``, ``rate-limited``, ...)."""
        ...

    async def leave(self, room: str) -> None: ...

    async def invite(self, room: str, username: str) -> dict[str, Any]: ...

    async def remove_member(self, room: str, username: str) -> dict[str, Any]: ...

    # `iavicenne.shared` writes its sync frames with the connection's own methods
    # (`iavicenne.connection.Endpoint`); until it uses `socket` and `send_reliable`:
    _ws: WebSocketClientConnection | None

    @staticmethod
    def _write(ws: WebSocketClientConnection | None, data: str) -> None: ...

    def _send_reliable(self, frame: dict[str, Any], room: str | None = None) -> asyncio.Future[dict[str, Any]]: ...


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

    def __init__(self, client: RoomOwner, name: str, state: dict[str, Any] | None, *, direct_history: bool = False) -> None:
        self.client = client
        self.name = name
        self.state = state or {}
        # the last direct_seq delivered (docs/protocol.md "Continuity"); 0 asks for every kept one
        self.direct_seq: int | None = 0 if direct_history else None
        self._sent_direct: set[int] = set()  # the direct_seq of the kept ones we sent from here
        self._direct_seen = SeenSet(1000)
        self.members: dict[str, dict[str, Any]] = {}
        self.history = SeqTracker()
        self.events = EventEmitter()
        self.left = False
        # set once joined (a large room: once its last page of members is in)
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.joined.add_done_callback(lambda f: f.cancelled() or f.exception())
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
        return self.client.send_reliable({"type": p.MESSAGE, "room": self.name, "payload": payload}, self.name)

    async def reply(self, seq: int, content: str | dict[str, Any]) -> dict[str, Any]:
        """Publish a reply to message `seq`: the server adds ``reply`` (its author as
        verified and a quote); `RequestFailed` (``unknown-message``) when it is not kept."""
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        frame = {"type": p.MESSAGE, "room": self.name, p.REPLY_TO: seq, "payload": payload}
        return await self.client.send_reliable(frame, self.name)

    async def edit(self, seq: int, content: str | dict[str, Any]) -> dict[str, Any]:
        """Replace the text of our message `seq` (everyone sees ``edited`` events, and the
        history keeps the new text); `Forbidden` for another's message."""
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        frame = {"type": p.EDIT_MESSAGE, "room": self.name, "seq": seq, "payload": payload}
        return await self.client.send_reliable(frame, self.name)

    async def delete(self, seq: int) -> dict[str, Any]:
        """Delete message `seq` (ours, or any in a room we own): its text leaves the history."""
        self._check_open()
        return await self.client.send_reliable({"type": p.DELETE_MESSAGE, "room": self.name, "seq": seq}, self.name)

    async def mark_read(self, seq: int | None = None) -> dict[str, Any]:
        """Move our read position to message `seq` (default: the last one seen); the
        ``unread`` answer (``read``, ``seq``, ``unread``), which our other connections get too."""
        self._check_open()
        client = self.client
        await client.wait_ready()
        frame: dict[str, Any] = {"type": p.READ, "room": self.name, "ref": client.new_ref()}
        if seq is not None or self.seq is not None:
            frame["seq"] = seq if seq is not None else self.seq
        return await client.request(client.socket, frame, expect=p.UNREAD)  # type: ignore[arg-type]

    async def unread(self) -> int:
        """How many messages of the room we have not read (the server's count, every device's)."""
        self._check_open()
        client = self.client
        await client.wait_ready()
        frame = {"type": p.READ, "room": self.name, "ref": client.new_ref()}
        answer = await client.request(client.socket, frame, expect=p.UNREAD)  # type: ignore[arg-type]
        return int(answer.get("unread") or 0)

    async def direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        """Send to every connection of member `to` only; `UnknownPeer` if it is not here."""
        payload = {"content": content} if isinstance(content, str) else content
        self._check_open()
        frame = {"type": p.DIRECT_MESSAGE, "room": self.name, "to": to, "payload": payload}
        ack = await self.client.send_reliable(frame, self.name)
        if isinstance(ack.get(p.DIRECT_SEQ), int):
            # kept: a replay after a reconnect brings it back to us; we sent it, so it is not news
            self._sent_direct.add(ack[p.DIRECT_SEQ])
        return ack

    async def set_state(self, state: dict[str, Any]) -> None:
        """Set this connection's presence state (kept across reconnects)."""
        self._check_open()
        self.state = state
        await self.client.send_reliable({"type": p.PRESENCE, "room": self.name, "payload": {"state": state}}, self.name)

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
            await client.wait_ready()
            ref = client.new_ref()
            fetch = self._fetch = _HistoryFetch(ref, since, upto)
            resume: dict[str, Any] = {"since": since}
            if self.epoch is not None:
                resume["epoch"] = self.epoch
            # no state in the payload: the others see no presence change
            frame = {"type": p.JOIN_ROOM, "room": self.name, "ref": ref, "payload": {**LARGE_ROOM_JOIN, **resume}}
            try:
                await client.request(client.socket, frame, expect=p.ROOM_JOINED)  # type: ignore[arg-type]
                return await asyncio.wait_for(asyncio.shield(fetch.done), timeout)
            except (asyncio.TimeoutError, Disconnected, RequestFailed):
                return list(fetch.messages)
            finally:
                self._fetch = None

    def _check_open(self) -> None:
        if self.left:
            raise ClientError(f"left room {self.name!r}; join it again to send")

    # -- frames from the client -------------------------------------------------------
    def join_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = dict(LARGE_ROOM_JOIN)
        if self.state:
            payload["state"] = self.state
        payload.update(self.history.resume())
        if self.direct_seq is not None:
            payload[p.DIRECT_SINCE] = self.direct_seq
        return payload

    def take_joined(self, frame: dict[str, Any]) -> None:
        fetch = self._fetch
        if fetch is not None and frame.get("ref") == fetch.ref:
            # the reply to `recent`: a fresh snapshot and the replay; where the room's
            # history stands for us does not change
            fetch.replying = True
            # the view was whole and kept up to date: the first page refreshes its part
            self._apply_page(frame.get("members", []), "", frame.get("members_next"))
            self.emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
            return
        gap = self.history.joined(frame)
        if gap is not None:
            self.emit("gap", Gap(self.name, gap.since, gap.epoch_changed))
        direct_seq = frame.get(p.DIRECT_SEQ)
        if isinstance(direct_seq, int) and self.direct_seq is None:
            self.direct_seq = direct_seq
        self._generation += 1
        self._pages.clear()
        self._apply_page(frame.get("members", []), "", frame.get("members_next"))
        cursor = frame.get("members_next")
        if isinstance(cursor, str):  # a large room: the rest, page by page, before the snapshot event
            self._paging = asyncio.ensure_future(self._page_rest(cursor, self._generation))
            return
        self._snapshot_done()

    def _snapshot_done(self) -> None:
        self.emit("presence", PresenceEvent(self.name, "snapshot", None, {}, dict(self.members)))
        if not self.joined.done():
            self.joined.set_result(None)

    async def _page_rest(self, cursor: str, generation: int) -> None:
        """Ask for the pages after the first; each is applied as it arrives (`take_members`),
        in order with the presence frames, so the view is the room's once the last is in."""
        client = self.client
        ws = client.socket
        try:
            while isinstance(cursor, str) and ws is not None and generation == self._generation:
                ref = client.new_ref()
                self._pages[ref] = p.read_members_cursor(cursor, "members_next")
                frame = {"type": p.LIST_MEMBERS, "room": self.name, "ref": ref, "payload": {"after": cursor}}
                reply = await client.request(ws, frame, expect=p.MEMBERS)
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

    def take_members(self, frame: dict[str, Any]) -> None:
        after = self._pages.pop(str(frame.get("ref")), None)
        if after is not None:
            self._apply_page(frame.get("members", []), after, frame.get("members_next"))

    def take_presence_batch(self, frame: dict[str, Any]) -> None:
        """A presence-batch: the same events, one per user, as the seed's frames would give."""
        for user_id in frame.get("left") or []:
            if self.members.pop(user_id, None) is not None:
                self.emit("presence", PresenceEvent(self.name, "left", user_id, {}, dict(self.members)))
        for entry in [*(frame.get("joined") or []), *(frame.get("updated") or [])]:
            user_id = entry.get("user_id") if isinstance(entry, dict) else None
            if not isinstance(user_id, str):
                continue
            state = entry.get("state") or {}
            known = self.members.get(user_id)
            if known is None:
                self.members[user_id] = {"user_id": user_id, "connections": 1, **entry}
                self.emit("presence", PresenceEvent(self.name, "joined", user_id, state, dict(self.members)))
            elif (
                known.get("state") != state
                or known.get("identity") != entry.get("identity")
                or known.get("connections", 1) != entry.get("connections", known.get("connections", 1))
            ):
                known.update(entry)
                self.emit("presence", PresenceEvent(self.name, "state", user_id, state, dict(self.members)))

    def take_message(self, frame: dict[str, Any], *, direct: bool = False) -> None:
        seq = None if direct else frame.get("seq")
        direct_seq = frame.get(p.DIRECT_SEQ) if direct else None
        if isinstance(direct_seq, int):  # a kept direct message: each once, live or replayed
            # each once (live ones from two servers may come out of order: a set, not the highest)
            if not self._direct_seen.add(direct_seq):
                return
            self.direct_seq = max(self.direct_seq or 0, direct_seq)  # a rejoin asks for what follows
            if direct_seq in self._sent_direct:
                return
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
            self.emit("control", message)
            return
        self.emit("message", message)

    def take_change(self, frame: dict[str, Any]) -> None:
        """A kept message was edited or deleted: a ``change`` event (`MessageChange`)."""
        seq = frame.get("seq")
        if not isinstance(seq, int):
            return
        edited = frame["type"] == p.MESSAGE_EDITED
        content = frame.get("message") if edited else {}
        change = MessageChange(
            room=self.name,
            seq=seq,
            kind="edited" if edited else "deleted",
            user_id=str(frame.get("user_id") or ""),
            content=content if isinstance(content, dict) else {},
            identity=frame.get("identity") or {},
            raw=frame,
        )
        self.emit("change", change)

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

    def take_presence(self, frame: dict[str, Any]) -> None:
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
            if isinstance(frame.get("connections"), int):  # each of the user's connections counts
                member["connections"] = frame["connections"]
            event = "joined" if kind == p.USER_JOINED else "state"
        state = frame.get("state") or {}
        self.emit("presence", PresenceEvent(self.name, event, user_id, state, dict(self.members)))
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

    def emit(self, kind: str, event: Any) -> None:
        self.events.emit(kind, event)
        self.client.events.emit(kind, event)


__all__ = ["CONTROL", "LARGE_ROOM_JOIN", "Room", "RoomOwner"]
