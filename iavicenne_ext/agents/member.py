"""An agent in the rooms: a connection of the room hub, like a WebSocket's, without a socket.

The hub writes frames to it as to any member (`Connection.send`); it keeps what its tools
need: the mentions of it and the direct messages to it not answered yet, and an event that
wakes a long poll (`wait_for_mention`). Everything else the hub sends it (presence, the
replay of a join) is dropped: `read_messages` reads the room's history from the broker.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import iavicenne_protocol as p

from .. import names
from ..identity import Identity

#: mentions (and direct messages) kept per agent, oldest dropped first: an agent that never
#: answers costs the server this much, whatever the rooms say to it
MAX_PENDING = 256
_AGENT_NAME = re.compile(r"[^\w.+~-]+")


def agent_name_of(requested: str | None) -> str:
    """An agent's name from what its client says (``?agent=`` or its MCP clientInfo.name):
    letters, digits and ``.+~-_``, at most 32 characters; "agent" when nothing is left."""
    cleaned = _AGENT_NAME.sub("-", (requested or "").strip()).strip("-._")[:32].strip("-._")
    return cleaned or "agent"


@dataclass(slots=True)
class Pending:
    """A message an agent may answer: a mention of it in a room, or a direct message to it."""

    room: str
    seq: int  # the message's seq (0 for a direct message, which has none)
    user_id: str  # who sent it
    identity: dict[str, Any]
    text: str
    direct: bool = False
    delivered: bool = False  # handed to the agent by wait_for_mention (still answerable)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"room": self.room, "from": self.user_id, "identity": self.identity, "text": self.text}
        if self.direct:
            shown["direct"] = True
        else:
            shown["seq"] = self.seq
        return shown


@dataclass(eq=False)
class AgentMember:
    """One MCP session's agent: `Connection` (local_rooms.py) for the room hub."""

    key: str
    who: Identity  # the person's identity, its display name the agent's
    agent: str
    user_id: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    name_policy: str = names.OWN  # "<username>#<agent>" is always the person's own name
    rooms: set[str] = field(default_factory=set)
    pending: OrderedDict[tuple[str, int, str], Pending] = field(default_factory=OrderedDict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # every room message it is written (room, seq, by an agent): the loop breaker's (rules.py)
    observer: Callable[[str, int, bool], None] | None = None
    # removed from a room by its owner: the session leaves it (session.py)
    on_evicted: Callable[[str], None] | None = None

    @classmethod
    def of(cls, key: str, person: Identity, agent: str) -> AgentMember:
        display = p.AGENT_DISPLAY_FORMAT.format(agent=agent, username=person.username)
        who = replace(person, display_name=display)
        user_id = f"{person.name or person.username}{p.AGENT_USER_ID_SEPARATOR}{agent}"
        identity = {**who.public(), p.IDENTITY_KIND: p.MemberKind.AGENT, p.IDENTITY_AGENT: agent}
        return cls(key, who, agent, p.check_name(user_id[: p.NAME_MAX_LENGTH], "user_id"), identity)

    # -- what the hub calls ----------------------------------------------------------
    def send(self, frame: bytes, *, replay: bool = False) -> None:
        if replay or (b'"type":"message"' not in frame[:64] and b'"type":"direct-message"' not in frame[:64]):
            return  # the seq-ordered frames start {"seq":N,"type":...}: looked for in the head
        try:
            data = json.loads(frame)
        except ValueError:
            return
        room = str(data.get("room", ""))
        if data.get("type") == p.MESSAGE and self.observer is not None and isinstance(data.get("seq"), int):
            self.observer(room, data["seq"], p.is_agent(data.get("identity")))
        if data.get("user_id") == self.user_id:
            return  # its own message
        text = _text_of(data.get("message"))
        if data.get("type") == p.DIRECT_MESSAGE:
            if data.get("to") == self.user_id:
                self._add(Pending(room, 0, str(data.get("user_id")), data.get("identity") or {}, text, direct=True))
        elif data.get("type") == p.MESSAGE and self.mentioned_in(text):
            self._add(Pending(room, int(data.get("seq") or 0), str(data.get("user_id")), data.get("identity") or {}, text))

    def superseded(self, room: str) -> None:
        """Agents are not signaling peers: nothing takes them over."""

    def evicted(self, room: str) -> None:
        """Removed from `room` by its owner: its tools no longer reach it."""
        self.rooms.discard(room)
        for key in [k for k in self.pending if k[0] == room]:
            del self.pending[key]
        if self.on_evicted is not None:
            self.on_evicted(room)

    # -- mentions --------------------------------------------------------------------
    def mentioned_in(self, text: str) -> bool:
        """Whether `text` says "@<agent>" or "@<user_id>" (a whole word, any case)."""
        lowered = text.lower()
        for handle in (self.user_id.lower(), self.agent.lower()):
            at = lowered.find(p.MENTION_PREFIX + handle)
            while at != -1:
                end = at + 1 + len(handle)
                if end == len(lowered) or not (lowered[end].isalnum() or lowered[end] in "_#"):
                    return True
                at = lowered.find(p.MENTION_PREFIX + handle, end)
        return False

    def _add(self, item: Pending) -> None:
        self.pending[(item.room, item.seq, item.user_id if item.direct else "")] = item
        while len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)
        self.arrived.set()

    def next_pending(self, room: str | None) -> Pending | None:
        """The oldest mention or direct message not handed out yet (in `room`, if given);
        it stays answerable until answered (or pushed out by MAX_PENDING newer ones)."""
        for item in self.pending.values():
            if not item.delivered and (room is None or item.room == room):
                item.delivered = True
                return item
        return None

    def take_mention(self, room: str, seq: int) -> Pending | None:
        """The mention with `seq` in `room`, no longer pending: answering it uses it up."""
        return self.pending.pop((room, seq, ""), None)

    def take_direct(self, room: str | None, user_id: str) -> Pending | None:
        """A direct message from `user_id` (in `room`, if given), no longer pending."""
        for key, item in self.pending.items():
            if item.direct and item.user_id == user_id and (room is None or item.room == room):
                del self.pending[key]
                return item
        return None


def _text_of(message: Any) -> str:
    """The text of a message payload: the seed's ``{"content": ...}`` (or ``"text"``), or a bare string."""
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        for key in ("content", "text"):
            if isinstance(message.get(key), str):
                return message[key]
    return ""
