"""This server's connections in each room, and the writing of broker events to them.

The broker hands each server one typed event per frame (broker/events.py); `LocalFanout`
writes it to the local connections its type names, the same bytes to each. A connection
between subscribe and the end of its history replay is *joining*: live frames wait for it
so none is lost or sent before the replay. Presence frames of a room where some
connections asked for batches go through `PresenceBatches` (presence_batches.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import iavicenne_protocol as p

from .broker.events import (
    BrokerEvent,
    DirectFrame,
    Eviction,
    Moderation,
    PersonalFrame,
    PresenceFrame,
    Publication,
    RoomFrame,
    Supersede,
)
from .broker.interfaces import MessageBroker, PresenceManager
from .identity import Identity
from .presence_batches import PresenceBatches, PresenceChange


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


# the frames that wait for a joining connection: (seq or 0, frame)
Waiting = list[tuple[int, bytes]]


@dataclass(slots=True)
class LocalRoom:
    """This server's connections in one room."""

    subscribed: asyncio.Future[None]  # every joiner on this server waits for the one subscription
    members: dict[str, Connection] = field(default_factory=dict)
    by_user: dict[str, dict[str, Connection]] = field(default_factory=dict)
    # connections between subscribe and the end of their history replay: live frames
    # wait here so none is lost or sent before the replay
    joining: dict[str, Waiting] = field(default_factory=dict)
    # the user_id of each joining connection: a direct message to it waits with the rest
    joining_users: dict[str, str] = field(default_factory=dict)
    # connections (joined or joining) that asked for presence-batch frames, and the others
    # of `members`, which get one frame per presence change as the seed does
    batched: set[str] = field(default_factory=set)
    each: dict[str, Connection] = field(default_factory=dict)
    # the presence changes since the last presence-batch, by user, in the order of their
    # last change; and whether the next batch is on its way (a timer, then its task)
    pending: dict[str, PresenceChange] = field(default_factory=dict)
    flushing: bool = False
    flushed_at: float = 0.0  # loop time of the last presence-batch
    # the usernames the room's owner muted, as this server last heard (a `Moderation`, or
    # the record read once a connection of theirs joined): their messages are refused
    muted: set[str] = field(default_factory=set)

    def add(self, conn: Connection) -> None:
        self.members[conn.key] = conn
        self.by_user.setdefault(conn.user_id, {})[conn.key] = conn
        if conn.key not in self.batched:
            self.each[conn.key] = conn

    def remove(self, conn: Connection) -> None:
        self.joining.pop(conn.key, None)
        self.joining_users.pop(conn.key, None)
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


class LocalFanout:
    """This server's rooms: subscribed at the broker while they have a local connection."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        messages: MessageBroker,
        presence: PresenceManager,
        presence_batch_interval: float,
        presence_batch_frames_per_second: float,
    ) -> None:
        self.messages = messages
        self.presence = presence
        self.log = log
        self.local: dict[str, LocalRoom] = {}
        self.batches = PresenceBatches(
            presence,
            self.local,
            log,
            interval=presence_batch_interval,
            frames_per_second=presence_batch_frames_per_second,
        )
        messages.attach(self.deliver)

    @property
    def server_id(self) -> str:
        """This server's id, the prefix of its connection keys."""
        return self.messages.server_id

    # -- fan-out (hot path) ----------------------------------------------------------
    def deliver(self, event: BrokerEvent) -> None:
        """Write what the broker delivers to the local connections it is for."""
        local = self.local.get(event.room)
        if local is None:
            return
        if isinstance(event, Publication):
            self._to_room(local, event.frame, event.seq, None)
        elif isinstance(event, RoomFrame):
            self._to_room(local, event.frame, 0, event.skip)
        elif isinstance(event, PresenceFrame):
            if local.batched:
                self.batches.deliver(event, local)
            else:
                self._to_room(local, event.frame, 0, event.skip)
        elif isinstance(event, DirectFrame | Supersede):
            superseding = isinstance(event, Supersede)
            for key, conn in list(local.by_user.get(event.to, {}).items()):
                if key != event.skip:
                    conn.send(event.frame)
                    if superseding:
                        conn.superseded(event.room)
            if not superseding and local.joining_users:
                # a connection of `to` still replaying: after its replay (a kept one it
                # replayed already comes twice, and its direct_seq tells the client)
                for key, user_id in local.joining_users.items():
                    waiting = local.joining.get(key)
                    if user_id == event.to and key != event.skip and waiting is not None:
                        waiting.append((0, event.frame))
        elif isinstance(event, Moderation):
            if event.muted:
                local.muted.add(event.username)
            else:
                local.muted.discard(event.username)
            self._to_room(local, event.frame, 0, None)
        elif isinstance(event, Eviction):
            for conn in [c for c in local.members.values() if c.who.username == event.username]:
                local.remove(conn)  # no frame of the room after the notice
                conn.send(event.frame)
                conn.evicted(event.room)
        elif isinstance(event, PersonalFrame):
            for key, conn in list(local.members.items()):
                if key != event.skip and conn.who.username == event.username:
                    conn.send(event.frame)

    @staticmethod
    def _to_room(local: LocalRoom, frame: bytes, seq: int, skip: str | None) -> None:
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
        for _seq, frame in waiting:
            conn.send(frame)

    async def unlisten(self, conn: Connection, room: str) -> None:
        local = self.local.get(room)
        if local is None:
            return
        local.remove(conn)
        if not local and self.local.get(room) is local:
            del self.local[room]
            await self.messages.unsubscribe(room)

    def _local_room(self, room: str) -> LocalRoom:
        local = self.local.get(room)
        if local is None:
            local = self.local[room] = LocalRoom(asyncio.ensure_future(self.messages.subscribe(room)))
        return local
