"""Frames: the endpoints, the frame types of each, and the envelope every frame shares.

The server handlers and the Python client (``iavicenne``) take these names from here, and
the browser client from ``static/protocol.js``, which is emitted from this package
(``python -m iavicenne_ext.protocol_js``; a test fails when the two drift). The seed's
frames are kept as they are (``type`` strings, field names, error messages); everything
this project adds is a new field or a new type. Every frame the server writes is built by
`build` (``type`` first, ``timestamp`` last); every client frame is read by
`parse_request`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

from .errors import ErrorCode, ProtocolError
from .names import check_name

# -- endpoints, relative to the server's base_url -----------------------------------
ROOMS_PATH = "iavicenne/ws/mcp"
SIGNALING_PATH = "iavicenne/ws/signaling"
REST_PATH = "iavicenne/api/"
# AI agents over the Model Context Protocol (streamable HTTP; docs/agents.md)
MCP_PATH = "iavicenne/mcp"

# -- frame types: room endpoint ------------------------------------------------------
CONNECT = "connect"
JOIN_ROOM = "join-room"
LEAVE_ROOM = "leave-room"
MESSAGE = "message"
DISCONNECT = "disconnect"
ROOM_JOINED = "room-joined"
ROOM_LEFT = "room-left"
USER_JOINED = "user-joined"
USER_LEFT = "user-left"
ERROR = "error"
# additions
PRESENCE = "presence"
DIRECT_MESSAGE = "direct-message"
ACK = "ack"
SHARED = "shared"  # the room's shared document (Yjs sync messages): see sync.py
# rooms of thousands (docs/protocol.md, "Large rooms"): the next page of a room's members,
# and one frame per room and tick summing the presence changes (for who asked for it)
LIST_MEMBERS = "list-members"
MEMBERS = "members"
PRESENCE_BATCH = "presence-batch"
# a room's owner mutes, unmutes, removes or readmits a member (payload: username, action);
# the room is told with ``moderated`` (room, username, action, by)
MODERATE = "moderate"
MODERATED = "moderated"

# a kept message changed (docs/protocol.md, "Edits, deletions, replies"): its author edits
# or deletes it (a room's owner deletes any) by its seq; the room gets the notice live and
# the history keeps the message as it now is (a deleted one without its text)
EDIT_MESSAGE = "edit-message"
DELETE_MESSAGE = "delete-message"
MESSAGE_EDITED = "message-edited"
MESSAGE_DELETED = "message-deleted"
# each person's read position in a room: `read` sets it, `unread` tells every connection
# of that identity in the room (and answers the `read`)
READ = "read"
UNREAD = "unread"
#: the field of a `message` request naming the seq it replies to; the kept message then
#: carries `reply` (the seq, the replied-to author as verified, and a quote)
REPLY_TO = "reply_to"
#: the longest quote of the replied-to message's ``content`` a reply carries (characters)
REPLY_QUOTE_MAX_LENGTH = 140

# continuity (docs/protocol.md, "Continuity"): the rooms an identity is in, remembered by the
# server (asked for, and forgotten, by name), and kept direct messages replayed on join
LIST_MY_ROOMS = "list-my-rooms"
MY_ROOMS = "my-rooms"
FORGET_ROOM = "forget-room"
ROOM_FORGOTTEN = "room-forgotten"

ROOM_REQUESTS = frozenset(
    {
        CONNECT,
        JOIN_ROOM,
        LEAVE_ROOM,
        MESSAGE,
        DISCONNECT,
        PRESENCE,
        DIRECT_MESSAGE,
        SHARED,
        LIST_MEMBERS,
        EDIT_MESSAGE,
        DELETE_MESSAGE,
        READ,
        MODERATE,
        LIST_MY_ROOMS,
        FORGET_ROOM,
    }
)


class ModerationAction:
    """A ``moderate`` request's ``action``: what a room's owner does to one member (by username).

    Kept with the room's access record, so a reconnect does not lift it. A muted member's
    room messages are refused (``muted``); a removed one leaves the room and may not enter
    it again until readmitted (or, in a private room, invited again).
    """

    MUTE = "mute"
    UNMUTE = "unmute"
    REMOVE = "remove"
    READMIT = "readmit"


class LeftReason:
    """Why the server sent ``room-left`` without being asked (its optional ``reason``)."""

    # the owner removed this identity from a private room, or deleted the room's member list
    REMOVED = "removed"


class AccessKind:
    """Who may enter a room (REST ``access``): anyone, a Hub group's members, or its member list."""

    PUBLIC = "public"  # anyone authenticated: a room without an access record
    GROUP = "group"  # the members of one group (JupyterHub's groups)
    PRIVATE = "private"  # its owner and the usernames the owner invited


# -- frame types: signaling endpoint -------------------------------------------------
JOIN = "join"
LEAVE = "leave"
JOINED = "joined"
PEER_JOINED = "peer-joined"
PEER_LEFT = "peer-left"
OFFER = "offer"
ANSWER = "answer"
ICE_CANDIDATE = "ice-candidate"
RELAYED = (OFFER, ANSWER, ICE_CANDIDATE)
#: the payload field that carries each relayed type's body (and is relayed under that name)
RELAY_BODY = {OFFER: "offer", ANSWER: "answer", ICE_CANDIDATE: "candidate"}
# A peer link's frames through the server when no direct path opens (the notebook client's
# `iavicenne.relay`): addressed like an offer (payload.target_peer_id), the body in
# payload.data (a JSON object); the server forwards it, with source_peer_id and
# source_identity, to the target peer's signaling connection only: no history, no copy to
# the user's other connections. It counts in the identity's bytes per second as any frame.
RELAY = "relay"
RELAY_DATA = "data"
#: the largest relay frame (as the server forwards it, encoded) a relay carries; above it:
#: limit-exceeded, and the socket goes on (a frame over max_frame_bytes closes it instead).
#: Room for a 192 KiB chunk as base64 (4/3) or as text that JSON escapes to twice its size.
RELAY_MAX_BYTES = 768 * 1024
SIGNALING_REQUESTS = frozenset({JOIN, LEAVE, *RELAYED, RELAY})
# The hub carries signaling rooms beside chat rooms under this prefix; no valid room
# name contains '/', so "signaling/r1" can never be the chat room "r1" (or any other).
SIGNALING_ROOM_PREFIX = "signaling/"


#: the longest ``ref`` a client may give a request (echoed in the answer)
REF_MAX_LENGTH = 128


def now_iso() -> str:
    """The ``timestamp`` every server frame carries (ISO 8601, UTC)."""
    return datetime.now(timezone.utc).isoformat()


class Raw(bytes):
    """A field value that is already JSON (a presence state, a member list): `encode`
    writes it into the frame as it is, so what was encoded once is never encoded again."""

    __slots__ = ()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(frame: dict[str, Any]) -> bytes:
    """Encode a server frame once; the bytes are then written to every recipient.

    `Raw` values (at the top level of `frame`) are spliced in without re-encoding.
    """
    for value in frame.values():
        if type(value) is Raw:
            # one join: a Raw may be megabytes (a whole shared document), each copy costs
            parts = [b"{"]
            for key, item in frame.items():
                parts += (b"," if len(parts) > 1 else b"", _dumps(key), b":", item if type(item) is Raw else _dumps(item))
            parts.append(b"}")
            return b"".join(parts)
    return _dumps(frame)


def raw_list(items: Iterable[bytes]) -> Raw:
    """A JSON array of already encoded items."""
    return Raw(b"[" + b",".join(items) + b"]")


def with_seq(seq: int, frame: bytes) -> bytes:
    """Put ``seq`` first into an already encoded frame (``{...}``) without re-encoding it.

    The broker assigns ``seq`` at publish time (in Redis, inside the script that also
    stores and publishes the frame), so the frame is encoded before its seq is known.
    """
    return b'{"seq":%d,' % seq + frame[1:]


def build(kind: str, *, ref: str | None = None, **fields: Any) -> dict[str, Any]:
    """A server frame: ``type`` first, then `fields` in order, then ``ref``, then ``timestamp``.

    Every frame the server writes is built here, so every frame has the same shape: a
    client reads ``ref`` to match its request and ``timestamp`` is always last.
    """
    frame: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        frame["ref"] = ref
    frame["timestamp"] = now_iso()
    return frame


def encoded(kind: str, *, ref: str | None = None, **fields: Any) -> bytes:
    """`build` and `encode` in one step, for a frame written as it is built."""
    return encode(build(kind, ref=ref, **fields))


def error_frame(code: str, message: str, ref: str | None = None, **extra: Any) -> dict[str, Any]:
    return build(ERROR, ref=ref, message=message, code=code, **extra)


#: the presence state of a connection that set none
EMPTY_STATE = Raw(b"{}")


def presence_frame(
    kind: str, room: str, user_id: str, identity: dict[str, Any], state: bytes = EMPTY_STATE, connections: int | None = None
) -> bytes:
    """A ``user-joined``, ``presence`` or ``user-left`` frame (the last without ``state``).

    `state` is the encoded presence state, as the broker keeps it: the user's, folded over
    its connections (the newest set). `connections`: how many connections the user has in
    the room now (added; omitted when None).
    """
    if kind == USER_LEFT:
        return encoded(kind, user_id=user_id, room=room, identity=identity)
    if connections is None:
        return encoded(kind, user_id=user_id, room=room, identity=identity, state=Raw(state))
    return encoded(kind, user_id=user_id, room=room, identity=identity, state=Raw(state), connections=connections)


def with_direct_seq(direct_seq: int, frame: bytes) -> bytes:
    """Put ``direct_seq`` first into an encoded ``direct-message`` frame (as `with_seq`): its
    position among the room's kept direct messages (docs/protocol.md, "Continuity")."""
    return b'{"direct_seq":%d,' % direct_seq + frame[1:]


#: join-room payload field: the last ``direct_seq`` the client has (its kept direct
#: messages after it are replayed); room-joined answers the room's last one as ``direct_seq``
DIRECT_SINCE = "direct_since"
DIRECT_SEQ = "direct_seq"


@dataclass(frozen=True, slots=True)
class Request:
    """A client frame that passed the envelope checks: a known type, an object payload."""

    type: str
    payload: dict[str, Any]
    room: str | None
    ref: str | None
    raw: dict[str, Any]


def _not_json(constant: str) -> NoReturn:
    # Python reads NaN and Infinity, but they are not JSON: echoed to a browser, its
    # JSON.parse would fail on every frame of the room
    raise ValueError(f"{constant} is not JSON")


def _finite(number: str) -> float:
    value = float(number)
    if math.isinf(value):  # 1e400 reads as infinity: not JSON once echoed, as above
        raise ValueError(f"{number[:32]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)

# A \uD800-\uDFFF escape decodes to a lone surrogate unless it is half of a valid pair;
# such a string cannot be encoded as UTF-8, so every frame that carries it would fail
# later (and a presence state holding one would break the room's snapshot for everyone).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(frame: Any) -> bool:
    # any JSON value, not only an object: '"\\ud800"' is a frame too (refused below as
    # not an object, but as not Unicode first, so that it is told the same way everywhere)
    try:
        _dumps(frame)
    except UnicodeEncodeError:
        return False
    return True


def parse_request(data: str | bytes, known_types: frozenset[str]) -> Request:
    """Parse and check the envelope of one client frame, or raise `ProtocolError`.

    The envelope is ``{"type": str, "payload": object?, "room": str?, "ref": str?}``;
    the checks of each type's payload live with the handler of that type.
    """
    if isinstance(data, bytes):
        raise ProtocolError(ErrorCode.BINARY_FRAME, "Binary frames are not supported; send JSON text")
    try:
        frame = _DECODER.decode(data)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_JSON, "Invalid JSON format") from None
    if _SURROGATE_ESCAPE.search(data) and not _encodable(frame):
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            "Invalid JSON format: a \\u escape is a lone surrogate, not a Unicode character; send UTF-8 text",
        )
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.INVALID_FRAME, "A frame must be a JSON object")
    ref = frame.get("ref")
    if ref is not None and not (isinstance(ref, str) and 0 < len(ref) <= REF_MAX_LENGTH):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"ref must be a string of 1 to {REF_MAX_LENGTH} characters")
    try:
        return _check_envelope(frame, ref, known_types)
    except ProtocolError as error:
        error.ref = ref  # so the client can tell which of its requests failed
        raise


def _check_envelope(frame: dict[str, Any], ref: str | None, known_types: frozenset[str]) -> Request:
    kind = frame.get("type")
    if not kind:
        raise ProtocolError(ErrorCode.TYPE_REQUIRED, "Message type is required")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "type must be a string")
    if kind not in known_types:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind[:64]}")
    payload = frame.get("payload")
    if payload is None:
        payload = {}
    elif not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "payload must be a JSON object")
    room = frame.get("room")
    room = check_name(room, "room") if room is not None and room != "" else None
    return Request(kind, payload, room, ref, frame)
