"""Peer links: the data-channel wire format (Python `iavicenne.wire`, browser `wire.js`).

A string message is text. A binary message starts with a tag byte: BYTES, JSON (UTF-8),
or a transfer of a payload larger than one message: START (id u32, kind u8, flags u8,
size u64 before compression, big-endian), DATA pieces, END (id); the receiver answers
DONE (id) once it has it all, and ABORT (id) drops a transfer the sender gave up; an
ABORT (id, UTF-8 reason) from the receiver says it refused the sender's transfer id.
"""

from __future__ import annotations

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
