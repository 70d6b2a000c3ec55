"""The broker interface: what the room logic needs to carry rooms, whoever carries them.

A broker owns the shared state of every room — presence entries, the sequence counter,
the bounded history, the ids already accepted — and moves frames to every server that
has members in a room. It knows nothing of sockets: each server's `RoomHub` attaches a
`deliver` callback and writes what the broker hands it to its local connections.

`MemoryBroker` keeps all of it in this process (one server, no setup); `RedisBroker`
keeps it in Redis so several Jupyter servers share their rooms. The room logic cannot
tell them apart.
"""

from __future__ import annotations

import bisect
import enum
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import iavicenne_protocol as p

from ..access import RoomAccess

#: The hub's local fan-out: (room, encoded frame, seq or 0, target user_id or None,
#: connection key to skip or None, supersede: the recipients were taken over by a newer
#: connection and must stop once they have the frame, evict: a username whose
#: connections get the frame and are then removed from the room, or None). Called on the
#: event loop, never blocks.
Deliver = Callable[[str, bytes, int, "str | None", "str | None", bool, "str | None"], None]


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


#: the default of a budget a broker is not given: no bound
UNBOUNDED = sys.maxsize


class Broker(ABC):
    """Shared room state and fan-out between servers. See the module docstring.

    The budgets (the ``IAvicenne`` options of the same names): a room's history is at
    most `history_size` messages and `history_bytes_per_room` bytes, all rooms' together
    at most `history_bytes_total` bytes (per server or per deployment: the broker's
    scope); `history` replays at most `max_replay_bytes`; each owner (identity) has at
    most `max_dedup_per_identity` dedup records, and its oldest go first, never another
    owner's.
    """

    def __init__(
        self,
        *,
        history_size: int,
        history_ttl: float,
        dedup_ttl: float,
        history_bytes_per_room: int = UNBOUNDED,
        history_bytes_total: int = UNBOUNDED,
        max_replay_bytes: int = UNBOUNDED,
        max_dedup_per_identity: int = UNBOUNDED,
    ) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.dedup_ttl = dedup_ttl
        self.history_bytes_per_room = history_bytes_per_room
        self.history_bytes_total = history_bytes_total
        self.max_replay_bytes = max_replay_bytes
        self.max_dedup_per_identity = max_dedup_per_identity
        self._deliver: Deliver | None = None

    def attach(self, deliver: Deliver) -> None:
        """Set the callback that writes frames to this server's connections."""
        self._deliver = deliver

    def deliver(
        self,
        room: str,
        frame: bytes,
        seq: int = 0,
        to: str | None = None,
        skip: str | None = None,
        supersede: bool = False,
        evict: str | None = None,
    ) -> None:
        if self._deliver is not None:
            self._deliver(room, frame, seq, to, skip, supersede, evict)

    @property
    @abstractmethod
    def server_id(self) -> str:
        """This server's id, the prefix of its connection keys."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once the event loop runs."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and tasks."""

    @property
    def available(self) -> bool:
        return True

    # -- fan-out ------------------------------------------------------------------
    @abstractmethod
    async def subscribe(self, room: str) -> None:
        """This server has a member in `room` now: start receiving its frames."""

    @abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """This server's last member left `room`."""

    @abstractmethod
    async def publish(self, room: str, frame: bytes, *, dedup_key: str | None = None, owner: str = "") -> Published:
        """Give `frame` the room's next seq, keep it in history and deliver it everywhere.

        A `dedup_key` seen within `dedup_ttl` seconds is not published again; the seq it
        got the first time is returned with ``duplicate=True``. The key is counted among
        `owner`'s (the sender's identity) records.
        """

    @abstractmethod
    async def claim(self, dedup_key: str, *, owner: str = "") -> bool:
        """Remember `dedup_key` (among `owner`'s) for `dedup_ttl` seconds; False if it was already claimed.

        For frames without seq (direct messages): a resend after a reconnect is dropped.
        """

    @abstractmethod
    async def release(self, dedup_key: str, *, owner: str = "") -> None:
        """Forget a claim whose frame could not be sent, so its resend goes through."""

    @abstractmethod
    async def emit(
        self,
        room: str,
        frame: bytes,
        *,
        to: str | None = None,
        skip: str | None = None,
        supersede: bool = False,
        evict: str | None = None,
    ) -> None:
        """Deliver a frame without seq or history: to the room, or to user `to` only.

        `supersede`: the recipients are taken over by a newer connection; each is told so
        (`Connection.superseded`) right after it was handed the frame, on whichever server.
        `evict`: the frame goes to the connections of that identity (username) only, which
        are then removed from the room (`Connection.evicted`), on whichever server.
        """

    # -- presence -----------------------------------------------------------------
    @abstractmethod
    async def join(self, room: str, entry: PresenceEntry) -> JoinOutcome:
        """Add a connection to the room's presence, unless another identity holds its user_id.

        Names are claimed by skeleton (`names.skeleton`): whoever holds ``bob`` in a room
        holds ``Bob`` and ``b\u043eb`` (Cyrillic o) there too.
        """

    @abstractmethod
    async def leave(self, room: str, conn: str, user_id: str) -> bool:
        """Remove a connection; True when its user has no connection left in the room."""

    @abstractmethod
    async def set_state(self, room: str, conn: str, state: bytes, state_at: float) -> None:
        """Set the presence state (encoded) of one connection."""

    @abstractmethod
    async def entries(self, room: str) -> list[PresenceEntry]:
        """Every live connection entry in the room, on every server."""

    async def members(self, room: str) -> list[Member]:
        return fold_members(await self.entries(room))

    async def is_present(self, room: str, user_id: str) -> bool:
        return any(e.user_id == user_id for e in await self.entries(room))

    async def members_page(self, room: str, after: str, limit: int) -> MembersPage:
        """At most `limit` members after user_id `after` ("": the first), and how many there are.

        This default folds every entry of the room, as `members` does; a broker that keeps
        its members sorted answers in the page's time (the memory broker does).
        """
        return page_of(await self.members(room), after, limit)

    async def member_count(self, room: str) -> int:
        """How many users are in the room (a user with several connections counts once)."""
        return len(await self.members(room))

    def member_count_now(self, room: str) -> int | None:
        """`member_count` without waiting, when this broker holds it here; else None."""
        return None

    @abstractmethod
    async def rooms(self) -> dict[str, list[Member]]:
        """Every room that has members now, with its members."""

    # -- history ------------------------------------------------------------------
    @abstractmethod
    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        """The room's messages after `since` (none when `since` is None).

        At most `max_replay_bytes` of them, the newest; ``recovered`` is False when older
        ones after `since` were left out.
        """

    @abstractmethod
    async def room_exists(self, room: str) -> bool:
        """True when the room has members or kept history."""

    # -- rooms with members (access.py) ------------------------------------------------
    @abstractmethod
    async def get_access(self, room: str) -> RoomAccess | None:
        """The room's access record; None: a public room (no record)."""

    @abstractmethod
    async def all_access(self) -> dict[str, RoomAccess]:
        """Every access record of the deployment, by room."""

    @abstractmethod
    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        """Create a record, atomically: refused when one exists, when the room (or its
        signaling room) has members or kept history, or when its owner has `max_per_owner`."""

    @abstractmethod
    async def add_member(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        """Invite `username` to private room `room` (at most `max_members` members)."""

    @abstractmethod
    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        """Take `username` off private room `room`'s members."""

    @abstractmethod
    async def delete_access(self, room: str) -> bool:
        """Delete the record and the room's history (it must not become readable as a
        public room); False when there was no record."""

    # -- the identities the deployment has seen ----------------------------------------
    @abstractmethod
    async def remember_identity(self, username: str, name_skeleton: str) -> None:
        """`username` opened a socket: its name's skeleton is its own (the first holder keeps it)."""

    @abstractmethod
    async def identity_named(self, name_skeleton: str) -> str | None:
        """The username whose skeleton is `name_skeleton`, if such an identity was seen."""


# -- shared state (iavicenne_ext/shared_state.py): each room's Yjs document as a log ------
@dataclass(slots=True)
class SharedLog:
    """A room's shared document as the broker keeps it: Yjs updates, oldest first.

    Applying them in any order (more than once, too) gives the document; `size` is their
    bytes, `generation` changes at each compaction (the first updates replaced by one).
    """

    updates: list[bytes]
    size: int
    generation: int


class SharedStore(ABC):
    """What a broker adds to keep rooms' shared documents (memory, or Redis: every server's)."""

    @abstractmethod
    async def shared_load(self, room: str) -> SharedLog:
        """The room's updates (none for a room without a document)."""

    @abstractmethod
    async def shared_append(self, room: str, update: bytes, *, max_bytes: int, ttl: float) -> int | None:
        """Append `update`, atomically refused when the log would pass `max_bytes`: the
        number of updates then kept, or None (nothing appended). The document is kept `ttl`
        seconds after its last change."""

    @abstractmethod
    async def shared_compact(self, room: str, generation: int, count: int, merged: bytes, *, ttl: float) -> bool:
        """Replace the first `count` updates with `merged` (their sum), unless another
        compaction came first (the generation moved): False then, nothing changed."""

    @abstractmethod
    async def shared_delete(self, room: str) -> None:
        """Forget the room's document (its access record was deleted: it must not become public)."""
