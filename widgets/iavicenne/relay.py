"""Peer links through the server, when no direct path exists: `RelayLink`.

WebRTC needs a UDP path between the peers, or a TURN server. Where UDP is blocked and no
TURN server is configured, ICE fails; a `PeerNetwork` given a relay (``relay=True``: a
`SignalingRelay` over its own signaling socket, which ``join()`` of a room session asks
for) then opens the link through the server instead, with the same API as a direct link
(`iavicenne.link.Link`): the same wire messages, transfers, progress and bounds.
``link.path`` says which it is: ``"direct"`` or ``"relay"``.

**What travels.** Each wire message is one acked ``relay`` frame of the signaling socket
(docs/protocol.md, "Signaling endpoint"), addressed to the peer id as an offer is; the
server forwards it to that peer's signaling connection only, with the sender's
``source_peer_id`` and ``source_identity`` as it verified them. Its ``data``, bytes in
base64::

    {"iavicenne": "relay-open",   "link": id}
    {"iavicenne": "relay-accept", "link": id}
    {"iavicenne": "relay-data",   "link": id, "n": 1, "b": "<base64>"}  # or "t": text
    {"iavicenne": "relay-credit", "link": id, "bytes": 4194304}
    {"iavicenne": "relay-close",  "link": id, "reason": "..."}

The identity the server gives the frame is the link's `identity`: checked like a direct
link's (`iavicenne.peer.PeerNetwork`'s `verify_identity`) on the open and on the accept,
and a later frame from another identity is dropped.

**Ordered, complete, flow-controlled.** A link writes one data frame at a time and the
next only once the server acknowledged it, so frames arrive in order, numbered by ``n``
(a resend after a reconnect is recognised); a frame lost (the receiver was disconnected
while it passed) closes the link saying so, never a silent hole. The receiver grants
credit as it reads (``relay-credit``, cumulative bytes): past `relay_window` bytes not yet
credited the sender waits, as a direct link waits on ``bufferedAmount``; a kernel busy in
a long cell stops granting, and the sender waits instead of filling the server's queue.

**Within the server's budgets.** The server allows each identity ``bytes_per_second``
(1 MiB/s by default) with a burst of ``burst_bytes`` (8 MiB), over all its sockets, and
relay frames up to ``protocol.RELAY_MAX_BYTES``. A `Pacer` keeps relayed frames under a
rate of its own (`relay_bytes_per_second`, 0.9 MiB/s; burst 4 MiB: the chat of the same
user keeps room) and chunks small enough (`relay_chunk_size`, 192 KiB, about 256 KiB once
in base64). If the server still says ``rate-limited`` (or ``limit-exceeded`` naming a
per-second budget), that is back-pressure: the pacer slows down and the frame is sent
again later, never a failure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import iavicenne_protocol as p
from iavicenne_protocol import control
from iavicenne_protocol.control import CONTROL_KEY as CONTROL

from .connection import is_back_pressure
from .errors import ClientError, PeerLeft, PeerLinkClosed, PeerLinkError, RequestFailed, UnknownPeer
from .events import Signal, Subscription
from .link import Link, LinkOwner, retrieve

if TYPE_CHECKING:
    from .signaling import SignalingClient

log = logging.getLogger("iavicenne.peer")

OPEN, ACCEPT, DATA, CREDIT, CLOSE = (
    control.ControlKind.RELAY_OPEN,
    control.ControlKind.RELAY_ACCEPT,
    control.ControlKind.RELAY_DATA,
    control.ControlKind.RELAY_CREDIT,
    control.ControlKind.RELAY_CLOSE,
)
KINDS = control.RELAY_KINDS
LINK_ID_MAX = control.CONTROL_ID_MAX_LENGTH

#: defaults of the PeerNetwork options (see the module docstring)
RELAY_CHUNK_SIZE = 192 * 1024
#: the largest relay_chunk_size whose frames the server forwards (base64 is 4/3 of it)
RELAY_CHUNK_MAX = (p.RELAY_MAX_BYTES - 4096) * 3 // 4
RELAY_WINDOW = 2 * 1024 * 1024
RELAY_BYTES_PER_SECOND = 900 * 1024
RELAY_BURST_BYTES = 4 * 1024 * 1024
RELAY_FRAMES_PER_SECOND = 50.0  # the server's messages_per_second is 100 by default


#: what a `RelayTransport` calls for each frame: (sender's peer_id, payload, sender's identity)
FrameCallback = Callable[[str, dict[str, Any], dict[str, Any] | None], None]


class RelayTransport(Protocol):
    """What carries relayed frames between peers (`SignalingRelay`: the signaling socket)."""

    async def send(self, peer_id: str, payload: dict[str, Any]) -> None:
        """Deliver `payload` to peer `peer_id`, reliably, within the server's budgets;
        `PeerLeft` when that peer is not there any more."""
        ...

    def on_frame(self, callback: FrameCallback) -> Callable[[], None]:
        """Call ``callback(sender_peer_id, payload, sender_identity)`` for each relay frame
        that arrives (both as the server verified them; the identity None if it did not say)."""
        ...


class Pacer:
    """Keeps relayed bytes (and frames) under a rate, with a burst; slows down when the
    server says it is over its budget and recovers slowly (additive increase,
    multiplicative decrease, as TCP does)."""

    def __init__(self, bytes_per_second: float, burst_bytes: float, frames_per_second: float = RELAY_FRAMES_PER_SECOND) -> None:
        self.ceiling = float(bytes_per_second)
        self.rate = float(bytes_per_second)
        self.burst = float(burst_bytes)
        self.tokens = float(burst_bytes)
        self.frames_per_second = frames_per_second
        self.frame_tokens = max(1.0, frames_per_second)
        self.stamp = time.monotonic()
        self.slowdowns = 0
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed = now - self.stamp
        self.stamp = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.frame_tokens = min(max(1.0, self.frames_per_second), self.frame_tokens + elapsed * self.frames_per_second)
        # recover towards the ceiling: +5% of it per second without a slowdown
        self.rate = min(self.ceiling, self.rate + elapsed * 0.05 * self.ceiling)

    async def take(self, size: int) -> None:
        """Wait until `size` bytes (one frame) may go."""
        async with self._lock:  # first come, first served
            self._refill()
            need = min(float(size), self.burst)  # a frame larger than the burst waits for a full bucket
            while self.tokens < need or self.frame_tokens < 1.0:
                wait = max((need - self.tokens) / self.rate, (1.0 - self.frame_tokens) / self.frames_per_second, 0.001)
                await asyncio.sleep(wait)
                self._refill()
            self.tokens -= need
            self.frame_tokens -= 1.0

    def slow_down(self) -> None:
        """The server refused for a per-second budget: halve the rate, empty the bucket."""
        self.slowdowns += 1
        self.rate = max(self.ceiling / 16, self.rate / 2)
        self.tokens = 0.0


class SignalingRelay:
    """`RelayTransport` over a peer's signaling socket (``relay`` frames, by peer id)."""

    def __init__(
        self,
        signaling: SignalingClient,
        *,
        bytes_per_second: float = RELAY_BYTES_PER_SECOND,
        burst_bytes: float = RELAY_BURST_BYTES,
    ) -> None:
        self.signaling = signaling
        self.pacer = Pacer(bytes_per_second, burst_bytes)
        self.sent_bytes = 0
        self.busy = 0  # frames being sent now: a rate-limited notice then is ours
        self._callbacks: list[FrameCallback] = []
        self._offs = [signaling.on("relay", self._on_relay), signaling.on("rate-limited", self._on_rate_limited)]

    def close(self) -> None:
        for off in self._offs:
            off()
        self._offs.clear()
        self._callbacks.clear()

    def on_frame(self, callback: FrameCallback) -> Callable[[], None]:
        self._callbacks.append(callback)

        def off() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return Subscription("relay", callback, off)

    async def send(self, peer_id: str, payload: dict[str, Any]) -> None:
        size = len(json.dumps(payload, separators=(",", ":"))) + 200  # the frame's envelope too
        delay = 0.5
        self.busy += 1
        try:
            while True:
                await self.pacer.take(size)
                try:
                    await self.signaling.send_relay(peer_id, payload)
                    self.sent_bytes += size
                    return
                except UnknownPeer:
                    raise PeerLeft(f"{peer_id!r} is not in room {self.signaling.room!r} any more") from None
                except RequestFailed as refused:
                    if not is_back_pressure(refused.frame):
                        raise PeerLinkError(f"the server refused a relayed frame: {refused}") from None
                    # over a budget per second: not now, later (and slower)
                    self.pacer.slow_down()
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)
        finally:
            self.busy -= 1

    def _on_relay(self, signal: Signal) -> None:
        payload = signal.body
        if not isinstance(payload, dict) or payload.get(CONTROL) not in KINDS:
            return
        for callback in list(self._callbacks):
            try:
                callback(signal.source, payload, signal.identity)
            except Exception:
                log.exception("iavicenne: a relay frame from %s could not be handled", signal.source)

    def _on_rate_limited(self, _frame: dict[str, Any]) -> None:
        if self.busy:
            self.pacer.slow_down()


def new_link_id() -> str:
    return secrets.token_hex(8)


class RelayLinkOwner(LinkOwner, Protocol):
    """What a `RelayLink` needs of its owner beyond a `LinkOwner`'s: its frames' sizes."""

    @property
    def relay_chunk_size(self) -> int:
        """The largest wire message one relay frame carries."""
        ...

    @property
    def relay_window(self) -> int:
        """Bytes sent and not yet credited by the peer past which the sender waits."""
        ...


class RelayLink(Link):
    """A link to one peer through the signaling server (``path == "relay"``). Made by a
    `PeerNetwork` when a direct link cannot be made; the same API as `PeerLink`."""

    path = "relay"

    def __init__(self, network: RelayLinkOwner, peer_id: str, *, offerer: bool, link_id: str, transport: RelayTransport) -> None:
        super().__init__(network, peer_id, offerer=offerer, max_message_size=network.relay_chunk_size)
        self.link_id = link_id
        self.transport = transport
        self.window = network.relay_window
        self.frames_sent = 0
        self._n = 0  # data frames numbered so far
        self._received = 0  # the last n handed to the reassembler
        self._sent_bytes = 0
        self._credited = 0  # bytes the peer has read (its last relay-credit)
        self._received_bytes = 0
        self._granted = 0  # credit granted to the peer so far
        self._queue: deque[tuple[dict[str, Any], int, asyncio.Future[None] | None]] = deque()
        self._wake = asyncio.Event()
        self._credit = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())
        self._controls: set[asyncio.Task[None]] = set()
        self._closed_by_peer = False

    def frame(self, kind: str, **fields: Any) -> dict[str, Any]:
        return control.relay_frame(kind, self.link_id, **fields)

    # -- opening (the owner calls these) ----------------------------------------------
    async def send_open(self) -> None:
        """Ask the peer to take this link (``relay-open``); it opens on their accept."""
        await self.transport.send(self.peer_id, self.frame(OPEN))

    async def send_accept(self) -> None:
        """Take the link the peer opened (``relay-accept``): open from now on."""
        await self.transport.send(self.peer_id, self.frame(ACCEPT))
        self._became_open()

    # -- sending ----------------------------------------------------------------------
    def _enqueue(self, data: bytes | str, future: asyncio.Future[None] | None) -> None:
        self._n += 1
        if isinstance(data, str):
            payload = self.frame(DATA, n=self._n, t=data)
            size = len(data.encode())
        else:
            payload = self.frame(DATA, n=self._n, b=base64.b64encode(data).decode("ascii"))
            size = len(data)
        self._queue.append((payload, size, future))
        self._wake.set()

    async def _write(self, data: bytes | str) -> None:
        self._check()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(retrieve)
        self._enqueue(data, future)
        await future

    def _can_send_now(self) -> bool:
        return self.state == "open"

    def _send_now(self, data: bytes) -> None:
        self._enqueue(data, None)  # in order with the data; waits for no credit of its own

    async def _write_loop(self) -> None:
        """Write queued frames one at a time (the next once the server has the last), within
        the credit the peer granted."""
        try:
            while True:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                payload, size, future = self._queue[0]
                # a small control message (DONE, ABORT) never waits for credit: a peer that
                # waits for our DONE before granting more would wait forever
                while (
                    future is not None
                    and self._sent_bytes - self._credited + size > self.window
                    and self._sent_bytes > self._credited
                ):
                    self._credit.clear()
                    await self._credit.wait()
                await self.transport.send(self.peer_id, payload)
                self._queue.popleft()
                self._sent_bytes += size
                self.frames_sent += 1
                if future is not None and not future.done():
                    future.set_result(None)
        except asyncio.CancelledError:
            raise
        except PeerLeft as error:
            self.close_with(PeerLeft(f"peer {self.peer_id!r} left the room ({error})"))
        except (ClientError, PeerLinkError) as error:
            self.close_with(PeerLinkClosed(f"the relay to {self.peer_id!r} stopped: {error}"))
        except Exception as error:
            log.exception("iavicenne: the relay to %s failed", self.peer_id)
            self.close_with(PeerLinkClosed(f"the relay to {self.peer_id!r} failed: {error}"))

    def _control(self, payload: dict[str, Any]) -> None:
        """Send a frame outside the ordered queue (credit, close): it must not wait behind data."""

        async def send() -> None:
            with contextlib.suppress(Exception):
                await self.transport.send(self.peer_id, payload)

        task = asyncio.ensure_future(send())
        self._controls.add(task)
        task.add_done_callback(self._controls.discard)

    # -- receiving --------------------------------------------------------------------
    def receive_frame(self, payload: dict[str, Any]) -> None:
        """A frame of this link from the peer (its owner checked who sent it)."""
        kind = payload.get(CONTROL)
        if kind == DATA:
            self._on_data(payload)
        elif kind == CREDIT:
            granted = payload.get("bytes")
            if isinstance(granted, int) and not isinstance(granted, bool) and granted > self._credited:
                self._credited = min(granted, self._sent_bytes + self.window)
                self._credit.set()
        elif kind == CLOSE:
            reason = str(payload.get("reason") or "")[:200]
            self._closed_by_peer = True
            self.close_with(PeerLinkClosed(f"{self.peer_id!r} closed the link" + (f": {reason}" if reason else "")))
        elif kind == ACCEPT and self.offerer:
            self._became_open()

    def _on_data(self, payload: dict[str, Any]) -> None:
        if self.state != "open":
            return
        n = payload.get("n")
        if not isinstance(n, int) or isinstance(n, bool):
            self.close_with(PeerLinkClosed(f"a malformed relayed frame from {self.peer_id!r} (no number)"))
            return
        if n <= self._received:
            return  # sent again after a reconnect: already here
        if n != self._received + 1:
            self.close_with(
                PeerLinkClosed(f"relayed frames {self._received + 1} to {n - 1} from {self.peer_id!r} were lost (a disconnect)")
            )
            return
        self._received = n
        text, encoded = payload.get("t"), payload.get("b")
        data: str | bytes
        if isinstance(text, str):
            data = text
            size = len(text.encode())
        elif isinstance(encoded, str):
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                self.close_with(PeerLinkClosed(f"a malformed relayed frame from {self.peer_id!r} (not base64)"))
                return
            size = len(data)
        else:
            self.close_with(PeerLinkClosed(f"a malformed relayed frame from {self.peer_id!r} (no data)"))
            return
        self._received_bytes += size
        self._on_message(data)
        if self._received_bytes - self._granted >= self.window // 4:
            self._granted = self._received_bytes
            self._control(self.frame(CREDIT, bytes=self._received_bytes))

    # -- state ------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer
        for _payload, _size, future in self._queue:
            if future is not None and not future.done():
                future.set_exception(self.error or PeerLinkClosed("the link closed"))
        self._queue.clear()
        if not self._closed_by_peer and not isinstance(self.error, PeerLeft):
            reason = str(self.error) if self.error is not None else ""
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.transport.send(self.peer_id, self.frame(CLOSE, reason=reason[:200])), 5)


__all__ = [
    "RELAY_BURST_BYTES",
    "RELAY_BYTES_PER_SECOND",
    "RELAY_CHUNK_MAX",
    "RELAY_CHUNK_SIZE",
    "RELAY_WINDOW",
    "FrameCallback",
    "Pacer",
    "RelayLink",
    "RelayLinkOwner",
    "RelayTransport",
    "SignalingRelay",
    "new_link_id",
]
