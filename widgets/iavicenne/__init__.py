"""What a notebook imports: the iAvicenne client, room widgets and peer links.

``from iavicenne import join`` gives the notebook API (`iavicenne.room`); it and the other
notebook-only names are loaded on first use, so a script that only needs the client
does not import ipywidgets, pandas or aiortc.
"""

from typing import Any

from . import client
from .client import *  # noqa: F403 - the client's names are this package's (client.__all__)

# name -> module (relative) that defines it, imported on first access (PEP 562). Peer
# links need aiortc (the `widgets` extra) and the notebook API ipywidgets: a script or a
# notebook that only chats does not pay for them.
_LAZY = {
    "join": ".room",
    "RoomSession": ".room",
    "PeerSession": ".peer_session",
    **dict.fromkeys(["PeerLeft", "PeerLink", "PeerLinkClosed", "PeerLinkError", "PeerNetwork", "PeerUnreachable", "Progress"], ".peer"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iavicenne' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [*_LAZY, *client.__all__]
