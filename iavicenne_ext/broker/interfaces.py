"""The broker interfaces: what the room logic needs to carry rooms, whoever carries them.

As centrifuge sets them apart, each a few methods on one concept:

- `MessageBroker`: a room's messages (seq, bounded history, dedup claims) and the fan-out
  of every frame to the servers that have members in the room, as typed events (events.py);
- `PresenceManager`: who is in each room, through which connections, with which state;
- `AccessStore`: the access records of rooms with members (access.py);
- `NameRegistry`: the identities the deployment has seen, by the skeleton of their name;
- `SharedStore`: each room's shared (Yjs) document, as a log of updates;
- `HistoryEditor`: a kept message read and rewritten in place (edits, deletions);
- `ReadPositions`: each person's read position per room (unread counts);
- `RememberedRooms`: the chat rooms each identity joined, so its next window rejoins them;
- `DirectHistory`: the kept direct messages of each conversation (two identities in a room);
- `MessageSearch`: full-text search of the rooms' kept messages (search.py).

A backend implements all of them (`Broker`): `MemoryBroker` keeps everything in this
process (one server, no setup), `RedisBroker` keeps it in Redis so several Jupyter servers
share their rooms. The room logic depends on the narrow ones it uses and cannot tell the
backends apart; tests/broker/test_contract.py is what every backend must do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..access import RoomAccess
from .base import (
    UNBOUNDED,
    CreateOutcome,
    DedupKey,
    History,
    JoinOutcome,
    Member,
    MemberOutcome,
    MembersPage,
    PresenceEntry,
    Published,
    ReadState,
    SharedAppended,
    SharedLog,
    fold_members,
    page_of,
)
from .events import BrokerEvent, Deliver, Emitted
from .search import Found


class MessageBroker(ABC):
    """A room's messages and history, and the fan-out of frames between servers."""

    _deliver: Deliver | None = None

    @property
    @abstractmethod
    def server_id(self) -> str:
        """This server's id, the prefix of its connection keys."""

    def attach(self, deliver: Deliver) -> None:
        """Set the callback that writes this server's events to its connections."""
        self._deliver = deliver

    def deliver(self, event: BrokerEvent) -> None:
        if self._deliver is not None:
            self._deliver(event)

    @abstractmethod
    async def subscribe(self, room: str) -> None:
        """This server has a member in `room` now: start receiving its events."""

    @abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """This server's last member left `room`."""

    @abstractmethod
    async def publish(self, room: str, frame: bytes, *, dedup: DedupKey | None = None) -> Published:
        """Give `frame` the room's next seq, keep it in history and deliver it everywhere
        (a `Publication`).

        A `dedup` key seen within `dedup_ttl` seconds is not published again; the seq it
        got the first time is returned with ``duplicate=True``.
        """

    @abstractmethod
    async def claim(self, dedup: DedupKey) -> bool:
        """Remember `dedup` for `dedup_ttl` seconds; False if it was already claimed.

        For frames without seq (direct messages): a resend after a reconnect is dropped.
        """

    @abstractmethod
    async def release(self, dedup: DedupKey) -> None:
        """Forget a claim whose frame could not be sent, so its resend goes through."""

    @abstractmethod
    async def emit(self, event: Emitted) -> None:
        """Deliver a frame without seq or history to its room, on every server."""

    @abstractmethod
    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        """The room's messages after `since` (none when `since` is None).

        At most `max_replay_bytes` of them, the newest; ``recovered`` is False when older
        ones after `since` were left out.
        """

    @abstractmethod
    async def room_exists(self, room: str) -> bool:
        """True when the room has members or kept history."""


class PresenceManager(ABC):
    """Who is in each room: one entry per connection, folded into members per user."""

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

    async def member(self, room: str, user_id: str) -> Member | None:
        """User `user_id` as the room's members show it now (its connections folded), or
        None when it has no connection in the room. This default folds the whole room's
        entries; a backend that keeps them by user answers in the user's own time."""
        folded = fold_members([e for e in await self.entries(room) if e.user_id == user_id])
        return folded[0] if folded else None

    async def is_present(self, room: str, user_id: str) -> bool:
        return any(e.user_id == user_id for e in await self.entries(room))

    async def members_page(self, room: str, after: str, limit: int) -> MembersPage:
        """At most `limit` members after user_id `after` ("": the first), and how many there are.

        This default folds every entry of the room, as `members` does; a backend that keeps
        its members sorted answers in the page's time (both backends here do).
        """
        return page_of(await self.members(room), after, limit)

    async def member_count(self, room: str) -> int:
        """How many users are in the room (a user with several connections counts once)."""
        return len(await self.members(room))

    def member_count_now(self, room: str) -> int | None:
        """`member_count` without waiting, when this backend holds it here; else None."""
        return None

    @abstractmethod
    async def rooms(self) -> dict[str, list[Member]]:
        """Every room that has members now, with its members."""


class AccessStore(ABC):
    """The access records of rooms with members (access.py): who may enter a room."""

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
        """Invite `username` to private room `room` (at most `max_members` members); an
        invitation lifts its removal (`RoomAccess.invited`)."""

    @abstractmethod
    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        """Take `username` off private room `room`'s members."""

    @abstractmethod
    async def moderate(self, room: str, username: str, action: str) -> tuple[MemberOutcome, RoomAccess | None]:
        """Apply the owner's `action` (a `ModerationAction`) to `username` in the record of
        `room`, atomically (`RoomAccess.moderated`); ``MISSING`` when the room has no record."""

    @abstractmethod
    async def delete_access(self, room: str) -> bool:
        """Delete the record and the room's history (it must not become readable as a
        public room); False when there was no record."""


class NameRegistry(ABC):
    """The identities the deployment has seen, by the skeleton of their username (names.py)."""

    @abstractmethod
    async def remember_identity(self, username: str, name_skeleton: str) -> None:
        """`username` opened a socket: its name's skeleton is its own (the first holder keeps it)."""

    @abstractmethod
    async def identity_named(self, name_skeleton: str) -> str | None:
        """The username whose skeleton is `name_skeleton`, if such an identity was seen."""


class SharedStore(ABC):
    """Each room's shared document (iavicenne_ext/shared_state.py), as a log of Yjs updates.

    A document lives and dies with its room: it is forgotten when the room is (history_ttl
    after its last member left), when its access record is deleted, and when a private or
    group room of that name is created. All documents together hold at most
    `shared_bytes_total` bytes (per server or per deployment: the backend's scope), and a
    forgotten document gives its bytes back.
    """

    @abstractmethod
    async def shared_load(self, room: str, *, life: str = "", since: int = 0) -> SharedLog:
        """The room's updates (none for a room without a document): those appended after
        update number `since` of life `life` when the log still holds each of them as it was
        appended, else the whole log (`SharedLog.whole`)."""

    @abstractmethod
    async def shared_append(self, room: str, update: bytes, *, max_bytes: int) -> SharedAppended:
        """Append `update`, atomically refused when the room's log would pass `max_bytes` or
        all documents `shared_bytes_total` (nothing appended then)."""

    @abstractmethod
    async def shared_compact(self, room: str, life: str, seq: int, merged: bytes) -> bool:
        """Replace updates 1 to `seq` of life `life` with `merged` (their sum); False when
        the log no longer holds them one by one (another compaction came first, or another
        life began): nothing changed then."""

    @abstractmethod
    async def shared_delete(self, room: str) -> None:
        """Forget the room's document (its access record was deleted: it must not become public)."""


class HistoryEditor(ABC):
    """A kept message, read and rewritten in place: same seq, same place in the history.

    Frames are given and answered with their seq (as `History.messages`); a message that
    left the history (trimmed, expired, another life of the room) is not there any more.
    A rewritten frame replaces the old one entirely: no read answers the old bytes again.
    """

    @abstractmethod
    async def kept_message(self, room: str, seq: int) -> bytes | None:
        """The frame kept under `seq` in the room's current life, or None."""

    @abstractmethod
    async def rewrite_message(self, room: str, seq: int, expected: bytes, frame: bytes) -> bool:
        """Put `frame` in place of the frame kept under `seq` when that is still `expected`
        (compare and swap: two rewrites at once cannot undo each other); False otherwise.
        The history's byte budgets count the new size."""


class ReadPositions(ABC):
    """Each person's (username's) read position in each room, for unread counts.

    A position belongs to one life of the room (its epoch): a room that starts over starts
    everyone at 0. Positions live and die with the room's history.
    """

    @abstractmethod
    async def mark_read(self, room: str, username: str, seq: int) -> ReadState:
        """Move `username`'s position in `room` forward to `seq` (never back, never past
        the room's last seq); the state after."""

    @abstractmethod
    async def read_state(self, room: str, username: str) -> ReadState:
        """`username`'s position in `room` and the room's last seq."""

    @abstractmethod
    async def read_rooms(self, username: str) -> list[str]:
        """The rooms where `username` has a position (some may have expired since), sorted."""


class RememberedRooms(ABC):
    """The chat rooms each identity (by username) has joined, newest first: what its next
    window, tab or device rejoins (docs/protocol.md, "Continuity"), until it forgets one.

    At most `max_remembered_rooms` per identity (the oldest joined is forgotten first).
    """

    @abstractmethod
    async def remember_room(self, username: str, room: str, at: float) -> None:
        """`username` joined `room` at `at` (epoch seconds): remembered, as the newest."""

    @abstractmethod
    async def remembered_rooms(self, username: str) -> list[str]:
        """The rooms `username` is in, by the person's account: newest joined first."""

    @abstractmethod
    async def forget_room(self, username: str, room: str) -> bool:
        """`username` left `room` for good (or was removed); False when it was not remembered."""


class DirectHistory(ABC):
    """Kept direct messages, per conversation: two identities (usernames) in one room.

    Each kept frame gets the room's next ``direct_seq`` (one counter per room, over all its
    conversations); a replay is for one identity, of its own conversations only. Bounded
    per conversation by `direct_history_size` messages and `direct_history_bytes` bytes
    (the oldest dropped first); a conversation with no new message for
    `direct_history_ttl` seconds is forgotten.
    """

    @abstractmethod
    async def direct_keep(self, room: str, sender: str, recipient: str, frame: bytes) -> int:
        """Keep `frame` (a ``direct-message`` without its ``direct_seq``) in the conversation
        of `sender` and `recipient` in `room`; the ``direct_seq`` it got."""

    @abstractmethod
    async def direct_replay(self, room: str, username: str, since: int) -> tuple[list[bytes], int]:
        """The kept frames of `username`'s conversations in `room` after ``direct_seq``
        `since`, oldest first, each with its ``direct_seq`` (`protocol.with_direct_seq`);
        and the room's last ``direct_seq`` (0: none kept)."""

    @abstractmethod
    async def direct_forget(self, room: str) -> None:
        """Forget every conversation of `room` (its access record was deleted: what was
        said there in private is never replayed)."""


class MessageSearch(ABC):
    """Full-text search of the rooms' kept messages (search.py says what matches).

    Who may read which room is the caller's business: it names the rooms to search.
    """

    @abstractmethod
    async def searchable_rooms(self) -> list[str]:
        """The rooms a search without a room may look in (the backend says which)."""

    @abstractmethod
    async def search(self, rooms: list[str], words: list[str], limit: int) -> list[Found]:
        """At most `limit` kept messages of `rooms` matching every one of `words` (`search.terms`),
        newest first; none when `words` is empty. Deleted messages are never found, edited
        ones by their new text only."""


class Broker(
    MessageBroker,
    PresenceManager,
    AccessStore,
    NameRegistry,
    SharedStore,
    HistoryEditor,
    ReadPositions,
    RememberedRooms,
    DirectHistory,
    MessageSearch,
):
    """A whole backend: every interface above, its budgets and its life cycle.

    The budgets (the ``IAvicenne`` options of the same names): a room's history is at
    most `history_size` messages and `history_bytes_per_room` bytes, all rooms' together
    at most `history_bytes_total` bytes (per server or per deployment: the backend's
    scope); `history` replays at most `max_replay_bytes`; each identity has at most
    `max_dedup_per_identity` dedup records, and its oldest go first, never another's; the
    rooms' shared documents hold at most `shared_bytes_total` bytes together; each
    identity's remembered rooms are at most `max_remembered_rooms`, and each conversation's
    kept direct messages `direct_history_size` and `direct_history_bytes`, forgotten after
    `direct_history_ttl` seconds without a new one.
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
        shared_bytes_total: int = UNBOUNDED,
        max_remembered_rooms: int = 100,
        direct_history_size: int = 200,
        direct_history_bytes: int = 256 * 1024,
        direct_history_ttl: float = 30 * 24 * 3600.0,
    ) -> None:
        self.max_remembered_rooms = max_remembered_rooms
        self.direct_history_size = direct_history_size
        self.direct_history_bytes = direct_history_bytes
        self.direct_history_ttl = direct_history_ttl
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.dedup_ttl = dedup_ttl
        self.history_bytes_per_room = history_bytes_per_room
        self.history_bytes_total = history_bytes_total
        self.max_replay_bytes = max_replay_bytes
        self.max_dedup_per_identity = max_dedup_per_identity
        self.shared_bytes_total = shared_bytes_total

    async def start(self) -> None:
        """Connect; called once the event loop runs."""

    async def close(self) -> None:
        """Release connections and tasks."""

    @property
    def available(self) -> bool:
        return True
