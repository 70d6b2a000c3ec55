"""`RedisBroker`: the `Broker` methods, each one a Redis request.

Each server keeps its sockets; Redis keeps what the servers share (keys.py). Every state
change is one Lua script (scripts.py), so it is atomic across servers. The parts around
the requests live apart: the connection and its faults in link.py, the ordering of a
room's frames in feed.py, heartbeats and sweeping in liveness.py.

Budgets (issue 10), all enforced inside the scripts: a room's history is trimmed to
``history_bytes_per_room``; beyond ``history_bytes_total`` over the deployment, the room
being written drops its own oldest frames, and when it has too few a message is refused
(``limit-exceeded``); a replay sends at most ``max_replay_bytes`` (the newest, with
``recovered=false``); each identity keeps at most ``max_dedup_per_identity`` dedup keys;
shared documents hold at most ``shared_bytes_total`` bytes over the deployment (an update
beyond it is refused), each expiring with its room's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

import iavicenne_protocol as p

from ...access import RoomAccess
from ...names import skeleton
from ..base import (
    BrokerUnavailable,
    CreateOutcome,
    DedupKey,
    History,
    JoinOutcome,
    Member,
    MemberOutcome,
    MembersPage,
    PresenceEntry,
    Published,
    SharedAppended,
    SharedLog,
    fold_members,
)
from ..events import Emitted
from ..interfaces import Broker
from ..search import Found, found_in, newest
from . import envelope
from .continuity import RedisContinuity
from .feed import RoomFeed
from .kept_messages import KeptMessages
from .keys import Keys, dedup_name
from .link import RedisLink
from .liveness import Liveness, Registry, entry_json

MiB = 1024 * 1024


def _chat_room(room: str) -> str:
    """The room whose access record applies to `room`: a signaling room's is its chat room's."""
    return room.removeprefix(p.SIGNALING_ROOM_PREFIX)


# the publish script's answers
_SENT, _DUPLICATE, _FULL = 0, 1, 2


class RedisBroker(KeptMessages, RedisContinuity, Broker):
    """Rooms in Redis, shared by every server with the same URL and prefix."""

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        history_size: int,
        history_ttl: float,
        dedup_ttl: float,
        presence_refresh: float = 5.0,
        presence_timeout: float = 20.0,
        retry_interval: float = 2.0,
        socket_timeout: float = 5.0,
        history_bytes_per_room: int = 4 * MiB,
        history_bytes_total: int = 64 * MiB,
        max_replay_bytes: int = 4 * MiB,
        max_dedup_per_identity: int = 10_000,
        shared_bytes_total: int = 256 * MiB,
        max_remembered_rooms: int = 100,
        direct_history_size: int = 200,
        direct_history_bytes: int = 256 * 1024,
        direct_history_ttl: float = 30 * 24 * 3600.0,
        log: logging.Logger | None = None,
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
        if presence_timeout <= presence_refresh:
            raise ValueError(
                f"presence_timeout ({presence_timeout:g} s) must be longer than presence_refresh "
                f"({presence_refresh:g} s), or live servers would be declared dead; raise "
                "IAvicenne.presence_timeout (e.g. to 4 x presence_refresh)"
            )
        self.url = url
        self.prefix = prefix
        self.log = log or logging.getLogger("iavicenne")
        # a new id per process life: the entries of a previous life are swept, never reused
        self._server_id = "r" + secrets.token_hex(6)
        self._keys = Keys(prefix)
        self._history_ttl_ms = max(1, int(history_ttl * 1000))
        self._owed_total = 0  # changes of history-total that could not reach Redis yet
        self._bookkeeping: set[asyncio.Future[None]] = set()
        self._dedup_ttl_ms = max(1, int(dedup_ttl * 1000))

        self._registry = Registry()
        self._listed_reads = set()  # KeptMessages' (mark_read)
        # The access record the join script read, for the hub's check right after that
        # join (RoomHub._still_allowed): by task and room, taken by that check and gone
        # once the task yields (call_soon), so no later check can see a stale record.
        self._joined_access: dict[tuple[asyncio.Task[object] | None, str], RoomAccess | None] = {}
        self._feed = RoomFeed(fetch=self._history, deliver=self.deliver, log=self.log, echo_timeout=socket_timeout)
        self._link = RedisLink(
            url=url,
            keys=self._keys,
            server_id=self._server_id,
            socket_timeout=socket_timeout,
            retry_interval=retry_interval,
            log=self.log,
            on_connected=self._on_connected,
            on_message=self._feed.on_message,
            on_subscribed=self._feed.on_subscribed,
            on_lost=self._feed.reset,
        )
        self._liveness = Liveness(
            self._link,
            self._registry,
            self._keys,
            server_id=self._server_id,
            refresh=presence_refresh,
            timeout=presence_timeout,
            history_ttl_ms=self._history_ttl_ms,
            log=self.log,
        )

    # -- life cycle -------------------------------------------------------------------
    @property
    def server_id(self) -> str:
        return self._server_id

    @property
    def available(self) -> bool:
        return self._link.available

    async def start(self) -> None:
        """Connect, or log one line and keep trying in the background; never raises."""
        await self._link.start()

    async def _on_connected(self) -> str:
        """Redis answers (again): re-establish what this server holds there."""
        await self._liveness.heartbeat()
        if self._owed_total:
            owed, self._owed_total = self._owed_total, 0
            if int(await self._link.command_now("INCRBY", self._keys.history_total, owed)) < 0:
                # Redis lost its data meanwhile: the sum starts again from nothing
                await self._link.command_now("SET", self._keys.history_total, 0)
        rooms = sorted(self._feed.wanted)
        if rooms:
            await self._link.subscribe(rooms)
        await self._liveness.settle()
        self._liveness.start()
        return f"{len(rooms)} room(s) resubscribed, {len(self._registry.entries)} connection(s) re-registered"

    async def close(self) -> None:
        """Leave every room at once (other servers need not wait for the sweep), then disconnect."""

        async def farewell() -> None:
            self._registry.clear()
            await self._liveness.reconcile(announce=False)
            await self._link.command_now("ZREM", self._keys.servers, self._server_id)
            await self._link.command_now("DEL", self._keys.rooms_of(self._server_id))

        await self._link.close(farewell)

    # -- fan-out --------------------------------------------------------------------------
    async def subscribe(self, room: str) -> None:
        async with self._link.request():
            self._feed.want(room)
            try:
                await self._link.subscribe([room])
            except Exception:
                self._feed.wanted.discard(room)
                raise

    async def unsubscribe(self, room: str) -> None:
        # never raises: with Redis down, there is no subscription to end anyway
        self._feed.unwant(room)
        try:
            async with self._link.request():
                await self._link.unsubscribe(room)
        except BrokerUnavailable:
            pass

    async def publish(self, room: str, frame: bytes, *, dedup: DedupKey | None = None) -> Published:
        # The deployment's history bytes live in another slot than the room's (keys.py):
        # the frame's size is reserved there first, and the script, given the sum with it,
        # makes room or refuses; what it changed beyond the reservation is added back after.
        # Servers publishing at once each count the others' reservations, so the sum never
        # passes history_bytes_total by more than the frames on their way at that moment.
        total = int(await self._link.command("INCRBY", self._keys.history_total, len(frame)))
        try:
            seq, status, delta, *new = await self._link.run(
                "publish",
                self._keys.tagged(room),
                room,
                frame,
                secrets.token_hex(6),
                self.history_size,
                self._history_ttl_ms,
                "" if dedup is None else dedup_name(dedup),
                self._dedup_ttl_ms,
                self.history_bytes_per_room,
                self.history_bytes_total,
                "" if dedup is None else dedup.identity,
                self.max_dedup_per_identity,
                total,
                self._link.publish_command,
            )
        except BaseException:
            # not applied (refused, or Redis lost): the reservation goes back if it can
            await asyncio.shield(self._add_to_total(-len(frame)))
            raise
        # Bookkeeping in the deployment's slot, not waited for: a publish that waited for it
        # and one that had none would be answered out of order, and acks keep the order of
        # the messages (the reservation before the script is waited for by every publish).
        if int(delta) or (new and new[0] == 1):
            self._later(self._account(int(delta), room if new and new[0] == 1 else None))
        if status == _FULL:
            raise p.limit_exceeded(
                "history_bytes_total",
                self.history_bytes_total,
                f"message not sent: the history of all rooms is full, and room {room!r} holds too little "
                "to make space; it frees up as empty rooms expire (history_ttl)",
            )
        if status == _SENT:
            await self._feed.await_echo(room, seq)
        return Published(int(seq), status == _DUPLICATE)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._bookkeeping.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._bookkeeping.discard)

    async def _account(self, delta: int, new_room: str | None) -> None:
        await self._add_to_total(delta)
        if new_room is not None:  # the room's bytes are counted now: audits will check them
            with contextlib.suppress(BrokerUnavailable):  # it is listed again by its next new life
                await self._link.command("SADD", self._keys.history_rooms, new_room)

    async def _add_to_total(self, delta: int) -> None:
        """Change history-total by `delta`; on an outage, once Redis is back (`_on_connected`)."""
        if delta:
            try:
                await self._link.command("INCRBY", self._keys.history_total, delta)
            except BrokerUnavailable:
                self._owed_total += delta

    async def claim(self, dedup: DedupKey) -> bool:
        tagged = self._keys.tagged(dedup.room)
        name = dedup_name(dedup)
        return bool(await self._link.run("claim", tagged, name, self._dedup_ttl_ms, dedup.identity, self.max_dedup_per_identity))

    async def release(self, dedup: DedupKey) -> None:
        await self._link.run("release", self._keys.tagged(dedup.room), dedup_name(dedup), dedup.identity)

    async def emit(self, event: Emitted) -> None:
        if self._link.closing:
            # the server is stopping: `close` has told every room its members left, and
            # the sockets emitting now are closing too
            return
        await self._link.command(self._link.publish_command, self._keys.channel(event.room), envelope.encode(event))

    # -- presence -------------------------------------------------------------------------
    async def join(self, room: str, entry: PresenceEntry) -> JoinOutcome:
        chat_room = _chat_room(room)
        # listed among this server's rooms before its entry exists, so that a sweep of this
        # server, should it die, finds the entry (keys.py rooms-of)
        registry = self._registry
        registry.joining(room, +1)
        try:
            if not registry.in_room(room):
                await self._link.command("SADD", self._keys.rooms_of(self._server_id), room)
            outcome, *record = await self._link.run(
                "join",
                self._keys.tagged(room),
                room,
                self._server_id,
                entry.conn,
                entry.user_id,
                skeleton(entry.user_id),
                entry.identity.get("username") or "",
                entry_json(entry),
                chat_room,
            )
        finally:
            registry.joining(room, -1)
        if outcome == b"taken":
            await self._unlist(room)
            return JoinOutcome.TAKEN
        self._registry.add(room, entry)
        # read with the join, atomically: the hub checks it next (issue 12) without asking again
        key = (asyncio.current_task(), chat_room)
        self._joined_access[key] = self._record(chat_room, record[0])
        asyncio.get_running_loop().call_soon(self._joined_access.pop, key, None)
        # 'present': this very connection was registered already, so the user was too
        return JoinOutcome.FIRST if outcome == b"first" else JoinOutcome.AGAIN

    async def leave(self, room: str, conn: str, user_id: str) -> bool:
        """Remove a connection; this server's own leaves never raise (see below).

        A leave of this server's connection that cannot reach Redis now is kept and applied
        when Redis is back (its user-left is sent then), so closing sockets never fail on
        an outage. A connection of another server (a signaling take-over removes the older
        connection of a peer, wherever it is) is removed like any request: now, or
        `BrokerUnavailable`.
        """
        entry = self._registry.remove(room, conn)
        if self._link.closing:
            return False  # `close` removes this server's entries itself
        server = conn.rpartition(":")[0]  # connection keys are "<server id>:<n>"
        tagged = self._keys.tagged(room)
        if entry is None:
            if server == self._server_id:
                return False  # never registered (refused) or already left
            return bool(await self._link.run("leave", tagged, room, server, user_id, conn, self._history_ttl_ms))
        try:
            left = bool(await self._link.run("leave", tagged, room, self._server_id, user_id, conn, self._history_ttl_ms))
        except BrokerUnavailable:
            self._registry.defer(room, entry)
            return False
        await self._unlist(room)
        return left

    async def _unlist(self, room: str) -> None:
        """Take `room` off this server's rooms once it has no entry there, nor a join on its way."""
        if self._registry.in_room(room) or self._registry.is_joining(room):
            return
        # on an outage, reconcile lists exactly the rooms with entries once Redis is back
        with contextlib.suppress(BrokerUnavailable):
            await self._link.command("SREM", self._keys.rooms_of(self._server_id), room)

    async def set_state(self, room: str, conn: str, state: bytes, state_at: float) -> None:
        entry = self._registry.get(room, conn)
        if entry is None:
            return
        updated = PresenceEntry(entry.conn, entry.user_id, entry.identity, state, state_at)
        await self._link.run("set_state", self._keys.tagged(room), room, conn, entry_json(updated))
        entry.state, entry.state_at = state, state_at

    async def entries(self, room: str) -> list[PresenceEntry]:
        raw = await self._link.command("HVALS", self._keys.of("presence", room))
        return [PresenceEntry.from_json(json.loads(item)) for item in raw]

    async def member(self, room: str, user_id: str) -> Member | None:
        # the user's connections from the room's sorted ``user_id NUL conn`` set: its own time
        prefix = user_id.encode() + b"\x00"
        found = await self._link.command(
            "ZRANGEBYLEX", self._keys.of("member-conns", room), b"[" + prefix, b"[" + prefix + b"\xff"
        )
        conns = [bytes(item)[len(prefix) :] for item in found]
        if not conns:
            return None
        raw = await self._link.command("HMGET", self._keys.of("presence", room), *conns)
        folded = fold_members([PresenceEntry.from_json(json.loads(item)) for item in raw if item is not None])
        return folded[0] if folded else None

    async def is_present(self, room: str, user_id: str) -> bool:
        return bool(await self._link.command("HEXISTS", self._keys.of("users", room), user_id))

    async def members_page(self, room: str, after: str, limit: int) -> MembersPage:
        """A page in the page's time: the script reads the page's users' entries only."""
        raw = await self._link.run("members_page", self._keys.tagged(room), room, after, limit)
        count, more = int(raw[0]), raw[1] == 1
        members: list[bytes] = []
        last, at = after, 2
        while at < len(raw):
            user_id, n = raw[at].decode(), int(raw[at + 1])
            entries = [PresenceEntry.from_json(json.loads(item)) for item in raw[at + 2 : at + 2 + n]]
            at += 2 + n
            # one user's entries fold into one member, exactly as `members` folds them (only
            # its own: were a user_id ever to hold a NUL, its lex range could take another's)
            folded = fold_members([e for e in entries if e.user_id == user_id])
            if folded:
                members.append(folded[0].encoded())
            last = user_id
        return MembersPage(members, count, last if more else None)

    async def member_count(self, room: str) -> int:
        # users:R holds one field per user present (its connection count), in step with
        # presence in every script: its length is the count, without reading an entry
        return int(await self._link.command("HLEN", self._keys.of("users", room)))

    async def rooms(self) -> dict[str, list[Member]]:
        # the rooms of every server alive, then each room's entries from its own shard
        servers = await self._link.command("ZRANGE", self._keys.servers, 0, -1)
        listed = await asyncio.gather(*(self._link.command("SMEMBERS", self._keys.rooms_of(s.decode())) for s in servers))
        names = sorted({name.decode() for rooms in listed for name in rooms})
        if not names:
            return {}
        values = await asyncio.gather(*(self._link.command("HVALS", self._keys.of("presence", name)) for name in names))
        rooms = {}
        for name, raw in zip(names, values, strict=True):
            members = fold_members([PresenceEntry.from_json(json.loads(item)) for item in raw])
            if members:
                rooms[name] = members
        return rooms

    # -- history ---------------------------------------------------------------------------
    async def _history(self, room: str, since: int | None, epoch: str | None) -> History:
        """History without the availability check (the reader catches up while reconnecting)."""
        # stream ids are unsigned 64-bit: a client's absurd `since` must not make XRANGE fail
        start = "" if since is None else f"{min(since + 1, 2**63)}-0"
        raw = await self._link.run_now(
            "history",
            self._keys.tagged(room),
            room,
            secrets.token_hex(6),
            self._history_ttl_ms,
            start,
            epoch or "",
            self.max_replay_bytes,
        )
        current, seq, oldest, first, complete = raw[0].decode(), int(raw[1]), int(raw[2]), int(raw[3]), raw[4] == 1
        if int(raw[5]):  # a new life of the room forgot the old one's bytes
            await self._link.command_now("INCRBY", self._keys.history_total, int(raw[5]))
        # cut at max_replay_bytes: the newest that fit, so the replay still ends where live frames begin
        messages = [p.with_seq(n, frame) for n, frame in enumerate(raw[6:], first)]
        if since is None:
            return History([], seq, current, True)
        if epoch is not None and epoch != current:
            return History(messages, seq, current, False)
        # exactly what MemoryBroker answers: every message after `since` is still kept
        recovered = complete and since <= seq and since >= oldest - 1
        return History(messages, seq, current, recovered)

    async def history(self, room: str, since: int | None, epoch: str | None) -> History:
        async with self._link.request():
            return await self._history(room, since, epoch)

    async def room_exists(self, room: str) -> bool:
        return bool(await self._link.command("EXISTS", self._keys.of("meta", room), self._keys.of("presence", room)))

    # -- search (search.py): a scan of each room's replayable history ----------------------
    async def searchable_rooms(self) -> list[str]:
        # Redis keeps no list of the rooms with history: those with members now, and those
        # with an access record (a search that names its room looks in any other)
        return sorted(set(await self.rooms()) | set(await self.all_access()))

    async def search(self, rooms: list[str], words: list[str], limit: int) -> list[Found]:
        if not words or limit <= 0:
            return []
        found: list[Found] = []
        for room in dict.fromkeys(rooms):
            # what a join would replay: the newest messages within max_replay_bytes
            found.extend(found_in(room, (await self.history(room, 0, None)).messages, words))
        return newest(found, limit)

    # -- rooms with members ---------------------------------------------------------------
    @staticmethod
    def _record(room: str, raw: list[Any]) -> RoomAccess | None:
        if not raw:
            return None
        kind, owner, group, *rest = (item if isinstance(item, int) else item.decode() for item in raw)
        # n members, then m muted, then the removed ones (access_record in common.lua)
        members_end = 1 + int(rest[0])
        muted_end = members_end + 1 + int(rest[members_end])
        members, muted, removed = rest[1:members_end], rest[members_end + 1 : muted_end], rest[muted_end:]
        return RoomAccess(
            room,
            str(kind),
            str(owner),
            str(group) or None,
            frozenset(map(str, members)),
            frozenset(map(str, muted)),
            frozenset(map(str, removed)),
        )

    async def get_access(self, room: str) -> RoomAccess | None:
        key = (asyncio.current_task(), room)
        if key in self._joined_access:  # this task's join read it a moment ago (see `join`)
            return self._joined_access.pop(key)
        return self._record(room, await self._link.run("access_get", self._keys.tagged(room), room))

    async def all_access(self) -> dict[str, RoomAccess]:
        names = sorted(n.decode() for n in await self._link.command("SMEMBERS", self._keys.access_rooms))
        records = {}
        for name in names:  # one script each: a record and its members read together
            record = await self.get_access(name)
            if record is not None:
                records[name] = record
        return records

    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        # The owner's budget is counted in the deployment's slot and the record written in
        # the room's (keys.py): reserved first, given back when the room was taken.
        room, owner, deployment = access.room, access.owner, self._keys.deployment
        if await self._link.run("access_reserve", deployment, "reserve", owner, room, max_per_owner, 0) == b"budget":
            return CreateOutcome.BUDGET
        members = sorted(access.members)
        try:
            outcome, *holder = await self._link.run(
                "access_create", self._keys.tagged(room), room, access.kind, owner, access.group or "", len(members), *members
            )
        except BaseException:
            await asyncio.shield(self._release_access(owner, room, has_record=False))
            raise
        if outcome == b"exists":
            if holder[0].decode() != owner:  # the record there is not this owner's own
                await self._release_access(owner, room, has_record=bool(holder[0]))
            return CreateOutcome.EXISTS
        await self._add_to_shared(int(holder[0]))  # a forgotten public document deleted with it
        return CreateOutcome.CREATED

    async def _release_access(self, owner: str, room: str, *, has_record: bool) -> None:
        try:
            await self._link.run("access_reserve", self._keys.deployment, "release", owner, room, 0, int(has_record))
        except BrokerUnavailable:
            self.log.warning("iavicenne: could not give %s's reservation of room %r back (Redis unavailable)", owner, room)

    async def add_member(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        raw = await self._link.run("access_member", self._keys.tagged(room), room, "add", username, max_members)
        return MemberOutcome(raw.decode()), await self.get_access(room)

    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        raw = await self._link.run("access_member", self._keys.tagged(room), room, "remove", username, 0)
        return MemberOutcome(raw.decode()), await self.get_access(room)

    async def moderate(self, room: str, username: str, action: str) -> tuple[MemberOutcome, RoomAccess | None]:
        raw = await self._link.run("access_moderate", self._keys.tagged(room), room, action, username)
        return MemberOutcome(raw.decode()), await self.get_access(room)

    async def delete_access(self, room: str) -> bool:
        raw = await self._link.run("access_delete", self._keys.tagged(room), room)
        if not raw:
            return False
        owner, delta = raw[0].decode(), int(raw[1])
        await self._release_access(owner, room, has_record=False)
        await self._add_to_total(delta)
        return True

    # -- identities ---------------------------------------------------------------------------
    async def remember_identity(self, username: str, name_skeleton: str) -> None:
        await self._link.command("HSETNX", self._keys.identities, name_skeleton, username)

    async def identity_named(self, name_skeleton: str) -> str | None:
        holder = await self._link.command("HGET", self._keys.identities, name_skeleton)
        return holder.decode() if holder is not None else None

    # -- shared documents (SharedStore), in Redis for every server ---------------------------
    # keys T:shared:R (list of updates), T:shared-meta:R, T:shared-bytes; shared-total (keys.py)
    async def shared_load(self, room: str, *, life: str = "", since: int = 0) -> SharedLog:
        raw = await self._link.run("shared_load", self._keys.tagged(room), room, life, since)
        kept, seq, size, whole, *updates = raw
        return SharedLog(list(updates), int(size), int(seq), kept.decode(), whole == 1)

    async def shared_append(self, room: str, update: bytes, *, max_bytes: int) -> SharedAppended:
        # as for histories (`publish`): the deployment's total lives in another slot than
        # the room's; the update's size is reserved there first, given back if refused
        total = int(await self._link.command("INCRBY", self._keys.shared_total, len(update)))
        if total > self.shared_bytes_total:
            await asyncio.shield(self._add_to_shared(-len(update)))
            return SharedAppended(0, "", 0, "max_shared_bytes_total")
        try:
            seq, *rest = await self._link.run(
                "shared_append",
                self._keys.tagged(room),
                room,
                update,
                max_bytes,
                "r" + secrets.token_hex(6),
                self._history_ttl_ms,
            )
        except BaseException:
            await asyncio.shield(self._add_to_shared(-len(update)))
            raise
        if int(seq) < 0:
            await self._add_to_shared(-len(update))
            return SharedAppended(0, "", 0, "max_shared_bytes")
        life, count, created, delta = rest
        if int(delta):  # a document that expired unaudited: its bytes leave the total now
            self._later(self._add_to_shared(int(delta)))
        if int(created):  # its bytes are counted now: audits will check them
            self._later(self._list_shared(room))
        return SharedAppended(int(seq), life.decode(), int(count))

    async def shared_compact(self, room: str, life: str, seq: int, merged: bytes) -> bool:
        done, *delta = await self._link.run("shared_compact", self._keys.tagged(room), room, life, seq, merged)
        if delta and int(delta[0]):
            await self._add_to_shared(int(delta[0]))
        return bool(done)

    async def shared_delete(self, room: str) -> None:
        await self._add_to_shared(int(await self._link.run("shared_delete", self._keys.tagged(room), room)))

    async def _add_to_shared(self, delta: int) -> None:
        """Change shared-total by `delta`; on an outage the audits give expired documents' bytes back."""
        if delta:
            try:
                await self._link.command("INCRBY", self._keys.shared_total, delta)
            except BrokerUnavailable:
                self.log.warning("iavicenne: shared-total could not be changed by %d bytes (Redis unavailable)", delta)

    async def _list_shared(self, room: str) -> None:
        with contextlib.suppress(BrokerUnavailable):  # it is listed again by its next new life
            await self._link.command("SADD", self._keys.shared_rooms, room)
