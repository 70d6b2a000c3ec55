"""A peer link over a WebRTC data channel, on aiortc: `PeerLink` (``path == "direct"``).

What a link does whatever carries it (transfers, flow control, progress, bounds) is
`iavicenne.link.Link`'s; `PeerLink` adds the RTCPeerConnection and its data channel, the
offer or answer it makes, and the answer and candidates it takes. The negotiation (who
offers, glare, identities) is its owner's (`DirectLinkOwner`: `iavicenne.peer.PeerNetwork`),
which hands it each step in order. Pieces are written under flow control: past the
owner's `high_water` bytes buffered in the channel (``bufferedAmount``), the writer waits
for ``bufferedamountlow`` (fired at `low_water`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

import iavicenne_protocol as p

from . import ice
from .errors import PeerLinkClosed, PeerUnreachable
from .link import Link, LinkOwner, retrieve
from .wire import CHANNEL_LABEL, DEFAULT_REMOTE_MAX_MESSAGE

log = logging.getLogger("iavicenne.peer")

_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:(\d+)", re.MULTILINE)


class DirectLinkOwner(LinkOwner, Protocol):
    """What a `PeerLink` needs of its owner beyond a `LinkOwner`'s: its channel's sizes,
    where it may gather candidates, and the signaling that carries its offer or answer."""

    @property
    def chunk_size(self) -> int:
        """The largest data-channel message it sends (never more than the peer's maximum)."""
        ...

    @property
    def high_water(self) -> int: ...

    @property
    def low_water(self) -> int: ...

    @property
    def addresses(self) -> tuple[str, ...] | None:
        """The local addresses it gathers candidates on (None: aioice's own choice)."""
        ...

    def rtc_ice_servers(self) -> list[Any]:
        """The STUN/TURN servers of its RTCPeerConnection (aiortc's RTCIceServer)."""
        ...

    async def signal(self, kind: str, peer_id: str, body: dict[str, Any] | None) -> None:
        """Send an offer, answer or ICE candidate to `peer_id` through signaling."""
        ...


class PeerLink(Link):
    """A data channel to one peer (W3C names: `pc` is the RTCPeerConnection, `channel` the
    RTCDataChannel). Made by `PeerNetwork.connect` / `accept`, not directly."""

    path = "direct"

    def __init__(self, network: DirectLinkOwner, peer_id: str, *, offerer: bool) -> None:
        super().__init__(network, peer_id, offerer=offerer, max_message_size=network.chunk_size)
        self.network: DirectLinkOwner = network
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=network.rtc_ice_servers()))
        self.channel: RTCDataChannel | None = None
        self._drained: asyncio.Future[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        if offerer:
            self._attach(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        else:
            self.pc.on("datachannel", self._attach)

    # -- sending ----------------------------------------------------------------------
    async def _write(self, data: bytes | str) -> None:
        """Hand one message to the channel, waiting while more than high_water is buffered."""
        channel = self.channel
        assert channel is not None
        while channel.bufferedAmount > self.network.high_water:
            self._check()
            self._drained = asyncio.get_running_loop().create_future()
            self._drained.add_done_callback(retrieve)
            try:
                await self._drained
            finally:
                self._drained = None
        self._check()
        channel.send(data)

    def _can_send_now(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    def _send_now(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.send(data)

    def _on_buffered_amount_low(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _waiters(self) -> tuple[asyncio.Future[Any] | None, ...]:
        return (*super()._waiters(), self._drained)

    # -- the connection ---------------------------------------------------------------
    def _attach(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            return  # a second channel (a browser's own): this link uses the first one
        self.channel = channel
        channel.bufferedAmountLowThreshold = self.network.low_water
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._on_buffered_amount_low)
        channel.on("close", lambda: self.close_with(PeerLinkClosed(f"the data channel to {self.peer_id!r} closed")))
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
        self._became_open()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("iavicenne: %r connection %s", self, state)
        if state == "failed":
            self.close_with(
                PeerUnreachable(
                    f"no network path to {self.peer_id!r} (ICE failed): on one machine without a network use "
                    "loopback=True; across networks, give the server a TURN server (IAvicenne.ice_servers)"
                )
            )
        elif state == "closed":
            self.close_with(PeerLinkClosed(f"the connection to {self.peer_id!r} closed"))

    # -- negotiation steps (the owner calls them in order) ------------------------------
    async def make_offer(self) -> None:
        """Offer the link to the peer (this side opens it)."""
        offer = await self.pc.createOffer()
        with ice.host_addresses(self.network.addresses):
            await self.pc.setLocalDescription(offer)
        if self.state == "closed":
            return  # dropped meanwhile (glare): the peer must not see this offer
        local = self.pc.localDescription
        await self.network.signal(p.OFFER, self.peer_id, {"type": local.type, "sdp": local.sdp})

    async def answer_offer(self, offer: dict[str, Any]) -> None:
        """Take the peer's `offer` and answer it."""
        sdp = ice.reachable_sdp(offer["sdp"], self.network.addresses)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=offer.get("type", "offer")))
        answer = await self.pc.createAnswer()
        with ice.host_addresses(self.network.addresses):
            await self.pc.setLocalDescription(answer)
        if self.state == "closed":
            return
        local = self.pc.localDescription
        await self.network.signal(p.ANSWER, self.peer_id, {"type": local.type, "sdp": local.sdp})

    async def take_answer(self, answer: dict[str, Any]) -> None:
        """Take the peer's answer to our offer (ignored when no offer of ours waits for one)."""
        if self.offerer and self.pc.signalingState == "have-local-offer":
            sdp = ice.reachable_sdp(answer["sdp"], self.network.addresses)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=answer.get("type", "answer")))

    async def add_candidate(self, body: dict[str, Any] | None) -> None:
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

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()


__all__ = ["DirectLinkOwner", "PeerLink"]
