"""The wire protocol, defined once: frame types, validation rules and error codes.

The server handlers and the Python client (``iavicenne``) import this module, and the
browser client imports ``static/protocol.js``, which is emitted from it
(``python -m iavicenne_ext.protocol_js``; a test fails when the two drift). So a frame
type, an error code, a path or a peer-link tag is spelled in exactly one place. The
seed's frames are kept as they are (``type`` strings, field names, error messages);
everything this project adds is a new field or a new type. docs/protocol.md is the prose
version of this file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

# -- endpoints, relative to the server's base_url -----------------------------------
ROOMS_PATH = "iavicenne/ws/mcp"
SIGNALING_PATH = "iavicenne/ws/signaling"
REST_PATH = "iavicenne/api/"

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
SHARED = "shared"  # the room's shared document (Yjs sync messages): see "shared state" below
# rooms of thousands (docs/protocol.md, "Large rooms"): the next page of a room's members,
# and one frame per room and tick summing the presence changes (for who asked for it)
LIST_MEMBERS = "list-members"
MEMBERS = "members"
PRESENCE_BATCH = "presence-batch"

ROOM_REQUESTS = frozenset({CONNECT, JOIN_ROOM, LEAVE_ROOM, MESSAGE, DISCONNECT, PRESENCE, DIRECT_MESSAGE, SHARED, LIST_MEMBERS})


class PresenceMode:
    """``join-room`` ``payload.presence``: how the other members' presence changes arrive."""

    # one user-joined / user-left / presence frame per change (the seed's way, the default)
    EACH = "each"
    # one presence-batch frame per room and tick (IAvicenne.presence_batch_interval)
    BATCHED = "batched"


#: the most members one room-joined or members frame may list when a client asks for more
#: (a list-members limit, a join-room members_limit, above it: invalid-field)
MAX_MEMBERS_PAGE = 10_000
#: a members cursor (``members_next``, list-members ``after``) is this prefix and the
#: user_id of the last member listed; "m:" alone is the start of the list
MEMBERS_CURSOR_PREFIX = "m:"


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
    TOO_MANY_ROOMS = "too-many-rooms"
    RATE_LIMITED = "rate-limited"
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

# Names are what people type and read, so allow any letter or digit (unicode), a few
# separators, and inner spaces; refuse control characters and anything over 64 chars.
# The rule is written once, as its parts, so that the JavaScript emitter spells the same
# rule with \p{L}\p{N} classes (JavaScript's \w is ASCII only).
NAME_MAX_LENGTH = 64
NAME_SEPARATORS = ".@:+#~-_"
NAME_RULE = f"use 1 to {NAME_MAX_LENGTH} letters, digits, inner spaces or {NAME_SEPARATORS}"
_EDGE = r"[\w" + re.escape(NAME_SEPARATORS) + "]"
_INNER = r"[\w " + re.escape(NAME_SEPARATORS) + "]"
_NAME = re.compile(f"^{_EDGE}(?:{_INNER}{{0,{NAME_MAX_LENGTH - 2}}}{_EDGE})?$")
REF_MAX_LENGTH = 128


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
            return b"{" + b",".join(_dumps(k) + b":" + (v if type(v) is Raw else _dumps(v)) for k, v in frame.items()) + b"}"
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


def presence_frame(kind: str, room: str, user_id: str, identity: dict[str, Any], state: bytes = EMPTY_STATE) -> bytes:
    """A ``user-joined``, ``presence`` or ``user-left`` frame (the last without ``state``).

    `state` is the encoded presence state, as the broker keeps it.
    """
    if kind == USER_LEFT:
        return encoded(kind, user_id=user_id, room=room, identity=identity)
    return encoded(kind, user_id=user_id, room=room, identity=identity, state=Raw(state))


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
    try:
        encode(frame)
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


def check_name(value: Any, field: str) -> str:
    """Check a room, user or peer name: 1 to 64 letters, digits, spaces or ``.@:+#~-_``."""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be a string")
    if not _NAME.fullmatch(value):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"invalid {field} {value[:NAME_MAX_LENGTH]!r}: {NAME_RULE}",
        )
    return value


def members_cursor(user_id: str) -> str:
    """The cursor of a members page that ends with `user_id` (pages are in user_id order)."""
    return MEMBERS_CURSOR_PREFIX + user_id


def read_members_cursor(value: Any, field: str) -> str:
    """The user_id a members cursor points after ("" for the start), or `invalid-field`."""
    if isinstance(value, str) and value.startswith(MEMBERS_CURSOR_PREFIX):
        after = value[len(MEMBERS_CURSOR_PREFIX) :]
        if after == "" or _NAME.fullmatch(after):
            return after
    shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
    raise ProtocolError(
        ErrorCode.INVALID_FIELD,
        f"{field} must be a members cursor, the members_next of an earlier page, not {shown}",
    )


def read_members_limit(value: Any, field: str) -> int:
    """A page size from a client: an integer from 0 to MAX_MEMBERS_PAGE, or `invalid-field`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MEMBERS_PAGE:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be an integer from 0 to {MAX_MEMBERS_PAGE}")
    return value


#: A direct message whose payload carries this key (a string value) is the library talking
#: to itself across connections (a peer link relayed through the server, a kernel
#: describing itself): clients hand it to their "control" event, never show it as chat.
CONTROL_KEY = "iavicenne"


# -- peer links: the data-channel wire format (Python `iavicenne.wire`, browser `wire.js`) --
# A string message is text. A binary message starts with a tag byte: BYTES, JSON (UTF-8),
# or a transfer of a payload larger than one message: START (id u32, kind u8, flags u8,
# size u64 before compression, big-endian), DATA pieces, END (id); the receiver answers
# DONE (id) once it has it all, and ABORT (id) drops a transfer the sender gave up; an
# ABORT (id, UTF-8 reason) from the receiver says it refused the sender's transfer id.
CHANNEL_LABEL = "iavicenne"


class Tag:
    """The first byte of a binary data-channel message."""

    BYTES = 0x00
    JSON = 0x01
    START = 0x02
    DATA = 0x03
    END = 0x04
    ABORT = 0x05
    DONE = 0x06


class Kind:
    """What a transfer carries, once reassembled."""

    BYTES = 0
    JSON = 1
    TEXT = 2


FLAG_ZLIB = 1  # START flag: the transfer's bytes are zlib-compressed
#: what a peer may receive when its SDP names no size (RFC 8841's default)
DEFAULT_REMOTE_MAX_MESSAGE = 65536


# -- shared state: one Yjs document per room (iavicenne_ext/shared_state.py) ----------
# A ``shared`` frame carries one message of the Yjs sync protocol (y-protocols' sync.js,
# pycrdt's y-sync helpers), base64 in ``payload.sync`` (client) or ``sync`` (server):
# varuint 0 (sync), varuint step, varuint length, bytes. Step 1 is a state vector, step 2
# the updates its sender has and the other lacks, an update a live edit. A client sends
# step 1 once joined; the server answers step 2 (everything the client lacks: the whole
# document for a newcomer) and, to members who may write, its own step 1, which the client
# answers with step 2 (its offline edits). Accepted updates go to the room's other
# connections as ``shared`` frames with the writer's ``user_id`` and ``identity``.
SYNC_MESSAGE = 0  # the y-protocols message type of a sync message (1 would be awareness)


class SyncStep:
    """The second varuint of a y-sync message."""

    # a state vector: "send me what I lack"
    STEP1 = 0
    # the updates the asker lacks
    STEP2 = 1
    # a live edit
    UPDATE = 2


#: the root map of a room's document that clients present as ``room.shared``
SHARED_ROOT = "shared"
#: the empty Yjs update (no structs, no deletions): a step 2 of one who has nothing new
EMPTY_UPDATE_HEX = "0000"
