"""Shared state: one Yjs document per room, kept by the server (pycrdt, the CRDT of
jupyter-collaboration), synced with the Yjs sync protocol over the room socket.

The broker keeps each document as a log of Yjs updates (`broker.base.SharedStore`: in
this process, or in Redis where every server sees it and it survives them all
restarting). The server never holds a document between requests: it builds one from the
log when a client asks for what it lacks (sync step 1), which compaction keeps cheap —
every `compact_every` updates, the log is replaced by the one update the document makes.
An update is checked before it is kept: within `max_update_bytes`, decodable by Yjs
(re-encoded, so trailing junk never reaches another client), and within `max_bytes` for
the whole document, checked by the broker atomically with the append.

Who may read and write is the room's business: only members of the room (the handler
checks the connection is in it, and joining checked access.py's `may_enter`; an eviction
takes a removed member out). Deleting a room's access record deletes its document, which
must not become readable as a public room's.
"""

from __future__ import annotations

import logging

import pycrdt

import iavicenne_protocol as p

from .broker.interfaces import SharedStore
from .shared_depth import check_depth

# The y-sync messages themselves (SyncMessage, decode_sync) are the protocol's, shared
# with the Python client: iavicenne_protocol.sync. What is here needs pycrdt or the broker.


def check_update(update: bytes, max_depth: int) -> bytes:
    """`update` re-encoded by Yjs (trailing bytes dropped), or `ProtocolError` when Yjs cannot
    read it or it nests deeper than `max_depth` (measured first: pycrdt crashes on some deep updates)."""
    check_depth(update, max_depth)
    try:
        normalized = pycrdt.merge_updates(update)
        pycrdt.Doc().apply_update(normalized)
    except Exception as error:  # pycrdt raises ValueError; any failure means the same
        raise p.ProtocolError(
            p.ErrorCode.INVALID_FIELD, f"shared update refused: not a Yjs update ({str(error)[:120]}); nothing was changed"
        ) from None
    return normalized


def check_state_vector(state: bytes) -> bytes:
    try:
        pycrdt.Doc().get_update(state)
    except Exception:
        raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "sync step 1 refused: not a Yjs state vector") from None
    return state


class SharedDocs:
    """The rooms' documents of this server, over the broker's `SharedStore`."""

    def __init__(
        self,
        store: SharedStore,
        log: logging.Logger,
        *,
        max_bytes: int,
        max_update_bytes: int,
        compact_every: int,
        ttl: float,
        max_depth: int = 64,
    ) -> None:
        self.store = store
        self.log = log
        self.max_bytes = max_bytes
        self.max_update_bytes = max_update_bytes
        self.compact_every = compact_every
        self.ttl = ttl
        self.max_depth = max_depth  # max_shared_depth, for check_update

    async def document(self, room: str) -> pycrdt.Doc:
        """The room's document as it stands, built from the log."""
        log = await self.store.shared_load(room)
        doc: pycrdt.Doc = pycrdt.Doc()
        for update in log.updates:
            doc.apply_update(update)
        return doc

    async def missing(self, room: str, state: bytes) -> tuple[bytes, bytes]:
        """What a client with state vector `state` lacks (an update), and the server's state vector."""
        doc = await self.document(room)
        return doc.get_update(check_state_vector(state)), doc.get_state()

    async def apply(self, room: str, update: bytes) -> bytes | None:
        """Keep `update` (already checked by `check_update`): the bytes to send the others, or
        None when it changes nothing. `limit-exceeded` (max_shared_bytes) when the document
        would grow past its bound; what was kept before stays as it was."""
        if update == p.EMPTY_UPDATE:
            return None
        count = await self.store.shared_append(room, update, max_bytes=self.max_bytes, ttl=self.ttl)
        if count is None:
            # the log may be larger than the document it makes: compact, then try once more
            await self.compact(room)
            count = await self.store.shared_append(room, update, max_bytes=self.max_bytes, ttl=self.ttl)
        if count is None:
            raise p.limit_exceeded(
                "max_shared_bytes",
                self.max_bytes,
                f"shared update refused: room {room!r}'s shared document would be larger than its bound; "
                "remove what is no longer needed (the update was not applied; your copy is reset to the room's)",
            )
        if count > self.compact_every:
            await self.compact(room)
        return update

    async def compact(self, room: str) -> None:
        """Replace the log with the one update its document makes (deleted content dropped)."""
        log = await self.store.shared_load(room)
        if len(log.updates) < 2:
            return
        doc: pycrdt.Doc = pycrdt.Doc()
        for update in log.updates:
            doc.apply_update(update)
        merged = doc.get_update()
        if await self.store.shared_compact(room, log.generation, len(log.updates), merged, ttl=self.ttl):
            self.log.debug(
                "iavicenne: compacted %s's shared document: %d updates, %d -> %d bytes",
                room,
                len(log.updates),
                log.size,
                len(merged),
            )

    async def forget(self, room: str) -> None:
        await self.store.shared_delete(room)
