"""``PUT {base_url}iavicenne/api/rooms/<room>/agents/<agent>``: a room's owner, in a browser
or a notebook (no MCP client needed), opens the floor to an agent or mutes it.

``<agent>`` is an agent's user_id (``alice%23claude``, the ``#`` escaped) or ``*`` (every
agent); the body ``{"floor": true|false, "muted": true|false}`` (either or both). The
answer is the agent's standing in the room: ``{"room", "agent", "floor", "muted"}``. Only
the owner (of the room's access record; of a public room, the server's owner) may; a room
the caller may not enter is answered 404, as the other REST calls do.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

import iavicenne_protocol as p

from ..access import may_enter
from ..broker.base import BrokerUnavailable
from ..handlers import AUTH_RESOURCE
from ..handlers.rest import RoomBudgets, RoomsAPIError, _RoomsAPIHandler
from ..rooms import RoomHub
from .rules import EVERY_AGENT, AgentRules


class AgentStandingHandler(_RoomsAPIHandler):
    def initialize(self, *, hub: RoomHub, budgets: RoomBudgets, rules: AgentRules, owner_name: str) -> None:  # type: ignore[override]
        super().initialize(hub=hub, budgets=budgets)
        self.rules = rules
        self.owner_name = owner_name

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def put(self, room: str, agent: str) -> None:
        room = self.room_name(room)
        if agent != EVERY_AGENT:
            try:
                agent = p.check_name(agent, "agent")
            except p.ProtocolError as error:
                raise RoomsAPIError(400, error.code, error.message) from None
        body = self.body()
        changes: dict[str, bool] = {}
        for field in ("floor", "muted"):
            value: Any = body.get(field)
            if value is not None and not isinstance(value, bool):
                raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, f"{field} must be true or false")
            if value is not None:
                changes[field] = value
        if not changes:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, 'say "floor", "muted" or both (true or false)')
        try:
            access = await self.hub.access(room)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        if not may_enter(self.who, access):
            raise self.unknown(room)
        owner = access.owner if access is not None else self.owner_name
        if self.who.username != owner:
            raise RoomsAPIError(403, p.ErrorCode.FORBIDDEN, f"only the owner of room {room!r} ({owner}) decides for its agents")
        if "floor" in changes:
            self.rules.set_floor(room, agent, changes["floor"])
        if "muted" in changes:
            self.rules.set_muted(room, agent, changes["muted"])
        standing = {"floor": self.rules.floor_open(room, agent), "muted": self.rules.is_muted(room, agent)}
        self.finish_json({"room": room, "agent": agent, **standing})
