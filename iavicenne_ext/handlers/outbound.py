"""The write path of a socket: frames queued to the client, its budget, written together.

Every frame to a client (a reply, an error, a room's broadcast) goes through `send`, in
order. Frames queued within a turn of the event loop are written together in the next
(coalescing.py). What the client has not read yet is counted against its budget
(max_outbound_bytes) and the server's (max_outbound_bytes_total, `Quotas.shed`): a
consumer too slow to read is closed (1008) rather than let its backlog grow.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

import iavicenne_protocol as p

from .budgets import Limits, Quotas
from .coalescing import coalesces, text_frame_header


class OutboundSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """A Jupyter WebSocket with its outbound queue; `ProtocolSocket` is one (`start_outbound`
    in its initialize)."""

    # set by ProtocolSocket.initialize (its connection key) and once authenticated
    key: str
    identity: dict[str, Any]

    def start_outbound(self, quotas: Quotas) -> None:
        self.quotas = quotas
        self.limits: Limits = quotas.limits
        self._outbound = 0  # bytes queued to this client and not yet written to the socket
        self._replaying = 0  # of which: history replayed on the client's request
        # of which: the frames queued in this turn (headers and frames), written in the next
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._queued_replay = 0
        self._gone = False

    @property
    def bytes_waiting(self) -> int:
        """Bytes queued to this client and not yet written to the socket."""
        return self._outbound

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Queue one encoded frame (as a text frame, no re-encoding).

        The frames queued for one client within a turn of the event loop are written
        together, framed as tornado frames them, in one write at the start of the next turn
        (`TurnWrites`): a burst to S members then costs S writes (S send calls) per turn
        rather than S per frame. Frames keep their order: replies, errors and room frames
        all go through this queue, and `close` writes it before the close frame. A
        compressed connection (permessage-deflate) is written frame by frame.

        A `replay` frame is history the client asked for (``since``), bounded by
        max_replay_bytes and one replay at a time: it counts towards what is waiting, but
        being written all at once is no sign of a slow consumer, so it closes nothing.
        """
        if self._gone:
            return
        size = len(frame)
        queued = self._outbound
        # what the socket did not take yet is what the client is slow to read; frames
        # queued in this turn are not written yet, so a client with nothing waiting in its
        # stream is not slow, however big this frame or this turn's burst is (the server's
        # total, below, bounds that burst)
        if not replay and queued > self._queued_bytes and queued + size > self.limits.max_outbound_bytes:
            self.drop_slow_consumer(
                f"slow consumer: more than {self.limits.max_outbound_bytes} bytes waiting to be read "
                "(IAvicenne.max_outbound_bytes)"
            )
            return
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            self._mark_gone()
            return
        if coalesces(conn):
            if not self._queue:
                self.quotas.turn_writes.queued(self)
            self._queue.append(text_frame_header(size))
            self._queue.append(frame)
            self._queued_bytes += size
            if replay:
                self._queued_replay += size
        else:
            try:
                written = self._write_text(frame)
            except WebSocketClosedError:
                self._mark_gone()
                return
            if written.done():  # already handed to the socket: nothing is waiting
                if not written.cancelled() and written.exception() is not None:
                    self._mark_gone()
                return
            written.add_done_callback(functools.partial(self._flushed, size, size if replay else 0))
        self._count_waiting(queued, size, replay)

    def _count_waiting(self, queued: int, size: int, replay: bool) -> None:
        self._outbound = queued + size
        if replay:
            self._replaying += size
        quotas = self.quotas
        if not queued:
            quotas.waiting.add(self)
        quotas.outbound += size
        if quotas.outbound > self.limits.max_outbound_bytes_total:
            quotas.shed()

    def write_queued(self, *, closing: bool = False) -> None:
        """Write the frames queued in the last turn, whole frames in one write.

        Tornado writes its own frames (keep-alive pings, pongs, close) straight to the
        stream: they land between two of these writes, never inside a frame. `closing`:
        written even though the socket is marked gone (the notice before a close).
        """
        parts, size, replay = self._queue, self._queued_bytes, self._queued_replay
        if not parts:
            return
        self._queue, self._queued_bytes, self._queued_replay = [], 0, 0
        conn = self.ws_connection
        if (self._gone and not closing) or conn is None or conn.is_closing():
            self._mark_gone()
            self._flushed(size, replay, None)
            return
        assert isinstance(conn, WebSocketProtocol13) and conn.stream is not None  # `coalesces`
        writes = _writes(parts)
        conn._wire_bytes_out += sum(map(len, writes))  # what tornado's _write_frame counts
        try:
            for data in writes[:-1]:
                conn.stream.write(data)
            written = conn.stream.write(writes[-1])
        except StreamClosedError:
            self._mark_gone()
            self._flushed(size, replay, None)
            return
        if written.done():
            self._flushed(size, replay, written)
        else:
            written.add_done_callback(functools.partial(self._flushed, size, replay))

    def _write_text(self, frame: bytes) -> asyncio.Future[None]:
        """Write one text frame now; the future is done once the frame is on the socket.

        For a connection whose frames are not coalesced (compressed, or not tornado's
        protocol): `write_message`.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise WebSocketClosedError()
        return self.write_message(frame)

    def _flushed(self, size: int, replay: int, done: asyncio.Future[None] | None) -> None:
        """`size` bytes (`replay` of them history) left the queue: written, or dropped (done None)."""
        self._outbound -= size
        self._replaying -= replay
        self.quotas.heap.released(size)
        if not self._gone:  # a gone socket's bytes left the server's total already
            self.quotas.outbound -= size
            if not self._outbound:
                self.quotas.waiting.discard(self)
        if done is not None and not done.cancelled() and done.exception() is not None:
            self._mark_gone()  # the peer went away; on_close does the rest

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close after the frames queued in this turn (an error or notice before the close
        frame is read by the client before it)."""
        self.write_queued(closing=True)
        super().close(code, reason)

    def _mark_gone(self) -> None:
        """Nothing more is written to this socket; what it has queued is released soon."""
        if self._gone:
            return
        self._gone = True
        # counted as released now: its buffer goes with the stream (tornado closes it
        # within seconds), and the server's budget must not close other sockets meanwhile
        self.quotas.outbound -= self._outbound
        self.quotas.waiting.discard(self)

    def reply(self, kind: str, ref: str | None = None, **fields: Any) -> None:
        """Send this client a frame of its own (built by `protocol.encoded`)."""
        self.send(p.encoded(kind, ref=ref, **fields))

    def send_error_frame(self, code: str, message: str, ref: str | None = None, **extra: Any) -> None:
        # not `send_error`: that is tornado's, which answers a refused handshake (403)
        self.send(p.encode(p.error_frame(code, message, ref, **extra)))

    def drop_slow_consumer(self, reason: str) -> None:
        """Close a client too slow to read what it is sent (1008, `reason` naming the option)."""
        self.log.warning(
            "iavicenne: closing %s (%s, %d bytes waiting): %s", self.key, self.identity.get("username"), self._outbound, reason
        )
        self._mark_gone()
        self.write_queued()  # dropped (gone): it would only wait in the stream of a client that does not read
        self.close(p.CLOSE_POLICY, reason)
        self.slow_consumer_closed()

    def slow_consumer_closed(self) -> None:
        """Closing may wait for the client to read: what to do meanwhile (leave its rooms)."""


#: a queued frame at least this large is handed to the stream as it is (tornado keeps it
#: without copying), not joined with the others: a whole shared document's answer is megabytes
_WRITTEN_ALONE = 64 * 1024


def _writes(parts: list[bytes]) -> list[bytes]:
    """The writes for a turn's `parts` (headers and frames, in order): the small ones joined,
    each large one alone (one copy less of it, and as few send calls as before)."""
    writes: list[bytes] = []
    small: list[bytes] = []
    for part in parts:
        if len(part) < _WRITTEN_ALONE:
            small.append(part)
            continue
        if small:
            writes.append(b"".join(small))
            small = []
        writes.append(part)
    if small or not writes:
        writes.append(b"".join(small))
    return writes
