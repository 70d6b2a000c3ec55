"""Peer links: a WebRTC data channel to another member of a room, on aiortc.

``net = await PeerNetwork.join("lab", "alice")`` takes part in the signaling room as
peer ``alice``; ``link = await net.connect("bob")`` opens a data channel to ``bob``
(``await net.accept()`` waits for someone to open one to us); then ``await
link.send(x)`` and ``await link.recv()`` with `x` a str, bytes, or a JSON-able object.
Objects travel as JSON, never pickle: a peer must not be able to run code in our kernel.

**Who offers.** Either side may call `connect`. When both do at once (glare), the offer
of the lower peer_id wins: the higher side drops its own and answers, so one
RTCPeerConnection results, whatever the timing. All negotiation steps with one peer run
in order in one task, so a late step of a dropped offer can never reach the other side.
An offer for a link that exists means the other side started again (a restarted
kernel): the old link is closed and the new one answered.

**On the channel** the messages are `iavicenne.wire`'s (text, bytes and JSON, and
transfers: START, DATA pieces, END, answered by DONE). Payloads larger than one
data-channel message (64 KiB by default, never more than the peer's
``a=max-message-size``) are transfers. Pieces are written under flow control:
past `high_water` bytes buffered in the channel (``bufferedAmount``), the sender waits
for ``bufferedamountlow`` (fired at `low_water`), so a 1 GB send never holds more than
about `high_water` bytes in aiortc's queues. If the link closes, or the peer leaves the
room, in the middle of a transfer, the sender's ``send`` and the receiver's ``recv``
raise `PeerLinkClosed` (`PeerLeft`) saying how far it got: never a hang.

**A receiver bounds what a peer makes it hold.** A transfer larger than
`max_transfer_bytes` (an option of `PeerNetwork`, 256 MiB by default), or one that grows
past the size it declared (a compressed one is inflated with a bound), is refused: the
receiver's ``recv`` raises `TransferRefused` naming the option (and the link goes on
with the next payload), the sender's ``send`` raises it with the receiver's reason.

**Loopback.** aiortc gathers no loopback candidates; ``loopback=True`` (what the tests
use) gathers 127.0.0.1 only, for peers on one machine, and such a link tries only the
peer's loopback candidates (see `iavicenne.ice`, also for ``$IAVICENNE_ICE_ADDRESSES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from iavicenne_ext import protocol as p

from . import ice, wire
from .discovery import discover_server
from .errors import PeerLeft, PeerLinkClosed, PeerLinkError, PeerUnreachable, TransferRefused
from .events import EventEmitter, EventStream, PeerEvent, Signal
from .signaling import SignalingClient
from .wire import CHANNEL_LABEL, DEFAULT_REMOTE_MAX_MESSAGE, Tag

log = logging.getLogger("iavicenne.peer")

_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:(\d+)", re.MULTILINE)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@dataclass(slots=True)
class Progress:
    """How far a transfer is: `done` of `total` bytes (before compression)."""

    peer_id: str
    direction: str  # "send" or "receive"
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class _Refusal:
    """In the inbox where a refused transfer's payload would have been: `recv` raises it."""

    error: TransferRefused


# -- one link ----------------------------------------------------------------------------
class PeerLink:
    """A data channel to one peer (W3C names: `pc` is the RTCPeerConnection, `channel` the
    RTCDataChannel). Made by `PeerNetwork.connect` / `accept`, not directly."""

    def __init__(self, network: PeerNetwork, peer_id: str, *, offerer: bool) -> None:
        self.network = network
        self.peer_id = peer_id
        self.offerer = offerer
        self.state = "connecting"  # -> "open" -> "closed"
        self.events = EventEmitter()
        self.error: PeerLinkClosed | PeerLinkError | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=network._ice_servers()))
        self._reassembler = wire.Reassembler(network.max_transfer_bytes)
        self.channel: RTCDataChannel | None = None
        self.max_message_size = network.chunk_size
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._opened.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._drained: asyncio.Future[None] | None = None
        self._done: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self._sending: list[int] | None = None  # [sent, total] of the transfer under way
        self._closing: asyncio.Future[Any] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        if offerer:
            self._attach(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        else:
            self.pc.on("datachannel", self._attach)

    def __repr__(self) -> str:
        return f"<PeerLink {self.network.peer_id!r} -> {self.peer_id!r} {self.state}>"

    # -- public -----------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.state == "open"

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """``message`` (each payload), ``progress`` (`Progress` of incoming transfers), ``close``."""
        return self.events.on(kind, callback)

    def stream(self, *kinds: str) -> EventStream:
        return self.events.stream(*kinds)

    @property
    def max_transfer_bytes(self) -> int:
        """The largest transfer this side takes from the peer (the network's, unless set here)."""
        return self._reassembler.max_transfer_bytes

    @max_transfer_bytes.setter
    def max_transfer_bytes(self, value: int) -> None:
        self._reassembler.max_transfer_bytes = value

    async def wait_open(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.shield(self._opened), timeout)

    async def send(
        self,
        data: str | bytes | bytearray | memoryview | Any,
        *,
        progress: Callable[[Progress], Any] | None = None,
        compress: bool | str | None = None,
    ) -> None:
        """Send text, bytes or a JSON-able object; returns when it is handed to the channel
        (a transfer: when the peer has reassembled it). `progress` is called with a
        `Progress` as a transfer goes; `compress` (True, False or "auto": compress when a
        sample shrinks) defaults to the network's."""
        await self.wait_open()
        kind, payload = wire.encode_payload(data)
        compress = self.network.compress if compress is None else compress
        async with self._send_lock:
            self._check()
            if compress or not wire.fits(kind, payload, self.max_message_size):
                await self._transfer(kind, payload, progress, compress)
            else:
                await self._write(wire.single_message(kind, payload, data if isinstance(data, str) else None))

    async def recv(self, timeout: float | None = None) -> Any:
        """The next payload (str, bytes or the decoded JSON value), in the order sent.

        Raises `PeerLinkClosed` / `PeerLeft` once the link is closed and everything that
        arrived before was read, and `TransferRefused` in place of a payload this side
        refused (the next call returns the next payload)."""
        item = await asyncio.wait_for(self._inbox.get(), timeout)
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)
            assert self.error is not None
            raise self.error
        if isinstance(item, _Refusal):
            raise item.error
        return item

    def __aiter__(self) -> PeerLink:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except PeerLinkClosed as error:
            if error.cut_transfer:
                raise  # something was lost: say so
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Close the channel and the peer connection (the peer sees its link close)."""
        self._fail(PeerLinkClosed(f"the link to {self.peer_id!r} was closed by this side"))
        if self._closing is not None:
            await asyncio.shield(self._closing)

    # -- sending ----------------------------------------------------------------------
    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def _write(self, data: bytes | str) -> None:
        """Hand one message to the channel, waiting while more than high_water is buffered."""
        channel = self.channel
        assert channel is not None
        while channel.bufferedAmount > self.network.high_water:
            self._check()
            self._drained = asyncio.get_running_loop().create_future()
            self._drained.add_done_callback(_retrieve)
            try:
                await self._drained
            finally:
                self._drained = None
        self._check()
        channel.send(data)

    def _on_buffered_amount_low(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def _transfer(
        self, kind: int, payload: bytes | bytearray, progress: Callable[[Progress], Any] | None, compress: bool | str
    ) -> None:
        total = len(payload)
        if compress == "auto":
            compress = wire.worth_compressing(payload)
        transfer = next(self._ids)
        done = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # failed before it is awaited: no "never retrieved" noise
        self._done[transfer] = done
        self._sending = [0, total]
        finished = False
        try:
            for message, sent in wire.transfer_messages(transfer, kind, payload, self.max_message_size - 1, bool(compress)):
                if done.done():
                    break  # the peer refused it: `await done` raises why
                await self._write(message)
                if sent != self._sending[0]:
                    self._sending[0] = sent
                    if progress is not None:
                        progress(Progress(self.peer_id, "send", sent, total))
            finished = True
            await done  # the peer has it all
        except TransferRefused:
            raise
        except PeerLinkError as error:
            raise type(error)(
                f"{error} in the middle of a transfer: {_mb(self._sending[0])} of {_mb(total)} handed to the channel, "
                "not confirmed by the peer"
            ) from None
        finally:
            self._done.pop(transfer, None)
            self._sending = None
            if (
                not finished
                and not done.done()
                and self.error is None
                and self.channel is not None
                and self.channel.readyState == "open"
            ):
                with contextlib.suppress(Exception):  # cancelled: tell the peer to drop the pieces
                    self.channel.send(wire.id_message(Tag.ABORT, transfer))

    # -- receiving --------------------------------------------------------------------
    def _on_message(self, data: str | bytes) -> None:
        try:
            got = self._reassembler.receive(data)
        except TransferRefused as refused:
            self._refuse(refused)
            return
        except PeerLinkError as error:
            log.warning("iavicenne: a malformed message from %s: %s", self.peer_id, error)
            self.events.emit("error", PeerLinkError(f"from {self.peer_id!r}: {error}"))
            return
        if isinstance(got, wire.Piece):
            self.events.emit("progress", Progress(self.peer_id, "receive", got.done, got.total))
        elif isinstance(got, wire.Payload):
            if got.transfer is not None and self.channel is not None:
                self.channel.send(wire.id_message(Tag.DONE, got.transfer))
            self._deliver(got.value)
        elif isinstance(got, wire.Confirmed):
            waiter = self._done.get(got.transfer)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(got, wire.Refused):
            waiter = self._done.get(got.transfer)
            if waiter is not None and not waiter.done():
                waiter.set_exception(TransferRefused(f"{self.peer_id!r} answered: {got.reason}", got.transfer))

    def _refuse(self, refused: TransferRefused) -> None:
        """Tell the sender (ABORT with the reason), and the reader (in the payload's place)."""
        if refused.transfer is not None and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(wire.refusal_message(refused.transfer, str(refused)))
        error = TransferRefused(f"from {self.peer_id!r}: {refused}", refused.transfer)
        log.warning("iavicenne: %s", error)
        self._inbox.put_nowait(_Refusal(error))
        self.events.emit("error", error)

    def _deliver(self, value: Any) -> None:
        self._inbox.put_nowait(value)
        self.events.emit("message", value)

    # -- the connection ---------------------------------------------------------------
    def _attach(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            return  # a second channel (a browser's own): this link uses the first one
        self.channel = channel
        channel.bufferedAmountLowThreshold = self.network.low_water
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._on_buffered_amount_low)
        channel.on("close", lambda: self._fail(PeerLinkClosed(f"the data channel to {self.peer_id!r} closed")))
        # the answering side may get the channel already open (the SCTP association came
        # up before the `datachannel` event ran): no `open` event would follow
        if channel.readyState == "open":
            self._on_open()
        else:
            channel.on("open", self._on_open)

    def _on_open(self) -> None:
        if self.state != "connecting":
            return
        remote = self.pc.remoteDescription
        found = _MAX_MESSAGE_SIZE.search(remote.sdp) if remote is not None else None
        remote_max = int(found.group(1)) if found else DEFAULT_REMOTE_MAX_MESSAGE
        if remote_max:  # 0: any size
            self.max_message_size = min(self.network.chunk_size, remote_max)
        self.state = "open"
        if not self._opened.done():
            self._opened.set_result(None)
        self.network._link_open(self)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("iavicenne: %r connection %s", self, state)
        if state == "failed":
            self._fail(
                PeerUnreachable(
                    f"no network path to {self.peer_id!r} (ICE failed): on one machine without a network use "
                    "loopback=True; across networks, give the server a TURN server (IAvicenne.ice_servers)"
                )
            )
        elif state == "closed":
            self._fail(PeerLinkClosed(f"the connection to {self.peer_id!r} closed"))

    async def _offer(self) -> None:
        offer = await self.pc.createOffer()
        with ice.host_addresses(self.network.addresses):
            await self.pc.setLocalDescription(offer)
        if self.state == "closed":
            return  # dropped meanwhile (glare): the peer must not see this offer
        local = self.pc.localDescription
        await self.network.signaling.relay(p.OFFER, self.peer_id, {"type": local.type, "sdp": local.sdp})

    async def _answer(self, offer: dict[str, Any]) -> None:
        sdp = ice.reachable_sdp(offer["sdp"], self.network.addresses)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=offer.get("type", "offer")))
        answer = await self.pc.createAnswer()
        with ice.host_addresses(self.network.addresses):
            await self.pc.setLocalDescription(answer)
        if self.state == "closed":
            return
        local = self.pc.localDescription
        await self.network.signaling.relay(p.ANSWER, self.peer_id, {"type": local.type, "sdp": local.sdp})

    async def _on_answer(self, answer: dict[str, Any]) -> None:
        if self.offerer and self.pc.signalingState == "have-local-offer":
            sdp = ice.reachable_sdp(answer["sdp"], self.network.addresses)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=answer.get("type", "answer")))

    async def _on_candidate(self, body: dict[str, Any] | None) -> None:
        """A trickled candidate (browsers send them; aiortc puts its own in the SDP)."""
        if not body or not body.get("candidate"):
            await self.pc.addIceCandidate(None)  # end of candidates
            return
        text = body["candidate"]
        candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
        if not ice.reachable_candidate(candidate.ip, self.network.addresses):
            return
        candidate.sdpMid = body.get("sdpMid")
        candidate.sdpMLineIndex = body.get("sdpMLineIndex")
        await self.pc.addIceCandidate(candidate)

    def _fail(self, error: PeerLinkError, *, quietly: bool = False) -> None:
        """Close for good with `error`: every wait ends with it; the pc closes in the background."""
        if self.state == "closed":
            return
        incoming = self._reassembler.incoming
        if incoming is not None and isinstance(error, PeerLinkClosed):
            error = type(error)(
                f"{error} in the middle of a transfer: {_mb(len(incoming.buffer))} of {_mb(incoming.size)} received"
            )
            error.cut_transfer = True
            self._reassembler.incoming = None
        self.state = "closed"
        self.error = error
        for waiter in (self._opened, self._drained, *self._done.values()):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        self._inbox.put_nowait(_CLOSED)
        self._closing = asyncio.ensure_future(self._close_pc())
        if not quietly:
            self.events.emit("close", error)
        self.events.close()
        self.network._link_closed(self, error, quietly=quietly)

    async def _close_pc(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()


_CLOSED = object()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# -- the peers of one signaling room ----------------------------------------------------------
class PeerNetwork:
    """This peer's links in one signaling room: opens links on request, answers offers.

    Options: `loopback` (gather 127.0.0.1 only: peers on one machine) or
    `host_addresses` (exactly these local addresses; with neither, those
    ``$IAVICENNE_ICE_ADDRESSES`` lists, else aioice's interfaces); `ice_servers` (W3C
    dicts; default: what the server hands out in `joined`); `chunk_size`, `high_water`,
    `low_water` (bytes; see the module docstring); `compress` (False, True or "auto");
    `max_transfer_bytes` (the largest transfer a peer may send us; see the module docstring).
    """

    def __init__(
        self,
        signaling: SignalingClient,
        *,
        loopback: bool = False,
        host_addresses: Sequence[str] | None = None,
        ice_servers: Sequence[dict[str, Any]] | None = None,
        chunk_size: int = 64 * 1024,
        high_water: int = 1 << 20,
        low_water: int = 256 * 1024,
        compress: bool | str = False,
        max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
        owns_signaling: bool = False,
    ) -> None:
        if not 0 <= low_water < high_water:
            raise ValueError("need 0 <= low_water < high_water")
        if max_transfer_bytes < 0:
            raise ValueError("max_transfer_bytes must be 0 or more")
        ice._install()  # links choose their local addresses; other aiortc users see no change
        self.signaling = signaling
        self.addresses: tuple[str, ...] | None = (
            ice.LOOPBACK if loopback else tuple(host_addresses) if host_addresses else ice.configured_addresses()
        )
        self.ice_servers_override = list(ice_servers) if ice_servers is not None else None
        self.chunk_size = chunk_size
        self.high_water = high_water
        self.low_water = low_water
        self.compress = compress
        self.max_transfer_bytes = max_transfer_bytes
        self.links: dict[str, PeerLink] = {}
        self.events = EventEmitter()
        self._owns_signaling = owns_signaling
        self._accepted: asyncio.Queue[PeerLink] = asyncio.Queue()
        self._waiters: dict[str, list[asyncio.Future[PeerLink]]] = {}
        self._steps: dict[str, asyncio.Queue[Any]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._off = [signaling.on("signal", self._on_signal), signaling.on("peer", self._on_peer)]

    @classmethod
    async def join(
        cls,
        room: str,
        peer_id: str,
        url: str | None = None,
        token: str | None = None,
        *,
        signaling_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> PeerNetwork:
        """Join signaling room `room` as `peer_id` (server found as `discover_server` does)."""
        signaling = SignalingClient(discover_server(url, token), room, peer_id, **(signaling_options or {}))
        # listen before joining: the others see us join and may send an offer at once
        network = cls(signaling, owns_signaling=True, **options)
        try:
            await signaling.start()
        except BaseException:
            await network.close()
            raise
        return network

    @property
    def peer_id(self) -> str:
        return self.signaling.peer_id

    @property
    def room(self) -> str:
        return self.signaling.room

    @property
    def peers(self) -> set[str]:
        return set(self.signaling.peers)

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """``link`` (a `PeerLink` that opened) and ``peer`` (`PeerEvent`, from signaling)."""
        return self.events.on(kind, callback)

    async def connect(self, peer_id: str, timeout: float | None = 30.0) -> PeerLink:
        """An open link to `peer_id` (waits for it to join the room, then for the channel)."""
        p.check_name(peer_id, "peer_id")
        if peer_id == self.peer_id:
            raise ValueError("cannot open a link to oneself")
        self._check()

        async def opened() -> PeerLink:
            await self.signaling.wait_for_peer(peer_id)
            link = self.links.get(peer_id)
            if link is not None and link.open:
                return link
            waiter: asyncio.Future[PeerLink] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(peer_id, []).append(waiter)
            if link is None:
                self._step(peer_id, "connect")
            return await waiter

        try:
            return await asyncio.wait_for(opened(), timeout)
        except asyncio.TimeoutError:
            where = "did not open" if peer_id in self.signaling.peers else "is not in the room"
            raise PeerUnreachable(f"the link to {peer_id!r} {where} within {timeout} s") from None

    async def accept(self, timeout: float | None = None) -> PeerLink:
        """The next link another peer opened to us."""
        self._check()
        return await asyncio.wait_for(self._accepted.get(), timeout)

    async def close(self) -> None:
        """Close every link (and the signaling connection when `join` made it)."""
        if self._closed:
            return
        self._closed = True
        for off in self._off:
            off()
        links = list(self.links.values())
        for link in links:
            await link.close()
        for worker in self._workers.values():
            worker.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(PeerLinkClosed("the peer network was closed"))
        if self._owns_signaling:
            await self.signaling.close()
        self.events.close()

    async def __aenter__(self) -> PeerNetwork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- negotiation: one ordered queue of steps per peer ---------------------------------
    def _check(self) -> None:
        if self._closed:
            raise PeerLinkClosed("the peer network was closed")

    def _ice_servers(self) -> list[Any]:
        servers = self.ice_servers_override if self.ice_servers_override is not None else self.signaling.ice_servers
        # an explicit empty list: aiortc would otherwise fall back to a public STUN server
        return ice.rtc_ice_servers(servers)

    def _on_signal(self, signal: Signal) -> None:
        self._step(signal.source, signal)

    def _on_peer(self, event: PeerEvent) -> None:
        self.events.emit("peer", event)
        if event.kind == "left":
            link = self.links.get(event.peer_id)
            if link is not None:
                link._fail(PeerLeft(f"peer {event.peer_id!r} left the room"))

    def _step(self, peer_id: str, step: Any) -> None:
        if self._closed:
            return
        queue = self._steps.get(peer_id)
        if queue is None:
            queue = self._steps[peer_id] = asyncio.Queue()
            self._workers[peer_id] = asyncio.ensure_future(self._negotiate(peer_id, queue))
        queue.put_nowait(step)

    async def _negotiate(self, peer_id: str, queue: asyncio.Queue[Any]) -> None:
        while True:
            step = await queue.get()
            link = self.links.get(peer_id)
            log.debug("iavicenne: %s <-> %s: %s (link %r)", self.peer_id, peer_id, getattr(step, "kind", step), link)
            try:
                if step == "connect":
                    if link is None:
                        link = self._new_link(peer_id, offerer=True)
                        await link._offer()
                elif step.kind == p.OFFER:
                    if link is not None and link.offerer and link.state == "connecting":
                        if self.peer_id < peer_id:
                            log.debug("iavicenne: glare with %s: our offer wins", peer_id)
                            continue  # glare, and our offer wins: they will answer it
                        log.debug("iavicenne: glare with %s: their offer wins", peer_id)
                        link._fail(PeerLinkClosed("replaced: both sides offered; the lower peer_id's offer won"), quietly=True)
                    elif link is not None:
                        # a new offer on a link we have: the peer started again
                        link._fail(PeerLinkClosed(f"peer {peer_id!r} opened a new link, replacing this one"))
                    link = self._new_link(peer_id, offerer=False)
                    await link._answer(step.body or {})
                elif link is not None and step.kind == p.ANSWER:
                    await link._on_answer(step.body or {})
                elif link is not None and step.kind == p.ICE_CANDIDATE:
                    await link._on_candidate(step.body)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("iavicenne: negotiating with %s failed: %s", peer_id, error)
                if link is not None and link.state == "connecting":
                    link._fail(PeerUnreachable(f"could not negotiate a link with {peer_id!r}: {error}"))

    def _new_link(self, peer_id: str, *, offerer: bool) -> PeerLink:
        link = PeerLink(self, peer_id, offerer=offerer)
        self.links[peer_id] = link
        return link

    def _link_open(self, link: PeerLink) -> None:
        if self.links.get(link.peer_id) is not link:
            return
        waiters = self._waiters.pop(link.peer_id, [])
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(link)
        if not link.offerer and not waiters:
            self._accepted.put_nowait(link)
        self.events.emit("link", link)

    def _link_closed(self, link: PeerLink, error: PeerLinkError, *, quietly: bool) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
        if quietly:
            return  # replaced by another link to the same peer: its waiters wait for that one
        for waiter in self._waiters.pop(link.peer_id, []):
            if not waiter.done():
                waiter.set_exception(error)


__all__ = ["PeerLink", "PeerNetwork", "Progress"]
