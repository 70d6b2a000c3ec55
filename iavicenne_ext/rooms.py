"""The room logic: membership, presence, ordered messages and the local fan-out.

One `RoomHub` per server, and the handlers' only door to the broker. It turns requests of
a connection into broker operations and frames, and writes what the broker delivers to
this server's connections. A frame is encoded once and the same bytes are written to
every local recipient. A request it cannot serve raises `protocol.ProtocolError`.

Who may be where is checked here too: a room's access record (access.py) on join, on a
replay, on signaling join and on direct messages, and the name policy (names.py) for a
`user_id` / `peer_id`. A removal from a private room is an eviction: a frame on the room's
channel (and its signaling room's) that every server hands to that identity's connections,
which then leave.

Signaling rooms (the signaling socket's) are hub rooms too, named
``protocol.SIGNALING_ROOM_PREFIX + room``: the hub subscribes and fans out their frames,
but they have no history and no room-endpoint presence frames.

Rooms of thousands (docs/protocol.md, "Large rooms"): a join is answered with one page of
the members (the broker keeps them sorted, so the page costs its own size, not the
room's), and a connection that asked for ``presence: "batched"`` gets the presence changes
of other users as one ``presence-batch`` frame per room and tick, encoded once for all of
them, instead of one frame per change: N joins then cost N x (page) plus one frame per
member and tick, not N x N frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import iavicenne_protocol as p

from . import names
from .access import RoomAccess, may_enter, may_receive, refusal
from .broker.base import (
    Broker,
    BrokerUnavailable,
    CreateOutcome,
    JoinOutcome,
    Member,
    MemberOutcome,
    MembersPage,
    PresenceEntry,
    Published,
    SharedStore,
)
from .identity import Identity


class Connection(Protocol):
    """What the hub needs of a client connection (the WebSocket handler)."""

    key: str  # unique across servers
    user_id: str
    identity: dict[str, Any]  # `who.public()`, what frames carry
    who: Identity  # the verified identity (groups included: never sent to others)
    name_policy: str  # names.OWN or names.FREE, for this connection

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Queue an encoded frame; never blocks, never raises. `replay`: history asked for."""

    def superseded(self, room: str) -> None:
        """A newer connection of the same user took this one's place in `room`.

        Called right after the notice saying so was queued to this connection.
        """

    def evicted(self, room: str) -> None:
        """This identity may no longer be in hub room `room` (removed from its members, or
        the room deleted); it is already out of the local fan-out, and must leave.

        Called right after the ``room-left`` saying so was queued to this connection.
        """


# a frame that waits for a joining connection: (seq or 0, frame, supersede)
Waiting = list[tuple[int, bytes, bool]]

# a presence-batch is written to this many connections, then the loop serves others
BATCH_SLICE = 256

# the frames the broker carries that a presence-batch sums up (every frame starts with its type)
_PRESENCE_FRAMES = tuple(b'{"type":"%s"' % kind.encode() for kind in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE))


@dataclass(slots=True)
class PresenceChange:
    """What a room's next presence-batch says of one user: present before the batch or not,
    present now or not, and its entry (user_id, identity, state) when present."""

    before: bool
    now: bool
    entry: dict[str, Any] | None


@dataclass(slots=True)
class LocalRoom:
    """This server's connections in one room."""

    subscribed: asyncio.Future[None]  # every joiner on this server waits for the one subscription
    members: dict[str, Connection] = field(default_factory=dict)
    by_user: dict[str, dict[str, Connection]] = field(default_factory=dict)
    # connections between subscribe and the end of their history replay: live frames
    # wait here so none is lost or sent before the replay
    joining: dict[str, Waiting] = field(default_factory=dict)
    # connections (joined or joining) that asked for presence-batch frames, and the others
    # of `members`, which get one frame per presence change as the seed does
    batched: set[str] = field(default_factory=set)
    each: dict[str, Connection] = field(default_factory=dict)
    # the presence changes since the last presence-batch, by user, in the order of their
    # last change; and whether the next batch is on its way (a timer, then its task)
    pending: dict[str, PresenceChange] = field(default_factory=dict)
    flushing: bool = False
    flushed_at: float = 0.0  # loop time of the last presence-batch

    def add(self, conn: Connection) -> None:
        self.members[conn.key] = conn
        self.by_user.setdefault(conn.user_id, {})[conn.key] = conn
        if conn.key not in self.batched:
            self.each[conn.key] = conn

    def remove(self, conn: Connection) -> None:
        self.joining.pop(conn.key, None)
        self.batched.discard(conn.key)
        self.each.pop(conn.key, None)
        if self.members.pop(conn.key, None) is not None:
            peers = self.by_user[conn.user_id]
            del peers[conn.key]
            if not peers:
                del self.by_user[conn.user_id]

    def __bool__(self) -> bool:
        return bool(self.members) or bool(self.joining)


def signaling_room(room: str) -> str:
    """The hub room that carries signaling room `room` (never a chat room: see protocol)."""
    return p.SIGNALING_ROOM_PREFIX + room


class RoomHub:
    """Rooms of this server over a `Broker`; the handlers call it, the broker feeds it."""

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
        self.broker = broker
        self.log = log
        self.max_message_bytes = max_message_bytes
        self.max_snapshot_members = max_snapshot_members
        self.presence_batch_interval = presence_batch_interval
        self.presence_batch_frames_per_second = presence_batch_frames_per_second
        self.local: dict[str, LocalRoom] = {}
        # skeleton -> the username holding it, as the broker answered (bounded by the identities)
        self._named: dict[str, str] = {}
        self._flushes: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
        broker.attach(self._from_broker)

    # -- fan-out of presence to connections that asked for batches ---------------------
    def _from_broker(
        self, room: str, frame: bytes, seq: int, to: str | None, skip: str | None, supersede: bool, evict: str | None = None
    ) -> None:
        """What the broker delivers: presence frames of a room with batched connections
        take `_deliver_presence`, everything else `deliver`."""
        local = self.local.get(room)
        if (
            local is not None
            and local.batched
            and seq == 0
            and to is None
            and evict is None
            and frame.startswith(_PRESENCE_FRAMES)
        ):
            self._deliver_presence(room, local, frame, skip)
            return
        self.deliver(room, frame, seq, to, skip, supersede, evict)

    def _deliver_presence(self, room: str, local: LocalRoom, frame: bytes, skip: str | None) -> None:
        """One user-joined / user-left / presence frame: as it is to the connections that
        want each change, into the room's next presence-batch for the others."""
        for key, conn in list(local.each.items()):
            if key != skip:
                conn.send(frame)
        if local.joining:
            for key, waiting in local.joining.items():
                if key != skip and key not in local.batched:
                    waiting.append((0, frame, False))
        self._note_change(local, json.loads(frame))
        if local.flushing:
            return
        loop = asyncio.get_running_loop()
        if len(local.batched) <= BATCH_SLICE and loop.time() >= local.flushed_at + self.presence_batch_interval:
            # the first change after a quiet spell, in a room of few batched connections:
            # written now, as the seed's frame would be, when the broker knows the count now
            count = self.broker.member_count_now(room)
            if count is not None:
                pending, local.pending = local.pending, {}
                local.flushed_at = loop.time()
                batch = self._batch_frame(room, pending, count)
                if batch is not None:
                    for _ in self._write_batch(local, batch):
                        pass
                return
        self._schedule_flush(room, local)

    def _schedule_flush(self, room: str, local: LocalRoom) -> None:
        local.flushing = True
        loop = asyncio.get_running_loop()
        # a batch is one frame per batched connection: in a large room they come less
        # often, so that presence never takes more than its share of the server
        spacing = max(self.presence_batch_interval, len(local.batched) / self.presence_batch_frames_per_second)
        loop.call_at(max(loop.time(), local.flushed_at + spacing), self._start_flush, room, local)

    @staticmethod
    def _note_change(local: LocalRoom, frame: dict[str, Any]) -> None:
        user_id = str(frame.get("user_id"))
        known = local.pending.pop(user_id, None)  # popped: it goes last, the latest change
        kind = frame.get("type")
        # before the batch's first change of this user: present, unless that change is its join
        before = known.before if known is not None else kind != p.USER_JOINED
        if kind == p.USER_LEFT:
            local.pending[user_id] = PresenceChange(before, False, None)
            return
        entry = {"user_id": user_id, "identity": frame.get("identity", {}), "state": frame.get("state", {})}
        local.pending[user_id] = PresenceChange(before, True, entry)

    def _start_flush(self, room: str, local: LocalRoom) -> None:
        task = asyncio.ensure_future(self._flush(room, local))
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("iavicenne: a presence-batch was not sent", exc_info=task.exception())

    async def _flush(self, room: str, local: LocalRoom) -> None:
        """Send the room's presence-batch: the net change since the last one, per user.

        A user who joined and left within the batch is in neither list; one who left and
        came back (or changed state) is in ``updated``. So a member view that applies the
        batch (set the ``joined`` and ``updated`` entries, drop the ``left`` ones) ends as
        the room is, whether or not it already had some of these changes (a snapshot taken
        meanwhile).
        """
        try:
            count: int | None = await self.broker.member_count(room)
        except BrokerUnavailable:
            count = None  # the batch still goes; its count is only a hint
        # changes that arrived while counting go in this batch; those that arrive while it
        # is being sent, in the next one (scheduled once this one is out: batches never cross)
        pending, local.pending = local.pending, {}
        try:
            if self.local.get(room) is local and local.batched:
                await self._send_batch(room, local, pending, count)
        finally:
            local.flushing = False
            local.flushed_at = asyncio.get_running_loop().time()
            if local.pending and self.local.get(room) is local:
                self._schedule_flush(room, local)

    async def _send_batch(self, room: str, local: LocalRoom, pending: dict[str, PresenceChange], count: int | None) -> None:
        frame = self._batch_frame(room, pending, count)
        if frame is None:
            return
        # a slice at a time: in a room of thousands the joins and messages of the meantime
        # are not held up behind the whole room's frames
        for _ in self._write_batch(local, frame):
            await asyncio.sleep(0)

    @staticmethod
    def _batch_frame(room: str, pending: dict[str, PresenceChange], count: int | None) -> bytes | None:
        joined: list[bytes] = []
        updated: list[bytes] = []
        left: list[str] = []
        for user_id, change in pending.items():
            if change.now:
                (updated if change.before else joined).append(p.encode(change.entry or {}))
            elif change.before:
                left.append(user_id)
        if not (joined or updated or left):
            return None
        fields: dict[str, Any] = {"joined": p.raw_list(joined), "left": left, "updated": p.raw_list(updated)}
        if count is not None:
            fields["member_count"] = count
        return p.encoded(p.PRESENCE_BATCH, room=room, **fields)

    @staticmethod
    def _write_batch(local: LocalRoom, frame: bytes) -> Iterator[None]:
        """Write `frame` to the connections batched now (a later joiner's snapshot has these
        changes), yielding after each BATCH_SLICE of them."""
        for at, key in enumerate(list(local.batched)):
            if at and at % BATCH_SLICE == 0:
                yield None
            conn = local.members.get(key)
            if conn is not None:
                conn.send(frame)
            else:
                waiting = local.joining.get(key)
                if waiting is not None:  # sent once its snapshot is
                    waiting.append((0, frame, False))

    @property
    def server_id(self) -> str:
        """This server's id, the prefix of its connection keys."""
        return self.broker.server_id

    # -- fan-out (hot path) ----------------------------------------------------------
    def deliver(
        self, room: str, frame: bytes, seq: int, to: str | None, skip: str | None, supersede: bool, evict: str | None = None
    ) -> None:
        local = self.local.get(room)
        if local is None:
            return
        if evict is not None:
            for conn in [c for c in local.members.values() if c.who.username == evict]:
                local.remove(conn)  # no frame of the room after the notice
                conn.send(frame)
                conn.evicted(room)
            return
        if to is not None:
            targets = local.by_user.get(to)
            if targets:
                for key, conn in list(targets.items()):
                    if key != skip:
                        conn.send(frame)
                        if supersede:
                            conn.superseded(room)
            return
        if skip is None:
            for conn in list(local.members.values()):
                conn.send(frame)
        else:
            for key, conn in list(local.members.items()):
                if key != skip:
                    conn.send(frame)
        if supersede:
            for key, conn in list(local.members.items()):
                if key != skip:
                    conn.superseded(room)
        if local.joining:
            for key, waiting in local.joining.items():
                if key != skip:
                    waiting.append((seq, frame, supersede))

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
        outcome = await self.broker.join(room, entry)
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
            await self.broker.leave(room, conn.key, conn.user_id)

        return await self._welcome(
            conn,
            room,
            local,
            entry,
            since=since,
            epoch=epoch,
            ref=ref,
            announce=outcome is JoinOutcome.FIRST,
            undo=undo,
            members_limit=members_limit,
            batched=batched,
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
        members_limit: int | None = None,
        batched: bool = False,
    ) -> bool:
        """Send `room-joined`, the replay and `user-joined`, then let live frames through."""
        waiting: Waiting = []
        local.joining[conn.key] = waiting
        if batched:  # from now on: the batches, not each change (a batch sent meanwhile waits too)
            local.batched.add(conn.key)
        try:
            await asyncio.shield(local.subscribed)
            history = await self.broker.history(room, since, epoch)
            page = await self.broker.members_page(room, "", self.page_limit(members_limit))
        except BaseException:
            await undo()
            raise
        if local.joining.get(conn.key) is not waiting:
            return False  # the connection closed meanwhile
        position: dict[str, Any] = {"seq": history.seq, "epoch": history.epoch}
        if since is not None:
            position["since"] = since
            position["recovered"] = history.recovered
        # each member's state is spliced in as the broker keeps it, never decoded
        conn.send(p.encoded(p.ROOM_JOINED, ref=ref, room=room, user_id=conn.user_id, **self._page_fields(page), **position))
        for frame in history.messages:
            conn.send(frame, replay=True)
        # ready: take live frames directly; first flush what arrived during the replay
        del local.joining[conn.key]
        local.add(conn)
        for seq, frame, _supersede in waiting:
            if seq == 0 or seq > history.seq:
                conn.send(frame)
        joined_frame = self._presence_frame(p.USER_JOINED, room, entry)
        conn.send(joined_frame)  # the seed sends the joiner its own user-joined
        if announce:
            await self.broker.emit(room, joined_frame, skip=conn.key)
        return True

    async def leave(self, conn: Connection, room: str, *, closing: bool = False) -> None:
        """Leave `room`; `user-left` goes to the room when the user's last connection leaves."""
        local = self.local.get(room)
        if local is not None:
            local.remove(conn)
        gone = await self.broker.leave(room, conn.key, conn.user_id)
        if local is not None and not local and self.local.get(room) is local:
            del self.local[room]
            await self.broker.unsubscribe(room)
        left = self._presence_frame(p.USER_LEFT, room, PresenceEntry(conn.key, conn.user_id, conn.identity))
        if not closing:
            conn.send(left)
        if gone:
            await self.broker.emit(room, left, skip=conn.key)

    async def publish(self, conn: Connection, room: str, payload: dict[str, Any], ref: str | None) -> Published:
        """Send a message to the room and keep it in history; `limit-exceeded` when too large for that."""
        frame = p.encoded(p.MESSAGE, ref=ref, user_id=conn.user_id, message=payload, room=room, identity=conn.identity)
        if len(frame) > self.max_message_bytes:
            raise p.limit_exceeded(
                "max_message_bytes",
                self.max_message_bytes,
                f"message not sent: {len(frame)} bytes encoded, too large to keep in the room's history; "
                "send less, or send it as a direct-message (not kept)",
            )
        return await self.broker.publish(room, frame, dedup_key=self._dedup_key(conn, room, ref), owner=_owner(conn))

    async def direct(self, conn: Connection, room: str, to: str, payload: dict[str, Any], ref: str | None) -> bool:
        """Send to every connection of user `to` in `room`; False if `ref` was sent before (not sent again).

        `ProtocolError` (``unknown-user``) when that user is not in the room.
        """
        access = await self.check_access(conn, room, ref)
        if access is None:
            if not await self.broker.is_present(room, to):
                raise p.ProtocolError(p.ErrorCode.UNKNOWN_USER, f"no user {to!r} in room {room!r}")
        else:
            holders = {str(e.identity.get("username")) for e in await self.broker.entries(room) if e.user_id == to}
            if not holders:
                raise p.ProtocolError(p.ErrorCode.UNKNOWN_USER, f"no user {to!r} in room {room!r}")
            if not all(may_receive(username, access) for username in holders):
                # removed a moment ago, its eviction on its way: nothing more reaches it
                raise p.ProtocolError(p.ErrorCode.UNKNOWN_USER, f"no user {to!r} in room {room!r}")
        dedup_key = self._dedup_key(conn, "\x1edirect\x1e" + room, ref)
        if dedup_key is not None and not await self.broker.claim(dedup_key, owner=_owner(conn)):
            return False
        frame = p.encoded(
            p.DIRECT_MESSAGE, ref=ref, user_id=conn.user_id, to=to, message=payload, room=room, identity=conn.identity
        )
        try:
            await self.broker.emit(room, frame, to=to)
        except BaseException:
            if dedup_key is not None:
                await asyncio.shield(self._release_quietly(dedup_key, _owner(conn)))
            raise
        return True

    async def _release_quietly(self, dedup_key: str, owner: str) -> None:
        try:
            await self.broker.release(dedup_key, owner=owner)
        except Exception:  # the broker is down: the claim expires after dedup_ttl
            self.log.debug("iavicenne: could not release %r", dedup_key)

    async def set_state(self, conn: Connection, room: str, state: bytes) -> None:
        """Set `conn`'s presence state in `room` (encoded, within its budgets) and tell the room."""
        now = time.time()
        await self.broker.set_state(room, conn.key, state, now)
        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state, now)
        await self.broker.emit(room, self._presence_frame(p.PRESENCE, room, entry))

    async def members(self, room: str) -> list[Member]:
        return await self.broker.members(room)

    async def list_members(self, conn: Connection, room: str, *, after: str, limit: int | None, ref: str | None) -> None:
        """Answer list-members: the page of `room`'s members after user_id `after` ("": the first).

        `limit` None: max_snapshot_members, which also bounds it.
        """
        page = await self.broker.members_page(room, after, self.page_limit(limit))
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

    async def rooms(self) -> dict[str, list[Member]]:
        """Every chat room that has members now (on any server), with its members."""
        rooms = await self.broker.rooms()
        return {name: members for name, members in rooms.items() if not name.startswith(p.SIGNALING_ROOM_PREFIX)}

    async def room_exists(self, room: str) -> bool:
        """True when chat room `room` has members or kept history."""
        return await self.broker.room_exists(room)

    # -- signaling rooms ------------------------------------------------------------------
    # The signaling socket's rooms: a peer's presence entry is the broker's (its user_id is
    # the peer_id), its frames are its own; the hub carries them and nothing else.
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
        outcome = await self.broker.join(key, PresenceEntry(conn.key, peer_id, conn.identity))
        if outcome is JoinOutcome.TAKEN:
            raise p.ProtocolError(
                p.ErrorCode.NAME_TAKEN,
                f"peer_id {peer_id!r} is taken in room {room!r} by another user; join with another peer_id",
            )
        try:
            await self.check_access(conn, room)  # a record created meanwhile: see `_still_allowed`
        except p.ProtocolError:
            await self.broker.leave(key, conn.key, peer_id)
            raise
        try:
            await self.listen(conn, key)
        except BaseException:
            await self.broker.leave(key, conn.key, peer_id)
            raise
        if outcome is JoinOutcome.FIRST:
            return False
        notice = p.error_frame(
            p.ErrorCode.SUPERSEDED,
            f"peer_id {peer_id!r} in room {room!r} was taken over by a newer connection of the same user; "
            "this connection no longer takes part in the room",
            room=room,
        )
        await self.broker.emit(key, p.encode(notice), to=peer_id, skip=conn.key, supersede=True)
        for entry in await self.broker.entries(key):
            if entry.user_id == peer_id and entry.conn != conn.key:
                await self.broker.leave(key, entry.conn, peer_id)
        return True

    async def announce_peer(self, conn: Connection, room: str, *, rejoined: bool) -> None:
        """Tell the others in signaling room `room` that peer `conn.user_id` is there."""
        extra: dict[str, Any] = {"rejoined": True} if rejoined else {}
        frame = p.encoded(p.PEER_JOINED, peer_id=conn.user_id, room=room, identity=conn.identity, **extra)
        await self.broker.emit(signaling_room(room), frame, skip=conn.key)

    async def peers(self, room: str) -> dict[str, dict[str, Any]]:
        """The peers in signaling room `room`, on every server: peer_id -> its verified identity, by peer_id."""
        entries = sorted(await self.broker.entries(signaling_room(room)), key=lambda e: e.user_id)
        return {e.user_id: e.identity for e in entries}

    async def relay(self, conn: Connection, room: str, target: str, frame: bytes) -> None:
        """Deliver `frame` to peer `target` of signaling room `room` only, wherever it is.

        `ProtocolError` (``unknown-peer``) when the target is not in the room.
        """
        key = signaling_room(room)
        if not await self.broker.is_present(key, target):
            raise p.ProtocolError(
                p.ErrorCode.UNKNOWN_PEER,
                f"no peer {target!r} in room {room!r}: it left or never joined; wait for its peer-joined",
            )
        await self.broker.emit(key, frame, to=target)

    async def signaling_leave(self, conn: Connection, room: str) -> None:
        """Leave signaling room `room`; `peer-left` goes to the others when this peer is gone from it."""
        key = signaling_room(room)
        await self.unlisten(conn, key)
        if await self.broker.leave(key, conn.key, conn.user_id):
            await self.broker.emit(key, p.encoded(p.PEER_LEFT, peer_id=conn.user_id, room=room), skip=conn.key)

    async def signaling_drop(self, conn: Connection, room: str) -> None:
        """Stop delivering signaling room `room` to a superseded `conn` (its entry is gone already)."""
        await self.unlisten(conn, signaling_room(room))

    # -- listeners: connections that get a room's frames and nothing else ---------------
    async def listen(self, conn: Connection, room: str) -> None:
        """Deliver `room`'s frames to `conn`, and nothing else: no presence, no history.

        The hub only subscribes and fans out, so frames emitted to the room or to one
        `user_id` reach `conn` on whichever server it is.
        """
        local = self._local_room(room)
        waiting: Waiting = []
        local.joining[conn.key] = waiting  # holds the room open while subscribing
        try:
            await asyncio.shield(local.subscribed)
        except BaseException:
            await self.unlisten(conn, room)
            raise
        if local.joining.pop(conn.key, None) is not waiting:
            return  # unlistened meanwhile
        local.add(conn)
        for _seq, frame, supersede in waiting:
            conn.send(frame)
            if supersede:
                conn.superseded(room)

    async def unlisten(self, conn: Connection, room: str) -> None:
        local = self.local.get(room)
        if local is None:
            return
        local.remove(conn)
        if not local and self.local.get(room) is local:
            del self.local[room]
            await self.broker.unsubscribe(room)

    # -- who may be in a room, under which name -----------------------------------------
    async def check_access(self, conn: Connection, room: str, ref: str | None = None) -> RoomAccess | None:
        """The room's record, or `ProtocolError` (``forbidden``) when `conn`'s identity may not enter it."""
        access = await self.broker.get_access(room)
        if access is not None and not may_enter(conn.who, access):
            raise refusal(room, access, ref)
        return access

    async def _still_allowed(self, conn: Connection, room: str, ref: str | None) -> None:
        """After joining: a record created between the check and the join refuses it now.

        Creating a record fails while the room has members, so once this check passes no
        record can come to refuse this member except by an explicit removal (an eviction).
        """
        try:
            await self.check_access(conn, room, ref)
        except p.ProtocolError:
            await self.broker.leave(room, conn.key, conn.user_id)
            raise

    async def confirm_access(self, conn: Connection, room: str, *, signaling: bool = False) -> None:
        """Once `conn` takes the room's live frames: evict it if it was removed meanwhile.

        A removal's eviction reaches the connections in the local fan-out; one still joining
        (snapshot and replay on their way) is not there yet. The removal is written before its
        eviction is sent, so a check made now sees it.
        """
        if may_enter(conn.who, await self.broker.get_access(room)):
            return
        key = signaling_room(room) if signaling else room
        local = self.local.get(key)
        if local is not None:
            local.remove(conn)
        conn.send(p.encoded(p.ROOM_LEFT, room=room, reason=p.LeftReason.REMOVED))
        conn.evicted(key)

    async def remember(self, who: Identity) -> None:
        """`who` opened a socket: under the free policy nobody else may look like its username."""
        await self.broker.remember_identity(who.username, names.skeleton(who.username))

    async def check_name(self, conn: Connection, name: str, field: str, ref: str | None = None, *, early: bool = False) -> None:
        """Refuse a user_id / peer_id the connection's identity may not use (names.py).

        `early`: on `connect`, which needs no broker; with the broker unreachable the
        usernames are not looked up then, and the join (which needs it) checks again.
        """
        who = conn.who
        if conn.name_policy == names.OWN:
            if not names.is_own(name, who):
                raise names.not_yours(field, name, who, ref)
            return
        for candidate in dict.fromkeys((names.skeleton(name), names.skeleton(names.base_name(name)))):
            holder = self._named.get(candidate)
            if holder is None:
                try:
                    holder = await self.broker.identity_named(candidate)
                except BrokerUnavailable:
                    if early:
                        return
                    raise
                if holder is not None:  # the first holder keeps it for good: no need to ask again
                    self._named[candidate] = holder
            if holder is not None and holder != who.username:
                raise p.ProtocolError(
                    p.ErrorCode.NAME_TAKEN,
                    f"{field} {name!r} looks like {holder!r}, the name of another user of this server; "
                    f"connect with another {field}",
                    ref,
                )

    async def visible_rooms(self, who: Identity) -> dict[str, tuple[list[Member], RoomAccess | None]]:
        """The chat rooms `who` may enter that have members now or an access record."""
        rooms = await self.rooms()
        records = await self.broker.all_access()
        listed: dict[str, tuple[list[Member], RoomAccess | None]] = {}
        for name in sorted({*rooms, *records}):
            access = records.get(name)
            if may_enter(who, access):
                listed[name] = (rooms.get(name, []), access)
        return listed

    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        return await self.broker.create_access(access, max_per_owner=max_per_owner)

    async def access(self, room: str) -> RoomAccess | None:
        return await self.broker.get_access(room)

    async def invite(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        return await self.broker.add_member(room, username, max_members=max_members)

    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        """Take `username` off the members, and out of the room (and its signaling room) everywhere."""
        outcome, access = await self.broker.remove_member(room, username)
        if outcome is MemberOutcome.DONE and access is not None and not may_receive(username, access):
            await self.evict(room, username)
        return outcome, access

    async def delete_access(self, room: str) -> bool:
        """Delete the record (and the history); everyone in the room is evicted from it."""
        present = {
            str(e.identity.get("username")) for key in (room, signaling_room(room)) for e in await self.broker.entries(key)
        }
        if not await self.broker.delete_access(room):
            return False
        if isinstance(self.broker, SharedStore):  # its shared document must not become public either
            await self.broker.shared_delete(room)
        for username in sorted(present):
            await self.evict(room, username)
        return True

    async def evict(self, room: str, username: str) -> None:
        """Every connection of `username` in chat room `room` and in its signaling room, on
        every server, gets ``room-left`` (reason ``removed``) and leaves."""
        frame = p.encoded(p.ROOM_LEFT, room=room, reason=p.LeftReason.REMOVED)
        await self.broker.emit(room, frame, evict=username)
        await self.broker.emit(signaling_room(room), frame, evict=username)

    # -- helpers ----------------------------------------------------------------------
    def _local_room(self, room: str) -> LocalRoom:
        local = self.local.get(room)
        if local is None:
            local = self.local[room] = LocalRoom(asyncio.ensure_future(self.broker.subscribe(room)))
        return local

    @staticmethod
    def _dedup_key(conn: Connection, room: str, ref: str | None) -> str | None:
        if ref is None:
            return None
        # scoped to the sender's identity and name, so nobody can burn another's ids
        return f"{room}\x1f{_owner(conn)}\x1f{conn.user_id}\x1f{ref}"

    @staticmethod
    def _presence_frame(kind: str, room: str, entry: PresenceEntry) -> bytes:
        return p.presence_frame(kind, room, entry.user_id, entry.identity, entry.state)


def _owner(conn: Connection) -> str:
    """Whose dedup records a connection's refs are: its identity's."""
    return str(conn.identity.get("username", ""))
