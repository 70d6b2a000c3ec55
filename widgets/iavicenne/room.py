"""Rooms from a notebook cell: ``room = join("analysis")`` shows a live panel and returns
a `RoomSession`, whose plain Python API drives the same room.

Why it is built this way:

* **One loop, any thread.** A kernel (ipykernel) runs an asyncio loop in its main thread;
  `join` captures it, and every client task, callback and widget update runs on that
  loop, between and during cells. A call from another thread (ipykernel 7 runs widget
  events, Enter in the panel's box or a click on Send, on a subshell thread; a user may
  call from a worker) is handed to that loop (`iavicenne.background.KernelLoop`), and
  what it returns can be awaited on the caller's loop.
* **Errors are shown, not lost, and said in one sentence.** A user's callback that
  raises, a send that fails, a refused join: each lands in the panel's error area (and
  in `RoomSession.errors`), one entry a line. What a user did wrong fails at once, at
  the call: an invalid room name is a `ValueError` from ``join``, a link to someone who
  is not in the room a `PeerUnreachable` from ``room.peer``, a send after ``leave`` a
  `ConnectionClosed`, each without the library's internal traceback.
* **The panel shows the state plainly.** Closed (after ``leave()``) or offline (a fatal
  error): members greyed, the box and buttons disabled, and a Rejoin button
  (`rejoin`). Running the ``join`` cell again replaces the old session of the same user
  in the same room of this kernel: the old one leaves first (the others never see two
  connections), and the new one keeps its presence (status) unless given another.
* **Recent history.** On joining (and rejoining) the panel shows the last `history`
  messages the server keeps (the protocol's ``since`` replay), in `RoomSession.history`;
  they are not ``message`` events, so a callback never takes an old message for a new one.
* **Your name.** `user_id` defaults to the name of the identity the server verified for
  this connection (under JupyterHub, your Hub user; on a plain server, its owner): the
  client guesses nothing from the environment (``$USER`` is the user's to set, so it
  proves nothing). ``$JUPYTERHUB_USER`` is shown in the panel until the server answers.
* **A peer link goes to who holds the name.** ``room.peer("carol")`` takes a link only
  from the identity the server says holds ``carol`` in the room's presence: the server
  vouches for who sends each offer, answer and relayed frame (``source_identity``), and
  anyone else is refused with `PeerIdentityMismatch` (`iavicenne.peer`). ``link.identity``
  (and the panels) show who the other end is.
* **Rooms with members.** ``await create_room("q3", members=["bob"])`` makes a private
  room (`iavicenne.client.RoomClient.create_room`); ``await room.invite("carol")``,
  ``await room.remove_member("carol")`` for its owner.
* **Peer links go to a connection, not just a member.** A member may be in the room
  from two kernels and a browser; ``room.peer("bob")`` picks the one in the same kind
  of place (a kernel for a kernel), ``room.peer("bob", notebook="forecast.ipynb")`` a
  given one (`iavicenne.connections` has the peer id convention, ``"bob#3f2a1c"`` for a
  kernel). Where no direct path exists the link goes through the server
  (`iavicenne.relay`); ``link.path`` says which.
* **Nothing is missed between connecting and listening.** The session listens on the
  client's own events before it joins, so the presence snapshot and any replayed message
  reach the panel.
* **Peer sessions depend on the room session, not the other way round.** A
  `PeerSession` (imported only when a link is wanted) asks its room session for what it
  needs through `iavicenne.peer_session.PeerHost`.
* **What another person sends is bounded** before it costs us memory: transfers
  (`max_transfer_bytes`), DataFrames (`max_dataframe_rows`, `max_dataframe_bytes`), and
  escaped before it reaches a widget (`iavicenne.panels`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from iavicenne_ext import protocol as p

from . import connections, files, share, wire
from .background import KernelLoop, Pending, Report, callback_name, guarded, on_session_loop
from .client import CONTROL, RoomClient
from .client import Room as ClientRoom
from .connections import Connection, NoSuchConnection
from .discovery import ServerInfo, discover_server
from .errors import ClientError, ConnectionClosed, PeerIdentityMismatch, PeerUnreachable, RequestFailed
from .events import EventEmitter, EventStream, Gap, Message, PresenceEvent, Subscription
from .link import same_identity
from .panels import RoomPanel, named, verified_username
from .shared import SharedState

if TYPE_CHECKING:
    from .link import Link
    from .peer import PeerNetwork
    from .peer_session import PeerSession

T = TypeVar("T")
log = logging.getLogger("iavicenne.room")
MESSAGES_KEPT = 1000  # messages a session remembers in `messages`
HISTORY = 20  # messages of recent history shown on join, unless told
PEER_GRACE = 5.0  # seconds a member's peer may take to show up in signaling after its join
DESCRIBE_WAIT = 1.5  # seconds to wait for a member's kernels to describe themselves
DESCRIBE, DESCRIPTION = "describe", "connection"


class _Default:
    def __repr__(self) -> str:
        return "<default>"


#: `join`'s status when none is given: "available", or what the session it replaces had
DEFAULT_STATUS: Any = _Default()

# sessions alive in this kernel, by (server, token, room, user, connection tag): a cell run
# again replaces its old one. The token stands for the identity: without a user_id the name
# is the server's, unknown until joined, and two identities must not replace each other.
_live: weakref.WeakValueDictionary[tuple[str, str, str, str | None, str], RoomSession] = weakref.WeakValueDictionary()


def current_notebook() -> str | None:
    """The notebook this kernel runs for, as Jupyter told the kernel (None outside one)."""
    path = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server >= 2 for its kernels
    if not path:
        with contextlib.suppress(Exception):
            from IPython import get_ipython

            shell = get_ipython()
            path = shell.user_ns.get("__session__") if shell is not None else None
    return os.path.basename(path) if path else None


def expected_user_id() -> str | None:
    """What the panel shows as our name before the server answers: ``$JUPYTERHUB_USER``
    (a valid name), else None. A hint only: the name we join with is the server's (the
    identity it verified), never this."""
    hub_user = os.environ.get("JUPYTERHUB_USER")
    if hub_user:
        try:
            return p.check_name(hub_user, "user_id")
        except p.ProtocolError:
            return None
    return None


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
        self._chosen_user_id = user_id is not None
        self.client: RoomClient | None = None
        self.room: ClientRoom | None = None
        self.state = "connecting"
        self.messages: list[Message] = []
        self.history: list[Message] = []
        self.history_count = history
        self.errors: list[BaseException] = []
        self.events = EventEmitter()  # message, presence, state, gap: re-emitted for the user
        self.peers: dict[str, PeerSession] = {}
        self.network: PeerNetwork | None = None
        self.peer_timeout = peer_timeout
        self.relay_after = relay_after
        self.max_transfer_bytes = max_transfer_bytes
        self.max_dataframe_rows = max_dataframe_rows
        self.max_dataframe_bytes = max_dataframe_bytes
        self.tag = connection_tag or connections.kernel_tag()
        self.notebook = current_notebook()
        self._want_peers = peers
        self._want_relay = relay
        self._loopback = loopback
        self._host_addresses = tuple(host_addresses) if host_addresses is not None else None
        self._network_task: asyncio.Task[PeerNetwork] | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._relay: Any = None  # iavicenne.relay.SignalingRelay, once the network is up
        self._since = ""
        self._peers_lock = threading.Lock()
        self._described: dict[str, Connection] = {}  # by peer_id: what a connection said of itself
        self._queries: dict[str, asyncio.Event] = {}  # describe nonces we wait answers for
        self.file_offers: dict[str, files.FileOffer] = {}  # by id: files offered to this user, newest last
        self._answered: dict[str, float] = {}  # user -> when we last answered them (no amplification)
        self._arrived: dict[str, float] = {}  # user -> when we saw them join (loop time)
        self._network_up = 0.0  # when our peer joined the signaling (loop time)
        self._holding: list[Message] | None = None  # live messages held while the history is shown
        self._last_seen: tuple[str | None, int | None] = (None, None)  # (epoch, seq) when we left
        self._inherit = status is DEFAULT_STATUS and state is None
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
        self._url, self._token, self._options = url, token, client_options
        self._server: ServerInfo | None = None
        self._closed = False
        self._joined: asyncio.Future[RoomSession]
        self._task: asyncio.Task[None]
        self.kernel.run(self._start)

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
    def online(self) -> bool:
        return self.state == "online"

    @property
    def peer_id(self) -> str | None:
        """This connection's peer in the room's signaling (once known)."""
        return connections.peer_id_for(self.user_id, self.tag) if self.user_id else None

    @on_session_loop
    async def ready(self, timeout: float | None = 30.0) -> RoomSession:
        """Wait until the room is joined; raises what prevented it (wrong token, no server)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._joined), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"{self.name!r} not joined within {timeout} s ({self.state})") from None
        except ClientError as error:
            raise error.with_traceback(None) from None  # one sentence, not the client's insides

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

    def set_status(self, status: str) -> Pending[None]:
        """Set your presence status (``"busy"``, ``"reviewing"``, …), seen by every member."""
        return self.set_presence(status=status)

    def set_presence(self, **state: Any) -> Pending[None]:
        """Merge `state` into your presence (any JSON values); a None value removes a key."""
        self._check_open()
        return self.spawn(self._push_presence(state), "updating presence")

    async def _send(self, content: str | dict[str, Any]) -> dict[str, Any]:
        room = await self._room()
        return await room.send(content)

    async def _direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        room = await self._room()
        return await room.direct(to, content)

    async def _push_presence(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if value is None:
                self.presence.pop(key, None)
            else:
                self.presence[key] = value
        room = await self._room()
        await room.set_state(dict(self.presence))

    def _send_from_panel(self, text: str) -> None:
        sending = self.send(text)

        def done(future: Any) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.kernel.call(self.panel.composer.restore, text)  # typed text is not lost

        sending.future.add_done_callback(done)

    def _check_open(self) -> None:
        if self._closed:
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
        stop = self.events.on(kind, guarded(callback, f"your {kind!r} callback {callback_name(callback)}", self._report))
        return Subscription(kind, callback, stop)

    def on_file_offer(self, callback: Callable[[files.FileOffer], Any]) -> Subscription:
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
        deadline = None if timeout is None else self.loop.time() + timeout
        async with self.stream("message") as stream:
            while True:
                left = None if deadline is None else max(0.0, deadline - self.loop.time())
                try:
                    message = await stream.get(left)
                except asyncio.TimeoutError:
                    raise asyncio.TimeoutError(f"no such message in {self.name!r} within {timeout} s") from None
                except EOFError:
                    raise ConnectionClosed(f"left {self.name!r} while waiting for a message") from None
                if where is None or where(message):
                    return message

    @on_session_loop
    async def wait_for_message(self, where: Callable[[Message], bool], timeout: float | None = 30.0) -> Message:
        """The first message matching `where`, among those already received or the next
        ones: what a cell wants when the other side may have spoken already."""
        for message in list(self.messages):
            if where(message):
                return message
        return await self.next_message(timeout, where)

    @on_session_loop
    async def wait_for_member(
        self, user_id: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float | None = 30.0
    ) -> dict[str, Any]:
        """Wait until `user_id` is in the room (and its entry matches `where`, e.g. a
        status); its member entry."""
        await self.ready(timeout)

        def found() -> bool:
            member = self.members.get(user_id)
            return member is not None and (where is None or bool(where(member)))

        deadline = None if timeout is None else self.loop.time() + timeout
        async with self.stream("presence") as stream:
            while not found():
                left = None if deadline is None else max(0.0, deadline - self.loop.time())
                try:
                    await stream.get(left)
                except asyncio.TimeoutError:
                    what = "join" if user_id not in self.members else "reach that presence"
                    raise asyncio.TimeoutError(f"{user_id!r} did not {what} in {self.name!r} within {timeout} s") from None
                except EOFError:
                    raise ConnectionClosed(f"left {self.name!r} while waiting for {user_id!r}") from None
        return self.members[user_id]

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
        key = connection or (f"{user_id} in {notebook}" if notebook else user_id)
        with self._peers_lock:
            session = self.peers.get(key)
            if session is not None and not session.closed:
                return session
            if self.online and user_id not in self.members:
                raise PeerUnreachable(self._absent(user_id))
            return self._new_peer_session(key, user_id, notebook=notebook, connection=connection)

    def _new_peer_session(
        self, key: str, user_id: str, *, notebook: str | None = None, connection: str | None = None
    ) -> PeerSession:
        from .peer_session import PeerSession  # aiortc is imported only when a link is wanted

        session = PeerSession(self, user_id, notebook=notebook, connection=connection)
        self.peers[key] = session
        self.kernel.call(self.panel.add_peer_panel, session.panel)
        return session

    def verify_peer(self, peer_id: str, identity: dict[str, Any] | None) -> None:
        """Whether `identity` (who the server says holds `peer_id`) is the identity that
        holds the peer's member name in this room's presence; `PeerIdentityMismatch`,
        saying who is who, if not. Every link of this session is checked with it (ours
        before an answer is taken, theirs before an offer is answered)."""
        user = connections.user_of(peer_id)
        member = self.members.get(user)
        expected = member.get("identity") if member is not None else None
        if not expected:
            raise PeerIdentityMismatch(
                f"{peer_id!r} would be {user!r}'s, but nobody holds {user!r} in room {self.name!r}: link refused"
            )
        if identity is None:
            raise PeerIdentityMismatch(
                f"the server did not say who holds {peer_id!r} (a server without verified signaling?): link refused",
                expected,
            )
        if not same_identity(expected, identity):
            raise PeerIdentityMismatch(
                f"{peer_id!r} is held by {verified_username(identity)!r}, but {user!r} in room {self.name!r} is "
                f"{verified_username(expected)!r}: link refused (someone took a name that is not theirs)",
                expected,
                identity,
            )

    def connections(self, user_id: str) -> list[Connection]:
        """The connections of member `user_id` that take peer links, as known now (what
        each said of itself: kernel, notebook), newest first. A peer named like theirs
        that the server says another identity holds is none of theirs (`impostors`)."""
        network = self.network
        if network is None:
            return []
        peers = [peer for peer in sorted(network.peers) if self._refusal(network, peer) is None]
        found = [self._described.get(peer) or connections.undescribed(peer) for peer in peers]
        return sorted((c for c in found if c.user_id == user_id), key=lambda c: c.since, reverse=True)

    def impostors(self, user_id: str) -> list[PeerIdentityMismatch]:
        """Why each peer named like `user_id`'s, held by another identity, is refused."""
        network = self.network
        if network is None:
            return []
        found = [self._refusal(network, peer) for peer in sorted(network.peers) if connections.user_of(peer) == user_id]
        return [refusal for refusal in found if refusal is not None]

    def _refusal(self, network: PeerNetwork, peer_id: str) -> PeerIdentityMismatch | None:
        """`verify_peer`'s refusal of the identity signaling says holds `peer_id` (None:
        accepted, or not said yet: the link's own check has the last word)."""
        identity = network.signaling.identities.get(peer_id)
        if identity is None:
            return None
        try:
            self.verify_peer(peer_id, identity)
        except PeerIdentityMismatch as refused:
            return refused
        return None

    def _absent(self, user_id: str) -> str:
        here = ", ".join(sorted(self.members)) or "nobody"
        return (
            f"{user_id!r} is not in room {self.name!r} (here: {here}); "
            f"wait for them with `await room.wait_for_member({user_id!r})`"
        )

    async def choose_connection(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> Connection:
        """The connection of `user_id` a new link goes to (see `peer`); `PeerUnreachable`
        at once, saying why, when there is none."""
        await self.ready(None)
        if user_id not in self.members:
            raise PeerUnreachable(self._absent(user_id))
        network = await self.peer_network()
        refused = self._refusal(network, connection) if connection is not None else None
        if refused is not None:
            raise refused  # asked for by its peer id, but it is not theirs
        # just joined (they or we): their peer may still be joining the signaling
        deadline = max(self._arrived.get(user_id, 0.0), self._network_up) + PEER_GRACE
        while not self.connections(user_id) and user_id in self.members and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not self.connections(user_id):
            if user_id not in self.members:
                raise PeerUnreachable(self._absent(user_id))
            impostors = self.impostors(user_id)
            if impostors:  # a peer by that name, held by someone else: say so, not "no links"
                raise impostors[0]
            raise PeerUnreachable(
                f"{user_id!r} takes no peer links: none of their connections in {self.name!r} has a peer "
                "(a script, or a page without links); send through the room instead (room.direct)"
            )
        if notebook is not None or connection is not None or len(self.connections(user_id)) > 1:
            await self.describe(user_id)
        try:
            return connections.choose(
                self.connections(user_id), user_id, notebook=notebook, connection=connection, my_notebook=self.notebook
            )
        except NoSuchConnection as error:
            raise PeerUnreachable(str(error)) from None

    @on_session_loop
    async def describe(self, user_id: str, timeout: float = DESCRIBE_WAIT) -> list[Connection]:
        """Ask `user_id`'s kernels where they are (notebook, since when); their connections."""
        await self.ready(None)
        undescribed = [c for c in self.connections(user_id) if not c.described and c.kind == connections.KERNEL]
        if not undescribed or self.room is None:
            return self.connections(user_id)
        nonce = os.urandom(6).hex()
        arrived = self._queries[nonce] = asyncio.Event()
        try:
            await self.room.direct(user_id, {CONTROL: DESCRIBE, "q": nonce})
            deadline = self.loop.time() + timeout
            while any(not c.described and c.kind == connections.KERNEL for c in self.connections(user_id)):
                left = deadline - self.loop.time()
                if left <= 0:
                    break
                arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), left)
        except RequestFailed:
            pass  # they left meanwhile: the choice says so
        finally:
            self._queries.pop(nonce, None)
        return self.connections(user_id)

    def _open_peer_from_panel(self, user_id: str, connection: str | None = None) -> None:
        """The Peer link button: the member's default connection (None), or the one picked
        in the row's list of their connections."""
        self.peer(user_id, connection=connection).open()

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

    def _rejoin_from_panel(self) -> None:
        self.rejoin()

    @on_session_loop
    async def peer_network(self) -> PeerNetwork:
        """This session's peer in the room's signaling (started after the join, once)."""
        await self.ready(None)
        if self._network_task is None:
            self._network_task = self.loop.create_task(self._start_network())
        return await asyncio.shield(self._network_task)

    async def _start_network(self) -> PeerNetwork:
        from . import ice
        from .peer import PeerNetwork

        assert self.client is not None and self.user_id is not None and self.room is not None
        if self._host_addresses is not None:  # exactly these (join's `host_addresses=`)
            options: dict[str, Any] = {"host_addresses": self._host_addresses}
        elif self._loopback is None:
            options = {"host_addresses": ice.default_host_addresses()}
        else:
            options = {"loopback": self._loopback}
        if self._want_relay:  # over the network's own signaling socket
            options.update(relay=True, relay_after=self.relay_after)
        signaling = {key: value for key, value in self._options.items() if key in ("backoff", "connect_timeout")}
        server = self.client.server
        self._since = datetime.now(timezone.utc).isoformat()
        network = await PeerNetwork.join(
            self.name,
            connections.peer_id_for(self.user_id, self.tag),
            server.url,
            server.token,
            signaling_options=signaling,
            max_transfer_bytes=self.max_transfer_bytes,
            user_of=connections.user_of,
            relays_to=connections.is_tagged,  # kernels (a page or a script takes no relay)
            verify_identity=self.verify_peer,
            **options,
        )
        if self._closed:
            await network.close()
            raise ConnectionClosed(f"left {self.name!r}")
        self.network = network
        self._relay = network.relay
        self._network_up = self.loop.time()

        def on_peer(event: Any) -> None:
            if event.kind == "left":
                self._described.pop(event.peer_id, None)
            self.kernel.call(self._show_reachable)
            if event.kind == "joined" and len(self.connections(connections.user_of(event.peer_id))) > 1:
                # a member with several connections: learn where each is, for the panel's list
                self.spawn(self.describe(connections.user_of(event.peer_id)), "asking where a member's kernels are", _quietly)

        # a member with no peer of its own in the room (a script, a page without links)
        # cannot take a link: its button says so instead of waiting for a timeout
        network.on("peer", guarded(on_peer, "the peer list", self._report))
        network.on("refused", lambda refused: self._report(f"refused a peer link: {refused}", refused, traceback=False))
        self._show_reachable()
        # the peers already there: learn where the kernels of a member with several are
        for user in {connections.user_of(peer) for peer in network.peers}:
            if len(self.connections(user)) > 1:
                self.spawn(self.describe(user), "asking where a member's kernels are", _quietly)
        self._accepting = self.loop.create_task(self._accept(network))
        return network

    def _show_reachable(self) -> None:
        network = self.network
        if network is None:
            return
        by_user: dict[str, list[Connection]] = {}
        for peer in network.peers:
            if self._refusal(network, peer) is not None:
                continue  # held by another identity than the member of that name: no button for it
            described = self._described.get(peer) or connections.undescribed(peer)
            by_user.setdefault(described.user_id, []).append(described)
        choices: dict[str, tuple[list[tuple[str, str]], str]] = {}
        for user, found in by_user.items():
            found.sort(key=lambda c: c.since, reverse=True)
            default = connections.choose(found, user, my_notebook=self.notebook)
            labels = [c.label for c in found]
            # two alike (two kernels not described yet, two in one notebook): their ids tell them apart
            options = [(f"{c.label} ({c.peer_id})" if labels.count(c.label) > 1 else c.label, c.peer_id) for c in found]
            choices[user] = (options, default.peer_id)
        self.panel.show_reachable(choices)

    async def _accept(self, network: PeerNetwork) -> None:
        """Links other members open to us get a session (and a panel) of their own."""
        while True:
            link = await network.accept()
            try:
                self._session_for_incoming(link.peer_id).attach(link)
            except Exception as error:
                self._report(f"could not take the link from {link.peer_id}: {error}", error)

    def _session_for_incoming(self, peer_id: str) -> PeerSession:
        """The session a link from `peer_id` belongs to: the one bound to that connection,
        else the member's default one if it has no open link elsewhere, else a new one."""
        user_id = connections.user_of(peer_id)
        with self._peers_lock:
            for session in self.peers.values():
                if session.peer_id == peer_id and not session.closed:
                    return session
            default = self.peers.get(user_id)
            if default is not None and not default.closed and not (default.link is not None and default.link.open):
                return default
            key = user_id if default is None or default.closed else peer_id
            return self._new_peer_session(key, user_id, connection=None if key == user_id else peer_id)

    # -- control messages: where my connections are ---------------------------------------
    def _on_control(self, message: Message) -> None:
        content = message.content
        kind = content.get(CONTROL)
        if kind == DESCRIBE:
            self._answer_describe(message.user_id, content.get("q"))
        elif kind == DESCRIPTION:
            self._take_description(message.user_id, content)
        elif kind == files.FILE_OFFER and message.direct:
            self._take_file_offer(message)

    # -- files offered to us ----------------------------------------------------------
    def _take_file_offer(self, message: Message) -> None:
        offer = files.parse_offer(self, message.content, message.user_id, message.identity)
        if offer is None or offer.id in self.file_offers:
            return  # malformed, or offered again (the same id: once is enough)
        pending = [o for o in self.file_offers.values() if o.state == "offered"]
        if len(pending) >= files.MAX_PENDING:  # a member cannot make us keep offers without end
            oldest = pending[0]
            oldest.fail("too many offers waiting: this one was dropped")
            self.file_offers.pop(oldest.id, None)
            self.kernel.call(self.panel.remove_file_offer, oldest.row)
        self.file_offers[offer.id] = offer
        self.kernel.call(self.panel.add_file_offer, offer.row)
        self.events.emit("file-offer", offer)

    async def answer_file_offer(self, offer: files.FileOffer, accept: bool) -> None:
        """Tell the sender: accepted (the file comes to this kernel's peer) or declined."""
        room = await self._room()
        if not accept:
            await room.direct(offer.sender, files.answer(offer, False, ""))
            return
        try:
            network = await self.peer_network()
            await room.direct(offer.sender, files.answer(offer, True, network.peer_id))
        except Exception as error:
            offer.fail(f"could not accept: {error}")
            raise

    def file_for_link(self, link: Link, header: Any) -> files.FileOffer | bool:
        """The offer a file header on `link` announces: the `FileOffer` when its bytes are
        to be taken, True when it is a file header that is refused (its bytes are dropped),
        False when `header` is not a file header at all."""
        if not isinstance(header, dict) or header.get(CONTROL) != files.FILE:
            return False
        offer_id = header.get("id")
        offer = self.file_offers.get(offer_id) if isinstance(offer_id, str) else None
        why = "nothing of that id was offered to you" if offer is None else offer.may_come_on(link, header, connections.user_of)
        if why is not None:
            self._report(f"refused a file from {link.peer_id}: {why}", traceback=False)
            return True
        assert offer is not None
        offer.receiving()
        return offer

    def _answer_describe(self, asker: str, nonce: Any) -> None:
        network, room = self.network, self.room
        if network is None or room is None or not isinstance(nonce, str) or len(nonce) > 64 or asker == self.user_id:
            return
        now = time.monotonic()
        if now - self._answered.get(asker, 0.0) < 0.5:
            return  # asked again at once: one answer is enough (a member cannot make us flood)
        self._answered[asker] = now
        answer: dict[str, Any] = {CONTROL: DESCRIPTION, "q": nonce, "peer_id": network.peer_id, "kind": connections.KERNEL}
        answer.update(notebook=self.notebook, since=self._since)
        self.spawn(room.direct(asker, answer), f"telling {asker} where this kernel is", _quietly)

    def _take_description(self, sender: str, content: dict[str, Any]) -> None:
        peer_id, nonce = content.get("peer_id"), content.get("q")
        if not isinstance(peer_id, str) or connections.user_of(peer_id) != sender or nonce not in self._queries:
            return  # only answers to our questions, and only about the sender's own kernels
        notebook, since = content.get("notebook"), content.get("since")
        described = Connection(
            peer_id,
            sender,
            connections.KERNEL,
            notebook[:200] if isinstance(notebook, str) else None,
            since[:40] if isinstance(since, str) else "",
            described=True,
        )
        self._described[peer_id] = described
        self._queries[nonce].set()
        self.kernel.call(self._show_reachable)

    # -- closing ----------------------------------------------------------------------
    @on_session_loop
    async def leave(self, reason: str = "") -> None:
        """Leave the room and close the connection and every peer link (the panel stays,
        greyed, with a Rejoin button)."""
        if self._closed:
            return
        self._closed = True
        if self.room is not None:
            self._last_seen = (self.room.epoch, self.room.seq)
        for peer in list(self.peers.values()):
            await peer.close()
        if self._accepting is not None:
            self._accepting.cancel()
        if self._network_task is not None:
            if not self._network_task.done():
                self._network_task.cancel()
            elif self.network is not None:
                await self.network.close()
        if self._relay is not None:
            self._relay.close()
        self._network_task = self._accepting = self._relay = None
        self.network = None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.shared.detach()  # kept: what is written now is sent on the next join
        if self.client is not None:
            await self.client.close()
        self._set_state("closed", reason)
        if not self._joined.done():
            self._joined.set_exception(ConnectionClosed(f"left {self.name!r} before it was joined"))
        self.events.end_streams()

    close = leave

    def link(self, widget: Any, trait: str = "value", *, key: str) -> Callable[[], None]:
        """Keep `widget`'s `trait` in step with ``room.shared[key]``, in every kernel that links
        it (see `iavicenne.shared.SharedState.link`); returns the unlinker."""
        return self.shared.link(widget, trait, key=key, call=self.kernel.call)

    def rejoin(self) -> Pending[RoomSession]:
        """Join the room again after `leave` (or a fatal error): the same panel and
        callbacks, and the messages said meanwhile (up to `history` of them)."""
        return self.spawn(self._rejoin(), f"rejoining {self.name}")

    async def _rejoin(self) -> RoomSession:
        if not self._closed and self.state != "offline":
            return await self.ready()
        await self.leave()
        with self._peers_lock:
            for key, session in list(self.peers.items()):
                if session.closed:
                    del self.peers[key]
                    self.panel.remove_peer_panel(session.panel)
        self._start()
        return await self.ready()

    # -- inside -----------------------------------------------------------------------
    def _start(self) -> None:
        """(On the loop's thread.) Connect and join, as a task."""
        self._closed = False
        self.client = None
        self.room = None
        self._joined = self.loop.create_future()
        self._joined.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by `ready`
        self._set_state("connecting")
        self._task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        client: RoomClient | None = None
        try:
            server = self._server = self._server or discover_server(self._url, self._token)
            await self._replace_older(server)
            client = await self._open_client(server)
            self.client = client
            self.room = await client.join(self.name, state=dict(self.presence))
        except asyncio.CancelledError:
            if client is not None:
                await client.close()
            raise
        except Exception as error:
            self._set_state("offline", str(error))
            self._report(f"could not join {self.name!r}: {error}", error, traceback=False)
            if not self._joined.done():
                self._joined.set_exception(error)
            if client is not None:
                await client.close()
            return
        self.user_id = client.user_id
        self.shared.attach(self.room)
        self.panel.show_user(self.user_id, client.identity or None)
        self.panel.show_members(self.members)
        self._set_state("online")
        self._joined.set_result(self)
        if self.history_count:
            self._holding = []
            self.loop.create_task(self._show_history(self.room))
        if self._want_peers:
            # be reachable for links others open, before anyone asks for one here
            self._network_task = self.loop.create_task(self._start_network())
            self._network_task.add_done_callback(self._network_started)

    async def _open_client(self, server: ServerInfo) -> RoomClient:
        """A started `RoomClient` listening to our handlers (before its first frame)."""
        client = RoomClient(server, user_id=self.user_id, **self._options)
        # our own handlers are guarded too: a bug in the panel must show, not vanish in a log
        handlers: dict[str, Callable[[Any], Any]] = {
            "message": self._on_client_message,
            "control": self._on_control,
            "presence": self._on_client_presence,
            "gap": self._on_client_gap,
            "removed": self._on_client_removed,
            "connected": self._on_client_connected,
            "disconnected": lambda e: self._set_state("reconnecting", _close_reason(e)),
            "reconnecting": lambda e: self._set_state("reconnecting", f"attempt {e['attempt']}"),
            "closed": self._on_client_closed,
            "error": lambda e: self._report(f"the server refused a request: {e}", e, traceback=False),
        }
        for kind, handler in handlers.items():
            client.on(kind, guarded(handler, f"the room panel's {kind!r} handler", self._report))
        try:
            await client.start()
        except BaseException:
            await client.close()
            raise
        return client

    async def _show_history(self, room: ClientRoom) -> None:
        """The last messages before we came (after those we saw, on a rejoin), then the
        live ones that arrived meanwhile."""
        try:
            epoch, seq = self._last_seen
            after = seq if epoch is not None and epoch == room.epoch else None
            recent = await room.recent(self.history_count, after=after)
            if recent:
                self.history.extend(recent)
                del self.history[:-MESSAGES_KEPT]
                what = "said while you were away" if after is not None else "before you joined"
                self.panel.show_note(recent[0].timestamp, f"{len(recent)} message{'s' if len(recent) != 1 else ''} {what}:")
                for message in recent:
                    self._show_message(message, old=True)
                self.panel.show_note("", "— now —")
        finally:
            held, self._holding = self._holding or [], None
            for message in held:
                self._show_message(message)

    def _network_started(self, task: asyncio.Task[PeerNetwork]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._closed:
            error = task.exception()
            self._report(f"peer-to-peer links are not available: {error}", error, traceback=False)

    async def _replace_older(self, server: ServerInfo) -> None:
        key = (server.url, server.token, self.name, self.user_id, self.tag)
        older = _live.get(key)
        _live[key] = self
        if older is None or older is self:
            return
        if self._inherit:  # the same cell run again: keep what was set meanwhile (a status)
            self.presence = {**older.presence, **({"notebook": self.notebook} if self.notebook else {})}
        if not older._closed:
            await older.leave("replaced by a newer join of this room in this kernel")

    def _on_client_message(self, message: Message) -> None:
        if message.room != self.name:
            return
        self.messages.append(message)
        del self.messages[:-MESSAGES_KEPT]
        if self._holding is not None:
            self._holding.append(message)  # shown after the history, in order
        else:
            self._show_message(message)
        self.events.emit("message", message)

    def _show_message(self, message: Message, *, old: bool = False) -> None:
        text = message.text if message.text is not None else message.content
        who = named(message.user_id, message.identity)  # the verified username beside a name not its own
        self.kernel.call(self.panel.show_message, message.timestamp, who, str(text), direct=message.direct, old=old)

    def _on_client_presence(self, event: PresenceEvent) -> None:
        if event.room != self.name:
            return
        self.kernel.call(self.panel.show_members, dict(event.members))
        if event.kind in ("joined", "snapshot"):
            # a member's peer may be seen on signaling before its presence (batched) says who
            # holds the name: its button waited for this
            self.kernel.call(self._show_reachable)
        if event.kind == "joined" and event.user_id is not None:
            self._arrived[event.user_id] = self.loop.time()
        if event.kind in ("joined", "left") and event.user_id != self.user_id:
            now = datetime.now(timezone.utc).isoformat()
            self.kernel.call(self.panel.show_note, now, f"{event.user_id} {event.kind}")
            if event.kind == "joined" and event.user_id is not None:
                for session in list(self.peers.values()):
                    if session.remote == event.user_id:
                        session.member_back()
        self.events.emit("presence", event)

    def _on_client_gap(self, gap: Gap) -> None:
        if gap.room != self.name:
            return
        why = "the room started over" if gap.epoch_changed else "they are older than the history the server keeps"
        self.kernel.call(self.panel.show_note, "", f"some messages sent while you were away are lost ({why})")
        self.events.emit("gap", gap)

    def _on_client_removed(self, event: dict[str, Any]) -> None:
        if event.get("room") != self.name:
            return
        why = "its owner removed you" if event.get("reason") == p.LeftReason.REMOVED else str(event.get("reason"))
        self._set_state("offline", f"taken out of {self.name!r}: {why}")
        self._report(f"you are no longer in {self.name!r}: {why} (ask its owner to invite you again)", traceback=False)

    def _on_client_connected(self, _event: dict[str, Any]) -> None:
        if self.room is not None:  # a reconnect (the first connection goes online once joined)
            self._set_state("online")

    def _on_client_closed(self, error: BaseException) -> None:
        if self._closed:
            return
        self._set_state("offline", str(error))
        if self._joined.done():  # before the join, `_connect` says it (once)
            self._report(f"the connection stopped: {error}", error, traceback=False)

    def _set_state(self, state: str, detail: str = "") -> None:
        if not self.kernel.here():
            self.kernel.call(self._set_state, state, detail)  # the events too
            return
        if self._closed and state not in ("closed", "offline"):
            return
        self.state = state
        self.panel.show_state(state, detail)
        self.events.emit("state", state)

    async def _room(self) -> ClientRoom:
        self._check_open()
        await self.ready(None)
        self._check_open()
        assert self.room is not None
        return self.room

    def spawn(self, coro: Coroutine[Any, Any, T], what: str, report: Report | None = None) -> Pending[T]:
        """Run `coro` on the session's loop, from any thread; a failure is also shown in
        the panel (or given to `report`), where it is seen even when nobody awaits it."""
        return self.kernel.spawn(coro, what, report or self._report)

    def _report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
        if error is not None:
            self.errors.append(error)
        self.kernel.call(self.panel.show_error, what, error if traceback else None)

    def on_loop(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a widget update now when on the kernel's thread, else hand it to its loop."""
        self.kernel.call(function, *args, **kwargs)

    def _from_panel(self, action: Callable[..., Any], what: str) -> Callable[..., None]:
        """A panel handler: whichever thread the widget event came on, `action` runs on the
        kernel's loop, and what it raises shows in the error area."""
        run = guarded(action, what, lambda text, error=None, traceback=True: self._report(text, error, traceback=False))
        return lambda *args: self.kernel.call(run, *args)


def _quietly(what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
    """For lookups in the background (where a member's kernels are): a member who left
    meanwhile is no failure of the user's; the log has it."""
    log.info("iavicenne: %s", what)


def _close_reason(event: dict[str, Any]) -> str:
    code, reason = event.get("code"), event.get("reason")
    return f"closed {code}: {reason}" if reason else (f"closed {code}" if code else "connection lost")


async def pick_name(room: str, names: Sequence[str], *, url: str | None = None, token: str | None = None) -> str:
    """The first of `names` nobody in `room` uses now (the last one if all are taken): how
    a demo run in two kernels gives each a role without editing (the first to run is
    ``names[0]``, the next ``names[1]``). Asks the server's REST API (``GET
    iavicenne/api/rooms/<room>``); the server is found as `join` finds it."""
    import json

    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    check_name(room, "room")
    server = discover_server(url, token)
    headers = {"Authorization": f"token {server.token}"} if server.token else {}
    try:
        response = await AsyncHTTPClient().fetch(f"{server.url}{p.REST_PATH}rooms/{room}", headers=headers, request_timeout=10)
        present = {member.get("user_id") for member in json.loads(response.body).get("members", [])}
    except HTTPClientError as error:
        if error.code != 404:  # 404: nobody is in the room
            raise
        present = set()
    return next((name for name in names if name not in present), names[-1])


def join(
    room: str,
    *,
    user_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    status: str | None = DEFAULT_STATUS,
    state: dict[str, Any] | None = None,
    history: int = HISTORY,
    peers: bool = True,
    loopback: bool | None = None,
    relay: bool = True,
    max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
    max_dataframe_rows: int = share.MAX_ROWS,
    max_dataframe_bytes: int = share.MAX_BYTES,
    display: bool = True,
    **client_options: Any,
) -> RoomSession:
    """Join `room` and show its live panel; returns the `RoomSession` at once.

    Call it from a cell (``room = join("analysis")``) or await it
    (``room = await join("analysis")`` returns once joined). An invalid room or user name
    is a `ValueError` here. `user_id` defaults to the name of the identity the server
    verified for you (your JupyterHub user, or a plain server's owner); the server is found by itself
    (`discover_server`: ``url=`` and ``token=``, else ``IAVICENNE_URL`` /
    ``IAVICENNE_TOKEN``, else the server that started this kernel). `status` and `state`
    are your initial presence (a cell run again keeps the status you had); the notebook
    you are in is added. `history` is how many earlier messages the panel shows (20).

    With `peers` (the default) you can open peer-to-peer links (``room.peer("bob")``) and
    others can open them to you; `loopback` chooses the local addresses a link may use:
    True 127.0.0.1 only (kernels of one machine); otherwise those
    ``$IAVICENNE_ICE_ADDRESSES`` lists, if set, else your network interfaces, and with
    None (the default) 127.0.0.1 too (`iavicenne.ice.default_host_addresses`). With
    `relay` (the default) a link that cannot be made directly goes through the server.

    What a peer sends is refused past a bound, with an error that names the option
    to raise: `max_transfer_bytes` (one payload on a peer link, 256 MiB),
    `max_dataframe_rows` and `max_dataframe_bytes` (a shared DataFrame once decoded,
    checked before it is, 10 million rows and 512 MiB). Extra keywords go to
    `RoomSession` (``peer_timeout=``, ``relay_after=``, ``host_addresses=``: exactly the
    local addresses links use) and `RoomClient` (``backoff=``, …).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "join() schedules its connection on the running event loop: call it from a notebook "
            "cell (an IPython kernel runs one) or from a coroutine"
        ) from None
    session = RoomSession(
        room,
        user_id=user_id,
        url=url,
        token=token,
        status=status,
        state=state,
        history=history,
        peers=peers,
        loopback=loopback,
        relay=relay,
        max_transfer_bytes=max_transfer_bytes,
        max_dataframe_rows=max_dataframe_rows,
        max_dataframe_bytes=max_dataframe_bytes,
        loop=loop,
        **client_options,
    )
    if display:
        from IPython.display import display as show

        show(session.panel)
    return session
