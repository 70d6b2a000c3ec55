"""Names of the Redis broker's keys and channels, all under one prefix (``redis_prefix``).

Per room (``R`` the room name):

``{prefix}:room:R``      pub/sub channel; a server subscribes while it has members in R
``{prefix}:meta:R``      hash ``epoch`` (random id of this life of the room), ``seq``
``{prefix}:history:R``   stream of the room's last frames (kept without their seq), entry
                         id ``<seq>-0``; at most ``history_size`` frames and
                         ``history_bytes_per_room`` bytes
``{prefix}:presence:R``  hash connection key -> `PresenceEntry` JSON
``{prefix}:users:R``     hash user_id -> number of connections (FIRST/AGAIN/left)
``{prefix}:members:R``   sorted set of the user_ids of ``users:R``, score 0: a paged
                         snapshot is a ZRANGEBYLEX, the count a ZCARD (members_page.lua)
``{prefix}:member-conns:R``  sorted set ``user_id NUL conn`` of ``presence:R``'s entries, score
                         0: one user's connections are one lex range
``{prefix}:owners:R``    hash skeleton of a user_id (names.py) -> identity ``username``
                         holding it (TAKEN)
``{prefix}:claims:R``    hash skeleton -> number of user_ids present with it
``{prefix}:claim-of:R``  hash user_id -> its skeleton (what a leave or a sweep releases)
``{prefix}:access:R``    hash ``kind``, ``owner``, ``group``: the room's access record
                         (access.py); none for a public room
``{prefix}:access-members:R``  set of the usernames a private room's owner invited
``{prefix}:shared:R``    list of Yjs updates, the room's shared document (shared_state.py),
                         compacted into one now and then; expires ``shared_ttl`` after its
                         last change
``{prefix}:shared-meta:R``  hash ``bytes`` (of the list), ``gen`` (its compactions)

Per deployment and per server: ``{prefix}:rooms`` (set of rooms with members),
``{prefix}:access-rooms`` (set of rooms with an access record), ``{prefix}:access-of:<username>``
(set of the rooms that identity created, at most ``max_private_rooms_per_identity``),
``{prefix}:identities`` (hash skeleton of a username -> the first username seen with it),
``{prefix}:servers`` (sorted set server id -> last heartbeat, Redis clock),
``{prefix}:conns:<server>`` (set of ``room \\x1f user_id \\x1f conn`` of that server),
``{prefix}:stale:<server>`` (set when a server was declared dead),
``{prefix}:server:<server>`` (a channel of its own, so its pub/sub link never idles empty),
``{prefix}:dedup:<key>`` (the seq a dedup key got), ``{prefix}:dedup-of:<username>`` (sorted
set of that identity's dedup keys by expiry, at most ``max_dedup_per_identity``).

History sizes, so that trimming by bytes never scans: ``{prefix}:history-bytes`` (hash room
-> bytes kept), ``{prefix}:history-total`` (their sum, at most ``history_bytes_total``),
``{prefix}:history-expiry`` (sorted set room -> when its history expires: the expired ones'
bytes leave the sum) and ``{prefix}:history-audit`` (where the sweepers' check of the sizes
against the streams goes on).

The Lua scripts (lua/common.lua ``key``) build the same names.
"""

from __future__ import annotations


class Keys:
    __slots__ = ("channel_prefix", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.channel_prefix = f"{prefix}:room:".encode()

    def of(self, kind: str, room: str) -> str:
        """A room's key of `kind`: ``meta``, ``history``, ``presence``, ``users``, ``owners``."""
        return f"{self.prefix}:{kind}:{room}"

    def channel(self, room: str) -> bytes:
        return self.channel_prefix + room.encode()

    def room_of(self, channel: bytes) -> str | None:
        """The room a channel carries, or None for a channel that is not a room's."""
        if not channel.startswith(self.channel_prefix):
            return None
        return channel[len(self.channel_prefix) :].decode(errors="replace")

    @property
    def rooms(self) -> str:
        return f"{self.prefix}:rooms"

    @property
    def access_rooms(self) -> str:
        return f"{self.prefix}:access-rooms"

    @property
    def identities(self) -> str:
        return f"{self.prefix}:identities"

    @property
    def servers(self) -> str:
        return f"{self.prefix}:servers"

    def server_channel(self, server_id: str) -> str:
        return f"{self.prefix}:server:{server_id}"

    def dedup(self, dedup_key: str) -> str:
        return f"{self.prefix}:dedup:{dedup_key}"
