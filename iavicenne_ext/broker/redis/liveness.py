"""Liveness: which servers are alive, and this server's connections as Redis holds them.

Each server refreshes its heartbeat every ``presence_refresh`` s and sweeps the servers
whose heartbeat is older than ``presence_timeout``; the sweep removes their entries
atomically, so exactly one server learns which users thereby left and emits their
``user-left``. A restarted server has a new id; its old life is swept like a dead server.

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

from ... import protocol as p
from ...names import skeleton
from ..base import PresenceEntry
from . import envelope
from .keys import Keys
from .link import RedisLink

_STALE_TTL_MS = 24 * 3600 * 1000  # how long a swept server may take to notice it was swept


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
    """This server's presence entries, by (room, connection key)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], PresenceEntry] = {}
        self.version = 0  # changes with every add and remove
        self.deferred: list[_Leave] = []

    def add(self, room: str, entry: PresenceEntry) -> None:
        self.entries[(room, entry.conn)] = entry
        self.version += 1

    def remove(self, room: str, conn: str) -> PresenceEntry | None:
        entry = self.entries.pop((room, conn), None)
        if entry is not None:
            self.version += 1
        return entry

    def get(self, room: str, conn: str) -> PresenceEntry | None:
        return self.entries.get((room, conn))

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
        return bool(await self._link.scripts.run("heartbeat", self._server_id))

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
        swept (`swept`, or the script finds the mark): then the others were told they left.
        After Redis merely lost its data, nobody was told anything, so nothing is said.
        """
        registry = self._registry
        entries = list(registry.entries.items())
        deferred, registry.deferred = registry.deferred, []
        args: list[object] = [self._server_id, self._history_ttl_ms, len(entries)]
        for (room, conn), entry in entries:
            args += [room, conn, entry.user_id, skeleton(entry.user_id), entry.identity.get("username") or "", entry_json(entry)]
        args.append(len(deferred))
        for leave in deferred:
            args += [leave.room, leave.entry.user_id]
        try:
            marked, outcomes, gone, absent = await self._link.scripts.run("reconcile", *args)
        except BaseException:
            registry.deferred[:0] = deferred  # not applied: keep them for the next attempt
            raise
        frames: list[tuple[str, bytes, str | None]] = []
        for room, raw in zip(gone[::2], gone[1::2], strict=True):
            name = room.decode()
            frames.append((name, presence_frame(p.USER_LEFT, name, PresenceEntry.from_json(json.loads(raw))), None))
        identities = {(leave.room, leave.entry.user_id): leave.entry for leave in deferred}
        for room, user in zip(absent[::2], absent[1::2], strict=True):
            name = room.decode()
            frames.append((name, presence_frame(p.USER_LEFT, name, identities[(name, user.decode())]), None))
        for ((room, _conn), entry), outcome in zip(entries, outcomes, strict=True):
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
        for room, frame, skip in frames:
            await self._link.client.publish(self._keys.channel(room), envelope.encode(frame, skip=skip))

    async def _run(self) -> None:
        """Refresh this server's heartbeat; sweep servers that stopped refreshing theirs."""
        timeout_ms = int(self.timeout * 1000)
        loop = asyncio.get_running_loop()
        # Right after Redis comes back, every heartbeat in it is as old as the outage:
        # give the other servers one presence_timeout to reconnect before judging them.
        sweep_from = loop.time() + self.timeout
        scripts = self._link.scripts
        while True:
            await asyncio.sleep(self.refresh)
            if await self.heartbeat():
                # this server was silent too long (a stalled loop, a network cut) and was
                # declared dead: register its connections again
                self.log.warning("iavicenne: this server was declared gone by the others; re-registering its members")
                await self.reconcile(announce=True, swept=True)
            if loop.time() < sweep_from:
                continue
            gone = await scripts.run("sweep", timeout_ms, self._history_ttl_ms, _STALE_TTL_MS)
            if gone:
                self.log.info("iavicenne: removed %d member(s) of servers that stopped refreshing", len(gone) // 2)
            for room, raw in zip(gone[::2], gone[1::2], strict=True):
                # this server removed them, so it alone tells the room they left
                name = room.decode()
                frame = presence_frame(p.USER_LEFT, name, PresenceEntry.from_json(json.loads(raw)))
                await self._link.client.publish(self._keys.channel(name), envelope.encode(frame))
