"""The peer-link wire format: what a `PeerLink` writes on its data channel, and the
`Reassembler` that reads it back. The browser client's ``wire.js`` is the same format;
the tags are `iavicenne_protocol`'s (``Tag``, ``Kind``, ``FLAG_ZLIB``).

A ``str`` message is text, as a browser's ``channel.send("...")`` sends it. A binary
message starts with a tag byte:

=========  ===========================================================================
``BYTES``  bytes (the rest of the message)
``JSON``   a JSON value (UTF-8)
``START``  a transfer begins: id u32, kind u8 (`Kind`), flags u8 (``FLAG_ZLIB``), size
           u64 of the payload before compression, big-endian; then
``DATA``   the next piece of the payload (at most one data-channel message);
``END``    id; the receiver then answers
``DONE``   id, once it has reassembled the payload (the sender's ``send`` returns then);
``ABORT``  id, then an optional reason (UTF-8). Without a reason: the sender gave up
           its transfer `id` (cancelled), the receiver drops the pieces. With one: the
           receiver refused the sender's transfer `id` (too large for it, more bytes than
           declared, not what it declared), the sender's ``send`` fails with the reason.
=========  ===========================================================================

**A receiver bounds what it holds.** A START that declares more than the receiver's
`max_transfer_bytes` is refused at once; a transfer never grows past its declared
size, and a compressed one is inflated piece by piece with a bound
(``decompressobj().decompress(piece, max_length)``): a peer that declares 10 bytes and
sends a zlib bomb is refused after its first piece, having cost one piece of memory.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from iavicenne_protocol import CHANNEL_LABEL, DEFAULT_REMOTE_MAX_MESSAGE, FLAG_ZLIB, Kind, Tag

from .errors import PeerLinkError, TransferRefused

START = struct.Struct("!IBBQ")
ID = struct.Struct("!I")
#: the largest transfer a receiver takes unless told (`PeerNetwork`'s ``max_transfer_bytes``)
MAX_TRANSFER_BYTES = 256 * 1024 * 1024
REASON_MAX_CHARS = 500  # of a refusal's reason: another person's text, kept short
_DATA = bytes((Tag.DATA,))

_KINDS = frozenset({Kind.BYTES, Kind.JSON, Kind.TEXT})


def size_text(n: int) -> str:
    """A byte count as people read it: ``10 bytes``, ``1.5 MB``, ``256 MiB`` for a round binary one."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n:,} bytes" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


# -- writing -------------------------------------------------------------------------------
def encode_payload(data: Any) -> tuple[int, bytes | bytearray]:
    """What `data` travels as: its `Kind` and its bytes (text as UTF-8, objects as JSON,
    never pickle: a peer must not be able to run code in our kernel)."""
    if isinstance(data, str):
        return Kind.TEXT, data.encode()
    if isinstance(data, (bytes, bytearray)):
        return Kind.BYTES, data
    if isinstance(data, memoryview):
        return Kind.BYTES, bytes(data)
    try:
        encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"a PeerLink sends str, bytes or JSON-able objects (never pickle); {type(data).__name__} is not: {error}"
        ) from None
    return Kind.JSON, encoded


def fits(kind: int, payload: bytes | bytearray, max_message_size: int) -> bool:
    """Whether `payload` goes as one message (text as is, the rest behind a tag byte)."""
    return len(payload) + (kind != Kind.TEXT) <= max_message_size


def single_message(kind: int, payload: bytes | bytearray, text: str | None = None) -> str | bytes:
    """The one message that carries a payload that `fits` (`text`: the str it came from)."""
    if kind == Kind.TEXT:
        return text if text is not None else bytes(payload).decode()
    return bytes((Tag.BYTES if kind == Kind.BYTES else Tag.JSON,)) + payload


def start_message(transfer: int, kind: int, flags: int, size: int) -> bytes:
    return bytes((Tag.START,)) + START.pack(transfer, kind, flags, size)


def id_message(tag: int, transfer: int) -> bytes:
    """END, DONE or a sender's ABORT (no reason) of `transfer`."""
    return bytes((tag,)) + ID.pack(transfer)


def refusal_message(transfer: int, reason: str) -> bytes:
    """The receiver's ABORT of `transfer`, saying why."""
    return id_message(Tag.ABORT, transfer) + reason[:REASON_MAX_CHARS].encode()


def worth_compressing(payload: bytes | bytearray) -> bool:
    """compress="auto": whether a sample of `payload` shrinks by a fifth or more."""
    sample = bytes(payload[: 1 << 16])
    return len(zlib.compress(sample, 1)) < 0.8 * len(sample)


def transfer_messages(
    transfer: int, kind: int, payload: bytes | bytearray, piece: int, compress: bool
) -> Iterator[tuple[bytes, int]]:
    """The messages of a transfer (START, DATA pieces of at most `piece` bytes after the
    tag, END), each with how many bytes of `payload` it completes. A generator, so a
    sender writes one piece at a time under flow control, compressing as it goes."""
    total = len(payload)
    compressor = zlib.compressobj(1) if compress else None
    yield start_message(transfer, kind, FLAG_ZLIB if compressor else 0, total), 0
    view = memoryview(payload)
    pending = bytearray()  # compressed bytes not yet written
    for offset in range(0, total, piece):
        chunk = view[offset : offset + piece]
        done = min(total, offset + piece)
        if compressor is None:
            yield _DATA + chunk, done
            continue
        pending += compressor.compress(chunk)
        while len(pending) >= piece:
            yield _DATA + pending[:piece], done
            del pending[:piece]
    if compressor is not None:
        pending += compressor.flush()
        for start in range(0, len(pending), piece):
            yield _DATA + pending[start : start + piece], total
    yield id_message(Tag.END, transfer), total


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Payload:
    """A payload has arrived; `transfer` is its transfer's id (answer DONE), if it was one."""

    value: Any
    transfer: int | None = None


@dataclass(frozen=True, slots=True)
class Piece:
    """The incoming transfer has `done` of its `total` bytes (before compression)."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The peer has reassembled our transfer `transfer` (DONE)."""

    transfer: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer refused our transfer `transfer` (ABORT with a reason)."""

    transfer: int
    reason: str


@dataclass(slots=True)
class Incoming:
    """The transfer being received (one at a time per sender: the channel is ordered)."""

    id: int
    kind: int
    flags: int
    size: int
    buffer: bytearray
    decompressor: Any | None  # zlib.Decompress


class Reassembler:
    """Reads a channel's messages back into payloads: `receive(message)` returns what it
    completes or learns (a `Payload`, `Piece`, `Confirmed` or `Refused`), or None.

    It raises `TransferRefused` for a transfer it will not hold (the caller answers with
    `refusal_message` and the pieces still on their way are dropped), and
    `PeerLinkError` for a message it cannot read.
    """

    def __init__(self, max_transfer_bytes: int = MAX_TRANSFER_BYTES) -> None:
        self.max_transfer_bytes = max_transfer_bytes
        self.incoming: Incoming | None = None

    def receive(self, message: str | bytes) -> Payload | Piece | Confirmed | Refused | None:
        if isinstance(message, str):
            return Payload(message)
        if not message:
            return None
        tag = message[0]
        try:
            if tag == Tag.DATA:
                return self._piece(memoryview(message)[1:])
            if tag == Tag.BYTES:
                return Payload(message[1:])
            if tag == Tag.JSON:
                return Payload(json.loads(message[1:]))
            if tag == Tag.START:
                return self._start(*START.unpack_from(message, 1))
            transfer = ID.unpack_from(message, 1)[0]
        except (ValueError, struct.error) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise PeerLinkError(f"malformed message (tag {tag:#04x}): {error}") from None
        if tag == Tag.END:
            return self._end(transfer)
        if tag == Tag.DONE:
            return Confirmed(transfer)
        if tag == Tag.ABORT:
            reason = bytes(message[5:]).decode(errors="replace")[:REASON_MAX_CHARS]
            if reason:
                return Refused(transfer, reason)
            if self.incoming is not None and self.incoming.id == transfer:
                self.incoming = None  # the sender gave up: drop the pieces
            return None
        raise PeerLinkError(f"unknown tag {tag:#04x}")

    def _refuse(self, transfer: int, why: str) -> TransferRefused:
        if self.incoming is not None and self.incoming.id == transfer:
            self.incoming = None  # what is still on its way is dropped, piece by piece
        return TransferRefused(f"transfer {transfer} refused: {why}", transfer)

    def _start(self, transfer: int, kind: int, flags: int, size: int) -> Piece:
        self.incoming = None  # a START ends whatever came before (a sender that gave up)
        if size > self.max_transfer_bytes:
            raise self._refuse(
                transfer,
                f"it declares {size_text(size)}, over this side's limit of {size_text(self.max_transfer_bytes)} "
                "(max_transfer_bytes, an option of join() and PeerNetwork, raises it)",
            )
        if kind not in _KINDS or flags & ~FLAG_ZLIB:
            raise self._refuse(transfer, f"unknown kind {kind} or flags {flags:#x}")
        decompressor = zlib.decompressobj() if flags & FLAG_ZLIB else None
        self.incoming = Incoming(transfer, kind, flags, size, bytearray(), decompressor)
        return Piece(0, size)

    def _piece(self, piece: memoryview) -> Piece | None:
        incoming = self.incoming
        if incoming is None:
            return None  # of a transfer refused or given up: dropped
        room = incoming.size - len(incoming.buffer)
        over = f"more than the {size_text(incoming.size)} it declared"
        decompressor = incoming.decompressor
        if decompressor is None:
            if len(piece) > room:
                raise self._refuse(incoming.id, over)
            incoming.buffer += piece
        else:
            if decompressor.eof:
                raise self._refuse(incoming.id, "data after the end of its compressed stream")
            try:
                # one byte more than may come: getting it means the peer lied about the size
                inflated = decompressor.decompress(piece, room + 1)
            except zlib.error as error:
                raise self._refuse(incoming.id, f"its compressed data is broken ({error})") from None
            if len(inflated) > room:
                raise self._refuse(incoming.id, over + " (once inflated)")
            if decompressor.unused_data:
                raise self._refuse(incoming.id, "data after the end of its compressed stream")
            incoming.buffer += inflated
        return Piece(len(incoming.buffer), incoming.size)

    def _end(self, transfer: int) -> Payload | None:
        incoming = self.incoming
        if incoming is None or incoming.id != transfer:
            return None
        if incoming.decompressor is not None and not incoming.decompressor.eof:
            raise self._refuse(transfer, "its compressed stream is incomplete")
        if len(incoming.buffer) != incoming.size:
            raise self._refuse(transfer, f"{len(incoming.buffer)} bytes arrived instead of the {incoming.size} it declared")
        self.incoming = None
        try:
            if incoming.kind == Kind.BYTES:
                value: Any = bytes(incoming.buffer)
            elif incoming.kind == Kind.TEXT:
                value = incoming.buffer.decode()
            else:
                value = json.loads(incoming.buffer)
        except ValueError as error:
            raise TransferRefused(
                f"transfer {transfer} refused: not the {_KIND_NAMES[incoming.kind]} it declared ({error})", transfer
            ) from None
        return Payload(value, transfer)


_KIND_NAMES = {Kind.BYTES: "bytes", Kind.JSON: "JSON", Kind.TEXT: "UTF-8 text"}

__all__ = [
    "CHANNEL_LABEL",
    "DEFAULT_REMOTE_MAX_MESSAGE",
    "FLAG_ZLIB",
    "MAX_TRANSFER_BYTES",
    "Confirmed",
    "Kind",
    "Payload",
    "Piece",
    "Reassembler",
    "Refused",
    "Tag",
    "encode_payload",
    "fits",
    "single_message",
    "transfer_messages",
]
