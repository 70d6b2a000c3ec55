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

**No direct path.** With a `relay` (``relay=True``: over this network's signaling
socket; a room session's ``join()`` asks for one), a link that is not open within
`relay_after` seconds (10; ICE that fails sooner says so sooner) goes through the
signaling server instead: a `iavicenne.relay.RelayLink`, the same API, ``path ==
"relay"``. The side that asked for the link opens the relay and drops its direct attempt;
when both ask at once, the lower peer_id's relay wins, as its offer would.

**Who answers.** The server says who sent each signal and relay frame (``source_peer_id``
and ``source_identity``, verified by it), and each link keeps the identity
(`Link.identity`). Given `verify_identity(peer_id, identity)` (a room session gives one:
the identity must be the one holding that name in the room's presence), a network takes
no answer, answers no offer and opens no relay from an identity it refuses: the attempt
closes with `PeerIdentityMismatch`, and a refused offer is a ``refused`` event. What a link
does whatever carries it (transfers, flow control, progress, bounds) is
`iavicenne.link.Link`'s; `iavicenne.direct.PeerLink` adds the data channel. The network
owns its links (`iavicenne.link.LinkOwner`, and the `DirectLinkOwner` and
`RelayLinkOwner` they add to it): a link tells it when it opens or closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import iavicenne_protocol as p

from . import ice, relay, wire
from .direct import PeerLink
from .discovery import discover_server
from .errors import PeerIdentityMismatch, PeerLeft, PeerLinkClosed, PeerLinkError, PeerUnreachable
from .events import EventEmitter, PeerEvent, Signal
from .link import Link, Progress, retrieve, same_identity
from .relay import RELAY_CHUNK_MAX, RELAY_CHUNK_SIZE, RELAY_WINDOW, RelayLink, RelayTransport, SignalingRelay, new_link_id
from .signaling import SignalingClient

log = logging.getLogger("iavicenne.peer")

RELAY_ANSWER = 15.0  # seconds a relay-open waits for the peer's relay-accept

#: ``verify_identity(peer_id, identity)``: raises `PeerIdentityMismatch` when `identity`
#: (as the server verified it; None: it did not say) may not hold `peer_id`
IdentityCheck = Callable[[str, dict[str, Any] | None], None]


# -- the peers of one signaling room ----------------------------------------------------------
class PeerNetwork:
    """This peer's links in one signaling room: opens links on request, answers offers.

    Options: `loopback` (gather 127.0.0.1 only: peers on one machine) or
    `host_addresses` (exactly these local addresses; with neither, those
    ``$IAVICENNE_ICE_ADDRESSES`` lists, else aioice's interfaces); `ice_servers` (W3C
    dicts; default: what the server hands out in `joined`); `chunk_size`, `high_water`,
    `low_water` (bytes; see the module docstring); `compress` (False, True or "auto");
    `max_transfer_bytes` (the largest transfer a peer may send us; see the module docstring).

    With a `relay` (True: `iavicenne.relay.SignalingRelay` over `signaling`, made and
    closed by the network; or any `iavicenne.relay.RelayTransport`), a link that cannot be
    made directly within `relay_after` seconds (or whose ICE fails sooner) goes through the
    server instead (`RelayLink`, options `relay_chunk_size`, `relay_window`;
    `relays_to(peer_id)` says which peers can take one, `user_of(peer_id)` whose they are).
    `verify_identity` checks who the server says is behind a peer (see the module docstring).
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
        relay: RelayTransport | bool | None = None,
        relay_after: float = 10.0,
        relay_chunk_size: int = RELAY_CHUNK_SIZE,
        relay_window: int = RELAY_WINDOW,
        user_of: Callable[[str], str] | None = None,
        relays_to: Callable[[str], bool] | None = None,
        verify_identity: IdentityCheck | None = None,
    ) -> None:
        if not 0 <= low_water < high_water:
            raise ValueError("need 0 <= low_water < high_water")
        if max_transfer_bytes < 0:
            raise ValueError("max_transfer_bytes must be 0 or more")
        if not 0 < relay_chunk_size <= RELAY_CHUNK_MAX:
            raise ValueError(f"relay_chunk_size must be from 1 to {RELAY_CHUNK_MAX} (what one relay frame carries)")
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
        self._own_relay = SignalingRelay(signaling) if relay is True else None  # closed with the network
        self.relay: RelayTransport | None = self._own_relay if relay is True else relay or None
        self.relay_after = relay_after
        self.relay_chunk_size = relay_chunk_size
        self.relay_window = relay_window
        # whose a peer is (the server verifies who sends what: this only reads a peer id)
        self.user_of = user_of or (lambda peer_id: peer_id)
        # which peers can take a relayed link (others, a browser page say, never answer one)
        self.relays_to = relays_to or (lambda peer_id: True)
        self.verify_identity = verify_identity
        self.links: dict[str, Link] = {}
        self.events = EventEmitter()
        self._owns_signaling = owns_signaling
        self._accepted: asyncio.Queue[Link] = asyncio.Queue()
        self._waiters: dict[str, list[asyncio.Future[Link]]] = {}
        self._steps: dict[str, asyncio.Queue[Any]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._relays: dict[str, RelayLink] = {}  # by link id
        self._closed = False
        self._off = [signaling.on("signal", self._on_signal), signaling.on("peer", self._on_peer)]
        if self.relay is not None:
            self._off.append(self.relay.on_frame(self._on_relay_frame))

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
        """``link`` (a `PeerLink` that opened), ``peer`` (`PeerEvent`, from signaling) and
        ``refused`` (a `PeerIdentityMismatch`: an offer or relay from an identity refused)."""
        return self.events.on(kind, callback)

    async def connect(self, peer_id: str, timeout: float | None = 30.0) -> Link:
        """An open link to `peer_id` (waits for it to join the room, then for the channel;
        with a relay, a link through the server when no direct one opens in time)."""
        p.check_name(peer_id, "peer_id")
        if peer_id == self.peer_id:
            raise ValueError("cannot open a link to oneself")
        self._check()

        async def opened() -> Link:
            await self.signaling.wait_for_peer(peer_id)
            known = self.signaling.identities.get(peer_id)
            refused = self._refusal(peer_id, known) if known is not None else None
            if refused is not None:
                raise refused  # the server already says who holds it: no offer to them
            link = self.links.get(peer_id)
            if link is not None and link.open:
                return link
            waiter: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(retrieve)
            self._waiters.setdefault(peer_id, []).append(waiter)
            if link is None:
                self._step(peer_id, "connect")
            if self.relay is None or not self.relays_to(peer_id):
                return await waiter
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), self.relay_after)
            except (asyncio.TimeoutError, PeerUnreachable) as why:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    return waiter.result()
                log.info("iavicenne: no direct link to %s (%s): relaying through the server", peer_id, why or "timed out")
                return await self._relay_instead(peer_id)

        try:
            return await asyncio.wait_for(opened(), timeout)
        except asyncio.TimeoutError:
            where = "did not open" if peer_id in self.signaling.peers else "is not in the room"
            raise PeerUnreachable(f"the link to {peer_id!r} {where} within {timeout} s") from None

    async def accept(self, timeout: float | None = None) -> Link:
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
        if self._own_relay is not None:
            self._own_relay.close()
        if self._owns_signaling:
            await self.signaling.close()
        self.events.close()

    async def __aenter__(self) -> PeerNetwork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check(self) -> None:
        if self._closed:
            raise PeerLinkClosed("the peer network was closed")

    # -- what links need of their owner (LinkOwner, DirectLinkOwner, RelayLinkOwner) ----------
    def rtc_ice_servers(self) -> list[Any]:
        """The STUN/TURN servers a direct link's RTCPeerConnection uses."""
        servers = self.ice_servers_override if self.ice_servers_override is not None else self.signaling.ice_servers
        # an explicit empty list: aiortc would otherwise fall back to a public STUN server
        return ice.rtc_ice_servers(servers)

    async def signal(self, kind: str, peer_id: str, body: dict[str, Any] | None) -> None:
        """Send a direct link's offer, answer or ICE candidate to `peer_id`."""
        await self.signaling.relay(kind, peer_id, body)

    def link_opened(self, link: Link) -> None:
        if self.links.get(link.peer_id) is not link:
            return
        waiters = self._waiters.pop(link.peer_id, [])
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(link)
        if not link.offerer and not waiters:
            self._accepted.put_nowait(link)
        self.events.emit("link", link)

    def link_closed(self, link: Link, error: PeerLinkError, *, quietly: bool) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
        if isinstance(link, RelayLink) and self._relays.get(link.link_id) is link:
            del self._relays[link.link_id]
        if quietly:
            return  # replaced by another link to the same peer: its waiters wait for that one
        for waiter in self._waiters.pop(link.peer_id, []):
            if not waiter.done():
                waiter.set_exception(error)

    # -- who is behind a peer -----------------------------------------------------------
    def _refusal(self, peer_id: str, identity: dict[str, Any] | None) -> PeerIdentityMismatch | None:
        """What `verify_identity` says of `identity` holding `peer_id` (None: accepted)."""
        if self.verify_identity is None:
            return None
        try:
            self.verify_identity(peer_id, identity)
        except PeerIdentityMismatch as refused:
            return refused
        return None

    def _refuse(self, refused: PeerIdentityMismatch, what: str) -> None:
        log.warning("iavicenne: %s refused: %s", what, refused)
        self.events.emit("refused", refused)

    # -- the relay: links through the server --------------------------------------------
    async def _relay_instead(self, peer_id: str) -> Link:
        """Open a `RelayLink` to `peer_id` in place of the direct attempt (which is dropped)."""
        assert self.relay is not None
        current = self.links.get(peer_id)
        if current is not None and current.open:
            return current
        if isinstance(current, PeerLink):
            current.close_with(PeerUnreachable(f"no direct path to {peer_id!r}: relaying through the server"), quietly=True)
            current = None
        waiter: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(retrieve)
        self._waiters.setdefault(peer_id, []).append(waiter)
        if current is None:  # else: a relay is being opened already (by us, or by them)
            link = self._new_relay(peer_id, offerer=True, link_id=new_link_id())
            try:
                await link.send_open()
            except Exception as error:
                link.close_with(PeerUnreachable(f"no direct path to {peer_id!r}, and the relay failed: {error}"))
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), RELAY_ANSWER)
        except asyncio.TimeoutError:
            mine = self.links.get(peer_id)
            if isinstance(mine, RelayLink) and mine.state == "connecting":
                mine.close_with(
                    PeerUnreachable(
                        f"no direct path to {peer_id!r}, and its kernel did not answer the relay within {RELAY_ANSWER:g} s "
                        "(an iavicenne without relays?): give the server a TURN server (IAvicenne.ice_servers)"
                    )
                )
            return await waiter

    def _new_relay(self, peer_id: str, *, offerer: bool, link_id: str) -> RelayLink:
        assert self.relay is not None
        link = RelayLink(self, peer_id, offerer=offerer, link_id=link_id, transport=self.relay)
        self.links[peer_id] = link
        self._relays[link_id] = link
        return link

    def _on_relay_frame(self, source: str, payload: dict[str, Any], identity: dict[str, Any] | None = None) -> None:
        """A relay frame from peer `source` (the server says who sent it, and sends us only ours)."""
        if self._closed:
            return
        link_id, kind = payload.get("link"), payload.get(relay.CONTROL)
        if not isinstance(link_id, str) or not 0 < len(link_id) <= relay.LINK_ID_MAX or source == self.peer_id:
            return
        if kind == relay.OPEN:
            if source not in self.signaling.peers:
                return  # a peer that is not in the signaling room: nothing to link (no made-up ids)
            refused = self._refusal(source, identity)
            if refused is not None:
                self._refuse(refused, f"a relay from {source!r}")
                return
            self._step(source, ("relay-open", link_id, identity))
            return
        link = self._relays.get(link_id)
        if link is None or link.peer_id != source:
            return
        if kind == relay.ACCEPT and link.offerer and link.state == "connecting":
            refused = self._refusal(source, identity)
            if refused is not None:
                link.close_with(refused)
                return
            link.identity = identity
        elif link.identity is not None and not same_identity(link.identity, identity):
            log.warning("iavicenne: a relay frame for %r from another identity (%r): dropped", source, identity)
            return
        link.receive_frame(payload)

    async def _accept_relay(self, peer_id: str, link_id: str, identity: dict[str, Any] | None = None) -> None:
        """A relay-open from `peer_id` (a step of its negotiation queue, in order with offers)."""
        assert self.relay is not None
        current = self.links.get(peer_id)
        if isinstance(current, RelayLink) and current.link_id == link_id:
            return  # the same open, again
        if isinstance(current, RelayLink) and current.offerer and current.state == "connecting" and self.peer_id < peer_id:
            return  # both opened a relay at once: the lower peer_id's wins, ours; they accept it
        if current is not None:
            replaced = (
                "both sides opened a relay; the lower peer_id's won"
                if isinstance(current, RelayLink)
                else (f"peer {peer_id!r} has no direct path to us: the link goes through the server")
            )
            current.close_with(PeerLinkClosed(f"replaced: {replaced}"), quietly=current.state != "open")
        link = self._new_relay(peer_id, offerer=False, link_id=link_id)
        link.identity = identity
        try:
            await link.send_accept()
        except Exception as error:
            link.close_with(PeerUnreachable(f"could not answer {peer_id!r}'s relay: {error}"))

    # -- negotiation: one ordered queue of steps per peer ---------------------------------
    def _on_signal(self, signal: Signal) -> None:
        self._step(signal.source, signal)

    def _on_peer(self, event: PeerEvent) -> None:
        self.events.emit("peer", event)
        if event.kind == "left":
            link = self.links.get(event.peer_id)
            if link is not None:
                link.close_with(PeerLeft(f"peer {event.peer_id!r} left the room"))

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
                        await link.make_offer()
                elif isinstance(step, tuple):  # ("relay-open", link id, identity)
                    await self._accept_relay(peer_id, step[1], step[2])
                elif step.kind == p.OFFER:
                    refused = self._refusal(peer_id, step.identity)
                    if refused is not None:
                        self._refuse(refused, f"an offer from {peer_id!r}")
                        if link is not None and link.state == "connecting":
                            link.close_with(refused)  # ours goes to the same peer id: not to them either
                        continue
                    if isinstance(link, PeerLink) and link.offerer and link.state == "connecting":
                        if self.peer_id < peer_id:
                            log.debug("iavicenne: glare with %s: our offer wins", peer_id)
                            continue  # glare, and our offer wins: they will answer it
                        log.debug("iavicenne: glare with %s: their offer wins", peer_id)
                        link.close_with(
                            PeerLinkClosed("replaced: both sides offered; the lower peer_id's offer won"), quietly=True
                        )
                    elif link is not None:
                        # a new offer on a link we have: the peer started again
                        link.close_with(PeerLinkClosed(f"peer {peer_id!r} opened a new link, replacing this one"))
                    link = self._new_link(peer_id, offerer=False)
                    link.identity = step.identity
                    await link.answer_offer(step.body or {})
                elif isinstance(link, PeerLink) and step.kind == p.ANSWER:
                    if link.offerer and link.state == "connecting":
                        refused = self._refusal(peer_id, step.identity)
                        if refused is not None:
                            link.close_with(refused)  # closes the attempt: its waiters get the mismatch
                            continue
                        link.identity = step.identity
                    await link.take_answer(step.body or {})
                elif isinstance(link, PeerLink) and step.kind == p.ICE_CANDIDATE:
                    if link.identity is not None and not same_identity(link.identity, step.identity):
                        log.warning("iavicenne: a candidate for %r from another identity: dropped", peer_id)
                        continue
                    await link.add_candidate(step.body)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("iavicenne: negotiating with %s failed: %s", peer_id, error)
                if link is not None and link.state == "connecting":
                    link.close_with(PeerUnreachable(f"could not negotiate a link with {peer_id!r}: {error}"))

    def _new_link(self, peer_id: str, *, offerer: bool) -> PeerLink:
        link = PeerLink(self, peer_id, offerer=offerer)
        self.links[peer_id] = link
        return link


__all__ = ["IdentityCheck", "PeerLink", "PeerNetwork", "Progress"]
