"""Rooms from a notebook cell: ``room = join("analysis")`` shows a live panel and returns
a `RoomSession`, whose plain Python API drives the same room.

Why it is built this way:

* **One loop, no threads.** A kernel (ipykernel) runs an asyncio loop in its main thread;
  `join` captures it and schedules the connection there, so it works from a plain cell
  (no ``await`` needed) and every client task, callback and widget update runs on that
  loop, between and during cells. Nothing here starts a thread; a call that arrives from
  another thread anyway is handed to the loop (`on_loop`) instead of touching widgets.
* **Errors are shown, not lost.** A user's callback that raises, a send that fails, a
  refused join: each lands in the panel's error area (and in `RoomSession.errors`), so a
  failure in a background task is visible in the notebook.
* **Nothing is missed between connecting and listening.** The session listens on the
  client's own events before it joins, so the presence snapshot and any replayed message
  reach the panel.
* **Running the cell again replaces the old session** of the same user in the same room
  (its connection is closed), instead of leaving a ghost connection behind.
* **Peer sessions depend on the room session, not the other way round.** A
  `PeerSession` (``room.peer("bob")``, imported only when a link is wanted) asks its room
  session for what it needs through `iavicenne.peer_session.PeerHost`, which
  `RoomSession` implements with public methods (`spawn`, `peer_network`, `on_loop`).
* **What another person sends is bounded** before it costs us memory: transfers
  (`max_transfer_bytes`), DataFrames (`max_dataframe_rows`, `max_dataframe_bytes`), and
  escaped before it reaches a widget (`iavicenne.panels`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from . import share, wire
from .background import Pending, Report, callback_name, guarded
from .client import Room as ClientRoom
from .client import RoomClient
from .errors import ClientError
from .events import EventEmitter, EventStream, Gap, Message, PresenceEvent
from .panels import RoomPanel

if TYPE_CHECKING:
    from .peer import PeerNetwork
    from .peer_session import PeerSession

T = TypeVar("T")
MESSAGES_KEPT = 1000  # messages a session remembers in `messages`

# sessions alive in this kernel, by (server, room, user): a cell run again replaces its old one
_live: weakref.WeakValueDictionary[tuple[str, str, str | None], RoomSession] = weakref.WeakValueDictionary()


def current_notebook() -> str | None:
    """The notebook this kernel runs for, as Jupyter told the kernel (None outside one)."""
    path = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server >= 2 for its kernels
    if not path:
        with contextlib.suppress(Exception):
            from IPython import get_ipython

            shell = get_ipython()
            path = shell.user_ns.get("__session__") if shell is not None else None
    return os.path.basename(path) if path else None


class RoomSession:
    """A notebook's membership of one room: the panel, and the API behind it.

    Created by `join`. Await it (``await room`` or ``await room.ready()``) to wait until
    the room is joined; everything else can be called at once and is carried out once the
    connection is up.
    """

    def __init__(
        self,
        name: str,
        *,
        user_id: str | None = None,
        url: str | None = None,
        token: str | None = None,
        status: str | None = "available",
        state: dict[str, Any] | None = None,
        peers: bool = True,
        loopback: bool | None = None,
        peer_timeout: float = 60.0,
        max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
        max_dataframe_rows: int = share.MAX_ROWS,
        max_dataframe_bytes: int = share.MAX_BYTES,
        loop: asyncio.AbstractEventLoop | None = None,
        **client_options: Any,
    ) -> None:
        self.name = name
        self.user_id = user_id
        self.loop = loop or asyncio.get_running_loop()
        self.client: RoomClient | None = None
        self.room: ClientRoom | None = None
        self.state = "connecting"
        self.messages: list[Message] = []
        self.errors: list[BaseException] = []
        self.events = EventEmitter()  # message, presence, state: re-emitted for the user
        self.peers: dict[str, PeerSession] = {}
        self.network: PeerNetwork | None = None
        self.peer_timeout = peer_timeout
        self.max_transfer_bytes = max_transfer_bytes
        self.max_dataframe_rows = max_dataframe_rows
        self.max_dataframe_bytes = max_dataframe_bytes
        self._want_peers = peers
        self._loopback = loopback
        self._network_task: asyncio.Task[PeerNetwork] | None = None
        self._accepting: asyncio.Task[None] | None = None
        self.presence: dict[str, Any] = dict(state or {})
        if status is not None:
            self.presence.setdefault("status", status)
        notebook = current_notebook()
        if notebook:
            self.presence.setdefault("notebook", notebook)
        self.panel = RoomPanel(name)
        self.panel.show_user(user_id)
        self.panel.on_send(self._send_from_panel)
        self.panel.on_open_peer(self._open_peer_from_panel)
        self._url, self._token, self._options = url, token, client_options
        self._joined: asyncio.Future[RoomSession] = self.loop.create_future()
        self._joined.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by `ready`
        self._closed = False
        self._thread = threading.get_ident()
        self._task = self.loop.create_task(self._connect())

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
        return {k: dict(v) for k, v in self.room.members.items()} if self.room is not None else {}

    @property
    def online(self) -> bool:
        return self.state == "online"

    async def ready(self, timeout: float | None = 30.0) -> RoomSession:
        """Wait until the room is joined; raises what prevented it (wrong token, no server)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._joined), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"{self.name!r} not joined within {timeout} s ({self.state})") from None

    # -- sending ----------------------------------------------------------------------
    def send(self, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Send to the room. Returns a `Pending`: ``await`` it for the server's ack (with
        the message's ``seq``), or ignore it (a failure then shows in the panel)."""
        return self.spawn(self._send(content), "sending a message")

    def direct(self, to: str, content: str | dict[str, Any]) -> Pending[dict[str, Any]]:
        """Send to one member only, through the server."""
        return self.spawn(self._direct(to, content), f"sending a direct message to {to}")

    def set_status(self, status: str) -> Pending[None]:
        """Set your presence status (``"busy"``, ``"reviewing"``, …), seen by every member."""
        return self.set_presence(status=status)

    def set_presence(self, **state: Any) -> Pending[None]:
        """Merge `state` into your presence (any JSON values); a None value removes a key."""
        for key, value in state.items():
            if value is None:
                self.presence.pop(key, None)
            else:
                self.presence[key] = value
        return self.spawn(self._push_presence(), "updating presence")

    async def _send(self, content: str | dict[str, Any]) -> dict[str, Any]:
        room = await self._room()
        return await room.send(content)

    async def _direct(self, to: str, content: str | dict[str, Any]) -> dict[str, Any]:
        room = await self._room()
        return await room.direct(to, content)

    async def _push_presence(self) -> None:
        room = await self._room()
        await room.set_state(dict(self.presence))

    def _send_from_panel(self, text: str) -> None:
        self.send(text)

    # -- receiving --------------------------------------------------------------------
    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[], None]:
        """Call `callback(message)` for each message (room and direct); returns a function
        that stops it. A callback may be a coroutine function; what it raises is shown in
        the panel's error area."""
        return self.on("message", callback)

    def on_presence(self, callback: Callable[[PresenceEvent], Any]) -> Callable[[], None]:
        """Call `callback(event)` when a member joins, leaves or changes its presence."""
        return self.on("presence", callback)

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Callbacks for ``message``, ``presence``, ``state`` (the connection's) or ``gap``."""
        return self.events.on(kind, guarded(callback, f"your {kind!r} callback {callback_name(callback)}", self._report))

    def stream(self, *kinds: str) -> EventStream:
        """``async for message in room.stream("message"): ...`` (every kind when none given)."""
        return self.events.stream(*kinds)

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
                if where is None or where(message):
                    return message

    async def wait_for_message(self, where: Callable[[Message], bool], timeout: float | None = 30.0) -> Message:
        """The first message matching `where`, among those already received or the next
        ones: what a cell wants when the other side may have spoken already."""
        for message in self.messages:
            if where(message):
                return message
        return await self.next_message(timeout, where)

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
        return self.members[user_id]

    # -- peer links -------------------------------------------------------------------
    def peer(self, user_id: str) -> PeerSession:
        """The direct peer-to-peer link with member `user_id` (opened on first use:
        ``await room.peer("bob").ready()`` to wait for it) and its panel, shown under the
        room's."""
        session = self.peers.get(user_id)
        if session is None or session.closed:
            from .peer_session import PeerSession  # aiortc is imported only when a link is wanted

            if user_id == self.user_id:
                raise ValueError("a peer link goes to another member, not to yourself")
            session = PeerSession(self, user_id)
            self.peers[user_id] = session
            self.panel.add_peer_panel(session.panel)
        return session

    def _open_peer_from_panel(self, user_id: str) -> None:
        self.peer(user_id).open()

    async def peer_network(self) -> PeerNetwork:
        """This session's peer in the room's signaling (started after the join, once)."""
        await self.ready(None)
        if self._network_task is None:
            self._network_task = self.loop.create_task(self._start_network())
        return await asyncio.shield(self._network_task)

    async def _start_network(self) -> PeerNetwork:
        from . import ice
        from .peer import PeerNetwork

        assert self.client is not None and self.user_id is not None
        if self._loopback is None:
            options: dict[str, Any] = {"host_addresses": ice.default_host_addresses()}
        else:
            options = {"loopback": self._loopback}
        signaling = {key: value for key, value in self._options.items() if key in ("backoff", "connect_timeout")}
        server = self.client.server
        network = await PeerNetwork.join(
            self.name,
            self.user_id,
            server.url,
            server.token,
            signaling_options=signaling,
            max_transfer_bytes=self.max_transfer_bytes,
            **options,
        )
        self.network = network
        # a member with no peer of its own in the room (a script, a page without links)
        # cannot take a link: its button says so instead of waiting for a timeout
        network.on("peer", guarded(lambda _e: self.on_loop(self.panel.show_reachable, network.peers), "peer list", self._report))
        self.panel.show_reachable(network.peers)
        self._accepting = self.loop.create_task(self._accept(network))
        return network

    async def _accept(self, network: PeerNetwork) -> None:
        """Links other members open to us get a session (and a panel) of their own."""
        while True:
            link = await network.accept()
            try:
                self.peer(link.peer_id).attach(link)
            except Exception as error:
                self._report(f"could not take the link from {link.peer_id}: {error}", error)

    # -- closing ----------------------------------------------------------------------
    async def leave(self) -> None:
        """Leave the room and close the connection and every peer link."""
        if self._closed:
            return
        self._closed = True
        for peer in list(self.peers.values()):
            await peer.close()
        if self._accepting is not None:
            self._accepting.cancel()
        if self._network_task is not None:
            if not self._network_task.done():
                self._network_task.cancel()
            elif self.network is not None:
                await self.network.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if self.client is not None:
            await self.client.close()
        self._set_state("closed")
        if not self._joined.done():
            self._joined.set_exception(ClientError(f"left {self.name!r} before it was joined"))
        self.events.close()

    close = leave

    # -- inside -----------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            client = await RoomClient.connect(self._url, self._token, user_id=self.user_id, **self._options)
            self.client = client
            self._replace_older(client.server.url)
            # listen before joining: the snapshot and any replay are emitted during the join
            # our own handlers are guarded too: a bug in the panel must show, not vanish in a log
            handlers: dict[str, Callable[[Any], Any]] = {
                "message": self._on_client_message,
                "presence": self._on_client_presence,
                "gap": self._on_client_gap,
                "connected": self._on_client_connected,
                "disconnected": lambda e: self._set_state("reconnecting", _close_reason(e)),
                "reconnecting": lambda e: self._set_state("reconnecting", f"attempt {e['attempt']}"),
                "closed": self._on_client_closed,
                "error": lambda e: self._report(f"the server refused a request: {e}", e, traceback=False),
            }
            for kind, handler in handlers.items():
                client.on(kind, guarded(handler, f"the room panel's {kind!r} handler", self._report))
            self.room = await client.join(self.name, state=dict(self.presence))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._set_state("offline", str(error))
            self._report(f"could not join {self.name!r}: {error}", error, traceback=False)
            if not self._joined.done():
                self._joined.set_exception(error)
            if self.client is not None:
                await self.client.close()
            return
        self.user_id = client.user_id
        self.panel.show_user(self.user_id)
        self.panel.show_members(self.members)
        self._set_state("online")
        self._joined.set_result(self)
        if self._want_peers:
            # be reachable for links others open, before anyone asks for one here
            self._network_task = self.loop.create_task(self._start_network())
            self._network_task.add_done_callback(self._network_started)

    def _network_started(self, task: asyncio.Task[PeerNetwork]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self._report(f"peer-to-peer links are not available: {error}", error, traceback=False)

    def _replace_older(self, server_url: str) -> None:
        key = (server_url, self.name, self.user_id)
        older = _live.get(key)
        if older is not None and older is not self and not older._closed:
            older._report("replaced by a newer join of the same room in this kernel", traceback=False)
            self.loop.create_task(older.leave())
        _live[key] = self

    def _on_client_message(self, message: Message) -> None:
        if message.room != self.name:
            return
        self.messages.append(message)
        del self.messages[:-MESSAGES_KEPT]
        text = message.text if message.text is not None else message.content
        self.on_loop(self.panel.show_message, message.timestamp, message.user_id, str(text), direct=message.direct)
        self.events.emit("message", message)

    def _on_client_presence(self, event: PresenceEvent) -> None:
        if event.room != self.name:
            return
        self.on_loop(self.panel.show_members, dict(event.members))
        if event.kind in ("joined", "left") and event.user_id != self.user_id:
            from datetime import datetime, timezone

            now = datetime.now(timezone.utc).isoformat()
            self.on_loop(self.panel.show_note, now, f"{event.user_id} {event.kind}")
        self.events.emit("presence", event)

    def _on_client_gap(self, gap: Gap) -> None:
        if gap.room != self.name:
            return
        why = "the room started over" if gap.epoch_changed else "they are older than the history the server keeps"
        self.on_loop(self.panel.show_note, "", f"some messages sent while you were away are lost ({why})")
        self.events.emit("gap", gap)

    def _on_client_connected(self, _event: dict[str, Any]) -> None:
        if self.room is not None:  # a reconnect (the first connection goes online once joined)
            self._set_state("online")

    def _on_client_closed(self, error: BaseException) -> None:
        if self._closed:
            return
        self._set_state("offline", str(error))
        self._report(f"the connection stopped: {error}", error, traceback=False)

    def _set_state(self, state: str, detail: str = "") -> None:
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._set_state, state, detail)  # the events too
            return
        if self._closed and state != "closed":
            return
        self.state = state
        self.panel.show_state(state, detail)
        self.events.emit("state", state)

    async def _room(self) -> ClientRoom:
        await self.ready(None)
        assert self.room is not None
        return self.room

    def spawn(self, coro: Coroutine[Any, Any, T], what: str, report: Report | None = None) -> Pending[T]:
        """Run `coro` on the session's loop; a failure is also shown in the panel (or given
        to `report`), where it is seen even when nobody awaits it."""
        if threading.get_ident() != self._thread:
            coro.close()
            raise RuntimeError("call this from the kernel's thread (the one that ran join())")
        task = self.loop.create_task(coro)
        report = report or self._report

        def done(task: asyncio.Task[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                report(f"{what} failed: {task.exception()}", task.exception(), traceback=False)

        task.add_done_callback(done)
        return Pending(task, what)

    def _report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
        if error is not None:
            self.errors.append(error)
        self.on_loop(self.panel.show_error, what, error if traceback else None)

    def on_loop(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a widget update now when on the kernel's thread, else hand it to its loop."""
        if threading.get_ident() == self._thread:
            function(*args, **kwargs)
        else:
            self.loop.call_soon_threadsafe(lambda: function(*args, **kwargs))


def _close_reason(event: dict[str, Any]) -> str:
    code, reason = event.get("code"), event.get("reason")
    return f"closed {code}: {reason}" if reason else (f"closed {code}" if code else "connection lost")


def join(
    room: str,
    *,
    user_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    status: str | None = "available",
    state: dict[str, Any] | None = None,
    peers: bool = True,
    loopback: bool | None = None,
    max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
    max_dataframe_rows: int = share.MAX_ROWS,
    max_dataframe_bytes: int = share.MAX_BYTES,
    display: bool = True,
    **client_options: Any,
) -> RoomSession:
    """Join `room` and show its live panel; returns the `RoomSession` at once.

    Call it from a cell (``room = join("analysis")``) or await it
    (``room = await join("analysis")`` returns once joined). `user_id` defaults to your
    Jupyter user name; the server is found by itself (`discover_server`: ``url=`` and
    ``token=``, else ``IAVICENNE_URL`` / ``IAVICENNE_TOKEN``, else the server that
    started this kernel). `status` and `state` are your initial presence; the notebook
    you are in is added. With `peers` (the default) you can open peer-to-peer links
    (``room.peer("bob")``) and others can open them to you; `loopback` chooses the local
    addresses a link may use: True 127.0.0.1 only (kernels of one machine); otherwise
    those ``$IAVICENNE_ICE_ADDRESSES`` lists, if set, else your network interfaces, and
    with None (the default) 127.0.0.1 too (`iavicenne.ice.default_host_addresses`).

    What a peer sends is refused past a bound, with an error that names the option
    to raise: `max_transfer_bytes` (one payload on a peer link, 256 MiB),
    `max_dataframe_rows` and `max_dataframe_bytes` (a shared DataFrame once decoded,
    checked before it is, 10 million rows and 512 MiB). Extra keywords go to
    `RoomClient` (``backoff=``, …).
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
        peers=peers,
        loopback=loopback,
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
