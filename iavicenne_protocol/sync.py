"""Shared state: the y-sync codec of ``shared`` frames, one Yjs document per room.

A ``shared`` frame carries one message of the Yjs sync protocol (y-protocols' sync.js,
pycrdt's y-sync helpers), base64 in ``payload.sync`` (client) or ``sync`` (server):
varuint 0 (sync), varuint step, varuint length, bytes. Step 1 is a state vector, step 2
the updates its sender has and the other lacks, an update a live edit. A client sends
step 1 once joined; the server answers step 2 (everything the client lacks: the whole
document for a newcomer) and, to members who may write, its own step 1, which the client
answers with step 2 (its offline edits). Accepted updates go to the room's other
connections as ``shared`` frames with the writer's ``user_id`` and ``identity``.

The server (``iavicenne_ext.shared_state``) and the Python client (``iavicenne.shared``)
both read and write messages with this module. It is the envelope only, in pure Python:
what is inside (an update, a state vector) is the CRDT's business (pycrdt).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from .errors import ErrorCode, ProtocolError, limit_exceeded
from .frames import Raw

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
EMPTY_UPDATE = bytes.fromhex(EMPTY_UPDATE_HEX)


def write_var_uint(value: int) -> bytes:
    """A lib0 varuint: seven bits a byte, lowest first, the high bit set on all but the last."""
    if value < 0:
        raise ValueError(f"a varuint is not negative: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def read_var_uint(data: bytes, at: int) -> tuple[int, int]:
    """A lib0 varuint at `at`: (value, next position); `ValueError` when cut short or too long."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 56:
            raise ValueError("a varuint is cut short")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """One decoded y-sync message: its step and its payload (a state vector or an update)."""

    step: int
    payload: bytes

    def encode(self) -> bytes:
        return bytes([SYNC_MESSAGE, self.step]) + write_var_uint(len(self.payload)) + self.payload

    def b64(self) -> str:
        return base64.b64encode(self.encode()).decode()

    def b64_json(self) -> Raw:
        """`b64()` as a JSON string, to splice into a frame (`frames.encode`): base64 needs no
        escaping, and a whole document's (megabytes) is not scanned again by the JSON encoder."""
        return Raw(b'"' + base64.b64encode(self.encode()) + b'"')


def decode_sync(text: object, *, max_bytes: int) -> SyncMessage:
    """The y-sync message of a frame's base64 field, or `ProtocolError` (``invalid-field`` /
    ``limit-exceeded`` naming max_shared_update_bytes). Checked exactly: one message, no more."""
    if not isinstance(text, str) or not text:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "shared needs payload.sync, a base64 Yjs sync message")
    if len(text) > (max_bytes + 16) * 4 // 3 + 4:  # before decoding: the base64 of a too large update
        raise limit_exceeded("max_shared_update_bytes", max_bytes, "shared update refused: too large; change less at a time")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "payload.sync is not base64") from None
    try:
        if len(data) < 2 or data[0] != SYNC_MESSAGE or data[1] not in (SyncStep.STEP1, SyncStep.STEP2, SyncStep.UPDATE):
            raise ValueError("not a Yjs sync message (message type 0, step 0, 1 or 2)")
        length, start = read_var_uint(data, 2)
        if start + length != len(data):
            raise ValueError("its length does not match its payload")
    except ValueError as error:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"payload.sync is not a Yjs sync message: {error}") from None
    payload = data[start:]
    if data[1] != SyncStep.STEP1 and len(payload) > max_bytes:
        raise limit_exceeded(
            "max_shared_update_bytes",
            max_bytes,
            f"shared update refused: {len(payload)} bytes; change less at a time",
        )
    return SyncMessage(data[1], payload)
