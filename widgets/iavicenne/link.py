"""What every peer link does, whatever carries its messages: `Link`.

A link to one peer sends text, bytes and JSON-able objects (never pickle: a peer must
not be able to run code in our kernel) as `iavicenne.wire` messages: one message when
it fits, else a transfer (START, DATA pieces under flow control, END, answered by DONE)
with progress, bounded on the receiving side (`max_transfer_bytes`, a transfer never
grows past what it declared). Two things carry the messages, and the user sees one API:

* `iavicenne.direct.PeerLink`: a WebRTC data channel, peer to peer (``path == "direct"``);
* `iavicenne.relay.RelayLink`: the signaling server, when no direct path exists (UDP
  blocked, no TURN server) (``path == "relay"``).

A link belongs to an owner (`LinkOwner`: the `iavicenne.peer.PeerNetwork`), which it
tells when it opens and when it closes; the owner closes it with `close_with` (the peer
left, a newer link replaced it). A subclass supplies `_write` (hand one message on,
waiting while too much is buffered), `_send_now` / `_can_send_now` (a short control
message: DONE, ABORT) and `_shutdown`, and calls `_became_open` once messages can flow
and `_on_message` for each that arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from . import wire
from .errors import PeerLinkClosed, PeerLinkError, TransferRefused
from .events import EventEmitter, EventStream, Subscription
from .wire import Tag

log = logging.getLogger("iavicenne.peer")


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


_CLOSED = object()


def same_identity(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two public identities (as the server verified them) are one person: the
    same ``username``, the one thing nobody else can have (a name or display name can)."""
    if not a or not b:
        return False
    username = a.get("username")
    return isinstance(username, str) and bool(username) and username == b.get("username")


def retrieve(future: asyncio.Future[Any]) -> None:
    """A done callback that reads a future's exception (no "never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


class LinkOwner(Protocol):
    """What a `Link` needs from whoever made it (`iavicenne.peer.PeerNetwork`)."""

    @property
    def peer_id(self) -> str:
        """This side's peer id."""
        ...

    @property
    def max_transfer_bytes(self) -> int:
        """The largest transfer a link takes from its peer, unless the link says otherwise."""
        ...

    @property
    def compress(self) -> bool | str:
        """What `Link.send` does when not told: False, True or "auto"."""
        ...

    def link_opened(self, link: Link) -> None:
        """`link` can carry messages now."""
        ...

    def link_closed(self, link: Link, error: PeerLinkError, *, quietly: bool) -> None:
        """`link` closed for good with `error` (`quietly`: replaced by another link to the same peer)."""
        ...


class Link:
    """A link to one peer (`peer_id`) of a `LinkOwner`; made by the owner, not directly.

    `state` goes ``"connecting"`` → ``"open"`` → ``"closed"``; `path` says what carries
    it (``"direct"`` or ``"relay"``); `error` is why it closed. `identity` is who the
    other end is, as the server verified it (its public identity: ``username``, ``name``,
    ``display_name``), known from its first offer, answer or relay frame; None before,
    or from a server that does not say.
    """

    path: ClassVar[str] = "direct"

    def __init__(self, network: LinkOwner, peer_id: str, *, offerer: bool, max_message_size: int) -> None:
        self.network = network
        self.peer_id = peer_id
        self.offerer = offerer
        self.state = "connecting"  # -> "open" -> "closed"
        self.identity: dict[str, Any] | None = None
        self.events = EventEmitter()
        self.error: PeerLinkClosed | PeerLinkError | None = None
        self.max_message_size = max_message_size
        self._reassembler = wire.Reassembler(network.max_transfer_bytes)
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._opened.add_done_callback(retrieve)
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._done: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self._sending: list[int] | None = None  # [sent, total] of the transfer under way
        self._closing: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.network.peer_id!r} -> {self.peer_id!r} {self.state} ({self.path})>"

    # -- public -----------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.state == "open"

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Subscription:
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
        """Send text, bytes or a JSON-able object; returns when it is handed on (a
        transfer: when the peer has reassembled it). `progress` is called with a
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

    def __aiter__(self) -> Link:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except PeerLinkClosed as error:
            if error.cut_transfer:
                raise  # something was lost: say so
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Close the link (the peer sees its link close)."""
        self.close_with(PeerLinkClosed(f"the link to {self.peer_id!r} was closed by this side"))
        if self._closing is not None:
            await asyncio.shield(self._closing)

    def close_with(self, error: PeerLinkError, *, quietly: bool = False) -> None:
        """Close for good with `error`: every wait ends with it; the carrier closes in the
        background. `quietly`: no ``close`` event (a link that replaces it is on its way)."""
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
        for waiter in self._waiters():
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        self._inbox.put_nowait(_CLOSED)
        self._closing = asyncio.ensure_future(self._shutdown())
        if not quietly:
            self.events.emit("close", error)
        self.events.close()
        self.network.link_closed(self, error, quietly=quietly)

    # -- what a carrier supplies ------------------------------------------------------
    async def _write(self, data: bytes | str) -> None:
        """Hand one message on, waiting while more than the network's high_water is buffered."""
        raise NotImplementedError

    def _can_send_now(self) -> bool:
        return False

    def _send_now(self, data: bytes) -> None:
        """Send a short control message (DONE, ABORT) without waiting."""
        raise NotImplementedError

    async def _shutdown(self) -> None:
        """Release what carries the link (in the background, once closed)."""

    # -- sending ----------------------------------------------------------------------
    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def _transfer(
        self, kind: int, payload: bytes | bytearray, progress: Callable[[Progress], Any] | None, compress: bool | str
    ) -> None:
        total = len(payload)
        if compress == "auto":
            compress = wire.worth_compressing(payload)
        transfer = next(self._ids)
        done = asyncio.get_running_loop().create_future()
        done.add_done_callback(retrieve)  # failed before it is awaited: no "never retrieved" noise
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
                f"{error} in the middle of a transfer: {_mb(self._sending[0])} of {_mb(total)} handed on, "
                "not confirmed by the peer"
            ) from None
        finally:
            self._done.pop(transfer, None)
            self._sending = None
            if not finished and not done.done() and self.error is None and self._can_send_now():
                with contextlib.suppress(Exception):  # cancelled: tell the peer to drop the pieces
                    self._send_now(wire.id_message(Tag.ABORT, transfer))

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
            if got.transfer is not None and self._can_send_now():
                self._send_now(wire.id_message(Tag.DONE, got.transfer))
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
        if refused.transfer is not None and self._can_send_now():
            self._send_now(wire.refusal_message(refused.transfer, str(refused)))
        error = TransferRefused(f"from {self.peer_id!r}: {refused}", refused.transfer)
        log.warning("iavicenne: %s", error)
        self._inbox.put_nowait(_Refusal(error))
        self.events.emit("error", error)

    def _deliver(self, value: Any) -> None:
        self._inbox.put_nowait(value)
        self.events.emit("message", value)

    # -- state ------------------------------------------------------------------------
    def _became_open(self) -> None:
        if self.state != "connecting":
            return
        self.state = "open"
        if not self._opened.done():
            self._opened.set_result(None)
        self.network.link_opened(self)

    def _waiters(self) -> tuple[asyncio.Future[Any] | None, ...]:
        """Futures that must end with the link's error (a subclass adds its own)."""
        return (self._opened, *self._done.values())


__all__ = ["Link", "LinkOwner", "Progress", "retrieve", "same_identity"]
