"""`GET {base_url}iavicenne/api/config`: where this server's clients find the rooms.

On a plain Jupyter server (or a room service) the rooms are here. In a user's server under
JupyterHub they are in the room service, which the server looks up in the Hub's API
(`iavicenne_ext.hub`): kernels connect to ``rooms_url`` with their own Hub token, browsers
open ``page_url`` through the Hub's proxy.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..hub import RoomServiceLocator, RoomServiceUnavailable, RoomsLocation
from . import AUTH_RESOURCE


class RoomsConfigHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, *, locator: RoomServiceLocator | None = None) -> None:
        self.locator = locator  # None: the rooms are in this server

    async def location(self) -> RoomsLocation:
        """Where the rooms are; HTTP 503 naming the setting to fix when the Hub does not say."""
        if self.locator is None:
            serverapp = self.serverapp
            assert serverapp is not None  # a handler of a running server
            return RoomsLocation(rooms_url=serverapp.connection_url, page_url=f"{self.base_url}iavicenne/")
        try:
            return await self.locator.locate()
        except RoomServiceUnavailable as error:
            self.log.warning("iavicenne: no room service: %s", error)
            raise web.HTTPError(503, str(error)) from None

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        self.finish(json.dumps((await self.location()).public()))
