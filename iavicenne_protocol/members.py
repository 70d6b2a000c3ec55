"""Rooms of thousands: how the others' presence changes arrive, and the pages of a room's
member list.

docs/protocol.md, "Large rooms": a client may ask for presence changes batched per tick,
and for a room's members a page at a time (a size, and a cursor to the next page).
"""

from __future__ import annotations

from typing import Any

from .errors import ErrorCode, ProtocolError
from .names import is_name


class PresenceMode:
    """``join-room`` ``payload.presence``: how the other members' presence changes arrive."""

    # one user-joined / user-left / presence frame per change (the seed's way, the default)
    EACH = "each"
    # one presence-batch frame per room and tick (IAvicenne.presence_batch_interval)
    BATCHED = "batched"


#: the most members one room-joined or members frame may list when a client asks for more
#: (a list-members limit, a join-room members_limit, above it: invalid-field)
MAX_MEMBERS_PAGE = 10_000
#: a members cursor (``members_next``, list-members ``after``) is this prefix and the
#: user_id of the last member listed; "m:" alone is the start of the list
MEMBERS_CURSOR_PREFIX = "m:"


def members_cursor(user_id: str) -> str:
    """The cursor of a members page that ends with `user_id` (pages are in user_id order)."""
    return MEMBERS_CURSOR_PREFIX + user_id


def read_members_cursor(value: Any, field: str) -> str:
    """The user_id a members cursor points after ("" for the start), or `invalid-field`."""
    if isinstance(value, str) and value.startswith(MEMBERS_CURSOR_PREFIX):
        after = value[len(MEMBERS_CURSOR_PREFIX) :]
        if after == "" or is_name(after):
            return after
    shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
    raise ProtocolError(
        ErrorCode.INVALID_FIELD,
        f"{field} must be a members cursor, the members_next of an earlier page, not {shown}",
    )


def read_members_limit(value: Any, field: str) -> int:
    """A page size from a client: an integer from 0 to MAX_MEMBERS_PAGE, or `invalid-field`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MEMBERS_PAGE:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be an integer from 0 to {MAX_MEMBERS_PAGE}")
    return value


# -- AI agents as room members (docs/agents.md) ------------------------------------------


class MemberKind:
    """``identity.kind``: what a member is. Absent means a person (every seed client)."""

    PERSON = "person"
    # an AI agent connected over MCP (iavicenne/mcp) with a person's token: its identity is
    # that person's (``username``), its ``display_name`` "<agent> (for <username>)", and
    # ``identity.agent`` its name; clients badge its messages
    AGENT = "agent"


#: the identity fields an agent's frames carry beside username, name and display_name
IDENTITY_KIND = "kind"
IDENTITY_AGENT = "agent"
#: how an agent is shown: AGENT_DISPLAY_FORMAT.format(agent=..., username=...)
AGENT_DISPLAY_FORMAT = "{agent} (for {username})"
#: an agent's user_id in rooms: "<username>#<agent>" (the 'own' name policy's form)
AGENT_USER_ID_SEPARATOR = "#"
#: a message that names "@<agent>" or "@<agent's user_id>" in its text mentions that agent
MENTION_PREFIX = "@"


def is_agent(identity: Any) -> bool:
    """Whether a frame's ``identity`` is an agent's (set by the server, never by a client)."""
    return isinstance(identity, dict) and identity.get(IDENTITY_KIND) == MemberKind.AGENT
