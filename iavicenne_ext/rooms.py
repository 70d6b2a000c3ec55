"""The room logic: joining and leaving rooms, their members and their ordered messages.

One `RoomHub` per server, and the handlers' only door to the broker. It turns requests of
a connection into broker operations and frames; what the broker delivers is written to
this server's connections by `LocalFanout` (local_rooms.py), the same bytes to each
recipient. A request it cannot serve raises `protocol.ProtocolError`. The hub is built in
layers, a file each: the local fan-out and its presence-batches (local_rooms.py,
presence_batches.py), who may enter under which name (room_admission.py), the signaling
rooms (signaling_rooms.py), and here the chat rooms' joins, messages and presence.

The hub reaches the backend through the narrow interfaces it uses (broker/interfaces.py):
messages and history, presence, access records, names, shared documents.

Rooms of thousands (docs/protocol.md, "Large rooms"): a join is answered with one page of
the members (the broker keeps them sorted, so the page costs its own size, not the
room's), and a connection that asked for ``presence: "batched"`` gets the presence changes
of other users as presence-batch frames (presence_batches.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import iavicenne_protocol as p

from .access import RoomAccess, may_receive
from .broker.base import BrokerUnavailable, DedupKey, JoinOutcome, Member, MemberOutcome, MembersPage, PresenceEntry, Published
from .broker.events import DirectFrame, PresenceFrame, RoomFrame
from .broker.interfaces import Broker, MessageSearch
from .continuity import Continuity
from .local_rooms import Connection, LocalRoom, Waiting, signaling_room
from .message_edits import MessageEdits
from .signaling_rooms import SignalingRooms

__all__ = ["Connection", "RoomHub", "signaling_room"]


class RoomHub(SignalingRooms):
    """Rooms of this server over a broker backend; the handlers call it, the broker feeds it.

    `broker` is the backend (`MemoryBroker`, `RedisBroker`): the hub keeps it as the narrow
    interfaces it uses (`messages`, `presence`, `access_records`, `identities`, `shared`,
    and through `continuity` the remembered rooms and kept direct messages).
    """

    def __init__(
        self,
        broker: Broker,
        log: logging.Logger,
        *,
        max_message_bytes: int,
        max_snapshot_members: int = 1000,
        presence_batch_interval: float = 0.05,
        presence_batch_frames_per_second: float = 5_000.0,
    ) -> None:
        super().__init__(
            log,
            messages=broker,
            presence=broker,
            access_records=broker,
            identities=broker,
            shared=broker,
            presence_batch_interval=presence_batch_interval,
            presence_batch_frames_per_second=presence_batch_frames_per_second,
        )
        self.max_message_bytes = max_message_bytes
        self.max_snapshot_members = max_snapshot_members
        # edits, deletions and replies of kept messages; read positions (message_edits.py)
        self.edits = MessageEdits(
            messages=broker, history=broker, access_records=broker, reads=broker, max_message_bytes=max_message_bytes
        )
        self.continuity = Continuity(broker, broker, broker, log, max_message_bytes=max_message_bytes)
        self.search: MessageSearch = broker  # full-text search of kept messages (REST)

    # -- requests ---------------------------------------------------------------------
    async def join(
        self,
        conn: Connection,
        room: str,
        *,
        state: bytes | None,
        since: int | None,
        epoch: str | None,
        ref: str | None = None,
        members_limit: int | None = None,
        batched: bool = False,
        direct_since: int | None = None,
    ) -> bool:
        """Join `room`: snapshot, replay of what was missed, then live frames.

        `state` is the encoded initial presence state (None: none). The snapshot lists at
        most `members_limit` members (None: max_snapshot_members); `batched`: the presence
        changes of others come as presence-batch frames.

        False if the connection closed meanwhile; `ProtocolError` (``name-taken``) when
        another identity holds `conn.user_id` in the room.
        """
        await self.check_access(conn, room, ref)
        if state is None:
            entry = PresenceEntry(conn.key, conn.user_id, conn.identity)
        else:
            entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state, time.time())
        outcome = await self.presence.join(room, entry)
        if outcome is JoinOutcome.TAKEN:
            raise p.ProtocolError(
                p.ErrorCode.NAME_TAKEN,
                f"user_id {conn.user_id!r} is taken in room {room!r} by another user; connect with another user_id",
                ref,
                room=room,
            )
        await self._still_allowed(conn, room, ref)
        local = self._local_room(room)

        async def undo() -> None:
            local.remove(conn)
            if not local and self.local.get(room) is local:
                del self.local[room]
            await self.presence.leave(room, conn.key, conn.user_id)

        return await self._welcome(
            conn,
            room,
            local,
            entry,
            since=since,
            epoch=epoch,
            ref=ref,
            announce=outcome is JoinOutcome.FIRST,
            again=outcome is JoinOutcome.AGAIN,
            undo=undo,
            members_limit=members_limit,
            batched=batched,
            direct_since=direct_since,
        )

    async def rejoin(
        self,
        conn: Connection,
        room: str,
        *,
        state: bytes | None,
        since: int | None,
        epoch: str | None,
        ref: str | None = None,
        members_limit: int | None = None,
        batched: bool = False,
        direct_since: int | None = None,
    ) -> bool:
        """`join-room` for a room `conn` is in: a fresh snapshot and replay, without leaving.

        Leaving and joining again would show the others a `user-left` and a `user-joined`
        for a user who never left, and lose the live frames sent in between.
        """
        await self.check_access(conn, room, ref)  # the replay too is only for those who may enter
        local = self.local[room]
        local.remove(conn)  # live frames wait in `joining` until the replay is written
        if state is not None:
            await self.set_state(conn, room, state)

        async def undo() -> None:
            local.joining_users.pop(conn.key, None)
            if local.joining.pop(conn.key, None) is not None:
                local.add(conn)

        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, p.EMPTY_STATE if state is None else state)
        return await self._welcome(
            conn,
            room,
            local,
            entry,
            since=since,
            epoch=epoch,
            ref=ref,
            announce=False,
            undo=undo,
            members_limit=members_limit,
            batched=batched,
            direct_since=direct_since,
        )

    async def _welcome(
        self,
        conn: Connection,
        room: str,
        local: LocalRoom,
        entry: PresenceEntry,
        *,
        since: int | None,
        epoch: str | None,
        ref: str | None,
        announce: bool,
        undo: Callable[[], Awaitable[None]],
        again: bool = False,
        members_limit: int | None = None,
        batched: bool = False,
        direct_since: int | None = None,
    ) -> bool:
        """Send `room-joined`, the replay and `user-joined`, then let live frames through.

        `announce`: the user's first connection in the room (the others get ``user-joined``);
        `again`: another connection of a user already here (the others get a ``presence``
        with the user's connections and state now).
        `direct_since`: the kept direct messages of this identity after it are replayed too.
        """
        waiting: Waiting = []
        local.joining[conn.key] = waiting
        local.joining_users[conn.key] = conn.user_id
        if batched:  # from now on: the batches, not each change (a batch sent meanwhile waits too)
            local.batched.add(conn.key)
        try:
            await asyncio.shield(local.subscribed)
            history = await self.messages.history(room, since, epoch)
            page = await self.presence.members_page(room, "", self.page_limit(members_limit))
            directs: list[bytes] = []
            if direct_since is not None:
                directs, direct_seq = await self.continuity.replay(room, conn.who.username, direct_since)
                position_extra = {p.DIRECT_SEQ: direct_seq}
            else:
                position_extra = {}
            if announce:  # the user's first connection: the member is this entry
                joined_frame = self._presence_frame(p.USER_JOINED, room, entry, connections=1)
            else:
                joined_frame = await self._member_frame(p.USER_JOINED, room, entry)
        except BaseException:
            await undo()
            raise
        if local.joining.get(conn.key) is not waiting:
            return False  # the connection closed meanwhile
        position: dict[str, Any] = {"seq": history.seq, "epoch": history.epoch, **position_extra}
        if since is not None:
            position["since"] = since
            position["recovered"] = history.recovered
        # each member's state is spliced in as the broker keeps it, never decoded
        conn.send(p.encoded(p.ROOM_JOINED, ref=ref, room=room, user_id=conn.user_id, **self._page_fields(page), **position))
        for frame in history.messages:
            conn.send(frame, replay=True)
        for frame in directs:
            conn.send(frame, replay=True)
        # ready: take live frames directly; first flush what arrived during the replay
        del local.joining[conn.key]
        local.joining_users.pop(conn.key, None)
        local.add(conn)
        for seq, frame in waiting:
            if seq == 0 or seq > history.seq:
                conn.send(frame)
        conn.send(joined_frame)  # the seed sends the joiner its own user-joined
        if announce:
            await self.messages.emit(PresenceFrame(room, joined_frame, skip=conn.key))
        elif again:
            # another connection of a user already here: the others see its count and the
            # user's state now (the newest of its connections': perhaps this one's)
            await self.messages.emit(PresenceFrame(room, await self._member_frame(p.PRESENCE, room, entry), skip=conn.key))
        if not room.startswith(p.SIGNALING_ROOM_PREFIX):
            await self.continuity.joined(conn.who.username, room)
        return True

    async def leave(self, conn: Connection, room: str, *, closing: bool = False) -> None:
        """Leave `room`; `user-left` goes to the room when the user's last connection leaves."""
        local = self.local.get(room)
        if local is not None:
            local.remove(conn)
        gone = await self.presence.leave(room, conn.key, conn.user_id)
        if local is not None and not local and self.local.get(room) is local:
            del self.local[room]
            await self.messages.unsubscribe(room)
        left = self._presence_frame(p.USER_LEFT, room, PresenceEntry(conn.key, conn.user_id, conn.identity))
        if not closing:
            conn.send(left)
        if gone:
            await self.messages.emit(PresenceFrame(room, left, skip=conn.key))
        else:  # the user is still here through other connections: one fewer, its state now
            changed = await self._member_frame(p.PRESENCE, room, PresenceEntry(conn.key, conn.user_id, conn.identity))
            await self.messages.emit(PresenceFrame(room, changed, skip=conn.key))

    async def publish(
        self, conn: Connection, room: str, payload: dict[str, Any], ref: str | None, *, reply_to: int | None = None
    ) -> Published:
        """Send a message to the room and keep it in history; `limit-exceeded` when too large
        for that, ``muted`` when the room's owner muted the sender's identity there.

        `reply_to`: the seq of a kept message it answers; the frame then carries ``reply``
        (that message's verified author and a quote), or ``unknown-message`` refuses it.
        """
        await self.check_not_muted(conn, room, ref)
        if reply_to is None:
            frame = p.encoded(p.MESSAGE, ref=ref, user_id=conn.user_id, message=payload, room=room, identity=conn.identity)
        else:
            reply = await self.edits.reply_field(room, reply_to, ref)
            frame = p.encoded(
                p.MESSAGE, ref=ref, user_id=conn.user_id, message=payload, room=room, identity=conn.identity, reply=reply
            )
        if len(frame) > self.max_message_bytes:
            raise p.limit_exceeded(
                "max_message_bytes",
                self.max_message_bytes,
                f"message not sent: {len(frame)} bytes encoded, too large to keep in the room's history; "
                "send less, or send it as a direct-message (not kept)",
            )
        return await self.messages.publish(room, frame, dedup=self._dedup_key(conn, room, ref))

    async def direct(
        self, conn: Connection, room: str, to: str, payload: dict[str, Any], ref: str | None
    ) -> dict[str, Any] | None:
        """Send to every connection of user `to` in `room`; None if `ref` was sent before (not
        sent again), else the ack's added fields (whether it was kept: continuity.py).

        `ProtocolError` (``unknown-user``) when that user is not in the room.
        """
        access = await self.check_access(conn, room, ref)
        # one identity holds a user_id in a room (names are claimed): the conversation's other side
        member = await self.presence.member(room, to)
        if member is None:
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_USER, f"no user {to!r} in room {room!r}")
        recipient = str(member.identity.get("username"))
        if access is not None and not may_receive(recipient, access):
            # removed a moment ago, its eviction on its way: nothing more reaches it
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_USER, f"no user {to!r} in room {room!r}")
        dedup = self._dedup_key(conn, room, ref, direct=True)
        if dedup is not None and not await self.messages.claim(dedup):
            return None
        frame = p.encoded(
            p.DIRECT_MESSAGE, ref=ref, user_id=conn.user_id, to=to, message=payload, room=room, identity=conn.identity
        )
        try:
            frame, fields = await self.continuity.keep(room, conn.who.username, recipient, payload, frame)
            await self.messages.emit(DirectFrame(room, frame, to=to))
        except BaseException:
            if dedup is not None:
                await asyncio.shield(self._release_quietly(dedup))
            raise
        return fields

    async def _release_quietly(self, dedup: DedupKey) -> None:
        try:
            await self.messages.release(dedup)
        except Exception:  # the broker is down: the claim expires after dedup_ttl
            self.log.debug("iavicenne: could not release %r", dedup)

    async def set_state(self, conn: Connection, room: str, state: bytes) -> None:
        """Set `conn`'s presence state in `room` (encoded, within its budgets) and tell the room."""
        now = time.time()
        await self.presence.set_state(room, conn.key, state, now)
        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state, now)
        # the newest state is the user's: this one (its connections did not change)
        await self.messages.emit(PresenceFrame(room, self._presence_frame(p.PRESENCE, room, entry)))

    async def members(self, room: str) -> list[Member]:
        return await self.presence.members(room)

    async def list_members(self, conn: Connection, room: str, *, after: str, limit: int | None, ref: str | None) -> None:
        """Answer list-members: the page of `room`'s members after user_id `after` ("": the first).

        `limit` None: max_snapshot_members, which also bounds it.
        """
        page = await self.presence.members_page(room, after, self.page_limit(limit))
        conn.send(p.encoded(p.MEMBERS, ref=ref, room=room, **self._page_fields(page)))

    def page_limit(self, limit: int | None) -> int:
        """How many members a page lists: what the client asked for (None: as many as may be),
        at most max_snapshot_members; the page says members_next when more follow."""
        if limit is None:
            return self.max_snapshot_members
        return min(limit, self.max_snapshot_members)

    @staticmethod
    def _page_fields(page: MembersPage) -> dict[str, Any]:
        fields: dict[str, Any] = {"members": p.raw_list(page.members), "member_count": page.count}
        if page.next_after is not None:
            fields["members_more"] = True
            fields["members_next"] = p.members_cursor(page.next_after)
        return fields

    def audience(self, room: str) -> int:
        """The connections of this server a presence change in `room` is written to: each one
        that takes every change, and one batch for the batched ones (at least 1)."""
        local = self.local.get(room)
        if local is None:
            return 1
        return max(1, len(local.each) + (1 if local.batched else 0))

    # -- continuity (continuity.py) ------------------------------------------------------
    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        outcome, access = await super().remove_member(room, username)
        if outcome is MemberOutcome.DONE and access is not None and not may_receive(username, access):
            await self.continuity.forget_for(room, [username])
        return outcome, access

    async def delete_access(self, room: str) -> bool:
        """As `RoomAdmission.delete_access`, and what was said there in private (direct
        messages too) is never replayed; the room is no longer its members'."""
        access = await self.access_records.get_access(room)
        if not await super().delete_access(room):
            return False
        await self.continuity.forget_direct(room)
        if access is not None:
            await self.continuity.forget_for(room, {access.owner, *access.members})
        return True

    async def room_exists(self, room: str) -> bool:
        """True when chat room `room` has members or kept history."""
        return await self.messages.room_exists(room)

    async def broadcast(self, conn: Connection, room: str, frame: bytes) -> None:
        """Send `frame` (no seq, not kept) to every connection in `room` but `conn`, on every server."""
        await self.messages.emit(RoomFrame(room, frame, skip=conn.key))

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _dedup_key(conn: Connection, room: str, ref: str | None, *, direct: bool = False) -> DedupKey | None:
        if ref is None:
            return None
        # scoped to the sender's identity and name, so nobody can burn another's ids
        return DedupKey(room, str(conn.identity.get("username", "")), conn.user_id, ref, direct)

    @staticmethod
    def _presence_frame(kind: str, room: str, entry: PresenceEntry, connections: int | None = None) -> bytes:
        return p.presence_frame(kind, room, entry.user_id, entry.identity, entry.state, connections)

    async def _member_frame(self, kind: str, room: str, entry: PresenceEntry) -> bytes:
        """A ``user-joined`` / ``presence`` frame of `entry`'s user as the room's members show
        it now: its connections folded (the newest state, their count), as REST and snapshots
        do; `entry` alone when the user has no connection left (it left meanwhile)."""
        try:
            member = await self.presence.member(room, entry.user_id)
        except BrokerUnavailable:
            member = None
        if member is None:
            return self._presence_frame(kind, room, entry)
        return p.presence_frame(kind, room, member.user_id, member.identity, member.state, member.connections)
