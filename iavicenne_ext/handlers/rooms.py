"""The room socket (`{base_url}iavicenne/ws/mcp`): the seed's MCP protocol, and more.

Each method `_on_<type>` answers one client frame type. Unlike the seed, a connection
may be in several rooms at once, so `message` names its room (it may omit it while the
connection is in exactly one room, as seed clients do).
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar

import iavicenne_protocol as p
from iavicenne_protocol import SyncMessage, decode_sync

from ..access import USERNAME_MAX_LENGTH
from ..rooms import RoomHub
from ..shared_pacing import Meter
from ..shared_state import SharedDocs
from .budgets import Limits, Quotas
from .frame_dispatch import _carry_on as carry_on
from .protocol_socket import ProtocolSocket

MODERATION_ACTIONS = (
    p.ModerationAction.MUTE,
    p.ModerationAction.UNMUTE,
    p.ModerationAction.REMOVE,
    p.ModerationAction.READMIT,
)


class RoomSocketHandler(ProtocolSocket):
    known_types = p.ROOM_REQUESTS
    frame_handlers: ClassVar[dict[str, str]] = {
        p.CONNECT: "_on_connect",
        p.JOIN_ROOM: "_on_join_room",
        p.LEAVE_ROOM: "_on_leave_room",
        p.MESSAGE: "_on_message",
        p.PRESENCE: "_on_presence",
        p.DIRECT_MESSAGE: "_on_direct_message",
        p.DISCONNECT: "_on_disconnect",
        p.SHARED: "_on_shared",
        p.LIST_MEMBERS: "_on_list_members",
        p.EDIT_MESSAGE: "_on_edit_message",
        p.DELETE_MESSAGE: "_on_delete_message",
        p.READ: "_on_read",
        p.MODERATE: "_on_moderate",
        p.LIST_MY_ROOMS: "_on_list_my_rooms",
        p.FORGET_ROOM: "_on_forget_room",
    }

    def initialize(self, *, hub: RoomHub, quotas: Quotas, shared_docs: SharedDocs | None = None) -> None:
        super().initialize(hub=hub, quotas=quotas)
        self.shared_docs = shared_docs
        self.user_id = ""  # until `connect` (or the first join-room); no name is empty
        self.rooms: set[str] = set()
        # room -> the seq of this identity's own last message whose read position is still to
        # be moved; None: no move on its way (_read_own)
        self._own_reads: dict[str, int] | None = None

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
        await self.hub.check_name(self, user_id, "user_id", early=True)
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
        members_limit = request.payload.get("members_limit")
        if members_limit is not None:
            members_limit = p.read_members_limit(members_limit, "members_limit")
        presence = request.payload.get("presence", p.PresenceMode.EACH)
        if presence not in (p.PresenceMode.EACH, p.PresenceMode.BATCHED):
            raise p.ProtocolError(
                p.ErrorCode.INVALID_FIELD, f"presence must be {p.PresenceMode.EACH!r} or {p.PresenceMode.BATCHED!r}"
            )
        direct_since = request.payload.get(p.DIRECT_SINCE)
        if direct_since is not None and (not isinstance(direct_since, int) or isinstance(direct_since, bool) or direct_since < 0):
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"{p.DIRECT_SINCE} must be a non-negative integer (a direct_seq)")
        large = {
            "members_limit": members_limit,
            "batched": presence == p.PresenceMode.BATCHED,
            "direct_since": direct_since,
        }
        state = self._state_of(request.payload)
        if state == p.EMPTY_STATE:
            state = None  # as good as none: it must not hide the user's state on another connection
        if since is not None and self._replaying:
            raise p.limit_exceeded(
                "max_replay_bytes",
                self.limits.max_replay_bytes,
                f"history not replayed: {self._replaying} bytes of the last replay to this connection are not "
                "read yet; read them, then join-room with since again",
            )
        if room not in self.rooms and len(self.rooms) >= self.limits.max_rooms:
            raise p.limit_exceeded(
                "max_rooms_per_connection",
                self.limits.max_rooms,
                f"a connection may be in at most {self.limits.max_rooms} rooms; leave one first",
                code=p.ErrorCode.TOO_MANY_ROOMS,
            )
        if not self.user_id:
            # no `connect` was sent: the identity's name is the display name
            self.user_id = p.check_name(self.who.name or self.who.username, "user_id")
        await self.hub.check_display_name(self, request.payload.get("state"), request.ref, room=room, joining=True)
        assert self.account is not None  # frames are only handled on a counted socket
        if room in self.rooms:
            # already a member: a fresh snapshot (and replay, if asked), staying in the room
            self.account.join(room, self.limits)  # joins_per_second, over all the identity's sockets
            try:
                await self.hub.rejoin(self, room, state=state, since=since, epoch=epoch, ref=request.ref, **large)
            except p.ProtocolError as error:
                if error.code == p.ErrorCode.FORBIDDEN:  # removed, its eviction not here yet
                    self.rooms.discard(room)
                    await self._evicted(room)
                raise
            return
        # again on every join: a username first seen after `connect` is protected from then on
        await self.hub.check_name(self, self.user_id, "user_id", request.ref)
        self.enter(room)
        self.rooms.add(room)
        try:
            # after the room budgets, whose refusals say more; then, as news to every member,
            # its turn among the identity's joins and leaves (join_fanout_per_second)
            self.account.join(room, self.limits)
            await self.account.paced(self.hub.audience(room))
            if room not in self.rooms:  # the socket closed meanwhile: `_leave_all` took the room
                return
            joined = await self.hub.join(self, room, state=state, since=since, epoch=epoch, ref=request.ref, **large)
        except BaseException:
            self._forget(room)
            raise
        if not joined:  # the socket closed while joining
            self._forget(room)
        elif self._gone:  # the socket closed right after
            await self._leave_all(closing=True)
        else:
            await self.hub.confirm_access(self, room)

    async def _on_leave_room(self, request: p.Request) -> None:
        rooms = [request.room] if request.room is not None else sorted(self.rooms)
        if not rooms or rooms[0] not in self.rooms:
            raise p.ProtocolError(
                p.ErrorCode.NOT_IN_ROOM, "Not connected to any room" if not self.rooms else f"Not in room {rooms[0]!r}"
            )
        for room in rooms:
            if self.account is not None:  # news to every member: join_fanout_per_second
                await self.account.paced(self.hub.audience(room))
            if room not in self.rooms:  # closed while waiting: left with the others
                continue
            self.rooms.discard(room)
            try:
                await self.hub.leave(self, room)
            finally:
                self.exit(room)
            self.reply(p.ROOM_LEFT, request.ref, room=room)

    async def _on_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        reply_to = request.raw.get(p.REPLY_TO)
        if reply_to is not None:
            reply_to = _seq_field(reply_to, p.REPLY_TO, room)
        assert self.account is not None  # frames are only handled on a counted socket
        self.account.chat(room, self.limits)  # chat_messages_per_second, over its sockets
        publishing = self.hub.publish(self, room, request.payload, request.ref, reply_to=reply_to)
        self._publishing = True  # what follows only waits for the broker (see on_message)
        published = await publishing
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room, seq=published.seq, duplicate=published.duplicate)
        if not published.duplicate:  # what one says is read: not counted unread for oneself
            self._read_own(room, published.seq)

    def _read_own(self, room: str, seq: int) -> None:
        """Move this identity's read position to its own message, not waited for: at once
        when the broker answers at once (memory: no task per message), else in one task
        per connection that takes the messages sent meanwhile along (one broker call for
        a burst, not one per message)."""
        pending = self._own_reads
        if pending is not None:  # a move is on its way: the next one takes this seq
            pending[room] = max(seq, pending.get(room, 0))
            return
        work = self.hub.edits.read_own(self, room, seq)
        try:
            waiting_on = work.send(None)
        except StopIteration:
            return
        except Exception:
            self.log.exception("iavicenne: %s could not move its read position in %s", self.key, room)
            return
        self._own_reads = {}
        self.in_background(self._move_own_reads(work, waiting_on), "moving the sender's read position")

    async def _move_own_reads(self, started: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        try:
            await carry_on(started, waiting_on)
            while self._own_reads:
                room, seq = self._own_reads.popitem()
                await self.hub.edits.read_own(self, room, seq)
        finally:
            self._own_reads = None

    # -- kept messages and read positions (message_edits.py) ----------------------------
    async def _on_edit_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        seq = _seq_field(request.raw.get("seq"), "seq", room)
        await self.hub.edits.edit(self, room, seq, request.payload, request.ref)
        self._ack(request, room)

    async def _on_delete_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        seq = _seq_field(request.raw.get("seq"), "seq", room)
        await self.hub.edits.delete(self, room, seq, request.ref)
        self._ack(request, room)

    async def _on_read(self, request: p.Request) -> None:
        """``seq``: the last message read (the position only moves forward); without it, the
        position and unread count are only told (``unread``)."""
        room = self._room_of(request)
        seq = request.raw.get("seq")
        await self.hub.edits.mark_read(self, room, None if seq is None else _seq_field(seq, "seq", room), request.ref)

    async def _on_presence(self, request: p.Request) -> None:
        room = self._room_of(request)
        state = self._state_of(request.payload)
        if state is None:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "presence needs payload.state, a JSON object")
        await self.hub.check_display_name(self, request.payload["state"], request.ref, room=room)
        await self.hub.set_state(self, room, state)
        self._ack(request, room)

    async def _on_direct_message(self, request: p.Request) -> None:
        room = self._room_of(request)
        to = request.raw.get("to")
        if to is None:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "direct-message needs 'to', the user_id of a member of the room")
        to = p.check_name(to, "to")
        assert self.account is not None
        self.account.chat(room, self.limits)
        sent = await self.hub.direct(self, room, to, request.payload, request.ref)
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room, duplicate=sent is None, **(sent or {}))

    async def _on_list_members(self, request: p.Request) -> None:
        """The next page of a room's members: ``payload.after`` (a cursor, the start if
        absent) and ``payload.limit`` (max_snapshot_members if absent). Members only."""
        room = self._room_of(request)
        try:
            after = request.payload.get("after")
            after = "" if after is None else p.read_members_cursor(after, "after")
            limit = request.payload.get("limit")
            if limit is not None:
                limit = p.read_members_limit(limit, "limit")
            await self.hub.list_members(self, room, after=after, limit=limit, ref=request.ref)
        except p.ProtocolError as error:
            error.fields.setdefault("room", room)
            raise

    async def _on_moderate(self, request: p.Request) -> None:
        """The room's owner mutes, unmutes, removes or readmits ``payload.username`` (an
        identity's username, not a user_id: it holds for all its connections and names).
        The owner need not be in the room; anyone else gets ``forbidden``."""
        room = request.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "moderate needs 'room'", room=room)
        action = request.payload.get("action")
        if action not in MODERATION_ACTIONS:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"action must be one of {', '.join(MODERATION_ACTIONS)}", room=room)
        username = request.payload.get("username")
        if not isinstance(username, str) or not 0 < len(username) <= USERNAME_MAX_LENGTH or not username.isprintable():
            raise p.ProtocolError(
                p.ErrorCode.INVALID_FIELD,
                f"username must be an identity's username: 1 to {USERNAME_MAX_LENGTH} printable characters",
                room=room,
            )
        await self.hub.moderate(self, room, username, action, request.ref)
        self._ack(request, room)

    # -- continuity (iavicenne_ext/continuity.py) -------------------------------------------
    async def _on_list_my_rooms(self, request: p.Request) -> None:
        """The rooms this identity is in by its account (any of its connections joined them),
        newest first: what a new window rejoins."""
        rooms = await self.hub.continuity.my_rooms(self.who)
        self.reply(p.MY_ROOMS, request.ref, rooms=rooms)

    async def _on_forget_room(self, request: p.Request) -> None:
        """The person left `room` for good: no window of theirs rejoins it (this connection
        stays in it until it sends leave-room)."""
        room = request.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.ROOM_REQUIRED, "forget-room needs room, the room to forget")
        forgotten = await self.hub.continuity.forget(self.who.username, room)
        self.reply(p.ROOM_FORGOTTEN, request.ref, room=room, forgotten=forgotten)

    async def _on_disconnect(self, request: p.Request) -> None:
        await self._leave_all(closing=False)
        self.close(p.CLOSE_NORMAL, "disconnect requested")

    # -- shared state (shared_state.py): the room's Yjs document -----------------------
    async def _on_shared(self, request: p.Request) -> None:
        """One y-sync message: step 1 is answered (step 2, then the server's step 1), step 2
        and updates are checked, kept and sent to the room's other connections.

        Only members read or write (`_room_of`: the connection joined, so `may_enter` let it
        in, and an eviction takes it out). Every member may write: access records have no
        read-only role (docs/protocol.md, "Shared state"). The time each frame costs is
        charged to the identity's share (``shared_cpu_per_second``, shared_pacing.py).
        """
        room = self._room_of(request)
        docs = self.shared_docs
        if docs is None:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, "this server keeps no shared documents", room=room)
        try:
            message = decode_sync(request.payload.get("sync"), max_bytes=docs.max_update_bytes)
            if message.step == p.SyncStep.STEP1:
                answer, state = await docs.missing(room, message.payload, self.who.username)
                with Meter() as writing:  # the frame of a whole document costs as much as the answer
                    self.reply(p.SHARED, request.ref, room=room, sync=answer, max_bytes=docs.max_bytes, writable=True)
                    # so the client sends what the server lacks: its edits made while disconnected
                    self.reply(p.SHARED, room=room, sync=state)
                docs.pacing.charge(self.who.username, writing.spent)
                return
            kept = await docs.apply(room, message.payload, self.who.username)
        except p.ProtocolError as error:
            error.fields.setdefault("room", room)  # the client tells which document refused
            raise
        if kept is not None:
            update = SyncMessage(p.SyncStep.UPDATE, kept).b64()
            frame = p.encoded(p.SHARED, room=room, sync=update, user_id=self.user_id, identity=self.identity)
            await self.hub.broadcast(self, room, frame)
        self._ack(request, room)

    # -- helpers --------------------------------------------------------------------
    def exit(self, room: str) -> None:
        """`room` is left: once no connection of this server is in it, its document is no
        longer kept decoded here (shared_state.py; built again from the log when needed)."""
        super().exit(room)
        if self.shared_docs is not None and room not in self.hub.local:
            self.shared_docs.release(room)

    async def _leave_all(self, *, closing: bool) -> None:
        rooms, self.rooms = self.rooms, set()
        for room in sorted(rooms):
            try:
                await self.hub.leave(self, room, closing=closing)
            except Exception:
                self.log.exception("iavicenne: %s could not leave %s", self.key, room)
            finally:
                self.exit(room)
            if not closing:
                self.reply(p.ROOM_LEFT, room=room)

    def evicted(self, room: str) -> None:
        """Removed from `room` (its ``room-left`` with reason ``removed`` is queued): leave it."""
        if room in self.rooms:
            self.rooms.discard(room)
            self.in_background(self._evicted(room), "leaving a room this identity was removed from")

    async def _evicted(self, room: str) -> None:
        try:
            await self.hub.leave(self, room, closing=True)  # the others get user-left
        finally:
            self.exit(room)

    def _forget(self, room: str) -> None:
        """A join that did not happen (unless `_leave_all` took the room meanwhile)."""
        if room in self.rooms:
            self.rooms.discard(room)
            self.exit(room)

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

    def _state_of(self, payload: dict[str, Any]) -> bytes | None:
        """``payload.state`` encoded once, within its budgets; None when there is none."""
        state = payload.get("state")
        if state is None:
            return None
        if not isinstance(state, dict):
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "state must be a JSON object")
        return encode_state(state, self.limits)

    def _ack(self, request: p.Request, room: str) -> None:
        if request.ref is not None:
            self.reply(p.ACK, request.ref, room=room)


def _seq_field(value: Any, field: str, room: str) -> int:
    """A request's seq of a kept message: a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"{field} must be a positive integer (a message's seq)", room=room)
    return value


def encode_state(state: dict[str, Any], limits: Limits) -> bytes:
    """A presence state encoded once, or `limit-exceeded` naming the budget it breaks.

    Keys and depth are counted first, stopping at the first container over a budget, so
    checking a huge state costs no more than checking one at the limit.
    """
    max_depth, max_keys, max_bytes = limits.max_state_depth, limits.max_state_keys, limits.max_state_bytes
    keys = 0
    text = 0  # characters of every key and string: the encoded size is at least this
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(state, 1)]
    while stack:
        value, depth = stack.pop()
        keys += len(value)
        if keys > max_keys:
            raise p.limit_exceeded(
                "max_state_keys", max_keys, "presence state not set: too many keys and array items; keep it small"
            )
        if isinstance(value, dict):
            text += sum(len(key) for key in value)
            children: Iterable[Any] = value.values()
        else:
            children = value
        for child in children:
            if isinstance(child, str):
                text += len(child)
            elif isinstance(child, (dict, list)):
                if depth >= max_depth:
                    raise p.limit_exceeded(
                        "max_state_depth", max_depth, "presence state not set: objects and arrays nested too deep"
                    )
                stack.append((child, depth + 1))
        if text > max_bytes:
            break  # too large whatever the rest holds
    encoded = p.encode(state) if text <= max_bytes else b""
    if text > max_bytes or len(encoded) > max_bytes:
        size = f"{len(encoded)} bytes" if encoded else f"more than {max_bytes} bytes"
        raise p.limit_exceeded(
            "max_state_bytes",
            max_bytes,
            f"presence state not set: {size} encoded; keep what others need to see, share the rest as messages",
        )
    return p.Raw(encoded)
