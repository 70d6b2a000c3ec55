"""The MCP tools an agent has (the official SDK's `MCPServer`), each a thin call into its
`AgentSession` (session.py): arguments typed (the SDK checks them and says which is wrong),
refusals as tool errors that say what to do, never a traceback.

The session's agent is made at its first tool call, from who authenticated the HTTP
request (http_bridge.py puts the identity into the ASGI scope) and the agent's name
(``?agent=`` on the URL, else the MCP client's name), and it leaves its rooms when the MCP
session ends (the connection's exit stack).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import iavicenne_protocol as p

from ..broker.base import BrokerUnavailable
from ..handlers.budgets import Quotas
from ..identity import Identity
from ..rooms import RoomHub
from ..shared_state import SharedDocs
from .member import AgentMember, agent_name_of
from .rules import EVERY_AGENT, AgentRules
from .session import AgentSession

#: the ASGI scope keys http_bridge.py fills: the verified identity, and the agent's name
IDENTITY_SCOPE_KEY = "iavicenne.identity"
AGENT_SCOPE_KEY = "iavicenne.agent"
_SESSION_STATE_KEY = "iavicenne.agent_session"
_numbers = itertools.count(1)
T = TypeVar("T")

INSTRUCTIONS = """\
You are a member of iAvicenne rooms, shown as "<your name> (for <the person whose token you use>)".
You may enter only the rooms that person may. You speak in a room only to answer a message that
mentions you (wait_for_mention, then send_message with reply_to its seq; one answer a mention) or
a direct message to you (send_direct), unless the room's owner opened the floor to you. Budgets
and a limit on agents' turns in a row apply; a refusal says which option sets it."""


class AgentTools:
    """The `MCPServer` of this Jupyter server's agents, over its room hub."""

    def __init__(
        self, hub: RoomHub, quotas: Quotas, rules: AgentRules, owner_name: str, shared_docs: SharedDocs | None = None
    ) -> None:
        self.hub = hub
        self.shared_docs = shared_docs
        self.quotas = quotas
        self.rules = rules
        self.owner_name = owner_name
        self.server: MCPServer[Any] = MCPServer("iavicenne", instructions=INSTRUCTIONS, warn_on_duplicate_tools=False)
        self._register()

    async def session_of(self, ctx: Context) -> AgentSession:
        """This MCP session's agent, made at its first tool call."""
        connection = getattr(ctx.request_context.session, "_connection", None)
        state: dict[str, Any] = connection.state if connection is not None else {}
        session = state.get(_SESSION_STATE_KEY)
        if isinstance(session, AgentSession):
            return session
        request = ctx.request_context.request
        scope: dict[str, Any] = getattr(request, "scope", {}) or {}
        who = scope.get(IDENTITY_SCOPE_KEY)
        if not isinstance(who, Identity):
            raise ToolError("not authenticated: connect with a Jupyter token (Authorization: Bearer <token>)")
        params = connection.client_params if connection is not None else None
        client_name = params.client_info.name if params is not None and params.client_info is not None else None
        agent = agent_name_of(scope.get(AGENT_SCOPE_KEY) or client_name)
        member = AgentMember.of(f"{self.hub.server_id}:mcp-{next(_numbers)}", who, agent)
        account = self.quotas.open(who.username)
        if account is None:
            limit = self.quotas.limits.max_connections_per_identity
            error = p.limit_exceeded(
                "max_connections_per_identity", limit, f"too many connections: {who.username} has {limit} open; close one first"
            )
            raise ToolError(_said(error))
        session = AgentSession(self.hub, self.quotas, self.rules, member, account, self.owner_name, self.shared_docs)
        state[_SESSION_STATE_KEY] = session
        if connection is not None:
            connection.exit_stack.push_async_callback(session.close)
        return session

    def _register(self) -> None:
        tool = self.server.tool
        call = self._call

        @tool(description="Who this agent is in the rooms: its user_id, identity, and the rooms it is in.")
        async def whoami(ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: _done(s.whoami()))

        @tool(description="The rooms this agent may enter (its person's), with their access and member count.")
        async def list_rooms(ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: _wrap("rooms", s.list_rooms()))

        @tool(description="Join a room (as a member of kind agent); gives the room's last seq.")
        async def join_room(room: str, ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: s.join(_room(room)))

        @tool(description="Leave a room.")
        async def leave_room(room: str, ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: s.leave(_room(room)))

        @tool(description="Who is in a room: user_id, username, display name, kind (person or agent), status.")
        async def members(room: str, ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: _wrap("members", s.members(_room(room))))

        @tool(
            description="A joined room's messages after seq `since` (0: from the oldest kept), at most `limit`; "
            "`next` is the seq to read from next, `gap` true when older messages were no longer kept."
        )
        async def read_messages(room: str, ctx: Context, since: int = 0, limit: int = 50) -> dict[str, Any]:
            return await call(ctx, lambda s: s.read(_room(room), since, limit))

        @tool(
            description="Wait (up to timeout_s seconds) for a message that mentions this agent (@name) or a direct "
            "message to it, in `room` or any joined room; answer it with send_message(reply_to=seq) or send_direct."
        )
        async def wait_for_mention(ctx: Context, room: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
            return await call(ctx, lambda s: s.wait_for_mention(_room(room) if room is not None else None, timeout_s))

        @tool(
            description="Post to a joined room. Agents post only to answer a mention: reply_to is its seq (each "
            "mention is answered once), unless the room's owner opened the floor to this agent."
        )
        async def send_message(room: str, text: str, ctx: Context, reply_to: int | None = None) -> dict[str, Any]:
            return await call(ctx, lambda s: s.send(_room(room), text, reply_to))

        @tool(description="Answer a direct message from member `user` (its user_id) with a direct message.")
        async def send_direct(user: str, text: str, ctx: Context, room: str | None = None) -> dict[str, Any]:
            return await call(ctx, lambda s: s.send_direct(_name(user, "user"), text, _room(room) if room else None))

        @tool(description="Set this agent's status (its presence state), in `room` or every joined room.")
        async def set_status(status: str, ctx: Context, room: str | None = None) -> dict[str, Any]:
            return await call(ctx, lambda s: s.set_status(status, _room(room) if room else None))

        @tool(
            description="For a room's owner: open (or close, open=false) the room's floor to an agent's user_id, or "
            f"to every agent with {EVERY_AGENT!r}: it may then post without being mentioned."
        )
        async def open_floor(room: str, ctx: Context, agent: str = EVERY_AGENT, open: bool = True) -> dict[str, Any]:
            return await call(ctx, lambda s: s.open_floor(_room(room), agent, open))

        @tool(description="A joined room's shared document (the Yjs map every member edits), as JSON.")
        async def get_shared(room: str, ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: s.get_shared(_room(room)))

        @tool(
            description="Set one key of a joined room's shared document to a JSON value (objects and arrays become "
            "shared maps and arrays), while a mention of this agent waits for its answer or the floor is open."
        )
        async def set_shared(room: str, key: str, value: Any, ctx: Context) -> dict[str, Any]:
            return await call(ctx, lambda s: s.set_shared(_room(room), key, value))

        @tool(
            description="For a room's owner: mute (or let speak again, muted=false) an agent's user_id, or every "
            f"agent with {EVERY_AGENT!r}: it may then not post there at all, mentioned or not."
        )
        async def mute_agent(room: str, ctx: Context, agent: str = EVERY_AGENT, muted: bool = True) -> dict[str, Any]:
            return await call(ctx, lambda s: s.mute(_room(room), agent, muted))

    async def _call(self, ctx: Context, work: Callable[[AgentSession], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        session = await self.session_of(ctx)
        try:
            return await work(session)
        except p.ProtocolError as error:
            raise ToolError(_said(error)) from None
        except BrokerUnavailable as error:
            raise ToolError(f"{p.ErrorCode.UNAVAILABLE}: not done, the rooms are unavailable ({error}); try again") from None


def _said(error: p.ProtocolError) -> str:
    """A refusal as the agent reads it: its code first, then what to do."""
    return f"{error.code}: {error.message}"


def _room(room: str) -> str:
    return p.check_name(room, "room")


def _name(value: str, field: str) -> str:
    return p.check_name(value, field)


async def _done(value: T) -> T:
    return value


async def _wrap(key: str, work: Awaitable[Any]) -> dict[str, Any]:
    return {key: await work}
