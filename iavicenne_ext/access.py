"""Who may enter a room: public (no record, today's behaviour), a group's, or private.

A room's `RoomAccess` record is kept by the broker (memory, or Redis for every server of a
deployment) and created over REST before anyone is in the room; the hub checks it on
join-room, on history replay, on signaling join and on direct messages, and the REST
handlers on listing. Members are usernames (the `Identity.username` key), never names a
client chose.

The owner moderates a room (``moderate``): the usernames it `muted` (their messages are
refused) and `removed` (they may not enter, whatever the kind, until readmitted) are kept
in the record, so a reconnect does not lift either. A room made by joining it has no record,
hence no owner to moderate it (one created public over REST has both): its members mute
each other for themselves only (in their clients).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import iavicenne_protocol as p

from .identity import Identity

KINDS = (p.AccessKind.PUBLIC, p.AccessKind.GROUP, p.AccessKind.PRIVATE)
#: longest username accepted in a member list or a moderation (JupyterHub's are far shorter)
USERNAME_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class RoomAccess:
    room: str
    kind: str  # one of KINDS
    owner: str  # the username that created it
    group: str | None = None  # kind "group": whose members may enter
    members: frozenset[str] = field(default_factory=frozenset)  # kind "private": invited usernames
    muted: frozenset[str] = field(default_factory=frozenset)  # usernames whose messages are refused
    removed: frozenset[str] = field(default_factory=frozenset)  # usernames that may not enter

    def to_json(self) -> dict[str, Any]:
        """The record as REST shows it to someone who may enter the room."""
        return {
            "room": self.room,
            "access": self.kind,
            "owner": self.owner,
            "group": self.group,
            "members": sorted(self.members),
            "muted": sorted(self.muted),
            "removed": sorted(self.removed),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomAccess:
        return cls(
            str(data["room"]),
            str(data["access"]),
            str(data["owner"]),
            data.get("group"),
            frozenset(str(m) for m in data.get("members") or ()),
            frozenset(str(m) for m in data.get("muted") or ()),
            frozenset(str(m) for m in data.get("removed") or ()),
        )

    def with_members(self, members: Iterable[str]) -> RoomAccess:
        return replace(self, members=frozenset(members))

    def moderated(self, username: str, action: str) -> RoomAccess:
        """The record after the owner's `action` (a `ModerationAction`) on `username`.

        Removing a member of a private room also takes it off the invited members; inviting
        it again (`invited`) or readmitting it lets it in again.
        """
        muted, removed, members = set(self.muted), set(self.removed), set(self.members)
        if action == p.ModerationAction.MUTE:
            muted.add(username)
        elif action == p.ModerationAction.UNMUTE:
            muted.discard(username)
        elif action == p.ModerationAction.REMOVE:
            removed.add(username)
            members.discard(username)
        elif action == p.ModerationAction.READMIT:
            removed.discard(username)
        return replace(self, members=frozenset(members), muted=frozenset(muted), removed=frozenset(removed))

    def invited(self, username: str) -> RoomAccess:
        """The record with `username` invited (a private room): a removal is lifted with it."""
        return replace(self, members=self.members | {username}, removed=self.removed - {username})


def may_enter(who: Identity, access: RoomAccess | None) -> bool:
    """True when `who` may join the room (and read its history, signal in it, be written to)."""
    if access is None or who.username == access.owner:
        return True
    if who.username in access.removed:
        return False
    if access.kind == p.AccessKind.PUBLIC:
        return True
    if access.kind == p.AccessKind.GROUP:
        return access.group is not None and access.group in who.groups
    return who.username in access.members


def may_receive(username: str, access: RoomAccess | None) -> bool:
    """True when the holder of `username` may still be written to in the room.

    Other people's groups are not known here (they are never shared): in a group room the
    target was checked when it joined, and is taken at its word until it leaves.
    """
    if access is None or username == access.owner:
        return True
    if username in access.removed:
        return False
    return access.kind != p.AccessKind.PRIVATE or username in access.members


def is_muted(username: str, access: RoomAccess | None) -> bool:
    """True when the room's owner muted `username` there (the owner is never muted)."""
    return access is not None and username != access.owner and username in access.muted


def refusal(room: str, access: RoomAccess, ref: str | None = None, *, username: str | None = None) -> p.ProtocolError:
    """The ``forbidden`` error of a room `username` may not enter, saying whom to ask."""
    if username is not None and username in access.removed:
        why = f"the owner of room {room!r} ({access.owner}) removed you from it: ask them to readmit you"
    elif access.kind == p.AccessKind.GROUP:
        why = f"room {room!r} is for the members of group {access.group!r}: ask an admin of the deployment to add you"
    else:
        why = f"room {room!r} is private: ask its owner ({access.owner}) to invite you"
    return p.ProtocolError(p.ErrorCode.FORBIDDEN, why, ref, room=room)
