"""The files offered to this user in a room, as the room session keeps them: each offer
(`iavicenne.files.FileOffer`) shown in the panel and given to ``room.on_file_offer``
callbacks, answered (accepted to this kernel's peer, or declined), matched to the
link that brings its bytes, and its outcome (saved as, or why not) told to the sender.

At most `iavicenne.files.MAX_PENDING` offers wait for an answer: past that the oldest
is dropped, so a member cannot make us keep offers without end. An offer made again
(the same id) is taken once.

What the inbox needs from its room session is `InboxHost`: it does not import the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from iavicenne_protocol import control

from . import connections, files

if TYPE_CHECKING:
    from .client_room import Room as ClientRoom
    from .events import EventEmitter, Message
    from .link import Link
    from .panels.room_panel import RoomPanel
    from .peer import PeerNetwork


class InboxHost(files.FileHost, Protocol):
    """What a `FileInbox` needs from its room session, besides what each offer needs."""

    @property
    def panel(self) -> RoomPanel: ...

    @property
    def events(self) -> EventEmitter:
        """The user's events: a ``file-offer`` event for each new offer."""
        ...

    async def joined_room(self) -> ClientRoom:
        """The room, once joined (`ConnectionClosed` after ``leave``)."""
        ...

    async def peer_network(self) -> PeerNetwork: ...


class FileInbox:
    """The offers made to us (`offers`, by id, newest last)."""

    def __init__(self, host: InboxHost) -> None:
        self.host = host
        self.offers: dict[str, files.FileOffer] = {}

    def take(self, message: Message) -> None:
        """A ``file-offer`` direct message: a new offer, shown and announced."""
        host = self.host
        offer = files.parse_offer(host, message.content, message.user_id, message.identity)
        if offer is None or offer.id in self.offers:
            return  # malformed, or offered again (the same id: once is enough)
        pending = [o for o in self.offers.values() if o.state == "offered"]
        if len(pending) >= files.MAX_PENDING:  # a member cannot make us keep offers without end
            oldest = pending[0]
            oldest.fail("too many offers waiting: this one was dropped")
            self.offers.pop(oldest.id, None)
            host.kernel.call(host.panel.remove_file_offer, oldest.row)
        self.offers[offer.id] = offer
        host.kernel.call(host.panel.add_file_offer, offer.row)
        host.events.emit("file-offer", offer)

    async def answer(self, offer: files.FileOffer, accept: bool) -> None:
        """Tell the sender: accepted (the file comes to this kernel's peer) or declined."""
        room = await self.host.joined_room()
        if not accept:
            await room.direct(offer.sender, files.answer(offer, False, ""))
            return
        try:
            network = await self.host.peer_network()
            await room.direct(offer.sender, files.answer(offer, True, network.peer_id))
        except Exception as error:
            offer.fail(f"could not accept: {error}")
            raise

    async def tell_outcome(self, offer: files.FileOffer) -> None:
        """Tell the sender what became of an accepted file (``file-outcome``)."""
        room = await self.host.joined_room()
        await room.direct(offer.sender, offer.outcome())

    def for_link(self, link: Link, header: Any) -> files.FileOffer | bool:
        """The offer a file header on `link` announces: the `FileOffer` when its bytes are
        to be taken, True when it is a file header that is refused (its bytes are dropped),
        False when `header` is not a file header at all."""
        if not isinstance(header, dict) or control.kind_of(header) != files.FILE:
            return False
        offer_id = header.get("id")
        offer = self.offers.get(offer_id) if isinstance(offer_id, str) else None
        why = "nothing of that id was offered to you" if offer is None else offer.may_come_on(link, header, connections.user_of)
        if why is not None:
            self.host.report(f"refused a file from {link.peer_id}: {why}", traceback=False)
            return True
        assert offer is not None
        offer.receiving()
        return offer
