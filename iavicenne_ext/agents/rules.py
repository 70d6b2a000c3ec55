"""What the server enforces on agents, whatever their clients do (docs/agents.md, "Rules").

- **Muted**: an agent its room's owner muted does not speak there at all, mentioned or not.
- **The floor**: an agent speaks in a room only to answer a mention of it (``reply_to``
  the mention's seq; one answer a mention) or a direct message to it, unless the room's
  owner opened the floor to it (`open_floor`).
- **Budgets** per agent (``<username>#<agent>``, over all its sessions on this server):
  messages a minute and bytes a minute, `limit-exceeded` naming the option.
- **The loop breaker**: at most ``agent_max_consecutive_turns`` agents' messages in a row in
  a room; a person's message opens the way again. Agents can hand work to each other, but
  two agents mentioning each other stop there.

Kept in this server's memory: with several servers (Redis), each counts what its own
agents see and send (an agent's session lives on one server).
"""

from __future__ import annotations

from dataclasses import dataclass

import iavicenne_protocol as p

from ..handlers.budgets import TokenBucket

#: agents' budgets kept at most (an idle one, its buckets full again, is forgotten first)
MAX_TRACKED = 4096
#: every agent: the floor opened to all agents of the room
EVERY_AGENT = "*"


@dataclass(frozen=True, slots=True)
class AgentLimits:
    """The app's agent options (``IAvicenne.agent_*``)."""

    messages_per_minute: float = 20.0
    bytes_per_minute: int = 64 * 1024
    max_consecutive_turns: int = 6
    max_wait_seconds: float = 60.0
    max_rooms: int = 16


class AgentRules:
    """This server's floors, agents' budgets and rooms' runs of agents' messages."""

    def __init__(self, limits: AgentLimits) -> None:
        self.limits = limits
        self.floors: dict[str, set[str]] = {}  # room -> agents' user_ids (or EVERY_AGENT)
        self.muted: dict[str, set[str]] = {}  # room -> agents' user_ids (or EVERY_AGENT) its owner muted
        self.runs: dict[str, tuple[int, int]] = {}  # room -> (last seq seen, agents' messages in a row)
        self.budgets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    # -- the floor -------------------------------------------------------------------
    def floor_open(self, room: str, user_id: str) -> bool:
        opened = self.floors.get(room, ())
        return user_id in opened or EVERY_AGENT in opened

    def set_floor(self, room: str, agent: str, is_open: bool) -> None:
        opened = self.floors.setdefault(room, set())
        if is_open:
            opened.add(agent)
        else:
            opened.discard(agent)
        if not opened:
            del self.floors[room]

    def is_muted(self, room: str, user_id: str) -> bool:
        muted = self.muted.get(room, ())
        return user_id in muted or EVERY_AGENT in muted

    def set_muted(self, room: str, agent: str, muted: bool) -> None:
        chosen = self.muted.setdefault(room, set())
        if muted:
            chosen.add(agent)
        else:
            chosen.discard(agent)
        if not chosen:
            del self.muted[room]

    # -- the loop breaker ------------------------------------------------------------
    def note(self, room: str, seq: int, by_agent: bool) -> None:
        """A message of `room` (each seen once: every agent in the room is written it)."""
        last, run = self.runs.get(room, (0, 0))
        if seq <= last:
            return
        if by_agent:
            self.runs[room] = (seq, run + 1)
        else:
            self.runs.pop(room, None)  # a person spoke: agents may take turns again

    def check_turn(self, room: str) -> None:
        limit = self.limits.max_consecutive_turns
        if self.runs.get(room, (0, 0))[1] >= limit:
            raise p.limit_exceeded(
                "agent_max_consecutive_turns",
                limit,
                f"not sent: the last {limit} messages in room {room!r} are agents'; wait for a person to speak",
            )

    # -- budgets ---------------------------------------------------------------------
    def charge(self, agent: str, size: int) -> None:
        """Count one message of `size` bytes of `agent`, or refuse it naming the option."""
        buckets = self.budgets.get(agent)
        if buckets is None:
            if len(self.budgets) >= MAX_TRACKED:
                for key in [k for k, (m, b) in self.budgets.items() if m.full and b.full]:
                    del self.budgets[key]
            limits = self.limits
            buckets = self.budgets[agent] = (
                TokenBucket(limits.messages_per_minute / 60.0, max(1, int(limits.messages_per_minute))),
                TokenBucket(limits.bytes_per_minute / 60.0, max(1, limits.bytes_per_minute)),
            )
        messages, octets = buckets
        if size > octets.burst:
            raise p.limit_exceeded(
                "agent_bytes_per_minute", self.limits.bytes_per_minute, f"not sent: {size} bytes is more than an agent may send"
            )
        if messages.wait(1.0) > 0:
            raise p.limit_exceeded(
                "agent_messages_per_minute",
                self.limits.messages_per_minute,
                f"not sent: {agent} sent too many messages; send again in {messages.wait(1.0):.0f} s",
            )
        if octets.wait(size) > 0:
            raise p.limit_exceeded(
                "agent_bytes_per_minute",
                self.limits.bytes_per_minute,
                f"not sent: {agent} sent too many bytes; send again in {octets.wait(size):.0f} s",
            )
        messages.take(1.0)
        octets.take(size)
