"""What a broker hands each server's hub: one typed event per frame it carries.

Every event names its room and carries the frame encoded once; its type says who of the
room's connections get it. A backend moves events between servers in its own way (the
memory broker calls the hub at once, the Redis broker sends them on the room's channel,
`redis/envelope.py`), and the hub (`RoomHub`) writes each to its local connections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Publication:
    """A room's message, kept in its history: to every connection of the room.

    `frame` has its seq in it already (`protocol.with_seq`).
    """

    room: str
    frame: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class RoomFrame:
    """A frame without seq or history: to every connection of the room but `skip`."""

    room: str
    frame: bytes
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceFrame:
    """A ``user-joined``, ``user-left`` or ``presence`` frame, to every connection of the
    room but `skip`: as it is to those that want each change, summed up in the room's next
    ``presence-batch`` for those that asked for batches."""

    room: str
    frame: bytes
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class DirectFrame:
    """A frame for the connections of user_id `to` in the room only (but `skip`)."""

    room: str
    frame: bytes
    to: str
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class Supersede:
    """A notice to the connections of user_id `to` but `skip` (the newer one): a newer
    connection took their place, and each stops right after it was handed the notice."""

    room: str
    frame: bytes
    to: str
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class Eviction:
    """A ``room-left`` for the connections of identity `username`, which are then removed
    from the room (its access record no longer lets that identity in)."""

    room: str
    frame: bytes
    username: str


@dataclass(frozen=True, slots=True)
class PersonalFrame:
    """A frame for the connections of identity `username` in the room only (but `skip`):
    what one person's tabs and devices share, such as its read position (``unread``)."""

    room: str
    frame: bytes
    username: str
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class Moderation:
    """The room's owner muted (`muted`) or unmuted identity `username`: `frame` (a
    ``moderated``) to every connection of the room, and each server refuses or lets through
    that identity's messages from then on (its hub keeps who is muted in its local rooms)."""

    room: str
    frame: bytes
    username: str
    muted: bool


#: what a server sends to a room through `MessageBroker.emit`: every event but a publication
Emitted = RoomFrame | PresenceFrame | DirectFrame | Supersede | Eviction | PersonalFrame | Moderation
BrokerEvent = Publication | Emitted

#: the hub's side: called on the event loop with each event for this server; never blocks
Deliver = Callable[[BrokerEvent], None]
