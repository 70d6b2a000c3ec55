"""Shared state: one Yjs document per room, kept by the server (pycrdt, the CRDT of
jupyter-collaboration), synced with the Yjs sync protocol over the room socket.

The broker keeps each document as a log of Yjs updates (`broker.interfaces.SharedStore`:
in this process, or in Redis where every server sees it and it survives them all
restarting); every `compact_every` updates the log is replaced by the one update the
document makes. Like jupyter-collaboration's YRoom, each server also keeps the document
of each room in use as a pycrdt `Doc`, updated as updates come (its own, and on Redis the
other servers' as read from the log since the last one it applied), so answering a sync
step 1 costs what the client lacks, not the whole document. A document unused for
`keep_idle` seconds is dropped from memory (built again from the log when next needed),
and so are the least recently used beyond `keep_bytes` of memory (estimated) and those of
rooms this server no longer has a connection in (the handler's `release`).

An update is checked before it is kept: within `max_update_bytes`, decodable by Yjs
(re-encoded, so trailing junk never reaches another client), and within `max_bytes` for
the whole document and the broker's `shared_bytes_total` for all of them, checked by the
broker atomically with the append. The time each request takes is charged to its sender's
share (shared_pacing.py, ``shared_cpu_per_second``).

Who may read and write is the room's business: only members of the room (the handler
checks the connection is in it, and joining checked access.py's `may_enter`; an eviction
takes a removed member out). A document lives and dies with its room (history_ttl after
its last member left); deleting a room's access record deletes it, and a private or group
room starts without one, so nothing written in public becomes private or the reverse.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import pycrdt

import iavicenne_protocol as p
from iavicenne_protocol import SyncMessage

from .broker.interfaces import SharedStore
from .shared_depth import CheckedUpdate, DocumentDepth, check_depth
from .shared_pacing import Meter, SharedPacing

# The y-sync messages themselves (SyncMessage, decode_sync) are the protocol's, shared
# with the Python client: iavicenne_protocol.sync. What is here needs pycrdt or the broker.


def check_update(update: bytes, max_depth: int) -> tuple[bytes, CheckedUpdate]:
    """`update` re-encoded by Yjs (trailing bytes dropped) and its items, or `ProtocolError`
    when Yjs cannot read it or it nests deeper than `max_depth` alone (measured first: pycrdt
    crashes on some deep updates; the document's depth is checked against the room's)."""
    checked = check_depth(update, max_depth)
    try:
        normalized = pycrdt.merge_updates(update)
        pycrdt.Doc().apply_update(normalized)
    except Exception as error:  # pycrdt raises ValueError; any failure means the same
        raise p.ProtocolError(
            p.ErrorCode.INVALID_FIELD, f"shared update refused: not a Yjs update ({str(error)[:120]}); nothing was changed"
        ) from None
    return normalized, checked


#: a decoded document's memory over its encoded size, for a document of many small items
#: (the worst case: a 4 MiB document of 76,000 map entries takes 33 MiB; a few large
#: strings take little more than their size)
DECODED_WEIGHT = 8
#: a step 2 answer at least this large is kept encoded (`SharedDocs.missing`); its base64
#: (4/3 of the document at most) is within what DECODED_WEIGHT counts for the document
CACHED_ANSWER_BYTES = 64 * 1024


@dataclass(slots=True, eq=False)
class _Kept:
    """A room's document in memory: every update up to number `seq` of its `life` applied."""

    doc: pycrdt.Doc
    life: str
    seq: int
    used: float
    size: int  # its memory: DECODED_WEIGHT x the bytes of the updates applied
    depths: DocumentDepth | None = None  # its items' depths: built at its first write here
    answer: tuple[int, bytes, p.Raw] | None = None  # the last large step 2: (seq, state vector, it)


class SharedDocs:
    """The rooms' documents of this server, over the broker's `SharedStore`."""

    def __init__(
        self,
        store: SharedStore,
        log: logging.Logger,
        *,
        max_bytes: int,
        max_bytes_total: int,
        max_update_bytes: int,
        compact_every: int,
        keep_idle: float,
        keep_bytes: int,
        pacing: SharedPacing,
        max_depth: int = 64,
    ) -> None:
        self.store = store
        self.log = log
        self.max_bytes = max_bytes
        self.max_bytes_total = max_bytes_total  # the broker's shared_bytes_total: named in refusals
        self.max_update_bytes = max_update_bytes
        self.compact_every = compact_every
        self.max_depth = max_depth  # max_shared_depth, for check_update
        self.keep_idle = keep_idle
        self.keep_bytes = keep_bytes
        self.pacing = pacing
        self._kept: OrderedDict[str, _Kept] = OrderedDict()  # least recently used first
        self._kept_bytes = 0  # their sizes together

    @property
    def kept(self) -> int:
        """How many documents are in memory now."""
        return len(self._kept)

    async def document(self, room: str) -> pycrdt.Doc:
        """The room's document as it stands."""
        return (await self._current(room, Meter())).doc

    async def missing(self, room: str, state: bytes, who: str) -> tuple[p.Raw, str]:
        """The answer to a client with state vector `state`: what it lacks (a sync step 2, as a
        JSON string to splice into the frame) and the server's state vector (a step 1, base64);
        the time it took, the encoding included, is charged to identity `who`.

        The last large answer of each document is kept encoded until the document changes:
        clients that join with nothing (or one that asks again and again) get the same bytes,
        not the document encoded again for each (tens of milliseconds for 4 MiB)."""
        self.pacing.check(who)
        meter = Meter()
        try:
            kept = await self._current(room, meter)
            with meter:
                cached = kept.answer
                if cached is not None and cached[0] == kept.seq and cached[1] == state:
                    answer = cached[2]
                else:
                    try:
                        missing = kept.doc.get_update(state)
                    except Exception:
                        raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "sync step 1 refused: not a Yjs state vector") from None
                    answer = SyncMessage(p.SyncStep.STEP2, missing).b64_json()
                    if len(missing) >= CACHED_ANSWER_BYTES:
                        kept.answer = (kept.seq, state, answer)
                return answer, SyncMessage(p.SyncStep.STEP1, kept.doc.get_state()).b64()
        finally:
            self.pacing.charge(who, meter.spent)

    async def apply(self, room: str, update: bytes, who: str) -> bytes | None:
        """Check `update` (`check_update`) and keep it: the bytes to send the others, or None
        when it changes nothing; the time it took is charged to identity `who`.
        `limit-exceeded` (max_shared_bytes, max_shared_bytes_total) when the document or all
        of them would grow past their bound; what was kept before stays as it was."""
        self.pacing.check(who)
        meter = Meter()
        try:
            with meter:
                update, checked = check_update(update, self.max_depth)
            if update == p.EMPTY_UPDATE:
                return None
            # the depth it reaches in the document as it stands (a level per update adds up)
            kept = await self._current(room, meter)
            with meter:
                parent_depths = self._depths(kept).check(checked, self.max_depth)
            await self._append(room, update, meter, (checked, parent_depths))
            return update
        finally:
            self.pacing.charge(who, meter.spent)

    @staticmethod
    def _depths(kept: _Kept) -> DocumentDepth:
        """The depths of `kept`'s items, read from the whole document at its first write here."""
        if kept.depths is None:
            kept.depths = DocumentDepth.of(kept.doc.get_update())
        return kept.depths

    async def _append(self, room: str, update: bytes, meter: Meter, depths: tuple[CheckedUpdate, list[int]]) -> None:
        appended = await self.store.shared_append(room, update, max_bytes=self.max_bytes)
        if appended.refused == "max_shared_bytes":
            # the log may be larger than the document it makes: compact, then try once more
            await self.compact(room, meter)
            appended = await self.store.shared_append(room, update, max_bytes=self.max_bytes)
        if appended.refused == "max_shared_bytes_total":
            raise p.limit_exceeded(
                "max_shared_bytes_total",
                self.max_bytes_total,
                "shared update refused: the shared documents of all rooms hold as much as this server keeps; "
                "they free up as rooms nobody is in expire (history_ttl) (the update was not applied; your copy "
                "is reset to the room's)",
            )
        if appended.refused is not None:
            raise p.limit_exceeded(
                "max_shared_bytes",
                self.max_bytes,
                f"shared update refused: room {room!r}'s shared document would be larger than its bound; "
                "remove what is no longer needed (the update was not applied; your copy is reset to the room's)",
            )
        kept = self._kept.get(room)
        if kept is not None and kept.life == appended.life and kept.seq == appended.seq - 1:
            with meter:  # the next update of the document kept here: applied now
                kept.doc.apply_update(update)
                if kept.depths is not None:
                    kept.depths.add(depths[0].items, depths[1])
            kept.seq = appended.seq
            self._grown(kept, len(update))
        # else another server wrote in between (or it is not kept): read on the next use
        if appended.count > self.compact_every:
            await self.compact(room, meter)

    async def _current(self, room: str, meter: Meter) -> _Kept:
        """The room's document kept here, brought up to date with the broker's log."""
        kept = self._kept.get(room)
        log = await self.store.shared_load(room, life=kept.life if kept else "", since=kept.seq if kept else 0)
        now = time.monotonic()
        with meter:
            kept = self._kept.get(room)  # as it is now: another request may have moved it on
            if log.whole or kept is None or kept.life != log.life:
                if kept is None or kept.life != log.life or kept.seq < log.seq:
                    doc: pycrdt.Doc = pycrdt.Doc()
                    for update in log.updates:
                        doc.apply_update(update)
                    self._forget_kept(room)
                    kept = self._kept[room] = _Kept(doc, log.life, log.seq, now, 0)
                    self._grown(kept, log.size)
            else:
                first = log.seq - len(log.updates) + 1  # the number of updates[0]
                for update in log.updates[max(0, kept.seq + 1 - first) :]:
                    kept.doc.apply_update(update)
                    if kept.depths is not None:  # another server's: checked there, measured here
                        kept.depths.add_update(update)
                    self._grown(kept, len(update))
                kept.seq = max(kept.seq, log.seq)
        kept.used = now
        self._kept.move_to_end(room)
        self._drop_unused(now)
        return kept

    def _grown(self, kept: _Kept, size: int) -> None:
        kept.size += size * DECODED_WEIGHT
        self._kept_bytes += size * DECODED_WEIGHT

    def _forget_kept(self, room: str) -> None:
        kept = self._kept.pop(room, None)
        if kept is not None:
            self._kept_bytes -= kept.size

    def _drop_unused(self, now: float) -> None:
        """Drop the documents unused for keep_idle, and the least recently used beyond
        keep_bytes (never the one in use now, the most recent)."""
        kept = self._kept
        while len(kept) > 1:
            room, oldest = next(iter(kept.items()))
            if now - oldest.used < self.keep_idle and self._kept_bytes <= self.keep_bytes:
                return
            self._forget_kept(room)

    async def compact(self, room: str, meter: Meter | None = None) -> None:
        """Replace the log with the one update its document makes (deleted content dropped)."""
        meter = meter or Meter()
        kept = await self._current(room, meter)
        with meter:
            merged = kept.doc.get_update()
        if await self.store.shared_compact(room, kept.life, kept.seq, merged):
            self._grown(kept, len(merged) - kept.size // DECODED_WEIGHT)  # what it holds now is what it weighs
            self.log.debug("iavicenne: compacted %s's shared document to %d bytes (update %d)", room, len(merged), kept.seq)

    def release(self, room: str) -> None:
        """Nobody on this server is in `room` any more: its document is no longer kept here."""
        self._forget_kept(room)

    async def forget(self, room: str) -> None:
        self._forget_kept(room)
        await self.store.shared_delete(room)
