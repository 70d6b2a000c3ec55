"""Copy what a server's local store holds into Redis (`iavicenne-migrate`, migrate.py).

The Redis broker has no operation that keeps a room's seq and epoch as they were: its
publish takes the next seq of a new life. So the rooms' keys are written here, in the
layout keys.py describes and the lua scripts read, and nowhere else: a room's ``meta``
(its epoch and last seq), its ``history`` stream (entry ``<seq>-0``, the frame without its
seq, as publish.lua keeps it) with its bytes counted in ``history-bytes`` and
``history-total``, the ``read`` positions, and each conversation's kept direct messages
with their direct_seq (as direct_keep.lua keeps them). What the broker's own operations
keep as they are (access records, shared documents, remembered rooms, identities) goes
through them.

An imported room has nobody in it: its keys are kept without expiry, so nothing is lost
before someone comes back; once its last member leaves, the servers' ``history_ttl``
applies as to any room (expire_room in lua/common.lua).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pycrdt

from ...access import RoomAccess
from .broker import RedisBroker

#: no budget of the target refuses what the store kept (the servers' own apply afterwards)
UNBOUNDED = 2**62


@dataclass(slots=True)
class StoredRoom:
    """A room as the store keeps it: its life, its last seq and its kept messages."""

    name: str
    epoch: str
    seq: int
    messages: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, frame), oldest first
    reads: dict[str, int] = field(default_factory=dict)  # username -> read position


@dataclass(slots=True)
class StoredConversation:
    room: str
    first: str  # the two usernames, in code point order
    second: str
    frames: list[tuple[int, bytes]] = field(default_factory=list)  # (direct_seq, frame)


@dataclass(slots=True)
class StoredContent:
    """Everything a store holds that Redis should hold after the move."""

    rooms: list[StoredRoom] = field(default_factory=list)
    access: list[RoomAccess] = field(default_factory=list)
    documents: dict[str, list[bytes]] = field(default_factory=dict)  # room -> its Yjs updates
    conversations: list[StoredConversation] = field(default_factory=list)
    direct_seqs: dict[str, int] = field(default_factory=dict)  # room -> last direct_seq
    remembered: list[tuple[str, str, float]] = field(default_factory=list)  # username, room, at
    identities: dict[str, str] = field(default_factory=dict)  # name skeleton -> username

    @property
    def message_count(self) -> int:
        return sum(len(room.messages) for room in self.rooms)


@dataclass(slots=True)
class Imported:
    rooms: int = 0
    messages: int = 0
    access: int = 0
    documents: int = 0
    direct_messages: int = 0
    remembered: int = 0
    reads: int = 0


class PrefixInUse(Exception):
    """The target prefix already holds rooms: an import would mix two deployments."""


def target_broker(url: str, prefix: str) -> RedisBroker:
    """A Redis broker on `prefix` that refuses nothing the store kept."""
    return RedisBroker(
        url=url,
        prefix=prefix,
        history_size=UNBOUNDED,
        history_ttl=UNBOUNDED / 1000,
        dedup_ttl=60.0,
        history_bytes_per_room=UNBOUNDED,
        history_bytes_total=UNBOUNDED,
        shared_bytes_total=UNBOUNDED,
        max_remembered_rooms=UNBOUNDED,
        direct_history_size=UNBOUNDED,
        direct_history_bytes=UNBOUNDED,
    )


async def prefix_in_use(broker: RedisBroker) -> bool:
    """True when the prefix holds a room already (a life, history or an access record)."""
    link, keys = broker._link, broker._keys
    if int(await link.command("SCARD", keys.access_rooms)) or int(await link.command("SCARD", keys.history_rooms)):
        return True
    for node in link._nodes:  # every primary of a cluster
        async for _ in node.client.scan_iter(match=f"{keys.prefix}:*:meta:*", count=1000):
            return True
    return False


async def import_content(
    broker: RedisBroker,
    content: StoredContent,
    *,
    progress: Callable[[int], None] = lambda _: None,
) -> Imported:
    """Write `content` under the broker's prefix; `progress(n)` after each n messages."""
    done = Imported()
    # access first: access_create refuses a room that has a life already (its people
    # would suddenly be in a private room)
    for access in content.access:
        await _import_access(broker, access)
        done.access += 1
    for room in content.rooms:
        await _import_room(broker, room, progress)
        done.rooms += 1
        done.messages += len(room.messages)
        done.reads += len(room.reads)
    for name, updates in content.documents.items():
        if updates:
            merged = pycrdt.merge_updates(*updates)
            await broker.shared_append(name, merged, max_bytes=UNBOUNDED)
            await _keep(broker, ("shared", "shared-meta"), name)
            done.documents += 1
    for conversation in content.conversations:
        await _import_conversation(broker, conversation)
        done.direct_messages += len(conversation.frames)
    for name, seq in content.direct_seqs.items():
        await broker._link.command("SET", broker._keys.of("direct-seq", name), seq)
    for username, name, at in content.remembered:
        await broker.remember_room(username, name, at)
        done.remembered += 1
    for skeleton, username in content.identities.items():
        await broker.remember_identity(username, skeleton)
    return done


async def _import_access(broker: RedisBroker, access: RoomAccess) -> None:
    await broker.create_access(access, max_per_owner=UNBOUNDED)
    link, keys, name = broker._link, broker._keys, access.room
    for kind, names in (("access-muted", access.muted), ("access-removed", access.removed)):
        if names:
            await link.command("SADD", keys.of(kind, name), *sorted(names))


async def _import_room(broker: RedisBroker, room: StoredRoom, progress: Callable[[int], None]) -> None:
    link, keys, name = broker._link, broker._keys, room.name
    history, size = keys.of("history", name), 0
    # a room of that name already there (--force): the store's replaces it (its bytes leave
    # the room's count; the total is set right by the servers' audits, liveness.py)
    await link.command("DEL", history, keys.of("revised", name), keys.of("read", name))
    await link.command("HDEL", f"{keys.tagged(name)}:history-bytes", name)
    await link.command("HSET", keys.of("meta", name), "epoch", room.epoch, "seq", room.seq)
    # pipelined: one round trip per batch (the room's keys are in one slot, one node)
    client = link.node(history).client
    for batch in _batches(room.messages, 1000):
        pipeline = client.pipeline(transaction=False)
        for seq, frame in batch:
            bare = _without_seq(seq, frame)
            pipeline.xadd(history, {"f": bare}, id=f"{seq}-0")
            size += len(bare)
        await pipeline.execute()
        progress(len(batch))
    if size:
        await link.command("HINCRBY", f"{keys.tagged(name)}:history-bytes", name, size)
        await link.command("INCRBY", keys.history_total, size)
        await link.command("SADD", keys.history_rooms, name)
    for username, seq in room.reads.items():
        await link.command("HSET", keys.of("read", name), username, f"{room.epoch} {min(seq, room.seq)}")
        await link.command("SADD", keys.read_rooms(username), name)


async def _import_conversation(broker: RedisBroker, conversation: StoredConversation) -> None:
    link, keys, name = broker._link, broker._keys, conversation.room
    pair = f"{conversation.first}\x1f{conversation.second}"
    # a conversation's keys are its room's (one slot): T:direct:R<US>a<US>b, as lua/common.lua `key` names them
    tagged = keys.tagged(name)
    log, size_key = f"{tagged}:direct:{name}\x1f{pair}", f"{tagged}:direct-bytes:{name}\x1f{pair}"
    size = sum(len(frame) for _, frame in conversation.frames)
    if conversation.frames:
        await link.command("RPUSH", log, *(str(seq).encode() + b" " + frame for seq, frame in conversation.frames))
    await link.command("SET", size_key, size)
    await link.command("SADD", keys.of("direct-users", name), conversation.first, conversation.second)
    for username in (conversation.first, conversation.second):
        await link.command("SADD", f"{tagged}:direct-of:{name}\x1f{username}", pair)


async def _keep(broker: RedisBroker, kinds: Iterable[str], name: str) -> None:
    """No expiry on an imported room's keys (the module docstring says why)."""
    for kind in kinds:
        await broker._link.command("PERSIST", broker._keys.of(kind, name))


def _without_seq(seq: int, frame: bytes) -> bytes:
    """A kept frame as the stream keeps it: without the ``"seq"`` the store's frames begin
    with (protocol.with_seq; a reader of the stream puts it back)."""
    head = b'{"seq":%d,' % seq
    return b"{" + frame[len(head) :] if frame.startswith(head) else frame


def _batches(items: list[tuple[int, bytes]], size: int) -> Iterable[list[tuple[int, bytes]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
