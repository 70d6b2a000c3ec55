"""The room logic: membership, presence, ordered messages and the local fan-out.

One `RoomHub` per server. It turns requests of a connection into broker operations
and frames, and writes what the broker delivers to this server's connections. A frame
is encoded once and the same bytes are written to every local recipient.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import protocol as p
from .broker.base import Broker, JoinOutcome, Member, PresenceEntry, Published


class Connection(Protocol):
    """What the hub needs of a client connection (the WebSocket handler)."""

    key: str  # unique across servers
    user_id: str
    identity: dict[str, Any]

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Queue an encoded frame; never blocks, never raises. `replay`: history asked for."""


@dataclass(slots=True)
class LocalRoom:
    """This server's connections in one room."""

    members: dict[str, Connection] = field(default_factory=dict)
    by_user: dict[str, dict[str, Connection]] = field(default_factory=dict)
    # connections between subscribe and the end of their history replay: live frames
    # wait here so none is lost or sent before the replay
    joining: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    subscribed: asyncio.Future[None] | None = None

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


class RoomHub:
    """Rooms of this server over a `Broker`; the handlers call it, the broker feeds it."""

    def __init__(self, broker: Broker, log: logging.Logger, *, dedup_scope: str = "room") -> None:
        self.broker = broker
        self.log = log
        self.local: dict[str, LocalRoom] = {}
        self._dedup_scope = dedup_scope
        broker.attach(self.deliver)

    # -- fan-out (hot path) ----------------------------------------------------------
    def deliver(self, room: str, frame: bytes, seq: int, to: str | None, skip: str | None) -> None:
        local = self.local.get(room)
        if local is None:
            return
        if to is not None:
            targets = local.by_user.get(to)
            if targets:
                for key, conn in list(targets.items()):
                    if key != skip:
                        conn.send(frame)
            return
        if skip is None:
            for conn in list(local.members.values()):
                conn.send(frame)
        else:
            for key, conn in list(local.members.items()):
                if key != skip:
                    conn.send(frame)
        if local.joining:
            for key, waiting in local.joining.items():
                if key != skip:
                    waiting.append((seq, frame))

    # -- requests ---------------------------------------------------------------------
    async def join(
        self,
        conn: Connection,
        room: str,
        *,
        state: dict[str, Any],
        since: int | None,
        epoch: str | None,
        ref: str | None = None,
    ) -> bool:
        """Join `room`: snapshot, replay of what was missed, then live frames. False if refused."""
        now = time.time()
        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state, now if state else 0.0)
        outcome = await self.broker.join(room, entry)
        if outcome is JoinOutcome.TAKEN:
            conn.send(
                p.encode(
                    p.error_frame(
                        p.ErrorCode.NAME_TAKEN,
                        f"user_id {conn.user_id!r} is taken in room {room!r} by another user; connect with another user_id",
                        ref,
                        room=room,
                    )
                )
            )
            return False
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
        state: dict[str, Any],
        since: int | None,
        epoch: str | None,
        ref: str | None = None,
    ) -> bool:
        """`join-room` for a room `conn` is in: a fresh snapshot and replay, without leaving.

        Leaving and joining again would show the others a `user-left` and a `user-joined`
        for a user who never left, and lose the live frames sent in between.
        """
        local = self.local[room]
        local.remove(conn)  # live frames wait in `joining` until the replay is written
        if state:
            await self.set_state(conn, room, state)

        async def undo() -> None:
            if local.joining.pop(conn.key, None) is not None:
                local.add(conn)

        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state)
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
        waiting: list[tuple[int, bytes]] = []
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
        joined: dict[str, Any] = {
            "type": p.ROOM_JOINED,
            "room": room,
            "user_id": conn.user_id,
            "members": [m.to_json() for m in members],
            "seq": history.seq,
            "epoch": history.epoch,
        }
        if since is not None:
            joined["since"] = since
            joined["recovered"] = history.recovered
        if ref is not None:
            joined["ref"] = ref
        joined["timestamp"] = p.now_iso()
        conn.send(p.encode(joined))
        for frame in history.messages:
            conn.send(frame, replay=True)
        # ready: take live frames directly; first flush what arrived during the replay
        del local.joining[conn.key]
        local.add(conn)
        for seq, frame in waiting:
            if seq == 0 or seq > history.seq:
                conn.send(frame)
        joined_frame = p.encode(self._presence_frame(p.USER_JOINED, room, entry))
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
        entry = PresenceEntry(conn.key, conn.user_id, conn.identity)
        left = p.encode(self._presence_frame(p.USER_LEFT, room, entry))
        if not closing:
            conn.send(left)
        if gone:
            await self.broker.emit(room, left, skip=conn.key)

    async def publish(self, conn: Connection, room: str, payload: dict[str, Any], ref: str | None) -> Published:
        frame: dict[str, Any] = {
            "type": p.MESSAGE,
            "user_id": conn.user_id,
            "message": payload,
            "room": room,
            "identity": conn.identity,
        }
        if ref is not None:
            frame["ref"] = ref
        frame["timestamp"] = p.now_iso()
        return await self.broker.publish(room, p.encode(frame), dedup_key=self._dedup_key(conn, room, ref))

    async def direct(self, conn: Connection, room: str, to: str, payload: dict[str, Any], ref: str | None) -> bool | None:
        """Send to every connection of user `to` in `room`.

        False if that user is not there; None if `ref` was sent before (not sent again).
        """
        if not await self.broker.is_present(room, to):
            return False
        dedup_key = self._dedup_key(conn, "\x1edirect\x1e" + room, ref)
        if dedup_key is not None and not await self.broker.claim(dedup_key):
            return None
        frame: dict[str, Any] = {
            "type": p.DIRECT_MESSAGE,
            "user_id": conn.user_id,
            "to": to,
            "message": payload,
            "room": room,
            "identity": conn.identity,
        }
        if ref is not None:
            frame["ref"] = ref
        frame["timestamp"] = p.now_iso()
        try:
            await self.broker.emit(room, p.encode(frame), to=to)
        except BaseException:
            if dedup_key is not None:
                await asyncio.shield(self._release_quietly(dedup_key))
            raise
        return True

    async def _release_quietly(self, dedup_key: str) -> None:
        try:
            await self.broker.release(dedup_key)
        except Exception:  # the broker is down: the claim expires after dedup_ttl
            self.log.debug("iavicenne: could not release %r", dedup_key)

    async def set_state(self, conn: Connection, room: str, state: dict[str, Any]) -> None:
        now = time.time()
        await self.broker.set_state(room, conn.key, state, now)
        entry = PresenceEntry(conn.key, conn.user_id, conn.identity, state, now)
        await self.broker.emit(room, p.encode(self._presence_frame(p.PRESENCE, room, entry)))

    async def members(self, room: str) -> list[Member]:
        return await self.broker.members(room)

    # -- listeners: endpoints that speak frames of their own (signaling) ---------------
    async def listen(self, conn: Connection, room: str) -> None:
        """Deliver `room`'s frames to `conn`, and nothing else: no presence, no history.

        For an endpoint that keeps its own presence in the broker and writes its own
        frames (the signaling socket): the hub only subscribes and fans out, so frames
        emitted to the room or to one `user_id` reach `conn` on whichever server it is.
        """
        local = self._local_room(room)
        waiting: list[tuple[int, bytes]] = []
        local.joining[conn.key] = waiting  # holds the room open while subscribing
        try:
            await asyncio.shield(local.subscribed)
        except BaseException:
            await self.unlisten(conn, room)
            raise
        if local.joining.pop(conn.key, None) is not waiting:
            return  # unlistened meanwhile
        local.add(conn)
        for _seq, frame in waiting:
            conn.send(frame)

    async def unlisten(self, conn: Connection, room: str) -> None:
        local = self.local.get(room)
        if local is None:
            return
        local.remove(conn)
        if not local and self.local.get(room) is local:
            del self.local[room]
            await self.broker.unsubscribe(room)

    def connections(self, room: str, user_id: str) -> list[Connection]:
        """This server's connections of `user_id` in `room`."""
        local = self.local.get(room)
        return list(local.by_user.get(user_id, {}).values()) if local is not None else []

    # -- helpers ----------------------------------------------------------------------
    def _local_room(self, room: str) -> LocalRoom:
        local = self.local.get(room)
        if local is None:
            local = self.local[room] = LocalRoom()
            # every joiner of this room on this server waits for the one subscription
            local.subscribed = asyncio.ensure_future(self.broker.subscribe(room))
        return local

    def _dedup_key(self, conn: Connection, room: str, ref: str | None) -> str | None:
        if ref is None:
            return None
        # scoped to the sender's identity and name, so nobody can burn another's ids
        return f"{room}\x1f{conn.identity.get('username', '')}\x1f{conn.user_id}\x1f{ref}"

    @staticmethod
    def _presence_frame(kind: str, room: str, entry: PresenceEntry) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": kind, "user_id": entry.user_id, "room": room, "identity": entry.identity}
        if kind != p.USER_LEFT:
            frame["state"] = entry.state
        frame["timestamp"] = p.now_iso()
        return frame
