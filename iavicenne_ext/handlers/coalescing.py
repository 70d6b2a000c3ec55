"""Write coalescing: the frames queued for one client within a turn go out in one write.

Frames are framed here as tornado frames them (`text_frame_header`, RFC 6455 5.2) and
joined; `TurnWrites` writes each socket's frames at the start of the next turn of the
event loop. A broadcast to S members then costs S writes per turn, not S per frame
(outbound.py queues the frames; a compressed connection is written frame by frame).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Protocol

from tornado.websocket import WebSocketProtocol13

# tornado's frame writer (see OutboundSocket._write_text); write_message if it ever goes
_FRAME_WRITER = callable(getattr(WebSocketProtocol13, "_write_frame", None))
_OPCODE_TEXT = 0x1
_FIN_TEXT = 0x80 | _OPCODE_TEXT


def text_frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame of `size` bytes (RFC 6455 5.2), as
    tornado's `_write_frame` writes it for a server: the frames queued for one client are
    framed here and written together (`OutboundSocket.send`)."""
    if size < 126:
        return bytes((_FIN_TEXT, size))
    if size <= 0xFFFF:
        return struct.pack("!BBH", _FIN_TEXT, 126, size)
    return struct.pack("!BBQ", _FIN_TEXT, 127, size)


def coalesces(conn: Any) -> bool:
    """Whether this connection's frames are framed here and written together: tornado's
    own uncompressed, unmasked (server side) protocol; anything else gets write_message."""
    return (
        _FRAME_WRITER
        and type(conn) is WebSocketProtocol13
        and getattr(conn, "_compressor", True) is None
        and not conn.mask_outgoing
    )


class QueuedWriter(Protocol):
    """A socket with frames queued in this turn (`OutboundSocket`)."""

    def write_queued(self) -> None: ...


class TurnWrites:
    """The sockets with frames queued in this turn of the event loop, written at the start
    of the next one (`write_queued`), each socket's frames in one write. One per server."""

    __slots__ = ("_unwritten",)

    def __init__(self) -> None:
        self._unwritten: list[QueuedWriter] = []

    def queued(self, socket: QueuedWriter) -> None:
        """`socket` has its first frame of this turn queued: write it in the next turn."""
        if not self._unwritten:
            # once per turn for all the sockets: each broadcast of the turn adds its frame
            # to every member's queue, and each member gets one write (one send call)
            asyncio.get_running_loop().call_soon(self.write_queued)
        self._unwritten.append(socket)

    def write_queued(self) -> None:
        """Write what every socket queued since the last turn, one write per socket."""
        sockets, self._unwritten = self._unwritten, []
        for socket in sockets:
            socket.write_queued()
