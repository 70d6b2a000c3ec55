"""`RoomSession`: a notebook's membership of one room, what ``join`` returns.

The session is the public face of a membership: it owns the panel, the presence we
send and the user's events, routes what the client says to its parts, and hands the
work to them, each in a module of its own and each asking the session for what it needs
through a small interface of its own (none imports this module):

* `iavicenne.room_connection`: the connection, from finding the server to leaving;
* `iavicenne.conversation`: the messages, the recent history, the waits;
* `iavicenne.member_connections`: the members' connections, where they are, whose they are;
* `iavicenne.room_links`: the peer network and one `PeerSession` a member connection;
* `iavicenne.file_inbox`: the files offered to us.

Every public method can be called from any thread (`iavicenne.background`); what fails
shows in the panel's error area and in `errors` (see `iavicenne.room` for the whole
design).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import iavicenne_protocol as p
from iavicenne_protocol import control

from . import connections, share, wire
from .background import KernelLoop, Pending, Report, callback_name, guarded, on_session_loop
from .conversation import Conversation
from .errors import ClientError, ConnectionClosed
from .events import EventEmitter, EventStream, Message, PresenceEvent, Subscription
from .file_inbox import FileInbox
from .files import FILE_OFFER
from .member_connections import DESCRIBE_WAIT, MemberConnections, current_notebook
from .panels.room_panel import RoomPanel
from .room_connection import RoomConnection, expected_user_id
from .room_links import RoomLinks
from .shared import SharedState

if TYPE_CHECKING:
    from .client import RoomClient
    from .client_room import Room as ClientRoom
    from .connections import Connection
    from .errors import PeerIdentityMismatch
    from .files import FileOffer
    from .link import Link
    from .peer import PeerNetwork
    from .peer_session import PeerSession

T = TypeVar("T")
HISTORY = 20  # messages of recent history shown on join, unless told


class _Default:
    def __repr__(self) -> str:
        return "<default>"


#: `join`'s status when none is given: "available", or what the session it replaces had
DEFAULT_STATUS: Any = _Default()


def check_name(value: Any, what: str) -> str:
    """A room or user name, or a `ValueError` in one sentence that says the rule."""
    try:
        return p.check_name(value, what)
    except p.ProtocolError as error:
        raise ValueError(error.message) from None


class RoomSession:
    """A notebook's membership of one room: the panel, and the API behind it.

    Created by `join`. Await it (``await room`` or ``await room.ready()``) to wait until
    the room is joined; everything else can be called at once (from any thread) and is
    carried out once the connection is up.
    """

    def __init__(
        self,
        name: str,
        *,
        user_id: str | None = None,
        url: str | None = None,
        token: str | None = None,
        status: str | None = DEFAULT_STATUS,
        state: dict[str, Any] | None = None,
        peers: bool = True,
        loopback: bool | None = None,
        host_addresses: Sequence[str] | None = None,
        peer_timeout: float = 60.0,
        history: int = HISTORY,
        relay: bool = True,
        relay_after: float = 10.0,
        max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
        max_dataframe_rows: int = share.MAX_ROWS,
        max_dataframe_bytes: int = share.MAX_BYTES,
        loop: asyncio.AbstractEventLoop | None = None,
        connection_tag: str | None = None,
        **client_options: Any,
    ) -> None:
        self.name = check_name(name, "room")
        if user_id is not None:
            check_name(user_id, "user_id")
        if history < 0:
            raise ValueError("history is a number of messages: 0 or more")
        self.kernel = KernelLoop(loop or asyncio.get_running_loop())
        self.loop = self.kernel.loop
        self.user_id = user_id  # None: the server's name for our identity, once joined
        self.errors: list[BaseException] = []
        self.events = EventEmitter()  # message, presence, state, gap, file-offer: for the user
        self.peer_timeout = peer_timeout
        self.relay_after = relay_after
        self.max_transfer_bytes = max_transfer_bytes
        self.max_dataframe_rows = max_dataframe_rows
        self.max_dataframe_bytes = max_dataframe_bytes
        self.tag = connection_tag or connections.kernel_tag()
        self.notebook = current_notebook()
        self._want_peers = peers
        self.presence: dict[str, Any] = dict(state or {})
        initial_status = "available" if status is DEFAULT_STATUS else status
        if initial_status is not None:
            self.presence.setdefault("status", initial_status)
        if self.notebook:
            self.presence.setdefault("notebook", self.notebook)
        # the room's shared document: kept for the session's life, synced on every join
        self.shared = SharedState(self.name, loop=self.loop)
        self.panel = RoomPanel(self.name)
        self.panel.show_user(self.user_id or expected_user_id())
        self.panel.on_send(self._from_panel(self._send_from_panel, "the room panel's Send"))
        self.panel.on_open_peer(self._from_panel(self._open_peer_from_panel, "the Peer link button"))
        self.panel.on_rejoin(self._from_panel(self._rejoin_from_panel, "the Rejoin button"))
        self._conversation = Conversation(self, history=history)
        self._connections = MemberConnections(self, notebook=self.notebook, changed=self._show_reachable)
        signaling = {key: value for key, value in client_options.items() if key in ("backoff", "connect_timeout")}
        self._links = RoomLinks(
            self,
            self._connections,
            tag=self.tag,
            loopback=loopback,
            host_addresses=host_addresses,
            relay=relay,
            signaling_options=signaling,
        )
        self._files = FileInbox(self)
        listeners: dict[str, Callable[[Any], Any]] = {
            "message": self._conversation.take,
            "control": self._on_control,
            "presence": self._on_presence,
            "gap": self._conversation.gap,
            "change": self._conversation.change,
        }
        self._connection = RoomConnection(
            self,
            url=url,
            token=token,
            options=client_options,
            inherit=status is DEFAULT_STATUS and state is None,
            listeners=listeners,
            on_joined=self._joined,
        )
        self.kernel.run(self._connection.start)

    def __repr__(self) -> str:
        return f"<RoomSession {self.name!r} as {self.user_id!r}: {self.state}, members {sorted(self.members)}>"

    def __await__(self) -> Any:
        return self.ready().__await__()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.panel)

    # -- state ------------------------------------------------------------------------
    @property
    def members(self) -> dict[str, dict[str, Any]]:
        """Who is in the room now: ``{user_id: {"state": {...}, "identity": {...}, ...}}``."""
        room = self.room
        return {k: dict(v) for k, v in list(room.members.items())} if room is not None and not room.left else {}

    @property
    def client(self) -> RoomClient | None:
        """The connection to the server (a new one on each join)."""
        return self._connection.client

    @property
    def room(self) -> ClientRoom | None:
        """The client's joined room (None before the join)."""
        return self._connection.room

    @property
    def state(self) -> str:
        """``connecting``, ``online``, ``reconnecting``, ``offline`` or ``closed``."""
        return self._connection.state

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def closed(self) -> bool:
        """Left (``leave``, until ``rejoin``)."""
        return self._connection.closed

    @property
    def peer_id(self) -> str | None:
        """This connection's peer in the room's signaling (once known)."""
        return connections.peer_id_for(self.user_id, self.tag) if self.user_id else None

    @property
    def messages(self) -> list[Message]:
        """The messages received (room and direct), the last `iavicenne.conversation.MESSAGES_KEPT` of them."""
        return self._conversation.messages

    @property
    def history(self) -> list[Message]:
        """The messages of the recent history shown on joining (and rejoining)."""
        return self._conversation.history

    @property
    def history_count(self) -> int:
        return self._conversation.history_count

    @property
    def peers(self) -> dict[str, PeerSession]:
        """The peer sessions, by member (or by what picked the connection)."""
        return self._links.sessions

    @property
    def network(self) -> PeerNetwork | None:
        """Our peer in the room's signaling, once it joined."""
        return self._links.network

    @property
    def file_offers(self) -> dict[str, FileOffer]:
        """Files offered to this user, by id, newest last."""
        return self._files.offers

    @on_session_loop
    async def ready(self, timeout: float | None = 30.0) -> RoomSession:
        """Wait until the room is joined; raises what prevented it (wrong token, no server)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._connection.joined), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"{self.name!r} not joined within {timeout} s ({self.state})") from None
        except ClientError as error:
            raise error.with_traceback(None) from None  # one sentence, not the client's insides
        return self

    async def joined_room(self) -> ClientRoom:
        """The client's room once joined; `ConnectionClosed` after ``leave``."""
        self._check_open()
        await self.ready(None)
        self._check_open()
        assert self.room is not None
        return self.room

    # -- sending ----------------------------------------------------------------------
    def send(self, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Send to the room. Returns a `Pending`: ``await`` it for the server's ack (with
        the message's ``seq``), or ignore it (a failure then shows in the panel)."""
        self._check_open()
        return self.spawn(self._send(content), "sending a message")

    def direct(self, to: str, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Send to one member only (every connection of theirs), through the server."""
        self._check_open()
        return self.spawn(self._direct(to, content), f"sending a direct message to {to}")

    def reply(self, seq: int, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Reply to message `seq`: the room sees its author (as verified) and a quote of it."""
        self._check_open()
        return self.spawn(self._on_room(lambda room: room.reply(seq, content)), f"replying to message {seq}")

    def edit(self, seq: int, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Replace the text of your message `seq`, for everyone and in the history."""
        self._check_open()
        return self.spawn(self._on_room(lambda room: room.edit(seq, content)), f"editing message {seq}")

    def delete(self, seq: int) -> Pending[dict[str, Any]]:
        """Delete message `seq` (yours, or any in a room you own): its text leaves the history."""
        self._check_open()
        return self.spawn(self._on_room(lambda room: room.delete(seq)), f"deleting message {seq}")

    def mark_read(self, seq: int | None = None) -> Pending[dict[str, Any]]:
        """Mark the room read up to `seq` (default: the last message seen), on every device."""
        self._check_open()
        return self.spawn(self._on_room(lambda room: room.mark_read(seq)), "marking the room read")

    async def unread(self) -> int:
        """How many messages you have not read here (the server's count, the same on every device)."""
        return await (await self.joined_room()).unread()

    async def export(self, format: str = "md") -> str:
        """The room's history as Markdown (``"md"``) or jupyterlab-chat ``.chat`` JSON (``"chat"``)."""
        await self.ready(None)
        assert self.client is not None
        return await self.client.export_room(self.name, format)

    async def search(self, q: str, limit: int | None = None) -> list[dict[str, Any]]:
        """This room's kept messages saying every word of `q`, newest first (`RoomClient.search`)."""
        await self.ready(None)
        assert self.client is not None
        return await self.client.search(q, room=self.name, limit=limit)

    async def _on_room(self, act: Callable[[ClientRoom], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        return await act(await self.joined_room())

    def set_status(self, status: str) -> Pending[None]:
        """Set your presence status (``"busy"``, ``"reviewing"``, …), seen by every member."""
        return self.set_presence(status=status)

    def set_presence(self, **state: Any) -> Pending[None]:
        """Merge `state` into your presence (any JSON values); a None value removes a key."""
        self._check_open()
        return self.spawn(self._push_presence(state), "updating presence")

    async def _send(self, content: str | dict[str, Any]) -> dict[str, Any]:
        return await (await self.joined_room()).send(content)

    async def _direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        return await (await self.joined_room()).direct(to, content)

    async def _push_presence(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if value is None:
                self.presence.pop(key, None)
            else:
                self.presence[key] = value
        await (await self.joined_room()).set_state(dict(self.presence))

    def _send_from_panel(self, text: str) -> None:
        sending = self.send(text)

        def done(future: Any) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.kernel.call(self.panel.composer.restore, text)  # typed text is not lost

        sending.future.add_done_callback(done)

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionClosed(f"you left {self.name!r}: room.rejoin() (or the Rejoin button) joins it again")

    # -- receiving --------------------------------------------------------------------
    def on_message(self, callback: Callable[[Message], Any]) -> Subscription:
        """Call `callback(message)` for each message (room and direct); returns a
        `Subscription` (call it to stop). A callback may be a coroutine function; what it
        raises is shown in the panel's error area."""
        return self.on("message", callback)

    def on_presence(self, callback: Callable[[PresenceEvent], Any]) -> Subscription:
        """Call `callback(event)` when a member joins, leaves or changes its presence."""
        return self.on("presence", callback)

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Subscription:
        """Callbacks for ``message``, ``presence``, ``state`` (the connection's) or ``gap``."""
        stop = self.events.on(kind, guarded(callback, f"your {kind!r} callback {callback_name(callback)}", self.report))
        return Subscription(kind, callback, stop)

    def on_file_offer(self, callback: Callable[[FileOffer], Any]) -> Subscription:
        """Call `callback(offer)` when a member offers you a file (a JupyterLab window's
        "Send to…"): ``offer.accept("data/")`` asks for it, saved in that folder under its
        name's last segment; ``offer.decline()``; ``await offer.received()`` is its `Path`.
        The offer also shows in the panel, with a folder field, Accept and Decline."""
        return self.on("file-offer", callback)

    def stream(self, *kinds: str) -> EventStream:
        """``async for message in room.stream("message"): ...`` (every kind when none given)."""
        return self.events.stream(*kinds, loop=self.loop)

    @on_session_loop
    async def next_message(self, timeout: float | None = 30.0, where: Callable[[Message], bool] | None = None) -> Message:
        """The next message (matching `where`) that arrives from now on."""
        return await self._conversation.next_message(timeout, where)

    @on_session_loop
    async def wait_for_message(self, where: Callable[[Message], bool], timeout: float | None = 30.0) -> Message:
        """The first message matching `where`, among those already received or the next
        ones: what a cell wants when the other side may have spoken already."""
        return await self._conversation.wait_for_message(where, timeout)

    @on_session_loop
    async def wait_for_member(
        self, user_id: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float | None = 30.0
    ) -> dict[str, Any]:
        """Wait until `user_id` is in the room (and its entry matches `where`, e.g. a
        status); its member entry."""
        return await self._conversation.wait_for_member(user_id, where, timeout)

    # -- peer links -------------------------------------------------------------------
    def peer(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> PeerSession:
        """The direct peer-to-peer link with member `user_id` (opened on first use:
        ``await room.peer("bob").ready()`` to wait for it) and its panel, shown under the
        room's.

        A member with several connections: `notebook` picks the kernel in that notebook,
        `connection` a peer id (``room.connections("bob")`` lists them); by default the
        link goes to one in the same kind of place as this one (a kernel), in the same
        notebook if bob has one there, else bob's newest. `PeerUnreachable` at once when
        `user_id` is not in the room."""
        check_name(user_id, "user_id")
        if user_id == self.user_id:
            raise ValueError("a peer link goes to another member, not to yourself")
        return self._links.session(user_id, notebook=notebook, connection=connection)

    def verify_peer(self, peer_id: str, identity: dict[str, Any] | None) -> None:
        """Whether `identity` (who the server says holds `peer_id`) is the identity that
        holds the peer's member name in this room's presence; `PeerIdentityMismatch`,
        saying who is who, if not. Every link of this session is checked with it (ours
        before an answer is taken, theirs before an offer is answered)."""
        self._connections.verify_peer(peer_id, identity)

    def connections(self, user_id: str) -> list[Connection]:
        """The connections of member `user_id` that take peer links, as known now (what
        each said of itself: kernel, notebook), newest first. A peer named like theirs
        that the server says another identity holds is none of theirs (`impostors`)."""
        return self._connections.of(user_id)

    def impostors(self, user_id: str) -> list[PeerIdentityMismatch]:
        """Why each peer named like `user_id`'s, held by another identity, is refused."""
        return self._connections.impostors(user_id)

    async def choose_connection(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> Connection:
        """The connection of `user_id` a new link goes to (see `peer`); `PeerUnreachable`
        at once, saying why, when there is none."""
        return await self._connections.choose(user_id, notebook=notebook, connection=connection)

    @on_session_loop
    async def describe(self, user_id: str, timeout: float = DESCRIBE_WAIT) -> list[Connection]:
        """Ask `user_id`'s kernels where they are (notebook, since when); their connections."""
        return await self._connections.describe(user_id, timeout)

    @on_session_loop
    async def peer_network(self) -> PeerNetwork:
        """This session's peer in the room's signaling (started after the join, once)."""
        return await self._links.peer_network()

    def _open_peer_from_panel(self, user_id: str, connection: str | None = None) -> None:
        """The Peer link button: the member's default connection (None), or the one picked
        in the row's list of their connections."""
        self.peer(user_id, connection=connection).open()

    def _show_reachable(self) -> None:
        self._links.show_reachable()

    # -- files offered to us ----------------------------------------------------------
    async def answer_file_offer(self, offer: FileOffer, accept: bool) -> None:
        """Tell the sender: accepted (the file comes to this kernel's peer) or declined."""
        await self._files.answer(offer, accept)

    async def tell_file_outcome(self, offer: FileOffer) -> None:
        """Tell the sender what became of an accepted file (`iavicenne.file_inbox.FileInbox.tell_outcome`)."""
        await self._files.tell_outcome(offer)

    def file_for_link(self, link: Link, header: Any) -> FileOffer | bool:
        """The offer a file header on `link` announces (`iavicenne.file_inbox.FileInbox.for_link`)."""
        return self._files.for_link(link, header)

    # -- who may enter (the room's owner) ------------------------------------------------
    def invite(self, username: str) -> Pending[dict[str, Any]]:
        """Let `username` (their identity name) enter this room, ours and private; await
        it for the room's access record (`Forbidden` if the room is not ours)."""
        return self.spawn(self._invite(username), f"inviting {username} to {self.name}")

    def remove_member(self, username: str) -> Pending[dict[str, Any]]:
        """Take `username` off this room's members: they are evicted from it at once."""
        return self.spawn(self._remove_member(username), f"removing {username} from {self.name}")

    async def _invite(self, username: str) -> dict[str, Any]:
        await self.ready(None)
        assert self.client is not None
        return await self.client.invite(self.name, username)

    async def _remove_member(self, username: str) -> dict[str, Any]:
        await self.ready(None)
        assert self.client is not None
        return await self.client.remove_member(self.name, username)

    # -- the shared state -------------------------------------------------------------
    def link(self, widget: Any, trait: str = "value", *, key: str) -> Callable[[], None]:
        """Keep `widget`'s `trait` in step with ``room.shared[key]``, in every kernel that links
        it (see `iavicenne.shared.SharedState.link`); returns the unlinker."""
        return self.shared.link(widget, trait, key=key, call=self.kernel.call)

    # -- joining and leaving ----------------------------------------------------------
    @on_session_loop
    async def leave(self, reason: str = "") -> None:
        """Leave the room and close the connection and every peer link (the panel stays,
        greyed, with a Rejoin button)."""
        if self.closed:
            return
        self._connection.closed = True
        self._conversation.left(self.room)
        await self._links.close()
        await self._connection.close(reason)
        self.events.end_streams()

    close = leave

    def rejoin(self) -> Pending[RoomSession]:
        """Join the room again after `leave` (or a fatal error): the same panel and
        callbacks, and the messages said meanwhile (up to `history` of them)."""
        return self.spawn(self._rejoin(), f"rejoining {self.name}")

    def _rejoin_from_panel(self) -> None:
        self.rejoin()

    async def _rejoin(self) -> RoomSession:
        if not self.closed and self.state != "offline":
            return await self.ready()
        await self.leave()
        self._links.forget_closed()
        self._connection.start()
        return await self.ready()

    def _joined(self) -> None:
        """The room is joined: show who we are and who is here, the recent history, and be
        reachable for peer links."""
        client, room = self.client, self.room
        assert client is not None and room is not None
        self.panel.show_user(self.user_id, client.identity or None)
        self.panel.show_members(self.members)
        self._conversation.joined(room)
        if self._want_peers:
            self._links.start()

    # -- what the client says ---------------------------------------------------------
    def _on_presence(self, event: PresenceEvent) -> None:
        if event.room != self.name:
            return
        self.kernel.call(self.panel.show_members, dict(event.members))
        if event.kind in ("joined", "snapshot"):
            # a member's peer may be seen on signaling before its presence (batched) says who
            # holds the name: its button waited for this
            self.kernel.call(self._show_reachable)
        if event.kind == "joined" and event.user_id is not None:
            self._connections.member_joined(event.user_id)
        if event.kind in ("joined", "left") and event.user_id != self.user_id:
            now = datetime.now(timezone.utc).isoformat()
            self.kernel.call(self.panel.show_note, now, f"{event.user_id} {event.kind}")
            if event.kind == "joined" and event.user_id is not None:
                self._links.member_back(event.user_id)
        self.events.emit("presence", event)

    def _on_control(self, message: Message) -> None:
        """The library talking to itself across kernels: where connections are, file offers."""
        if control.kind_of(message.content) == FILE_OFFER:
            if message.direct:
                self._files.take(message)
        else:
            self._connections.take_control(message)

    # -- running work -----------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, T], what: str, report: Report | None = None) -> Pending[T]:
        """Run `coro` on the session's loop, from any thread; a failure is also shown in
        the panel (or given to `report`), where it is seen even when nobody awaits it."""
        return self.kernel.spawn(coro, what, report or self.report)

    def report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
        """Show a failure in the panel's error area (and keep it in `errors`)."""
        if error is not None:
            self.errors.append(error)
        self.kernel.call(self.panel.show_error, what, error if traceback else None)

    def on_loop(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a widget update now when on the kernel's thread, else hand it to its loop."""
        self.kernel.call(function, *args, **kwargs)

    def _from_panel(self, action: Callable[..., Any], what: str) -> Callable[..., None]:
        """A panel handler: whichever thread the widget event came on, `action` runs on the
        kernel's loop, and what it raises shows in the error area."""
        run = guarded(action, what, lambda text, error=None, traceback=True: self.report(text, error, traceback=False))
        return lambda *args: self.kernel.call(run, *args)


__all__ = ["DEFAULT_STATUS", "HISTORY", "RoomSession", "check_name"]
