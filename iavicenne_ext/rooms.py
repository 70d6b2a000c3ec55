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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import names
from . import protocol as p
from .access import RoomAccess, may_enter, may_receive, refusal
from .broker.base import (
    Broker,
    BrokerUnavailable,
    CreateOutcome,
    JoinOutcome,
    Member,
    MemberOutcome,
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


@dataclass(slots=True)
class LocalRoom:
    """This server's connections in one room."""

    subscribed: asyncio.Future[None]  # every joiner on this server waits for the one subscription
    members: dict[str, Connection] = field(default_factory=dict)
    by_user: dict[str, dict[str, Connection]] = field(default_factory=dict)
    # connections between subscribe and the end of their history replay: live frames
    # wait here so none is lost or sent before the replay
    joining: dict[str, Waiting] = field(default_factory=dict)

    def add(self, conn: Connection) -> None:
        self.members[conn.key] = conn
        self.by_user.setdefault(conn.user_id, {})[conn.key] = conn

    def remove(self, conn: Connection) -> None:
        self.joining.pop(conn.key, None)
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

    def __init__(self, broker: Broker, log: logging.Logger, *, max_message_bytes: int) -> None:
        self.broker = broker
        self.log = log
        self.max_message_bytes = max_message_bytes
        self.local: dict[str, LocalRoom] = {}
        # skeleton -> the username holding it, as the broker answered (bounded by the identities)
        self._named: dict[str, str] = {}
        broker.attach(self.deliver)

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
    ) -> bool:
        """Join `room`: snapshot, replay of what was missed, then live frames.

        `state` is the encoded initial presence state (None: none).

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
            conn, room, local, entry, since=since, epoch=epoch, ref=ref, announce=outcome is JoinOutcome.FIRST, undo=undo
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
        return await self._welcome(conn, room, local, entry, since=since, epoch=epoch, ref=ref, announce=False, undo=undo)

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
    ) -> bool:
        """Send `room-joined`, the replay and `user-joined`, then let live frames through."""
        waiting: Waiting = []
        local.joining[conn.key] = waiting
        try:
            await asyncio.shield(local.subscribed)
            history = await self.broker.history(room, since, epoch)
            members = await self.broker.members(room)
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
        listed = p.raw_list(m.encoded() for m in members)
        conn.send(p.encoded(p.ROOM_JOINED, ref=ref, room=room, user_id=conn.user_id, members=listed, **position))
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
