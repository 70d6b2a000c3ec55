"""Who may be in a room, under which name: access records and the name policy.

A room's access record (access.py) is checked on join, on a replay, on signaling join and
on direct messages, and the name policy (names.py) for a `user_id` / `peer_id`; a display
name (the identity's, and a presence state's ``display_name``) must not look like another
identity's username (`check_display_name`). A removal
from a private room is an eviction: an `Eviction` on the room's channel (and its signaling
room's) that every server hands to that identity's connections, which then leave. The
owner's moderation (``moderate``) is kept in the record too: a removal evicts likewise, a
mute is a `Moderation` event after which every server refuses that identity's messages.
"""

from __future__ import annotations

import logging
from typing import Any

import iavicenne_protocol as p

from . import names
from .access import RoomAccess, is_muted, may_enter, may_receive, refusal
from .broker.base import BrokerUnavailable, CreateOutcome, Member, MemberOutcome
from .broker.events import Eviction, Moderation, RoomFrame
from .broker.interfaces import AccessStore, MessageBroker, NameRegistry, PresenceManager, SharedStore
from .identity import Identity
from .local_rooms import Connection, LocalFanout, signaling_room


class RoomAdmission(LocalFanout):
    """The hub's checks of who enters, and the administration of private rooms."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        messages: MessageBroker,
        presence: PresenceManager,
        access_records: AccessStore,
        identities: NameRegistry,
        shared: SharedStore,
        presence_batch_interval: float,
        presence_batch_frames_per_second: float,
    ) -> None:
        super().__init__(
            log,
            messages=messages,
            presence=presence,
            presence_batch_interval=presence_batch_interval,
            presence_batch_frames_per_second=presence_batch_frames_per_second,
        )
        self.access_records = access_records
        self.identities = identities
        self.shared = shared
        # skeleton -> the username holding it, as the broker answered (bounded by the identities)
        self._named: dict[str, str] = {}
        # (username, skeleton of a display name) it was found free for, at a join: presence
        # changes saying the same name again do not ask the broker (bounded: cleared when full)
        self._display_free: set[tuple[str, str]] = set()

    async def check_access(self, conn: Connection, room: str, ref: str | None = None) -> RoomAccess | None:
        """The room's record, or `ProtocolError` (``forbidden``) when `conn`'s identity may not enter it."""
        access = await self.access_records.get_access(room)
        if access is not None and not may_enter(conn.who, access):
            raise refusal(room, access, ref, username=conn.who.username)
        return access

    async def _still_allowed(self, conn: Connection, room: str, ref: str | None) -> None:
        """After joining: a record created between the check and the join refuses it now.

        Creating a record fails while the room has members, so once this check passes no
        record can come to refuse this member except by an explicit removal (an eviction).
        """
        try:
            await self.check_access(conn, room, ref)
        except p.ProtocolError:
            await self.presence.leave(room, conn.key, conn.user_id)
            raise

    async def confirm_access(self, conn: Connection, room: str, *, signaling: bool = False) -> None:
        """Once `conn` takes the room's live frames: evict it if it was removed meanwhile.

        A removal's eviction reaches the connections in the local fan-out; one still joining
        (snapshot and replay on their way) is not there yet. The removal is written before its
        eviction is sent, so a check made now sees it.
        """
        access = await self.access_records.get_access(room)
        if may_enter(conn.who, access):
            local = self.local.get(room)
            if not signaling and local is not None and is_muted(conn.who.username, access):
                local.muted.add(conn.who.username)  # muted before joining: told by the record
            return
        key = signaling_room(room) if signaling else room
        local = self.local.get(key)
        if local is not None:
            local.remove(conn)
        conn.send(p.encoded(p.ROOM_LEFT, room=room, reason=p.LeftReason.REMOVED))
        conn.evicted(key)

    async def remember(self, who: Identity) -> None:
        """`who` opened a socket: under the free policy nobody else may look like its username."""
        await self.identities.remember_identity(who.username, names.skeleton(who.username))

    async def check_name(self, conn: Connection, name: str, field: str, ref: str | None = None, *, early: bool = False) -> None:
        """Refuse a user_id / peer_id the connection's identity may not use (names.py).

        `early`: on `connect`, which needs no broker; with the broker unreachable the
        usernames are not looked up then, and the join (which needs it) checks again.
        """
        who = conn.who
        if conn.name_policy == names.OWN:
            if not names.is_own(name, who):
                raise names.not_yours(field, name, who, ref)
            return
        for candidate in dict.fromkeys((names.skeleton(name), names.skeleton(names.base_name(name)))):
            try:
                holder = await self._holder(candidate)
            except BrokerUnavailable:
                if early:
                    return
                raise
            if holder is not None and holder != who.username:
                raise p.ProtocolError(
                    p.ErrorCode.NAME_TAKEN,
                    f"{field} {name!r} looks like {holder!r}, the name of another user of this server; "
                    f"connect with another {field}",
                    ref,
                )

    async def _holder(self, name_skeleton: str) -> str | None:
        """The username whose skeleton `name_skeleton` is (an identity that opened a socket), or None."""
        holder = self._named.get(name_skeleton)
        if holder is None:
            holder = await self.identities.identity_named(name_skeleton)
            if holder is not None:  # the first holder keeps it for good: no need to ask again
                self._named[name_skeleton] = holder
        return holder

    async def check_display_name(
        self, conn: Connection, state: Any, ref: str | None = None, *, room: str | None = None, joining: bool = False
    ) -> None:
        """Refuse (``name-taken``) a display name that looks like another identity's username.

        The names checked: on a join (`joining`), the identity's display name and the presence
        state's ``display_name``; on a presence change, the state's. Compared by skeleton
        (names.py) with the usernames of the identities this server (with Redis: the
        deployment) has seen open a socket, so ``alice`` and ``\u0430lice`` (Cyrillic a) are
        not bob's to show. A display name like another's display name is not refused (the
        first to choose one would lock the other out): clients show every display name after
        the verified ``@username``, never alone (docs/threat-model.md).
        """
        who = conn.who
        chosen = state.get("display_name") if isinstance(state, dict) else None
        candidates = [chosen] if isinstance(chosen, str) else []
        if joining:
            candidates.append(who.display_name)
        own = names.skeleton(who.username)
        for name in dict.fromkeys(candidate.strip() for candidate in candidates):
            skeleton = names.skeleton(name)
            if not name or skeleton == own or (not joining and (who.username, skeleton) in self._display_free):
                continue
            holder = await self._holder(skeleton)
            if holder is not None and holder != who.username:
                where = f" in room {room!r}" if room is not None else ""
                raise p.ProtocolError(
                    p.ErrorCode.NAME_TAKEN,
                    f"display name {name!r} looks like {holder!r}, the username of another user of this server: "
                    f"not shown{where}; choose another display name",
                    ref,
                    **({"room": room} if room is not None else {}),
                )
            if len(self._display_free) >= 4096:
                self._display_free.clear()
            self._display_free.add((who.username, skeleton))

    # -- private rooms ------------------------------------------------------------------
    async def rooms(self) -> dict[str, list[Member]]:
        """Every chat room that has members now (on any server), with its members."""
        rooms = await self.presence.rooms()
        return {name: members for name, members in rooms.items() if not name.startswith(p.SIGNALING_ROOM_PREFIX)}

    async def visible_rooms(self, who: Identity) -> dict[str, tuple[list[Member], RoomAccess | None]]:
        """The chat rooms `who` may enter that have members now or an access record."""
        rooms = await self.rooms()
        records = await self.access_records.all_access()
        listed: dict[str, tuple[list[Member], RoomAccess | None]] = {}
        for name in sorted({*rooms, *records}):
            access = records.get(name)
            if may_enter(who, access):
                listed[name] = (rooms.get(name, []), access)
        return listed

    async def create_access(self, access: RoomAccess, *, max_per_owner: int) -> CreateOutcome:
        return await self.access_records.create_access(access, max_per_owner=max_per_owner)

    async def access(self, room: str) -> RoomAccess | None:
        return await self.access_records.get_access(room)

    async def invite(self, room: str, username: str, *, max_members: int) -> tuple[MemberOutcome, RoomAccess | None]:
        return await self.access_records.add_member(room, username, max_members=max_members)

    async def remove_member(self, room: str, username: str) -> tuple[MemberOutcome, RoomAccess | None]:
        """Take `username` off the members, and out of the room (and its signaling room) everywhere."""
        outcome, access = await self.access_records.remove_member(room, username)
        if outcome is MemberOutcome.DONE and access is not None and not may_receive(username, access):
            await self.evict(room, username)
        return outcome, access

    async def delete_access(self, room: str) -> bool:
        """Delete the record (and the history); everyone in the room is evicted from it."""
        present = {
            str(e.identity.get("username")) for key in (room, signaling_room(room)) for e in await self.presence.entries(key)
        }
        if not await self.access_records.delete_access(room):
            return False
        await self.shared.shared_delete(room)  # its shared document must not become public either
        for username in sorted(present):
            await self.evict(room, username)
        return True

    # -- moderation by a room's owner --------------------------------------------------------
    async def moderate(self, conn: Connection, room: str, username: str, action: str, ref: str | None = None) -> RoomAccess:
        """The owner's `action` (a `ModerationAction`) on `username` in `room`, kept with its
        access record; the room is told (``moderated``), a removed identity is evicted.

        ``forbidden`` unless `conn`'s identity owns the room (a room without a record has no
        owner: its members mute each other for themselves, in their clients).
        """
        access = await self.access_records.get_access(room)
        if access is None or access.owner != conn.who.username:
            whose = "has no owner (it was not created over REST)" if access is None else f"is {access.owner}'s"
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                f"only the owner of room {room!r} may {action} its members; it {whose}",
                ref,
                room=room,
            )
        if username == access.owner:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"the owner of room {room!r} cannot {action} itself", ref, room=room)
        outcome, moderated = await self.access_records.moderate(room, username, action)
        if outcome is not MemberOutcome.DONE or moderated is None:  # deleted meanwhile
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_ROOM, f"room {room!r} has no access record any more", ref, room=room)
        frame = p.encoded(p.MODERATED, room=room, username=username, action=action, by=conn.who.username)
        if action in (p.ModerationAction.MUTE, p.ModerationAction.UNMUTE):
            await self.messages.emit(Moderation(room, frame, username, action == p.ModerationAction.MUTE))
        else:
            await self.messages.emit(RoomFrame(room, frame))
            if action == p.ModerationAction.REMOVE:
                await self.evict(room, username)
        return moderated

    async def check_not_muted(self, conn: Connection, room: str, ref: str | None) -> None:
        """Refuse (``muted``) a message of an identity the room's owner muted.

        The local room's `muted` is what this server heard; the record has the last word, so
        an unmute whose event is still on its way lets the message through.
        """
        local = self.local.get(room)
        if local is None or not local.muted:  # the hot path: nobody muted in the room
            return
        username = conn.who.username
        if username not in local.muted:
            return
        access = await self.access_records.get_access(room)
        if not is_muted(username, access):
            local.muted.discard(username)
            return
        assert access is not None
        raise p.ProtocolError(
            p.ErrorCode.MUTED,
            f"message not sent: the owner of room {room!r} ({access.owner}) muted you there",
            ref,
            room=room,
        )

    async def evict(self, room: str, username: str) -> None:
        """Every connection of `username` in chat room `room` and in its signaling room, on
        every server, gets ``room-left`` (reason ``removed``) and leaves."""
        frame = p.encoded(p.ROOM_LEFT, room=room, reason=p.LeftReason.REMOVED)
        await self.messages.emit(Eviction(room, frame, username))
        await self.messages.emit(Eviction(signaling_room(room), frame, username))
