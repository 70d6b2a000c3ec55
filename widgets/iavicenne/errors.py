"""What can go wrong, as exceptions whose message says what to fix.

Every error of the client and of peer links is a `ClientError`. The server's refusals
are `RequestFailed` (its ``code`` is one of `iavicenne_ext.protocol.ErrorCode`), made by
`error_from` as the subclass a caller may want to catch (`NameTaken`, `UnknownPeer`,
`Superseded`). Peer links fail with a `PeerLinkError`. The browser client
(``static/errors.js``) has the same classes under the same names.
"""

from __future__ import annotations

from typing import Any

from iavicenne_ext import protocol as p


class ClientError(Exception):
    """Something the client cannot do; the message says what to fix."""


class ServerNotFound(ClientError):
    """No server given and none found in the environment or the running-server list."""


class ServerUnreachable(ClientError):
    """Nothing answers at the server's address (refused, unresolvable, timed out)."""


class AuthenticationError(ClientError):
    """The server refused the token (HTTP 403)."""


class ConnectionClosed(ClientError):
    """The client was closed, or stopped for good after a fatal error."""


class RequestFailed(ClientError):
    """The server answered a request with an error frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.code: str = frame.get("code") or ""
        super().__init__(f"{frame.get('message', 'request failed')} (code {self.code or '?'})")


class NameTaken(RequestFailed):
    """The user_id or peer_id is held in that room by another user."""


class UnknownPeer(RequestFailed):
    """The target of a relay or a direct message is not in the room."""


class Superseded(RequestFailed):
    """A newer connection of the same user took this peer_id over; this one stopped."""


_REFUSALS: dict[str, type[RequestFailed]] = {
    p.ErrorCode.NAME_TAKEN: NameTaken,
    p.ErrorCode.UNKNOWN_PEER: UnknownPeer,
    p.ErrorCode.UNKNOWN_USER: UnknownPeer,
    p.ErrorCode.SUPERSEDED: Superseded,
}


def error_from(frame: dict[str, Any]) -> RequestFailed:
    """The exception for an ``error`` frame: the subclass its ``code`` names, else `RequestFailed`."""
    return _REFUSALS.get(frame.get("code") or "", RequestFailed)(frame)


# -- peer links ---------------------------------------------------------------------------
class PeerLinkError(ClientError):
    """A peer link could not be opened or used."""


class PeerUnreachable(PeerLinkError):
    """No network path to the peer (ICE failed) or it did not answer in time."""


class PeerLinkClosed(PeerLinkError):
    """The link is closed (by either side); pending sends and receives end with this.

    `cut_transfer` is True when it closed in the middle of a transfer: something was lost.
    """

    cut_transfer: bool = False


class PeerLeft(PeerLinkClosed):
    """The peer left the signaling room (its kernel stopped, it closed, it lost the server)."""


class TransferRefused(PeerLinkError):
    """A transfer was refused by its receiver (too large for it, or not what it declared).

    The receiver's ``recv`` raises it in place of the payload (the link stays open and
    the next payload follows); the sender's ``send`` raises it with the receiver's reason.
    """

    def __init__(self, message: str, transfer: int | None = None) -> None:
        super().__init__(message)
        self.transfer = transfer


__all__ = [
    "AuthenticationError",
    "ClientError",
    "ConnectionClosed",
    "NameTaken",
    "PeerLeft",
    "PeerLinkClosed",
    "PeerLinkError",
    "PeerUnreachable",
    "RequestFailed",
    "ServerNotFound",
    "ServerUnreachable",
    "Superseded",
    "TransferRefused",
    "UnknownPeer",
    "error_from",
]
