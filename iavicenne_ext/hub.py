"""JupyterHub deployments: what kind of process this server is, and where its rooms are.

Under JupyterHub a user's server and its kernels are the user's own: whatever they hold,
the user can read and change. So they hold no broker credential and serve no rooms; the
rooms live in the room service, a Hub-managed service (`iavicenne_ext.service`) that is
the only process given the Redis URL and that authenticates every connection with the Hub.
A user server tells its kernels where that service is (`iavicenne/api/config`), asking
the Hub's API with its own token, and relays its pages' room sockets and REST calls there
with that token (`handlers/service_relay.py`): a page cannot get a credential of the
service's, and the server can only act as its own user.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

# the variables JupyterHub gives the servers it starts (users' and services' alike) ...
HUB_API_URL_VARIABLE = "JUPYTERHUB_API_URL"
HUB_TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
# ... and the one it gives only to the Hub-managed services it starts
HUB_SERVICE_VARIABLE = "JUPYTERHUB_SERVICE_NAME"
# set by the admin (c.Spawner.environment) where kernels must reach the service by
# another address than the one the Hub knows (e.g. through the proxy in Kubernetes)
ROOMS_URL_VARIABLE = "IAVICENNE_ROOMS_URL"
CONFIG_PATH = "iavicenne/api/config"


class Deployment(enum.Enum):
    """What kind of server this extension runs in."""

    SINGLE = "single"  # a plain Jupyter server: its owner's, no Hub
    USER_SERVER = "user-server"  # one user's server, started by JupyterHub
    ROOM_SERVICE = "room-service"  # a Hub-managed service: the Hub's, not a user's


def deployment_of(serverapp: Any) -> Deployment:
    """The kind of server `serverapp` is: from its identity provider (JupyterHub's
    authenticates with the Hub) and the variables the Hub gives the processes it starts."""
    provider = type(getattr(serverapp, "identity_provider", None))
    hub_provider = (provider.__module__ or "").partition(".")[0] == "jupyterhub"
    if not hub_provider or not os.environ.get(HUB_API_URL_VARIABLE):
        return Deployment.SINGLE
    if os.environ.get(HUB_SERVICE_VARIABLE):
        return Deployment.ROOM_SERVICE
    return Deployment.USER_SERVER


@dataclass(frozen=True, slots=True)
class RoomsLocation:
    """Where a client finds the rooms: what `iavicenne/api/config` answers."""

    rooms_url: str  # absolute base URL of the server holding the rooms, for kernels
    page_url: str  # the demo page there, as a path on the Hub's proxy, for browsers
    service: str = ""  # the Hub service's name, or "" when the rooms are in this server

    def public(self) -> dict[str, str]:
        return {"rooms_url": self.rooms_url, "page_url": self.page_url, "service": self.service}


class RoomServiceUnavailable(Exception):
    """The Hub does not tell this server where the room service is; the message says why
    and which setting fixes it."""


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class RoomServiceLocator:
    """Asks the Hub's API where the room service `service` is, with this server's token
    (which needs ``read:services!service=<service>``), and remembers it for `ttl` seconds."""

    def __init__(self, service: str, *, api_url: str, api_token: str, rooms_url: str = "", ttl: float = 60.0) -> None:
        self.service = service
        self.api_url = api_url
        self.api_token = api_token
        self.rooms_url = rooms_url  # the admin's address for kernels, if any
        self.ttl = ttl
        self._known: tuple[float, RoomsLocation] | None = None

    async def locate(self) -> RoomsLocation:
        if self._known is not None and time.monotonic() - self._known[0] < self.ttl:
            return self._known[1]
        model = await self._service_model()
        url, prefix = model.get("url"), model.get("prefix")
        if not url or not prefix:
            raise RoomServiceUnavailable(
                f"JupyterHub's service {self.service!r} has no URL, or this server's token may not read it: "
                f"give users 'read:services!service={self.service}' and add it to c.Spawner.server_token_scopes"
            )
        location = RoomsLocation(
            rooms_url=self.rooms_url or _join(_reachable(url), prefix),
            page_url=_join(prefix, "iavicenne/"),
            service=self.service,
        )
        self._known = (time.monotonic(), location)
        return location

    async def _service_model(self) -> dict[str, Any]:
        request = HTTPRequest(
            _join(self.api_url, f"services/{quote(self.service, safe='')}"),
            headers={"Authorization": f"token {self.api_token}"},
            connect_timeout=10,
            request_timeout=10,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as error:
            if error.code == 404:
                raise RoomServiceUnavailable(
                    f"JupyterHub has no service {self.service!r}: add the room service to c.JupyterHub.services "
                    "(README, 'Deploy on JupyterHub'), or set IAvicenne.room_service to its name"
                ) from None
            if error.code == 403:
                raise RoomServiceUnavailable(
                    f"this server's token may not read JupyterHub's service {self.service!r}: give users "
                    f"'read:services!service={self.service}' and add it to c.Spawner.server_token_scopes"
                ) from None
            raise RoomServiceUnavailable(f"JupyterHub's API answered HTTP {error.code} for service {self.service!r}") from None
        except OSError as error:
            raise RoomServiceUnavailable(f"JupyterHub's API at {self.api_url} is unreachable: {error}") from None
        model: dict[str, Any] = json.loads(response.body)
        return model


def _reachable(url: str) -> str:
    """A service listening on every interface is reached on loopback (as the Hub does)."""
    parts = urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::", ""):
        netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url
