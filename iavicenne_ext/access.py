"""Who may enter a room: public (no record, today's behaviour), a group's, or private.

A room's `RoomAccess` record is kept by the broker (memory, or Redis for every server of a
deployment) and created over REST before anyone is in the room; the hub checks it on
join-room, on history replay, on signaling join and on direct messages, and the REST
handlers on listing. Members are usernames (the `Identity.username` key), never names a
client chose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import iavicenne_protocol as p

from .identity import Identity

KINDS = (p.AccessKind.PUBLIC, p.AccessKind.GROUP, p.AccessKind.PRIVATE)


@dataclass(frozen=True, slots=True)
class RoomAccess:
    room: str
    kind: str  # one of KINDS
    owner: str  # the username that created it
    group: str | None = None  # kind "group": whose members may enter
    members: frozenset[str] = field(default_factory=frozenset)  # kind "private": invited usernames

    def to_json(self) -> dict[str, Any]:
        """The record as REST shows it to someone who may enter the room."""
        return {
            "room": self.room,
            "access": self.kind,
            "owner": self.owner,
            "group": self.group,
            "members": sorted(self.members),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomAccess:
        return cls(
            str(data["room"]),
            str(data["access"]),
            str(data["owner"]),
            data.get("group"),
            frozenset(str(m) for m in data.get("members") or ()),
        )

    def with_members(self, members: Iterable[str]) -> RoomAccess:
        return RoomAccess(self.room, self.kind, self.owner, self.group, frozenset(members))


def may_enter(who: Identity, access: RoomAccess | None) -> bool:
    """True when `who` may join the room (and read its history, signal in it, be written to)."""
    if access is None or access.kind == p.AccessKind.PUBLIC:
        return True
    if who.username == access.owner:
        return True
    if access.kind == p.AccessKind.GROUP:
        return access.group is not None and access.group in who.groups
    return who.username in access.members


def may_receive(username: str, access: RoomAccess | None) -> bool:
    """True when the holder of `username` may still be written to in the room.

    Other people's groups are not known here (they are never shared): in a group room the
    target was checked when it joined, and is taken at its word until it leaves.
    """
    if access is None or access.kind != p.AccessKind.PRIVATE:
        return True
    return username == access.owner or username in access.members


def refusal(room: str, access: RoomAccess, ref: str | None = None) -> p.ProtocolError:
    """The ``forbidden`` error of a room `who` may not enter, saying whom to ask."""
    if access.kind == p.AccessKind.GROUP:
        why = f"room {room!r} is for the members of group {access.group!r}: ask an admin of the deployment to add you"
    else:
        why = f"room {room!r} is private: ask its owner ({access.owner}) to invite you"
    return p.ProtocolError(p.ErrorCode.FORBIDDEN, why, ref, room=room)
