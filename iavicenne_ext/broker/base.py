"""The values the broker interfaces (interfaces.py) take and answer, shared by every backend.

Presence entries and members, pages of members, the outcomes of joins and of access
changes, publications and history, dedup keys and shared documents' logs: plain data,
so the room logic and each backend speak of the same things.
"""

from __future__ import annotations

import bisect
import enum
import json
import sys
from dataclasses import dataclass
from typing import Any

import iavicenne_protocol as p


class BrokerUnavailable(Exception):
    """The broker cannot be reached now; the request was not carried out."""


@dataclass(slots=True)
class PresenceEntry:
    """One connection's membership of one room."""

    conn: str  # unique across servers: "<server id>:<n>"
    user_id: str
    identity: dict[str, Any]
    # encoded JSON object, checked against the state budgets; kept as bytes, so a state
    # costs its size (not a tree of Python objects) and is spliced into frames as it is
    state: bytes = p.EMPTY_STATE
    state_at: float = 0.0  # when `state` was last set; the newest wins for the user

    def to_json(self) -> dict[str, Any]:
        return {
            "conn": self.conn,
            "user_id": self.user_id,
            "identity": self.identity,
            "state": json.loads(self.state),
            "state_at": self.state_at,
        }

    def encoded(self) -> bytes:
        """`to_json` encoded, without decoding the state."""
        return p.encode(
            {
                "conn": self.conn,
                "user_id": self.user_id,
                "identity": self.identity,
                "state": p.Raw(self.state),
                "state_at": self.state_at,
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PresenceEntry:
        state = data.get("state")
        encoded_state = p.Raw(p.encode(state)) if state else p.EMPTY_STATE
        return cls(data["conn"], data["user_id"], data["identity"], encoded_state, data.get("state_at", 0.0))


@dataclass(slots=True)
class Member:
    """A user present in a room: all of its connections folded into one entry."""

    user_id: str
    identity: dict[str, Any]
    state: bytes  # encoded, as in `PresenceEntry`
    connections: int

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "identity": self.identity,
            "state": json.loads(self.state),
            "connections": self.connections,
        }

    def encoded(self) -> bytes:
        """`to_json` encoded, the state spliced in as it is kept."""
        return p.encode(
            {"user_id": self.user_id, "identity": self.identity, "state": p.Raw(self.state), "connections": self.connections}
        )


def fold_members(entries: list[PresenceEntry]) -> list[Member]:
    """Fold connection entries into users; a user's state is its newest one."""
    users: dict[str, tuple[Member, float]] = {}
    for entry in entries:
        known = users.get(entry.user_id)
        if known is None:
            users[entry.user_id] = (Member(entry.user_id, entry.identity, entry.state, 1), entry.state_at)
            continue
        member, state_at = known
        member.connections += 1
        if entry.state_at > state_at:
            member.state = entry.state
            users[entry.user_id] = (member, entry.state_at)
    return sorted((m for m, _ in users.values()), key=lambda m: m.user_id)


@dataclass(slots=True)
class MembersPage:
    """Up to a page of a room's members, in user_id order, each encoded (`Member.encoded`)."""

    members: list[bytes]
    count: int  # users in the room, listed or not
    # the user_id the next page starts after; None when nothing follows this page
    next_after: str | None


def page_of(members: list[Member], after: str, limit: int) -> MembersPage:
    """The page of `members` (sorted by user_id) after user_id `after` ("" : from the start)."""
    start = bisect.bisect_right([m.user_id for m in members], after) if after else 0
    listed = members[start : start + limit]
    more = start + len(listed) < len(members)
    next_after = (listed[-1].user_id if listed else after) if more else None
    return MembersPage([m.encoded() for m in listed], len(members), next_after)


class CreateOutcome(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"  # a record exists, or the room has members or history already
    BUDGET = "budget"  # the owner has max_private_rooms_per_identity records already


class MemberOutcome(enum.Enum):
    DONE = "done"
    MISSING = "missing"  # no private room of that name
    FULL = "full"  # max_room_members reached


class JoinOutcome(enum.Enum):
    FIRST = "first"  # the user's first connection in the room: announce it
    AGAIN = "again"  # the user was already present through another connection
    TAKEN = "taken"  # another identity holds this user_id in the room


@dataclass(slots=True)
class Published:
    seq: int
    duplicate: bool  # the dedup key was seen before: nothing was sent again


@dataclass(slots=True)
class History:
    messages: list[bytes]  # encoded frames, oldest first, each with its seq
    seq: int  # the room's last seq
    epoch: str  # changes when the room's history starts over (e.g. a restarted memory broker)
    recovered: bool  # True when `messages` are exactly all the messages after `since`


@dataclass(frozen=True, slots=True)
class DedupKey:
    """A client's `ref` for one frame, scoped to its sender: nobody can burn another's refs.

    Each backend turns it into a key of its own. A key counts among `identity`'s records
    (`max_dedup_per_identity`), whose oldest go first, never another identity's.
    """

    room: str
    identity: str  # the sender's username
    user_id: str
    ref: str
    direct: bool = False  # a direct message's ref (claimed, not published): apart from the room's


#: the default of a budget a broker is not given: no bound
UNBOUNDED = sys.maxsize


@dataclass(slots=True)
class SharedLog:
    """A room's shared document as the broker keeps it: Yjs updates, oldest first.

    Applying them in any order (more than once, too) gives the document. `size` is the
    bytes of the whole log, `seq` the number of updates appended in this `life` of the
    document (a life begins when the document is created, again after it was forgotten).
    `whole`: `updates` is the whole log; else only the updates appended after the `since`
    asked for (`SharedStore.shared_load`), the last of them being number `seq`.
    """

    updates: list[bytes]
    size: int
    seq: int = 0
    life: str = ""
    whole: bool = True


@dataclass(frozen=True, slots=True)
class SharedAppended:
    """What `SharedStore.shared_append` did: the update is number `seq` of the document's
    `life`, and the log holds `count` updates; or nothing was appended, and `refused` is the
    option whose bound refused it (``max_shared_bytes``, ``max_shared_bytes_total``)."""

    seq: int
    life: str
    count: int
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A person's read position in a room (`ReadPositions`): the last seq they read of the
    room's life `epoch`, and the room's last seq; 0 and "" for a room without history."""

    room: str
    read: int
    seq: int
    epoch: str

    @property
    def unread(self) -> int:
        """The messages after the read position (edited and deleted ones count as kept)."""
        return max(0, self.seq - self.read)
