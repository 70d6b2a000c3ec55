"""The ICE servers handed to peers in `joined`, with time-limited TURN credentials.

A TURN server must not be open to anyone, yet its password cannot be a secret shared
with every browser. The TURN REST scheme (draft-uberti-behave-turn-rest, what coturn's
``use-auth-secret`` / ``static-auth-secret`` accept) solves this: the Jupyter server and
the TURN server share a secret; each peer gets a username that carries its expiry time
and a password derived from it, which the TURN server checks with the same secret and
refuses once expired. Nothing is stored anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

TURN_SCHEMES = ("turn:", "turns:")


def turn_credentials(secret: str, name: str, ttl: float, now: float | None = None) -> tuple[str, str]:
    """``(username, credential)``: username ``"<expiry unix time>:<name>"``, credential
    ``base64(HMAC-SHA1(secret, username))``."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def is_turn(server: dict[str, Any]) -> bool:
    urls = server.get("urls")
    urls = [urls] if isinstance(urls, str) else (urls or [])
    return any(isinstance(url, str) and url.startswith(TURN_SCHEMES) for url in urls)


def ice_servers_for(
    servers: list[dict[str, Any]], name: str, *, turn_secret: str = "", turn_ttl: float = 86400.0
) -> list[dict[str, Any]]:
    """The configured servers as W3C ``RTCIceServer`` dicts for peer `name`.

    With `turn_secret`, a TURN entry that has no ``username`` of its own gets fresh
    credentials for `name`; entries with fixed credentials are handed out as configured.
    """
    handed: list[dict[str, Any]] = []
    for server in servers:
        server = dict(server)
        if turn_secret and is_turn(server) and not server.get("username"):
            server["username"], server["credential"] = turn_credentials(turn_secret, name, turn_ttl)
        handed.append(server)
    return handed


class IceConfig:
    """The app's ICE settings; `for_peer` gives the list one peer is handed."""

    def __init__(self, servers: list[dict[str, Any]], turn_secret: str = "", turn_ttl: float = 86400.0) -> None:
        self.servers = servers
        self.turn_secret = turn_secret
        self.turn_ttl = turn_ttl

    def for_peer(self, name: str) -> list[dict[str, Any]]:
        return ice_servers_for(self.servers, name, turn_secret=self.turn_secret, turn_ttl=self.turn_ttl)
