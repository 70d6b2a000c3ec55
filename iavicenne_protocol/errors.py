"""Refusals: the codes of error frames and of closed sockets, and `ProtocolError`.

Raising `ProtocolError` is the one way to refuse a request; the socket turns it into an
``error`` frame.
"""

from __future__ import annotations

from typing import Any


class ErrorCode:
    """Machine-readable ``code`` of an error frame (an addition; ``message`` stays the seed's)."""

    INVALID_JSON = "invalid-json"
    INVALID_FRAME = "invalid-frame"
    TYPE_REQUIRED = "type-required"
    UNKNOWN_TYPE = "unknown-type"
    BINARY_FRAME = "binary-frame"
    USER_ID_REQUIRED = "user-id-required"
    PEER_ID_REQUIRED = "peer-id-required"
    TARGET_REQUIRED = "target-required"
    ROOM_REQUIRED = "room-required"
    INVALID_FIELD = "invalid-field"
    NOT_IN_ROOM = "not-in-room"
    ALREADY_CONNECTED = "already-connected"
    NAME_TAKEN = "name-taken"
    # under the 'own' name policy (JupyterHub): a user_id / peer_id is the identity's name,
    # or "<name>#<suffix>"; any other is refused with this
    NAME_NOT_YOURS = "name-not-yours"
    # the room is private (or a group's) and this identity is not among its members
    FORBIDDEN = "forbidden"
    # REST (iavicenne/api/rooms): no such room for this caller (or not one it may see),
    # and a room that cannot get an access record (one exists, or it has people or history)
    UNKNOWN_ROOM = "unknown-room"
    ROOM_EXISTS = "room-exists"
    SUPERSEDED = "superseded"  # a newer connection of the same user took this peer_id over
    UNKNOWN_USER = "unknown-user"
    UNKNOWN_PEER = "unknown-peer"
    # edit-message, delete-message, a reply: no such kept message (never sent, trimmed from
    # the history, deleted, or of another life of the room)
    UNKNOWN_MESSAGE = "unknown-message"
    TOO_MANY_ROOMS = "too-many-rooms"
    RATE_LIMITED = "rate-limited"
    # the room's owner muted this identity in the room (``moderate``): its messages are refused
    MUTED = "muted"
    # a budget was reached; the frame names it: "option" (the IAvicenne traitlet that
    # raises it) and "limit" (its value)
    LIMIT_EXCEEDED = "limit-exceeded"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal-error"


# WebSocket close codes the server uses (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008  # slow consumer: outbound buffer over its limit
CLOSE_TOO_BIG = 1009  # frame larger than the configured limit
CLOSE_SUPERSEDED = 4000  # a newer connection of the same user took the peer_id over: do not reconnect


class ProtocolError(Exception):
    """A client request that cannot be served; becomes an ``error`` frame.

    Raising it is the one way to refuse a request: the socket turns it into an error frame
    with `code`, `message`, the request's `ref` and the extra `fields` (e.g. ``room``).
    """

    def __init__(self, code: str, message: str, ref: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref  # the request's ref, when the envelope got far enough to have one
        self.fields = fields


def limit_exceeded(option: str, limit: float, what: str, *, code: str = ErrorCode.LIMIT_EXCEEDED) -> ProtocolError:
    """A request refused by a budget: the error names the option that raises it.

    `what` says what was refused and what to do instead; the message ends with the option
    and its value, and the frame carries them as ``option`` and ``limit`` for programs.
    """
    shown = limit if isinstance(limit, int) else f"{limit:g}"
    return ProtocolError(code, f"{what} (limit: IAvicenne.{option} = {shown})", option=option, limit=limit)
