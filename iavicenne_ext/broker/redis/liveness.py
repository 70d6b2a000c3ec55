"""Liveness: which servers are alive, and this server's connections as Redis holds them.

Each server refreshes its heartbeat every ``presence_refresh`` s and sweeps the servers
whose heartbeat is older than ``presence_timeout``: from the rooms a dead server listed as
its own (``rooms-of``), one script per room tag removes its entries atomically, so exactly
one server learns which users thereby left and emits their ``user-left``. A restarted
server has a new id; its old life is swept like a dead server. The sweepers also audit the
deployment's history bytes (``history-total``): a room whose history expired gives its bytes
back.

This server keeps its own entries (`Registry`), so that after an outage, or after it was
swept while stalled, it can make Redis's view of its connections match the local one
(`Liveness.reconcile`): re-registering entries, removing those that left meanwhile, and
applying the leaves that could not reach Redis when they happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import iavicenne_protocol as p

from ...names import skeleton
from ..base import PresenceEntry
from ..events import PresenceFrame
from . import envelope
from .keys import Keys, tag
from .link import RedisLink

_STALE_TTL_MS = 24 * 3600 * 1000  # how long a swept server may take to notice it was swept
_AUDIT_ROOMS = 32  # rooms of history-rooms checked per sweep (a page of SSCAN)


def presence_frame(kind: str, room: str, entry: PresenceEntry) -> bytes:
    """A user-joined / user-left frame, in the hub's shape for it."""
    return p.presence_frame(kind, room, entry.user_id, entry.identity, entry.state)


def entry_json(entry: PresenceEntry) -> str:
    return json.dumps(entry.to_json(), separators=(",", ":"))


@dataclass(slots=True)
class _Leave:
    """A leave that could not reach Redis; applied when it is back."""

    room: str
    entry: PresenceEntry


class Registry:
    """This server's presence entries, by (room, connection key), and the rooms they are in."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], PresenceEntry] = {}
        self.version = 0  # changes with every add and remove
        self.deferred: list[_Leave] = []
        self._per_room: dict[str, int] = {}
        self._joining: dict[str, int] = {}  # joins on their way to Redis, by room

    def add(self, room: str, entry: PresenceEntry) -> None:
        if (room, entry.conn) not in self.entries:
            self._per_room[room] = self._per_room.get(room, 0) + 1
        self.entries[(room, entry.conn)] = entry
        self.version += 1

    def remove(self, room: str, conn: str) -> PresenceEntry | None:
        entry = self.entries.pop((room, conn), None)
        if entry is not None:
            self.version += 1
            count = self._per_room[room] - 1
            if count:
                self._per_room[room] = count
            else:
                del self._per_room[room]
        return entry

    def clear(self) -> None:
        self.entries.clear()
        self._per_room.clear()
        self.version += 1

    def get(self, room: str, conn: str) -> PresenceEntry | None:
        return self.entries.get((room, conn))

    def in_room(self, room: str) -> bool:
        return room in self._per_room

    def rooms(self) -> set[str]:
        return set(self._per_room)

    def joining(self, room: str, step: int) -> None:
        count = self._joining.get(room, 0) + step
        if count:
            self._joining[room] = count
        else:
            self._joining.pop(room, None)

    def is_joining(self, room: str) -> bool:
        return room in self._joining

    def defer(self, room: str, entry: PresenceEntry) -> None:
        self.deferred.append(_Leave(room, entry))


class Liveness:
    """Heartbeat, sweep and reconciliation of this server. See the module docstring."""

    def __init__(
        self,
        link: RedisLink,
        registry: Registry,
        keys: Keys,
        *,
        server_id: str,
        refresh: float,
        timeout: float,
        history_ttl_ms: int,
        log: logging.Logger,
    ) -> None:
        self._link = link
        self._registry = registry
        self._keys = keys
        self._server_id = server_id
        self.refresh = refresh
        self.timeout = timeout
        self._history_ttl_ms = history_ttl_ms
        self.log = log
        self.task: asyncio.Task[None] | None = None

    async def heartbeat(self) -> bool:
        """Refresh this server's heartbeat; True when it had been swept meanwhile."""
        return bool(await self._link.run_now("heartbeat", self._keys.deployment, self._server_id))

    def start(self) -> None:
        """Refresh and sweep in a task of the current connection."""
        self.task = self._link.spawn(self._run, "presence task")

    async def settle(self) -> None:
        """Reconcile until no leave happened meanwhile (leaves never wait for Redis)."""
        while True:
            version = self._registry.version
            await self.reconcile(announce=True)
            if version == self._registry.version:
                return

    async def reconcile(self, *, announce: bool, swept: bool = False) -> None:
        """Make Redis's entries of this server the local ones; send the presence diffs.

        Users registered again are announced (`user-joined`) only if this server had been
        swept (`swept`, or the heartbeat finds the mark): then the others were told they
        left. After Redis merely lost its data, nobody was told anything, so nothing is said.
        One script per room tag (a cluster runs each on the shard of the tag's slot).
        """
        link, keys, sid = self._link, self._keys, self._server_id
        registry = self._registry
        entries = list(registry.entries.items())
        deferred, registry.deferred = registry.deferred, []
        try:
            marked = await self.heartbeat()
            local = registry.rooms()
            if local:
                await link.command_now("SADD", keys.rooms_of(sid), *sorted(local))
            listed = {room.decode() for room in await link.command_now("SMEMBERS", keys.rooms_of(sid))}
            by_tag: dict[str, tuple[list[int], list[_Leave]]] = {}
            for room in listed | local:
                by_tag.setdefault(tag(room), ([], []))
            for index, ((room, _conn), _entry) in enumerate(entries):
                by_tag.setdefault(tag(room), ([], []))[0].append(index)
            for leave in deferred:
                by_tag.setdefault(tag(leave.room), ([], []))[1].append(leave)
            tags = sorted(by_tag)
            replies = await asyncio.gather(*(self._reconcile_tag(by_tag[t][0], entries, by_tag[t][1], t) for t in tags))
        except BaseException:
            registry.deferred[:0] = deferred  # not applied: keep them for the next attempt
            raise
        frames: list[tuple[str, bytes, str | None]] = []
        outcome_of: dict[int, bytes] = {}
        for t, (outcomes, gone, absent) in zip(tags, replies, strict=True):
            indexes, leaves = by_tag[t]
            outcome_of.update(zip(indexes, outcomes, strict=True))
            for room, raw in zip(gone[::2], gone[1::2], strict=True):
                name = room.decode()
                frames.append((name, presence_frame(p.USER_LEFT, name, PresenceEntry.from_json(json.loads(raw))), None))
            identities = {(leave.room, leave.entry.user_id): leave.entry for leave in leaves}
            for room, user in zip(absent[::2], absent[1::2], strict=True):
                name = room.decode()
                frames.append((name, presence_frame(p.USER_LEFT, name, identities[(name, user.decode())]), None))
        for index, ((room, _conn), entry) in enumerate(entries):
            outcome = outcome_of[index]
            if outcome == b"taken":
                self.log.warning(
                    "iavicenne: %s lost user_id %r in room %r to another user while Redis was unreachable",
                    entry.conn,
                    entry.user_id,
                    room,
                )
            elif outcome == b"first" and (swept or marked) and announce:
                # the others were told this user left when this server was swept
                frames.append((room, presence_frame(p.USER_JOINED, room, entry), entry.conn))
        # the rooms Redis lists as this server's but where it has no entry (nor a join on
        # its way) any more
        unlisted = sorted(r for r in listed if not registry.in_room(r) and not registry.is_joining(r))
        if unlisted:
            await link.command_now("SREM", keys.rooms_of(sid), *unlisted)
        for room, frame, skip in frames:
            await link.publish_now(room, envelope.encode(PresenceFrame(room, frame, skip)))

    async def _reconcile_tag(
        self, indexes: list[int], entries: list[tuple[tuple[str, str], PresenceEntry]], leaves: list[_Leave], room_tag: str
    ) -> tuple[list[bytes], list[bytes], list[bytes]]:
        args: list[object] = [self._server_id, self._history_ttl_ms, len(indexes)]
        for index in indexes:
            (room, conn), entry = entries[index]
            args += [room, conn, entry.user_id, skeleton(entry.user_id), entry.identity.get("username") or "", entry_json(entry)]
        args.append(len(leaves))
        for leave in leaves:
            args += [leave.room, leave.entry.user_id]
        outcomes, gone, absent = await self._link.run_now("reconcile", self._keys.for_tag(room_tag), *args)
        return outcomes, gone, absent

    async def sweep(self, timeout_ms: int) -> int:
        """Remove the entries of servers that stopped refreshing: the users gone."""
        link, keys = self._link, self._keys
        dead = await link.run_now("dead_servers", keys.deployment, timeout_ms)
        removed = 0
        for sid, rooms in zip(dead[::2], dead[1::2], strict=True):
            server = sid.decode()
            tags = sorted({tag(room.decode()) for room in rooms})
            replies = await asyncio.gather(
                *(link.run_now("sweep_room", keys.for_tag(t), server, self._history_ttl_ms) for t in tags)
            )
            await link.run_now("forget_server", keys.deployment, server, _STALE_TTL_MS)
            for gone in replies:
                for room, raw in zip(gone[::2], gone[1::2], strict=True):
                    # this server removed them, so it alone tells the room they left
                    name = room.decode()
                    frame = presence_frame(p.USER_LEFT, name, PresenceEntry.from_json(json.loads(raw)))
                    await link.publish_now(name, envelope.encode(PresenceFrame(name, frame)))
                    removed += 1
        return removed

    async def audit(self) -> None:
        """Check a page of the rooms whose history bytes are counted, and of those whose
        shared document's are: one gone (expired, deleted, evicted) gives its bytes back
        to history-total or shared-total."""
        keys = self._keys
        await self._audit("audit_room", keys.history_rooms, keys.history_audit, keys.history_total)
        await self._audit("shared_audit", keys.shared_rooms, keys.shared_audit, keys.shared_total)

    async def _audit(self, script: str, listed: str, cursor_key: str, total: str) -> None:
        link, keys = self._link, self._keys
        cursor = await link.command_now("GET", cursor_key) or b"0"
        cursor, rooms = await link.command_now("SSCAN", listed, cursor, "COUNT", _AUDIT_ROOMS)
        await link.command_now("SET", cursor_key, cursor)
        for raw in rooms:
            room = raw.decode()
            delta, gone = await link.run_now(script, keys.tagged(room), room)
            if int(delta):
                await link.command_now("INCRBY", total, int(delta))
            if gone:
                await link.command_now("SREM", listed, room)
                # a write may have counted the room anew in between: list it again then
                if not (await link.run_now(script, keys.tagged(room), room))[1]:
                    await link.command_now("SADD", listed, room)

    async def _run(self) -> None:
        """Refresh this server's heartbeat; sweep servers that stopped refreshing theirs."""
        timeout_ms = int(self.timeout * 1000)
        loop = asyncio.get_running_loop()
        # Right after Redis comes back, every heartbeat in it is as old as the outage:
        # give the other servers one presence_timeout to reconnect before judging them.
        sweep_from = loop.time() + self.timeout
        while True:
            await asyncio.sleep(self.refresh)
            if await self.heartbeat():
                # this server was silent too long (a stalled loop, a network cut) and was
                # declared dead: register its connections again
                self.log.warning("iavicenne: this server was declared gone by the others; re-registering its members")
                await self.reconcile(announce=True, swept=True)
            await self.audit()
            if loop.time() < sweep_from:
                continue
            removed = await self.sweep(timeout_ms)
            if removed:
                self.log.info("iavicenne: removed %d member(s) of servers that stopped refreshing", removed)
