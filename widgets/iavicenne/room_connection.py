"""A room session's connection: find the server, connect and join, follow what the client
says of the connection, close.

* **One session a user, room and kernel.** Running the ``join`` cell again replaces the
  old session of the same user in the same room of this kernel: the old one leaves first
  (the others never see two connections), and the new one keeps its presence (status)
  unless given another.
* **The state is the connection's**: ``connecting``, ``online``, ``reconnecting``,
  ``offline`` (a fatal error, or taken out of the room by its owner), ``closed`` (left);
  the panel shows it and the user's ``state`` callbacks get it, always on the kernel's
  loop whichever thread said it.
* **Nothing is missed between connecting and listening.** The client listens to the
  session's handlers before it connects, so the presence snapshot and any replayed
  message reach the panel.
* **Our name** is the server's for the identity it verified (`user_id` unless one is
  given); until it answers, the panel shows ``$JUPYTERHUB_USER`` (`expected_user_id`).
* **The room's shared document** is synced on every join (`iavicenne.shared`), and kept
  when we leave: what is written meanwhile is sent on the next join.

What it needs from the session is `ConnectionHost`: it does not import the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import iavicenne_protocol as p

from .background import guarded
from .client import RoomClient
from .discovery import ServerInfo, discover_server
from .errors import ConnectionClosed

if TYPE_CHECKING:
    from .background import KernelLoop
    from .client_room import Room as ClientRoom
    from .events import EventEmitter
    from .panels.room_panel import RoomPanel
    from .shared import SharedState


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


class ConnectionHost(Protocol):
    """What a `RoomConnection` needs from its room session (`iavicenne.session.RoomSession`)."""

    #: our name in the room: None until the server names our identity
    user_id: str | None
    #: our presence state, sent with every join
    presence: dict[str, Any]

    @property
    def name(self) -> str: ...

    @property
    def tag(self) -> str:
        """This kernel's connection tag (`iavicenne.connections.kernel_tag`)."""
        ...

    @property
    def notebook(self) -> str | None: ...

    @property
    def kernel(self) -> KernelLoop: ...

    @property
    def panel(self) -> RoomPanel: ...

    @property
    def events(self) -> EventEmitter: ...

    @property
    def shared(self) -> SharedState: ...

    @property
    def closed(self) -> bool: ...

    async def leave(self, reason: str = "") -> None: ...

    def report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None: ...


# sessions alive in this kernel, by (server, token, room, user, connection tag): a cell run
# again replaces its old one. The token stands for the identity: without a user_id the name
# is the server's, unknown until joined, and two identities must not replace each other.
_live: weakref.WeakValueDictionary[tuple[str, str, str, str | None, str], ConnectionHost] = weakref.WeakValueDictionary()


class RoomConnection:
    """The client and the joined room of one session (`client`, `room`: None until then).

    `listeners` are the session's handlers of the client's room events (``message``,
    ``control``, ``presence``, ``gap``); `on_joined` is called once the room is joined,
    before the state goes ``online``."""

    def __init__(
        self,
        host: ConnectionHost,
        *,
        url: str | None,
        token: str | None,
        options: dict[str, Any],
        inherit: bool,
        listeners: dict[str, Callable[[Any], Any]],
        on_joined: Callable[[], None],
    ) -> None:
        self.host = host
        self.kernel = host.kernel
        self.client: RoomClient | None = None
        self.room: ClientRoom | None = None
        self.state = "connecting"
        self.closed = False
        self._url, self._token, self._options = url, token, options
        self._inherit = inherit  # no status nor state given: keep the replaced session's
        self._listeners = listeners
        self._on_joined = on_joined
        self._server: ServerInfo | None = None
        self.joined: asyncio.Future[None]  # done once joined, or failed with why not (new on each start)
        self._task: asyncio.Task[None]

    def start(self) -> None:
        """(On the loop's thread.) Connect and join, as a task."""
        self.closed = False
        self.client = None
        self.room = None
        self.joined = self.kernel.loop.create_future()
        self.joined.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by `ready`
        self.set_state("connecting")
        self._task = self.kernel.loop.create_task(self._connect())

    async def close(self, reason: str) -> None:
        """Leave the room and close the client (`closed` is set by the session first)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.host.shared.detach()  # kept: what is written now is sent on the next join
        if self.client is not None:
            await self.client.close()
        self.set_state("closed", reason)
        if not self.joined.done():
            self.joined.set_exception(ConnectionClosed(f"left {self.host.name!r} before it was joined"))

    def set_state(self, state: str, detail: str = "") -> None:
        """The connection's state, shown and emitted on the kernel's loop."""
        if not self.kernel.here():
            self.kernel.call(self.set_state, state, detail)  # the events too
            return
        if self.closed and state not in ("closed", "offline"):
            return
        self.state = state
        self.host.panel.show_state(state, detail)
        self.host.events.emit("state", state)

    async def _connect(self) -> None:
        host = self.host
        client: RoomClient | None = None
        try:
            server = self._server = self._server or discover_server(self._url, self._token)
            await self._replace_older(server)
            client = await self._open_client(server)
            self.client = client
            self.room = await client.join(host.name, state=dict(host.presence))
        except asyncio.CancelledError:
            if client is not None:
                await client.close()
            raise
        except Exception as error:
            self.set_state("offline", str(error))
            host.report(f"could not join {host.name!r}: {error}", error, traceback=False)
            if not self.joined.done():
                self.joined.set_exception(error)
            if client is not None:
                await client.close()
            return
        host.user_id = client.user_id
        host.shared.attach(self.room)
        self._on_joined()
        self.set_state("online")
        self.joined.set_result(None)

    async def _open_client(self, server: ServerInfo) -> RoomClient:
        """A started `RoomClient` listening to our handlers (before its first frame)."""
        client = RoomClient(server, user_id=self.host.user_id, **self._options)
        # our own handlers are guarded too: a bug in the panel must show, not vanish in a log
        handlers: dict[str, Callable[[Any], Any]] = {
            **self._listeners,
            "removed": self._on_removed,
            "connected": self._on_connected,
            "disconnected": lambda e: self.set_state("reconnecting", _close_reason(e)),
            "reconnecting": lambda e: self.set_state("reconnecting", f"attempt {e['attempt']}"),
            "closed": self._on_closed,
            "error": lambda e: self.host.report(f"the server refused a request: {e}", e, traceback=False),
        }
        for kind, handler in handlers.items():
            client.on(kind, guarded(handler, f"the room panel's {kind!r} handler", self.host.report))
        try:
            await client.start()
        except BaseException:
            await client.close()
            raise
        return client

    async def _replace_older(self, server: ServerInfo) -> None:
        host = self.host
        key = (server.url, server.token, host.name, host.user_id, host.tag)
        older = _live.get(key)
        _live[key] = host
        if older is None or older is host:
            return
        if self._inherit:  # the same cell run again: keep what was set meanwhile (a status)
            host.presence = {**older.presence, **({"notebook": host.notebook} if host.notebook else {})}
        if not older.closed:
            await older.leave("replaced by a newer join of this room in this kernel")

    def _on_removed(self, event: dict[str, Any]) -> None:
        name = self.host.name
        if event.get("room") != name:
            return
        why = "its owner removed you" if event.get("reason") == p.LeftReason.REMOVED else str(event.get("reason"))
        self.set_state("offline", f"taken out of {name!r}: {why}")
        self.host.report(f"you are no longer in {name!r}: {why} (ask its owner to invite you again)", traceback=False)

    def _on_connected(self, _event: dict[str, Any]) -> None:
        if self.room is not None:  # a reconnect (the first connection goes online once joined)
            self.set_state("online")

    def _on_closed(self, error: BaseException) -> None:
        if self.closed:
            return
        self.set_state("offline", str(error))
        if self.joined.done():  # before the join, `_connect` says it (once)
            self.host.report(f"the connection stopped: {error}", error, traceback=False)


def _close_reason(event: dict[str, Any]) -> str:
    code, reason = event.get("code"), event.get("reason")
    return f"closed {code}: {reason}" if reason else (f"closed {code}" if code else "connection lost")
