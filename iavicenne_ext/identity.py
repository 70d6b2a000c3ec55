"""Who a connection is: the identity attached to everything it does, from who authenticated.

Never from anything the user controls (``$USER``, a ``user_id``, a header): from the
Jupyter server's identity provider, read in three ways (docs/protocol.md, "Identity"):

- **JupyterHub** (the user object has a ``hub_user`` dict: jupyterhub.singleuser's
  ``JupyterHubUser``, in a user server or in a Hub-managed service): the Hub user, for
  its token (kernels) and its cookie (browsers) alike; ``groups`` where the Hub grants
  them (``read:users:groups`` / ``read:groups``).
- **jupyter_server's stock providers** (exactly `IdentityProvider` or
  `PasswordIdentityProvider`): the server has one user, its owner. Jupyter names every
  token request and every cookie login a new random anonymous user; here all of them are
  the owner, ``IAvicenne.owner_name``, so one analyst's kernels and browser tabs are one
  identity. The same holds on any provider for a request that presents the server's own
  token: whoever holds it started the server.
- **any other provider** (a deployment's own): its user's username, name, display name
  and ``groups`` attribute, as it says.
"""

from __future__ import annotations

import getpass
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

#: the identity providers whose every authenticated request is the server's owner
STOCK_PROVIDERS = (IdentityProvider, PasswordIdentityProvider)


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified identity: `username` is the key (accounts, claims, room members)."""

    username: str
    name: str
    display_name: str
    groups: frozenset[str] = frozenset()

    def public(self) -> dict[str, Any]:
        """What frames carry as ``identity``; the groups are never sent to other people."""
        return {"username": self.username, "name": self.name, "display_name": self.display_name}


def default_owner_name() -> str:
    """The login name the server runs under: the default of ``IAvicenne.owner_name``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's uid without a passwd entry)
        return "owner"


def owner_name_of(handler: Any) -> str:
    """``IAvicenne.owner_name`` as the server's settings hold it (ExtensionApp's ``iavicenne_config``)."""
    config = handler.settings.get("iavicenne_config") or {}
    name = config.get("owner_name")
    return str(name) if name else default_owner_name()


def hub_user_of(user: Any) -> dict[str, Any] | None:
    """The Hub's model of the user when JupyterHub authenticated the request, else None."""
    hub_user = getattr(user, "hub_user", None)
    if isinstance(hub_user, dict) and isinstance(hub_user.get("name"), str) and hub_user["name"]:
        return hub_user
    return None


def _groups(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return frozenset()
    return frozenset(group for group in value if isinstance(group, str))


def presents_server_token(handler: Any) -> bool:
    """True when the request carries the server's own token (not a personal one).

    Being token-authenticated is not enough: providers with personal tokens (JupyterHub,
    or a deployment's own) mark their requests so too, and those users keep their identity.
    """
    provider = handler.identity_provider
    token = getattr(provider, "token", None)
    if not token or not provider.is_token_authenticated(handler):
        return False
    presented = provider.get_token(handler) or ""
    return hmac.compare_digest(presented.encode(), str(token).encode())


def identity_of(handler: Any, user: Any) -> Identity:
    """The identity of an authenticated request (`user` is the handler's ``current_user``)."""
    hub_user = hub_user_of(user)
    if hub_user is not None:
        name: str = hub_user["name"]
        display = getattr(user, "display_name", None) or name
        return Identity(name, name, str(display), _groups(hub_user.get("groups")))
    if type(handler.identity_provider) in STOCK_PROVIDERS or presents_server_token(handler):
        owner = owner_name_of(handler)
        return Identity(owner, owner, owner)
    username = str(user.username)
    return Identity(
        username,
        str(getattr(user, "name", None) or username),
        str(getattr(user, "display_name", None) or username),
        _groups(getattr(user, "groups", ())),
    )
