"""REST endpoints: which rooms exist and who is in them."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .. import protocol as p
from ..broker.base import BrokerUnavailable
from ..rooms import RoomHub
from .base import AUTH_RESOURCE


class _RoomsAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, *, hub: RoomHub) -> None:
        self.hub = hub

    async def prepare(self) -> None:  # type: ignore[override]  # APIHandler's, which drops JupyterHandler's keyword
        try:
            await super().prepare()
        except web.HTTPError as error:
            # APIHandler answers a foreign Origin with 404, which reads as a missing room;
            # refuse it as the room socket does, with 403 and the reason
            if error.status_code == 404 and self.current_user is not None and not self.check_origin():
                raise web.HTTPError(403, "cross-origin request refused: Origin does not match Host") from None
            raise


class RoomListHandler(_RoomsAPIHandler):
    """`GET {base_url}iavicenne/api/rooms`: rooms with members now, and their counts."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        try:
            rooms = await self.hub.rooms()
        except BrokerUnavailable as error:  # Redis down: say so, not a 500 with a traceback
            raise web.HTTPError(503, str(error)) from None
        self.finish(
            json.dumps(
                {
                    "rooms": [
                        {"room": name, "members": len(members), "connections": sum(m.connections for m in members)}
                        for name, members in sorted(rooms.items())
                    ]
                }
            )
        )


class RoomMembersHandler(_RoomsAPIHandler):
    """`GET {base_url}iavicenne/api/rooms/<room>`: one room's members with their presence state."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, room: str) -> None:
        try:
            p.check_name(room, "room")
        except p.ProtocolError as error:
            raise web.HTTPError(400, error.message) from None
        try:
            if not await self.hub.room_exists(room):
                raise web.HTTPError(404, f"no room {room!r}")
            members = await self.hub.members(room)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        self.finish(json.dumps({"room": room, "members": [m.to_json() for m in members]}))
