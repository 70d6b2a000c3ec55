"""What a notebook imports: the iAvicenne client, room widgets and peer links.

``from iavicenne import join`` gives the notebook API (`iavicenne.room`); it and the other
notebook-only names are loaded on first use, so a script that only needs the client
does not import ipywidgets, pandas or aiortc. Importing the package changes nothing in
other libraries.

The modules, each one concept (the browser client has the same ones, in JavaScript); the
names of the protocol are `iavicenne_protocol`'s, shared with the server:
``errors``, ``discovery`` (finding the server), ``delivery`` (outbox, seen set, seq
tracker), ``connection`` (the self-healing endpoint), ``events``, ``client`` (RoomClient),
``client_room`` (a joined room), ``rooms_api`` (create, invite, list), ``signaling``,
``wire`` (the peer-link format), ``link`` (what every peer link does), ``direct`` (a
WebRTC link), ``relay`` (a link through the server), ``peer`` (a peer's network of links),
``ice``, ``shared`` (the room's shared document, ``room.shared``); and for notebooks
``room`` (`join`), ``session`` (RoomSession) with its parts ``room_connection``,
``conversation``, ``member_connections``, ``room_links``, ``file_inbox``; ``connections``
(which of a member's connections a link goes to), ``peer_session``, ``peer_inbox``,
``files``, ``panels``, ``share``, ``background``.
"""

from typing import Any

from .client import Room, RoomClient, RoomsAPI, connect, create_room, list_rooms
from .connection import Backoff
from .discovery import ServerInfo, discover_server
from .errors import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    Forbidden,
    NameTaken,
    PeerIdentityMismatch,
    PeerLeft,
    PeerLinkClosed,
    PeerLinkError,
    PeerUnreachable,
    RequestFailed,
    ServerNotFound,
    ServerUnreachable,
    Superseded,
    TransferRefused,
    UnknownPeer,
)
from .events import Gap, Message, PeerEvent, PresenceEvent, Signal
from .signaling import SignalingClient

# name -> module (relative) that defines it, imported on first access (PEP 562). Peer
# links need aiortc (the `widgets` extra) and the notebook API ipywidgets: a script or a
# notebook that only chats does not pay for them.
_LAZY = {
    "join": ".room",
    "pick_name": ".room",
    "RoomSession": ".session",
    "PeerSession": ".peer_session",
    "PeerLink": ".direct",
    **dict.fromkeys(["PeerNetwork", "Progress"], ".peer"),
    "RelayLink": ".relay",
    **dict.fromkeys(["FileOffer", "FileNotReceived"], ".files"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iavicenne' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    *_LAZY,
    "AuthenticationError",
    "Backoff",
    "ClientError",
    "ConnectionClosed",
    "Forbidden",
    "Gap",
    "Message",
    "NameTaken",
    "PeerEvent",
    "PeerIdentityMismatch",
    "PeerLeft",
    "PeerLinkClosed",
    "PeerLinkError",
    "PeerUnreachable",
    "PresenceEvent",
    "RequestFailed",
    "Room",
    "RoomClient",
    "RoomsAPI",
    "ServerInfo",
    "ServerNotFound",
    "ServerUnreachable",
    "Signal",
    "SignalingClient",
    "Superseded",
    "TransferRefused",
    "UnknownPeer",
    "connect",
    "create_room",
    "discover_server",
    "list_rooms",
]
