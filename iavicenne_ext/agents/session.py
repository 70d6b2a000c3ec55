"""One MCP session's agent at work: what each tool does, through the room hub.

Everything goes through `RoomHub` as a WebSocket's requests do (rooms.py, room_admission.py):
the same access checks, name checks, identity budgets (`Account`: rooms, joins) and
fan-out; rules.py adds what is the agents' own. A refusal is a `ProtocolError`, which
tools.py turns into an MCP tool error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import iavicenne_protocol as p

from ..access import may_enter
from ..handlers.budgets import Account, Limits, Quotas
from ..rooms import RoomHub
from ..shared_state import SharedDocs
from .member import AgentMember
from .rules import EVERY_AGENT, AgentRules
from .shared_doc import read_shared, update_setting

#: longest status an agent may set (set_status), in characters
MAX_STATUS_LENGTH = 200
#: most messages one read_messages returns
MAX_READ = 200


class AgentSession:
    """An agent (`member`) in the rooms, for one MCP session; `close` when the session ends."""

    def __init__(
        self,
        hub: RoomHub,
        quotas: Quotas,
        rules: AgentRules,
        member: AgentMember,
        account: Account,
        owner_name: str,
        shared_docs: SharedDocs | None = None,
    ) -> None:
        self.hub = hub
        self.shared_docs = shared_docs
        self.quotas = quotas
        self.rules = rules
        self.member = member
        self.account = account
        self.owner_name = owner_name  # the server's owner: the owner of its public rooms
        member.observer = rules.note
        member.on_evicted = self._evicted
        self._background: set[asyncio.Task[None]] = set()
        # an MCP client may call tools at once: one join or leave at a time, as a socket's frames
        self._entering = asyncio.Lock()

    @property
    def limits(self) -> Limits:
        return self.quotas.limits

    # -- who, where ------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        m = self.member
        return {"user_id": m.user_id, "agent": m.agent, "identity": m.identity, "rooms": sorted(m.rooms)}

    async def list_rooms(self) -> list[dict[str, Any]]:
        """The rooms the person may enter: with members now, or with an access record."""
        records = await self.hub.access_records.all_access()
        present = await self.hub.rooms()
        shown: list[dict[str, Any]] = []
        for room in sorted(set(present) | set(records)):
            access = records.get(room)
            if not may_enter(self.member.who, access):
                continue
            shown.append(
                {
                    "room": room,
                    "access": access.kind if access else p.AccessKind.PUBLIC,
                    "members": len(present.get(room, ())),
                    "joined": room in self.member.rooms,
                }
            )
        return shown

    async def members(self, room: str) -> list[dict[str, Any]]:
        await self.hub.check_access(self.member, room)
        shown = []
        for member in await self.hub.members(room):
            identity = member.identity
            state = json.loads(member.state) if member.state else {}
            shown.append(
                {
                    "user_id": member.user_id,
                    "username": identity.get("username"),
                    "display_name": identity.get("display_name"),
                    "kind": identity.get(p.IDENTITY_KIND, p.MemberKind.PERSON),
                    "status": state.get("status") if isinstance(state, dict) else None,
                    "connections": member.connections,
                }
            )
        return shown

    # -- joining and leaving ---------------------------------------------------------
    async def join(self, room: str) -> dict[str, Any]:
        async with self._entering:
            return await self._join(room)

    async def _join(self, room: str) -> dict[str, Any]:
        m = self.member
        if room not in m.rooms:
            if len(m.rooms) >= self.rules.limits.max_rooms:
                raise p.limit_exceeded(
                    "agent_max_rooms",
                    self.rules.limits.max_rooms,
                    "room not joined: leave one first",
                    code=p.ErrorCode.TOO_MANY_ROOMS,
                )
            await self.hub.check_access(m, room)  # before anything is counted: a clear refusal
            await self.hub.check_display_name(m, None, room=room, joining=True)
            await self.hub.check_name(m, m.user_id, "user_id")
            self.account.enter(room, self.limits.max_rooms_per_identity)
            m.rooms.add(room)
            try:
                self.account.join(room, self.limits)
                await self.account.paced(self.hub.audience(room))
                joined = await self.hub.join(m, room, state=None, since=None, epoch=None)
            except BaseException:
                m.rooms.discard(room)
                self.account.exit(room)
                raise
            if not joined:
                m.rooms.discard(room)
                self.account.exit(room)
                raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, f"room {room!r} not joined; try again")
            await self.hub.confirm_access(m, room)
        history = await self.hub.messages.history(room, None, None)
        return {"room": room, "user_id": m.user_id, "seq": history.seq, "floor_open": self.rules.floor_open(room, m.user_id)}

    async def leave(self, room: str) -> dict[str, Any]:
        async with self._entering:
            return await self._leave(room)

    async def _leave(self, room: str) -> dict[str, Any]:
        self._joined(room)
        self.member.rooms.discard(room)
        try:
            await self.hub.leave(self.member, room, closing=True)
        finally:
            self.account.exit(room)
        return {"room": room, "left": True}

    async def close(self) -> None:
        """The MCP session ended: leave every room, give the identity's connection back."""
        for room in sorted(self.member.rooms):
            try:
                await self._leave(room)
            except Exception:  # the broker is down: its presence expires (Redis) or goes with the server
                self.hub.log.debug("iavicenne: agent %s could not leave %s", self.member.key, room)
        self.quotas.close(self.account)

    def _evicted(self, room: str) -> None:
        task = asyncio.ensure_future(self._leave_evicted(room))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _leave_evicted(self, room: str) -> None:
        try:
            await self.hub.leave(self.member, room, closing=True)
        finally:
            self.account.exit(room)

    # -- reading ---------------------------------------------------------------------
    async def read(self, room: str, since: int, limit: int) -> dict[str, Any]:
        self._joined(room)
        if since < 0:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "since must be a seq, 0 or more")
        if not 1 <= limit <= MAX_READ:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"limit must be from 1 to {MAX_READ}")
        await self.hub.check_access(self.member, room)
        history = await self.hub.messages.history(room, since, None)
        frames = [json.loads(frame) for frame in history.messages]
        shown = [_message(frame) for frame in frames[:limit]]
        next_seq = shown[-1]["seq"] if len(frames) > limit else history.seq
        return {"room": room, "messages": shown, "next": next_seq, "gap": not history.recovered}

    async def wait_for_mention(self, room: str | None, timeout_s: float) -> dict[str, Any]:
        if room is not None:
            self._joined(room)
        limit = self.rules.limits.max_wait_seconds
        if not 0 <= timeout_s <= limit:
            raise p.limit_exceeded("agent_max_wait_seconds", limit, f"timeout_s must be from 0 to {limit:g}")
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.member.next_pending(room)
            if found is not None:
                return {"mention": found.to_json(), "timed_out": False}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"mention": None, "timed_out": True}
            self.member.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.member.arrived.wait(), left)

    # -- speaking --------------------------------------------------------------------
    async def send(self, room: str, text: str, reply_to: int | None) -> dict[str, Any]:
        m = self.member
        self._joined(room)
        _check_text(text)
        self._not_muted(room)
        floor = self.rules.floor_open(room, m.user_id)
        if reply_to is None and not floor:
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                f"agents speak in room {room!r} only to answer a mention of them: give reply_to, the seq of a "
                "message that mentions you (wait_for_mention), or ask the room's owner to open the floor",
                room=room,
            )
        if reply_to is not None and (room, reply_to, "") not in m.pending and not floor:
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                f"message {reply_to} of room {room!r} is not a mention of you waiting for an answer "
                "(each mention is answered once)",
                room=room,
            )
        self.rules.check_turn(room)
        payload: dict[str, Any] = {"content": text}
        if reply_to is not None:
            payload["reply_to"] = reply_to
        self.rules.charge(m.user_id, len(text.encode()))
        published = await self.hub.publish(m, room, payload, None)
        if reply_to is not None:
            m.take_mention(room, reply_to)
        self.rules.note(room, published.seq, True)
        return {"room": room, "seq": published.seq}

    async def send_direct(self, user: str, text: str, room: str | None) -> dict[str, Any]:
        m = self.member
        if room is not None:
            self._joined(room)
        _check_text(text)
        asked = next((i for i in m.pending.values() if i.direct and i.user_id == user and room in (None, i.room)), None)
        where = asked.room if asked is not None else room
        if where is None or (asked is None and not self.rules.floor_open(where, m.user_id)):
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                f"agents write to {user!r} only to answer a direct message from them (or where the room's owner "
                "opened the floor: then give room)",
            )
        self._joined(where)
        self._not_muted(where)
        self.rules.charge(m.user_id, len(text.encode()))
        await self.hub.direct(m, where, user, {"content": text}, None)
        if asked is not None:
            m.take_direct(where, user)
        return {"room": where, "to": user, "sent": True}

    async def set_status(self, status: str, room: str | None) -> dict[str, Any]:
        if not isinstance(status, str) or len(status) > MAX_STATUS_LENGTH:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"status must be a string of at most {MAX_STATUS_LENGTH} characters")
        rooms = [room] if room is not None else sorted(self.member.rooms)
        for where in rooms:
            self._joined(where)
        state = p.Raw(p.encode({"status": status}))
        for where in rooms:
            await self.hub.set_state(self.member, where, state)
        return {"rooms": rooms, "status": status}

    async def open_floor(self, room: str, agent: str, is_open: bool) -> dict[str, Any]:
        """The room's owner opens (or closes) the floor to an agent's user_id, or to every agent ("*")."""
        agent = await self._owners_say(room, agent, "opens its floor to agents")
        self.rules.set_floor(room, agent, is_open)
        return {"room": room, "agent": agent, "open": is_open}

    async def mute(self, room: str, agent: str, muted: bool) -> dict[str, Any]:
        """The room's owner mutes (or lets speak again) an agent's user_id, or every agent ("*")."""
        agent = await self._owners_say(room, agent, "mutes its agents")
        self.rules.set_muted(room, agent, muted)
        return {"room": room, "agent": agent, "muted": muted}

    async def _owners_say(self, room: str, agent: str, what: str) -> str:
        """`agent` checked, when this agent's person owns `room` (its access record's owner, or
        for a public room the server's owner); `forbidden` otherwise."""
        access = await self.hub.access(room)
        owner = access.owner if access is not None else self.owner_name
        if self.member.who.username != owner:
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, f"only the owner of room {room!r} ({owner}) {what}", room=room)
        return agent if agent == EVERY_AGENT else p.check_name(agent, "agent")

    def _not_muted(self, room: str) -> None:
        if self.rules.is_muted(room, self.member.user_id):
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, f"the owner of room {room!r} muted you there", room=room)

    # -- the room's shared document ---------------------------------------------------
    async def get_shared(self, room: str) -> dict[str, Any]:
        self._joined(room)
        return {"room": room, "shared": await read_shared(self._docs(room), room, self.member.who.username)}

    async def set_shared(self, room: str, key: str, value: Any) -> dict[str, Any]:
        """Set one key of the room's shared document: like a message, only to answer a
        mention waiting for its answer (not used up) or with the floor open."""
        m = self.member
        self._joined(room)
        self._not_muted(room)
        asked = any(item.room == room and not item.direct for item in m.pending.values())
        if not asked and not self.rules.floor_open(room, m.user_id):
            raise p.ProtocolError(
                p.ErrorCode.FORBIDDEN,
                f"agents change room {room!r}'s shared document only while a mention of them waits for an answer, "
                "or when the room's owner opened the floor",
                room=room,
            )
        if not isinstance(key, str) or not 0 < len(key) <= 256:
            raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "key must be a string of 1 to 256 characters")
        docs = self._docs(room)
        update = update_setting(docs, await docs.document(room), key, value)
        self.rules.charge(m.user_id, len(update))
        kept = await docs.apply(room, update, m.who.username)
        if kept is not None:
            sync = p.SyncMessage(p.SyncStep.UPDATE, kept).b64()
            frame = p.encoded(p.SHARED, room=room, sync=sync, user_id=m.user_id, identity=m.identity)
            await self.hub.broadcast(m, room, frame)
        return {"room": room, "key": key, "changed": kept is not None}

    def _docs(self, room: str) -> SharedDocs:
        if self.shared_docs is None:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, "this server keeps no shared documents", room=room)
        return self.shared_docs

    def _joined(self, room: str) -> None:
        if room not in self.member.rooms:
            raise p.ProtocolError(p.ErrorCode.NOT_IN_ROOM, f"not in room {room!r}; join_room first", room=room)


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise p.ProtocolError(p.ErrorCode.INVALID_FIELD, "text must be a non-empty string")


def _message(frame: dict[str, Any]) -> dict[str, Any]:
    """A history frame as an agent reads it."""
    message = frame.get("message")
    identity = frame.get("identity") or {}
    shown: dict[str, Any] = {
        "seq": frame.get("seq"),
        "from": frame.get("user_id"),
        "username": identity.get("username"),
        "display_name": identity.get("display_name"),
        "kind": identity.get(p.IDENTITY_KIND, p.MemberKind.PERSON),
        "message": message,
        "timestamp": frame.get("timestamp"),
    }
    return shown
