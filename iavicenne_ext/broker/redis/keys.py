"""Names of the Redis broker's keys and channels, all under one prefix (``redis_prefix``).

Every key of a room carries the room's hash tag, ``{prefix}:{<tag>}:<kind>:<room>``, so
that on a Redis Cluster all of a room's keys live in one hash slot and each of its scripts
runs on one shard (docs/redis-cluster.md). The tag is the chat room's name with ``%``,
``{`` and ``}`` percent-escaped (a room name may hold braces, and Redis hashes only what is
between the first ``{`` and the next ``}``); a signaling room (``signaling/<R>``) takes the
tag of ``R``, so the checks spanning a room and its signaling room stay in one slot. A
script gets the *tagged prefix* ``{prefix}:{<tag>}`` (`Keys.tagged`) and builds every key
from it (lua/common.lua ``key``), so it can touch no key of another slot.

Per room (``T`` the tagged prefix, ``R`` the room name):

``T:room:R``      pub/sub channel (sharded pub/sub on a cluster); a server subscribes while
                  it has members in R
``T:meta:R``      hash ``epoch`` (random id of this life of the room), ``seq``
``T:history:R``   stream of the room's last frames (kept without their seq), entry id
                  ``<seq>-0``; at most ``history_size`` frames and ``history_bytes_per_room``
``T:revised:R``   sorted set of the room's kept messages rewritten in place (edits,
                  deletions: their stream entries are deleted), member ``<seq>:<frame>``,
                  score the seq; the history is the stream and it merged by seq
``T:read:R``      hash username -> ``<epoch> <seq>``, each person's read position
``T:history-bytes``  hash room -> bytes its history holds (the rooms of the tag)
``T:presence:R``  hash connection key -> `PresenceEntry` JSON
``T:users:R``     hash user_id -> number of connections (FIRST/AGAIN/left)
``T:members:R``   sorted set of the user_ids of ``users:R``, score 0: a paged snapshot is a
                  ZRANGEBYLEX, the count a ZCARD (members_page.lua)
``T:member-conns:R``  sorted set ``user_id NUL conn`` of ``presence:R``'s entries, score 0
``T:owners:R``    hash skeleton of a user_id (names.py) -> identity ``username`` holding it
``T:claims:R``    hash skeleton -> number of user_ids present with it
``T:claim-of:R``  hash user_id -> its skeleton (what a leave or a sweep releases)
``T:conns:<server>``  set ``room \\x1f user_id \\x1f conn`` of that server's entries in the
                  tag's rooms (what a sweep of a dead server removes)
``T:access:R``, ``T:access-members:R``  the room's access record (access.py) and the
                  usernames a private room's owner invited; ``T:access-muted:R`` and
                  ``T:access-removed:R`` the usernames its owner muted and removed
``T:shared:R``, ``T:shared-meta:R``  the room's shared document (shared_state.py): a list of
                  Yjs updates, and a hash ``life``, ``seq``, ``solo``, ``bytes``; they expire with
                  the room's history
``T:shared-bytes``  hash room -> bytes its shared document holds (the rooms of the tag)
``T:dedup:<name>`` the seq a dedup key got (`dedup_name`); ``T:dedup-of:<username>`` sorted set of that
                  identity's dedup keys of the tag by expiry, at most ``max_dedup_per_identity``

Per deployment, under the tag ``{-}`` (`Keys.deployment`, one slot): ``servers`` (sorted set
server id -> last heartbeat, Redis clock), ``rooms-of:<server>`` (the rooms a server has
members in, written by that server alone), ``stale:<server>`` (set when a server was
declared dead), ``server:<server>`` (a channel of its own, so its pub/sub links never idle
empty), ``identities`` (hash skeleton of a username -> the first username seen with it),
``access-rooms`` (rooms with an access record), ``access-of:<username>`` (the rooms that
identity created, at most ``max_private_rooms_per_identity``), ``history-total`` (the bytes of
every room's history, at most ``history_bytes_total``), ``history-rooms`` (the rooms whose
bytes are in it) and ``history-audit`` (the sweepers' cursor over them); likewise
``shared-total`` (the bytes of every shared document, at most ``max_shared_bytes_total``),
``shared-rooms`` and ``shared-audit``; ``read-rooms:<username>`` (the rooms where that
identity has a read position, pruned when read).
"""

from __future__ import annotations

import iavicenne_protocol as p

from ..base import DedupKey

#: the hash tag of the deployment's own keys; a room named "-" shares their slot, never a
#: key (a room's keys are named by kind and room, the deployment's by kinds of their own)
DEPLOYMENT_TAG = "-"


def tag(room: str) -> str:
    """The hash tag of `room`: its chat room's name, percent-escaped."""
    chat = room.removeprefix(p.SIGNALING_ROOM_PREFIX)
    return chat.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class Keys:
    __slots__ = ("deployment", "prefix")

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                f"IAvicenne.redis_prefix {prefix!r} holds a brace: Redis would hash the keys by it "
                "instead of by room; choose a prefix without '{' and '}'"
            )
        self.prefix = prefix
        #: what the deployment-wide scripts get as their tagged prefix
        self.deployment = f"{prefix}:{{{DEPLOYMENT_TAG}}}"

    def tagged(self, room: str) -> str:
        """The tagged prefix of `room`'s keys (what its scripts get)."""
        return self.for_tag(tag(room))

    def for_tag(self, room_tag: str) -> str:
        return f"{self.prefix}:{{{room_tag}}}"

    def of(self, kind: str, room: str) -> str:
        """A room's key of `kind`: ``meta``, ``history``, ``presence``, ``users``, ..."""
        return f"{self.tagged(room)}:{kind}:{room}"

    def channel(self, room: str) -> bytes:
        return f"{self.tagged(room)}:room:{room}".encode()

    def room_of(self, channel: bytes) -> str | None:
        """The room a channel carries, or None for a channel that is not a room's."""
        name = channel.decode(errors="replace")
        head, sep, room = name.partition("}:room:")
        if not sep or not head.startswith(self.prefix + ":{") or head[len(self.prefix) + 2 :] != tag(room):
            return None
        return room

    def global_key(self, kind: str) -> str:
        return f"{self.deployment}:{kind}"

    @property
    def servers(self) -> str:
        return self.global_key("servers")

    def rooms_of(self, server_id: str) -> str:
        return self.global_key(f"rooms-of:{server_id}")

    @property
    def access_rooms(self) -> str:
        return self.global_key("access-rooms")

    def access_of(self, username: str) -> str:
        return self.global_key(f"access-of:{username}")

    @property
    def identities(self) -> str:
        return self.global_key("identities")

    @property
    def history_total(self) -> str:
        return self.global_key("history-total")

    @property
    def history_rooms(self) -> str:
        return self.global_key("history-rooms")

    @property
    def history_audit(self) -> str:
        return self.global_key("history-audit")

    @property
    def shared_total(self) -> str:
        return self.global_key("shared-total")

    @property
    def shared_rooms(self) -> str:
        return self.global_key("shared-rooms")

    @property
    def shared_audit(self) -> str:
        return self.global_key("shared-audit")

    def read_rooms(self, username: str) -> str:
        return self.global_key(f"read-rooms:{username}")

    def server_channel(self, server_id: str) -> str:
        return self.global_key(f"server:{server_id}")


def dedup_name(dedup: DedupKey) -> str:
    """The name of `dedup`'s keys (``dedup:<name>``): unique to the sender and its ref. They
    live under the tag of the key's room (`Keys.tagged(dedup.room)`)."""
    room = "\x1edirect\x1e" + dedup.room if dedup.direct else dedup.room
    return f"{room}\x1f{dedup.identity}\x1f{dedup.user_id}\x1f{dedup.ref}"
