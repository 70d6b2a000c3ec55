"""The in-memory broker: every room's state in this process, for a single Jupyter server.

The default: nothing to install or run. Frames are delivered synchronously, so a seq is
handed out, stored and delivered in one step and the order is the seq order.

Everything it keeps is bounded, and no operation looks at every room:

- a room's history: `history_size` messages and `history_bytes_per_room` bytes, the
  oldest dropped first;
- all rooms together: `history_bytes_total` bytes, counting each kept room and message
  with what it costs beside its bytes. Beyond it, rooms nobody is in go first (the one
  emptied longest ago first, its whole history), then the oldest messages of the server,
  whichever room they are in;
- a room nobody is in is forgotten `history_ttl` seconds after its last member left: a
  heap ordered by that deadline, looked at from its top on each join;
- dedup records: `max_dedup_per_identity` per owner, each owner's oldest first;
- shared documents: `shared_bytes_total` bytes together (memory_shared.py), each
  forgotten with its room;
- read positions: one per person per room, kept in the room's state and forgotten with it
  (`_read_rooms` lists each person's rooms, pruned as it is read);
- remembered rooms and kept direct messages (memory_continuity.py): `max_remembered_rooms`
  per identity, `direct_history_size` / `direct_history_bytes` per conversation.

An edit or a deletion replaces a message's frame in `history` (`rewrite_message`), its
bytes counted again: the old frame is no longer referenced anywhere.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import iavicenne_protocol as p

from ..access import RoomAccess
from ..names import skeleton
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
)
from .events import Emitted, Publication
from .interfaces import Broker
from .memory_continuity import MemoryContinuity
from .memory_shared import SharedLogs
from .search import Found, matches, searchable_text

# What keeping costs beside the frame's own bytes, counted against history_bytes_total so
# that many tiny messages or many empty rooms cannot hold more memory than the budget says
# (measured with sys.getsizeof: the (seq, frame, order) tuple, the bytes header, the deque
# slot; a room's dataclass, deque, dicts and name).
MESSAGE_OVERHEAD = 120
ROOM_OVERHEAD = 1024


@dataclass(slots=True)
class _Claim:
    """A name's skeleton held in a room: by which identity, through how many user_ids."""

    username: str
    user_ids: int = 1


@dataclass(slots=True, eq=False)
class _RoomState:
    name: str
    epoch: str
    # (seq, frame with its seq, order of publication on this server), oldest first
    history: deque[tuple[int, bytes, int]] = field(default_factory=deque)
    seq: int = 0
    held: int = 0  # bytes of `history`, overheads included
    entries: dict[str, PresenceEntry] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)  # user_id -> connections
    # for pages of members in the time of the page, not of the room: each user's entries,
    # the user_ids in order, and each member's encoding until it changes
    by_user: dict[str, dict[str, PresenceEntry]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    encoded: dict[str, bytes] = field(default_factory=dict)
    claims: dict[str, _Claim] = field(default_factory=dict)  # names held, by skeleton
    reads: dict[str, int] = field(default_factory=dict)  # username -> the last seq it read
    emptied_at: float | None = None
    expiring: bool = False  # has its one entry in the expiry heap
    queued: bool = False  # has its one entry in the oldest-message heap


class MemoryBroker(MemoryContinuity, Broker):
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
        super().__init__(
            max_remembered_rooms=max_remembered_rooms,
            direct_history_size=direct_history_size,
            direct_history_bytes=direct_history_bytes,
            direct_history_ttl=direct_history_ttl,
            history_size=history_size,
            history_ttl=history_ttl,
            dedup_ttl=dedup_ttl,
            history_bytes_per_room=history_bytes_per_room,
            history_bytes_total=history_bytes_total,
            max_replay_bytes=max_replay_bytes,
            max_dedup_per_identity=max_dedup_per_identity,
            shared_bytes_total=shared_bytes_total,
        )
        self._rooms: dict[str, _RoomState] = {}
        self.held = 0  # bytes counted against history_bytes_total
        self._order = itertools.count()  # publication order of messages across rooms
        self._ticket = itertools.count()  # heap tie-break, so rooms are never compared
        # rooms nobody is in, by the time they expire (one entry per room, checked on pop)
        self._expiring: list[tuple[float, int, _RoomState]] = []
        # rooms with history, by the order of their oldest message (checked on pop)
        self._oldest: list[tuple[int, int, _RoomState]] = []
        # identity -> dedup key -> (seq, accepted at); per identity oldest first, bounded
        # in count and in age
        self._accepted: dict[str, OrderedDict[DedupKey, tuple[int, float]]] = {}
        self._server_id = "mem-" + secrets.token_hex(4)
        # access records (bounded: max_private_rooms_per_identity per identity) and the
        # rooms each owner created; the identities seen, by the skeleton of their username
        self._access: dict[str, RoomAccess] = {}
        self._owned: dict[str, set[str]] = {}
        self._identities: dict[str, str] = {}
        # shared state: each room's document log, forgotten with the room
        self._shared = SharedLogs(shared_bytes_total)
        # username -> the rooms where it has a read position (`_RoomState.reads`); a room
        # forgotten since is pruned from it when it is read
        self._read_rooms: dict[str, set[str]] = {}
        self._init_continuity()

    @property
    def server_id(self) -> str:
        return self._server_id

    # -- rooms and their lifetime -----------------------------------------------------
    def _room(self, room: str) -> _RoomState:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _RoomState(room, secrets.token_hex(6))
            self.held += ROOM_OVERHEAD
            self._persist_room(state)
            if self.held > self.history_bytes_total:
                self._trim_total()
        return state

    def _drop(self, state: _RoomState) -> None:
        del self._rooms[state.name]
        self._shared.forget(state.name)  # its shared document lives and dies with it
        self._persist_room_dropped(state)
        self.held -= ROOM_OVERHEAD + state.held
        state.history.clear()
        state.held = 0
        # its entry in `_oldest` is skipped when met; rebuild before such entries pile up
        if len(self._oldest) > 2 * len(self._rooms) + 64:
            live = [s for s in self._rooms.values() if s.history]
            for s in self._rooms.values():
                s.queued = bool(s.history)
            self._oldest = [(s.history[0][2], next(self._ticket), s) for s in live]
            heapq.heapify(self._oldest)

    def _schedule_expiry(self, state: _RoomState) -> None:
        assert state.emptied_at is not None
        heapq.heappush(self._expiring, (state.emptied_at + self.history_ttl, next(self._ticket), state))
        state.expiring = True

    def _expire(self, now: float) -> None:
        """Forget the rooms that have been empty longer than history_ttl."""
        heap = self._expiring
        while heap and heap[0][0] <= now:
            _, _, state = heapq.heappop(heap)
            state.expiring = False
            if self._rooms.get(state.name) is not state or state.entries or state.emptied_at is None:
                continue  # gone, or joined again since
            if now - state.emptied_at >= self.history_ttl:
                self._drop(state)
            else:
                self._schedule_expiry(state)  # emptied again since: a later deadline

    def _trim_total(self) -> None:
        """Bring what is kept back within history_bytes_total: empty rooms, then the oldest messages."""
        while self.held > self.history_bytes_total:
            if not self._drop_an_empty_room() and not self._drop_the_oldest_message():
                return  # only rooms with members, and no history: nothing more to drop

    def _drop_an_empty_room(self) -> bool:
        heap = self._expiring
        while heap:
            _, _, state = heapq.heappop(heap)
            state.expiring = False
            if self._rooms.get(state.name) is state and not state.entries:
                self._drop(state)
                return True
        return False

    def _drop_the_oldest_message(self) -> bool:
        state = self._room_of_the_oldest_message()
        if state is None:
            return False
        heap = self._oldest
        self._pop_oldest(state)
        if state.history:
            heapq.heapreplace(heap, (state.history[0][2], next(self._ticket), state))
        else:
            heapq.heappop(heap)
            state.queued = False
        return True

    def _room_of_the_oldest_message(self) -> _RoomState | None:
        """The room whose first message is the server's oldest (on top of `_oldest`)."""
        heap = self._oldest
        while heap:
            order, _, state = heap[0]
            if self._rooms.get(state.name) is not state or not state.history:
                heapq.heappop(heap)
                state.queued = False
                continue
            head = state.history[0][2]
            if head != order:  # its oldest messages were dropped by the room's own bounds
                heapq.heapreplace(heap, (head, next(self._ticket), state))
                continue
            return state
        return None

    # -- history ------------------------------------------------------------------------
    def _keep(self, state: _RoomState, seq: int, frame: bytes) -> None:
        cost = len(frame) + MESSAGE_OVERHEAD
        state.history.append((seq, frame, next(self._order)))
        state.held += cost
        self.held += cost
        while len(state.history) > self.history_size or state.held > self.history_bytes_per_room:
            self._pop_oldest(state)
        if state.history and not state.queued:
            heapq.heappush(self._oldest, (state.history[0][2], next(self._ticket), state))
            state.queued = True
        if self.held > self.history_bytes_total:
            self._trim_total()

    def _pop_oldest(self, state: _RoomState) -> None:
        seq, frame, _ = state.history.popleft()
        cost = len(frame) + MESSAGE_OVERHEAD
        state.held -= cost
        self.held -= cost
        self._persist_cut(state, seq)

    def _newest(self, state: _RoomState, since: int) -> tuple[list[bytes], bool]:
        """The frames after `since` that fit in max_replay_bytes (the newest); True if some did not."""
        budget = self.max_replay_bytes
        frames: list[bytes] = []
        for seq, frame, _ in reversed(state.history):
            if seq <= since:
                break
            budget -= len(frame)
            if budget < 0:
                frames.reverse()
                return frames, True
            frames.append(frame)
        frames.reverse()
        return frames, False

    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        state = self._room(room)
        if since is None:
            return History([], state.seq, state.epoch, True)
        if epoch is not None and epoch != state.epoch:
            # another life of the room: its seqs are not the client's seqs
            return History(self._newest(state, -1)[0], state.seq, state.epoch, False)
        missed, cut = self._newest(state, since)
        oldest = state.history[0][0] if state.history else state.seq + 1
        recovered = not cut and since <= state.seq and since >= oldest - 1
        return History(missed, state.seq, state.epoch, recovered)

    async def room_exists(self, room: str) -> bool:
        self._expire(time.monotonic())
        return room in self._rooms

    # -- search (search.py): a scan of the kept history, newest first --------------------
    async def searchable_rooms(self) -> list[str]:
        return [name for name, state in self._rooms.items() if state.history]

    async def search(self, rooms: list[str], words: list[str], limit: int) -> list[Found]:
        if not words or limit <= 0:
            return []
        found: list[tuple[int, Found]] = []
        for room in dict.fromkeys(rooms):
            state = self._rooms.get(room)
            for _, frame, order in state.history if state is not None else ():
                text = searchable_text(frame)
                if text is not None and matches(words, text):
                    found.append((order, Found(room, frame)))
        return [hit for _, hit in heapq.nlargest(limit, found, key=lambda item: item[0])]

    # -- fan-out --------------------------------------------------------------------------
    async def subscribe(self, room: str) -> None:
        pass  # one process: every frame is already here

    async def unsubscribe(self, room: str) -> None:
        pass

    async def publish(self, room: str, frame: bytes, *, dedup: DedupKey | None = None) -> Published:
        records = None
        if dedup is not None:
            now = time.monotonic()
            records = self._records(dedup.identity, now)
            known = records.get(dedup)
            if known is not None:
                return Published(known[0], True)
        state = self._room(room)
        state.seq += 1
        seq = state.seq
        if records is not None and dedup is not None:
            self._remember(records, dedup, seq, now)
        framed = p.with_seq(seq, frame)
        self._persist_message(state, seq, framed, dedup)
        self._keep(state, seq, framed)
        self.deliver(Publication(room, framed, seq))
        return Published(seq, False)

    async def emit(self, event: Emitted) -> None:
        self.deliver(event)

    # -- dedup records ------------------------------------------------------------------
    def _records(self, identity: str, now: float) -> OrderedDict[DedupKey, tuple[int, float]]:
        """`identity`'s unexpired records (oldest first: every record moves to the end when set)."""
        records = self._accepted.get(identity)
        if records is None:
            records = self._accepted[identity] = OrderedDict()
        while records and now - next(iter(records.values()))[1] > self.dedup_ttl:
            records.popitem(last=False)
        return records

    def _remember(self, records: OrderedDict[DedupKey, tuple[int, float]], dedup: DedupKey, seq: int, now: float) -> None:
        records[dedup] = (seq, now)
        records.move_to_end(dedup)
        while len(records) > self.max_dedup_per_identity:
            records.popitem(last=False)  # this identity's oldest, never another's

    async def claim(self, dedup: DedupKey) -> bool:
        now = time.monotonic()
        records = self._records(dedup.identity, now)
        if dedup in records:
            return False
        self._remember(records, dedup, 0, now)
        return True

    async def release(self, dedup: DedupKey) -> None:
        records = self._accepted.get(dedup.identity)
        if records is not None:
            records.pop(dedup, None)

    # -- presence -------------------------------------------------------------------------
    async def join(self, room: str, entry: PresenceEntry) -> JoinOutcome:
        self._expire(time.monotonic())
        state = self._room(room)
        username = str(entry.identity.get("username") or "")
        claim = skeleton(entry.user_id)
        held = state.claims.get(claim)
        if held is not None and held.username != username:
            return JoinOutcome.TAKEN
        state.entries[entry.conn] = entry
        if state.emptied_at is not None:
            state.emptied_at = None
            self._persist_emptied(state)
        count = state.users.get(entry.user_id, 0)
        state.users[entry.user_id] = count + 1
        state.by_user.setdefault(entry.user_id, {})[entry.conn] = entry
        state.encoded.pop(entry.user_id, None)
        if count == 0:
            # a list insert moves pointers (microseconds for 10,000 users), and a page is
            # then a slice
            bisect.insort(state.order, entry.user_id)
            if held is None:
                state.claims[claim] = _Claim(username)
            else:
                held.user_ids += 1
        return JoinOutcome.FIRST if count == 0 else JoinOutcome.AGAIN

    async def leave(self, room: str, conn: str, user_id: str) -> bool:
        state = self._rooms.get(room)
        if state is None or state.entries.pop(conn, None) is None:
            return False
        left = state.users[user_id] - 1
        state.encoded.pop(user_id, None)
        if left:
            state.users[user_id] = left
            del state.by_user[user_id][conn]
            return False
        del state.users[user_id]
        del state.by_user[user_id]
        at = bisect.bisect_left(state.order, user_id)
        if at < len(state.order) and state.order[at] == user_id:
            del state.order[at]
        claim = skeleton(user_id)
        held = state.claims.get(claim)
        if held is not None:
            held.user_ids -= 1
            if held.user_ids <= 0:
                del state.claims[claim]
        if not state.entries:
            state.emptied_at = time.monotonic()
            self._persist_emptied(state)
            if not state.expiring:
                self._schedule_expiry(state)
        return True

    async def set_state(self, room: str, conn: str, state: bytes, state_at: float) -> None:
        room_state = self._rooms.get(room)
        entry = room_state.entries.get(conn) if room_state else None
        if entry is not None:
            entry.state = state
            entry.state_at = state_at
            assert room_state is not None
            room_state.encoded.pop(entry.user_id, None)

    async def entries(self, room: str) -> list[PresenceEntry]:
        state = self._rooms.get(room)
        return list(state.entries.values()) if state else []

    async def is_present(self, room: str, user_id: str) -> bool:
        state = self._rooms.get(room)
        return state is not None and user_id in state.users

    async def members(self, room: str) -> list[Member]:
        state = self._rooms.get(room)
        if state is None:
            return []
        return [fold_members(list(state.by_user[user_id].values()))[0] for user_id in state.order]

    async def member(self, room: str, user_id: str) -> Member | None:
        state = self._rooms.get(room)
        entries = state.by_user.get(user_id) if state is not None else None
        return fold_members(list(entries.values()))[0] if entries else None

    async def members_page(self, room: str, after: str, limit: int) -> MembersPage:
        state = self._rooms.get(room)
        if state is None:
            return MembersPage([], 0, None)
        order = state.order
        start = bisect.bisect_right(order, after) if after else 0
        listed = order[start : start + limit]
        cache = state.encoded
        members: list[bytes] = []
        for user_id in listed:
            encoded = cache.get(user_id)
            if encoded is None:
                encoded = cache[user_id] = fold_members(list(state.by_user[user_id].values()))[0].encoded()
            members.append(encoded)
        more = start + len(listed) < len(order)
        return MembersPage(members, len(order), (listed[-1] if listed else after) if more else None)

    async def member_count(self, room: str) -> int:
        return self.member_count_now(room)

    def member_count_now(self, room: str) -> int:
        state = self._rooms.get(room)
        return len(state.order) if state is not None else 0

    async def rooms(self) -> dict[str, list[Member]]:
        return {name: fold_members(list(state.entries.values())) for name, state in self._rooms.items() if state.entries}

    # -- rooms with members ---------------------------------------------------------------
    async def get_access(self, room: str) -> RoomAccess | None:
        return self._access.get(room)

    async def all_access(self) -> dict[str, RoomAccess]:
        return dict(self._access)

    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        self._expire(time.monotonic())
        signaling = self._rooms.get(p.SIGNALING_ROOM_PREFIX + access.room)
        if access.room in self._access or access.room in self._rooms or (signaling is not None and signaling.entries):
            return CreateOutcome.EXISTS
        owned = self._owned.setdefault(access.owner, set())
        if len(owned) >= max_per_owner:
            if not owned:
                del self._owned[access.owner]
            return CreateOutcome.BUDGET
        owned.add(access.room)
        self._access[access.room] = access
        self._persist_access(access.room, access)
        self._forget_shared(access.room)  # a private or group room starts with no document
        return CreateOutcome.CREATED

    def _private(self, room: str) -> RoomAccess | None:
        access = self._access.get(room)
        return access if access is not None and access.kind == p.AccessKind.PRIVATE else None

    async def add_member(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        access = self._private(room)
        if access is None:
            return MemberOutcome.MISSING, None
        if username not in access.members and len(access.members) >= max_members:
            return MemberOutcome.FULL, access
        access = self._access[room] = access.invited(username)
        self._persist_access(room, access)
        return MemberOutcome.DONE, access

    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        access = self._private(room)
        if access is None:
            return MemberOutcome.MISSING, None
        access = self._access[room] = access.with_members(access.members - {username})
        self._persist_access(room, access)
        return MemberOutcome.DONE, access

    async def moderate(self, room: str, username: str, action: str) -> tuple[MemberOutcome, RoomAccess | None]:
        # the muted and removed usernames live in the record itself (RoomAccess.muted, .removed)
        access = self._access.get(room)
        if access is None:
            return MemberOutcome.MISSING, None
        access = self._access[room] = access.moderated(username, action)
        self._persist_access(room, access)
        return MemberOutcome.DONE, access

    async def delete_access(self, room: str) -> bool:
        access = self._access.pop(room, None)
        if access is None:
            return False
        self._persist_access(room, None)
        owned = self._owned.get(access.owner)
        if owned is not None:
            owned.discard(room)
            if not owned:
                del self._owned[access.owner]
        state = self._rooms.get(room)
        if state is not None:
            # what was said in the private room must not be replayed once it is public
            while state.history:
                self._pop_oldest(state)
            state.epoch = secrets.token_hex(6)
            state.reads.clear()  # positions in a life that is over
            self._persist_room(state)
        return True

    # -- identities ---------------------------------------------------------------------------
    async def remember_identity(self, username: str, name_skeleton: str) -> None:
        if name_skeleton not in self._identities:
            self._identities[name_skeleton] = username
            self._persist_identity(name_skeleton, username)

    async def identity_named(self, name_skeleton: str) -> str | None:
        return self._identities.get(name_skeleton)

    # -- shared documents (SharedStore), in this process: memory_shared.py ---------------
    async def shared_load(self, room: str, *, life: str = "", since: int = 0) -> SharedLog:
        self._expire(time.monotonic())
        return self._shared.load(room, life, since)

    async def shared_append(self, room: str, update: bytes, *, max_bytes: int) -> SharedAppended:
        self._expire(time.monotonic())
        appended = self._shared.append(room, update, max_bytes)
        state = self._room(room)  # the document lives with its room, forgotten with it
        if appended.refused is None:
            self._persist_shared_append(room, appended, update)
        if not state.entries and not state.expiring:  # written by a member who just left
            if state.emptied_at is None:
                state.emptied_at = time.monotonic()
                self._persist_emptied(state)
            self._schedule_expiry(state)
        return appended

    async def shared_compact(self, room: str, life: str, seq: int, merged: bytes) -> bool:
        done = self._shared.compact(room, life, seq, merged)
        if done:
            self._persist_shared_compact(room, seq, merged)
        return done

    async def shared_delete(self, room: str) -> None:
        self._forget_shared(room)

    def _forget_shared(self, room: str) -> None:
        if room in self._shared:
            self._shared.forget(room)
            self._persist_shared_forgotten(room)

    # -- what a store built on this broker keeps (broker/sqlite/): each change that must
    # survive a restart, called as it is made here; nothing to do in memory ---------------
    def _persist_room(self, state: _RoomState) -> None:
        """A room began, or began a new life (`epoch`) at its current `seq`."""

    def _persist_room_dropped(self, state: _RoomState) -> None:
        """A room is forgotten, with its history and its shared document."""

    def _persist_emptied(self, state: _RoomState) -> None:
        """`emptied_at` changed: the room's last member left (its expiry runs from then), or one came."""

    def _persist_message(self, state: _RoomState, seq: int, frame: bytes, dedup: DedupKey | None) -> None:
        """Message `seq` (`frame`, with its seq) was published, under `dedup` if given."""

    def _persist_cut(self, state: _RoomState, seq: int) -> None:
        """The room's messages up to `seq` are no longer kept (a budget, an age, a deletion)."""

    def _persist_access(self, room: str, access: RoomAccess | None) -> None:
        """The room's access record is now `access` (None: deleted)."""

    def _persist_identity(self, name_skeleton: str, username: str) -> None:
        """`username` is the first identity seen with `name_skeleton`."""

    def _persist_shared_append(self, room: str, appended: SharedAppended, update: bytes) -> None:
        """`update` is number `appended.seq` of the room's document, of life `appended.life`."""

    def _persist_shared_compact(self, room: str, seq: int, merged: bytes) -> None:
        """Updates 1 to `seq` of the room's document are now `merged`."""

    def _persist_shared_forgotten(self, room: str) -> None:
        """The room's shared document is forgotten."""

    def _persist_rewrite(self, state: _RoomState, seq: int, frame: bytes) -> None:
        """Kept message `seq` is now `frame` (edited, or deleted: its text gone)."""

    def _persist_read(self, room: str, username: str, seq: int) -> None:
        """`username` has read `room` up to `seq`."""

    # -- kept messages rewritten in place (HistoryEditor) ---------------------------------
    @staticmethod
    def _kept_at(state: _RoomState, seq: int) -> int | None:
        """Where `seq` is in the room's history: its seqs are consecutive, oldest first."""
        history = state.history
        if not history:
            return None
        at = seq - history[0][0]
        if 0 <= at < len(history) and history[at][0] == seq:
            return at
        return None

    async def kept_message(self, room: str, seq: int) -> bytes | None:
        state = self._rooms.get(room)
        at = None if state is None else self._kept_at(state, seq)
        return None if at is None or state is None else state.history[at][1]

    async def rewrite_message(self, room: str, seq: int, expected: bytes, frame: bytes) -> bool:
        state = self._rooms.get(room)
        at = None if state is None else self._kept_at(state, seq)
        if at is None or state is None:
            return False
        kept_seq, kept, order = state.history[at]
        if kept != expected:
            return False
        state.history[at] = (kept_seq, frame, order)
        self._persist_rewrite(state, seq, frame)
        delta = len(frame) - len(kept)
        state.held += delta
        self.held += delta
        if self.held > self.history_bytes_total:
            self._trim_total()
        return True

    # -- read positions (ReadPositions) ---------------------------------------------------
    async def mark_read(self, room: str, username: str, seq: int) -> ReadState:
        state = self._rooms.get(room)
        if state is None:
            return ReadState(room, 0, 0, "")
        read = min(max(seq, state.reads.get(username, 0)), state.seq)
        if read > 0:
            if read != state.reads.get(username):
                state.reads[username] = read
                self._persist_read(room, username, read)
            self._read_rooms.setdefault(username, set()).add(room)
        return ReadState(room, read, state.seq, state.epoch)

    async def read_state(self, room: str, username: str) -> ReadState:
        state = self._rooms.get(room)
        if state is None:
            return ReadState(room, 0, 0, "")
        return ReadState(room, state.reads.get(username, 0), state.seq, state.epoch)

    async def read_rooms(self, username: str) -> list[str]:
        rooms = self._read_rooms.get(username)
        if rooms is None:
            return []
        rooms.intersection_update(self._rooms)  # the rooms forgotten since
        if not rooms:
            del self._read_rooms[username]
        return sorted(rooms)
