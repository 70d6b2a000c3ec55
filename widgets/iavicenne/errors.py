"""What can go wrong, as exceptions whose message says what to fix.

Every error of the client and of peer links is a `ClientError`. The server's refusals
are `RequestFailed` (its ``code`` is one of `iavicenne_protocol.ErrorCode`), made by
`error_from` as the subclass a caller may want to catch (`NameTaken`, `UnknownPeer`,
`Superseded`, `Forbidden`); the REST API's refusals (creating, inviting) are the same
classes, made by `http_error` from the server's JSON answer. Peer links fail with a
`PeerLinkError`; `PeerIdentityMismatch` when the server says the other end is not who
holds that name in the room. The browser client
(``static/errors.js``) has the same classes under the same names.
"""

from __future__ import annotations

import json
from typing import Any

import iavicenne_protocol as p


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


class Forbidden(RequestFailed):
    """The room is private (or a group's) and we are not a member, or only its owner may do that."""


_REFUSALS: dict[str, type[RequestFailed]] = {
    p.ErrorCode.FORBIDDEN: Forbidden,
    p.ErrorCode.NAME_TAKEN: NameTaken,
    p.ErrorCode.UNKNOWN_PEER: UnknownPeer,
    p.ErrorCode.UNKNOWN_USER: UnknownPeer,
    p.ErrorCode.SUPERSEDED: Superseded,
}


def error_from(frame: dict[str, Any]) -> RequestFailed:
    """The exception for an ``error`` frame: the subclass its ``code`` names, else `RequestFailed`."""
    return _REFUSALS.get(frame.get("code") or "", RequestFailed)(frame)


def http_error(status: int, body: bytes | str | None, url: str) -> ClientError:
    """The exception for a REST answer with HTTP `status`: the server's JSON ``{"error":
    code, "message": ...}`` as the `RequestFailed` subclass its code names; a 401 or 403
    without a sentence of the server's (Jupyter's own refusal: a wrong token, no login) as
    `AuthenticationError`."""
    answer: Any = None
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    said = answer.get("message") if isinstance(answer, dict) else None
    # Jupyter's own refusal of the credentials comes with no sentence of ours (its message
    # is the bare status): that is a wrong token or no login, not a room's refusal
    jupyters_own = status in (401, 403) and (not said or str(said).strip() in (str(status), str(answer.get("reason"))))
    if isinstance(answer, dict) and isinstance(answer.get("error"), str) and not jupyters_own:
        frame = {"code": answer["error"], "message": str(answer.get("message") or f"HTTP {status}"), "status": status}
        frame.update({key: answer[key] for key in ("option", "limit") if key in answer})
        return error_from(frame)
    if status in (401, 403):
        return AuthenticationError(f"{url} refused the request (HTTP {status}): check the token (or log in)")
    return RequestFailed({"code": "", "message": f"HTTP {status}: {said or url}", "status": status})


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


class PeerIdentityMismatch(PeerLinkError):
    """The other end of a link is not the identity that holds that name in the room's
    presence (the server vouches for who answers: ``source_identity``); the link is
    refused. `expected` and `found` are the public identities (dicts, or None)."""

    def __init__(self, message: str, expected: dict[str, Any] | None = None, found: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found


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
    "Forbidden",
    "NameTaken",
    "PeerIdentityMismatch",
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
    "http_error",
]
