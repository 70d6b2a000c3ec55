"""The room session's peer links: its peer in the room's signaling (`PeerNetwork`, joined
after the room, or on first use), one `PeerSession` a member connection, and the links
other members open to us.

* **Reachable for others first.** Once the room is joined, the session joins the room's
  signaling at once, so a link another member opens finds us; the links we open wait
  for that network too.
* **One session a connection.** ``room.peer("bob")`` is bob's default session (the
  connection chosen for it is kept while its link is open); ``notebook=`` or
  ``connection=`` give sessions of their own. A link bob opens to us attaches to the
  session bound to that connection, else to bob's default one if it has no open link
  elsewhere, else to a new one: each has its panel under the room's.
* **The panel's Peer link buttons** follow the peers signaling lists, minus those held
  by an identity that is not the member's (`iavicenne.member_connections`).
* **Aiortc is imported only when a link is wanted**: `PeerNetwork`, `SignalingRelay` and
  `PeerSession` are imported when the network starts or a session is made.

What a part needs from its room session is `LinksHost` (the session is also each peer
session's `iavicenne.peer_session.PeerHost`): this module does not import the session.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from . import connections
from .background import guarded
from .errors import ConnectionClosed, PeerUnreachable
from .member_connections import MemberConnections

if TYPE_CHECKING:
    from .client import RoomClient
    from .client_room import Room as ClientRoom
    from .panels.room_panel import RoomPanel
    from .peer import PeerNetwork
    from .peer_session import PeerHost, PeerSession
    from .relay import RelayTransport

    class LinksHost(PeerHost, Protocol):
        """What `RoomLinks` needs from its room session (`iavicenne.session.RoomSession`),
        besides what each of its peer sessions needs (`PeerHost`)."""

        @property
        def name(self) -> str: ...

        @property
        def client(self) -> RoomClient | None: ...

        @property
        def room(self) -> ClientRoom | None: ...

        @property
        def closed(self) -> bool:
            """Left (``leave``): nothing starts any more."""
            ...

        @property
        def online(self) -> bool: ...

        @property
        def members(self) -> dict[str, dict[str, Any]]: ...

        @property
        def panel(self) -> RoomPanel: ...

        @property
        def max_transfer_bytes(self) -> int: ...

        @property
        def relay_after(self) -> float: ...

        async def ready(self, timeout: float | None = 30.0) -> Any: ...

        def report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None: ...


class RoomLinks:
    """The peer network of a room session and its peer sessions (`sessions`, by key: the
    member's name for their default session, else what picked the connection)."""

    def __init__(
        self,
        host: LinksHost,
        directory: MemberConnections,
        *,
        tag: str,
        loopback: bool | None,
        host_addresses: Sequence[str] | None,
        relay: bool,
        signaling_options: dict[str, Any],
    ) -> None:
        self.host = host
        self.kernel = host.kernel
        self.directory = directory
        self.tag = tag
        self.sessions: dict[str, PeerSession] = {}
        self.network: PeerNetwork | None = None
        self.relay: RelayTransport | None = None  # the network's, once it is up (with join's relay=True)
        self._loopback = loopback
        self._host_addresses = tuple(host_addresses) if host_addresses is not None else None
        self._want_relay = relay
        self._signaling_options = signaling_options
        self._starting: asyncio.Task[PeerNetwork] | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # `session` may be called from any thread

    # -- the sessions -----------------------------------------------------------------
    def session(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> PeerSession:
        """The peer session with `user_id` (see `RoomSession.peer`), made if needed."""
        key = connection or (f"{user_id} in {notebook}" if notebook else user_id)
        with self._lock:
            session = self.sessions.get(key)
            if session is not None and not session.closed:
                return session
            if self.host.online and user_id not in self.host.members:
                raise PeerUnreachable(self.directory.absent(user_id))
            return self._new_session(key, user_id, notebook=notebook, connection=connection)

    def _new_session(self, key: str, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> PeerSession:
        from .peer_session import PeerSession  # aiortc is imported only when a link is wanted

        session = PeerSession(self.host, user_id, notebook=notebook, connection=connection)
        self.sessions[key] = session
        self.kernel.call(self.host.panel.add_peer_panel, session.panel)
        return session

    def member_back(self, user_id: str) -> None:
        """`user_id` (re)joined the room: their failed sessions may try again."""
        for session in list(self.sessions.values()):
            if session.remote == user_id:
                session.member_back()

    def forget_closed(self) -> None:
        """Before a rejoin: the closed sessions and their panels go."""
        with self._lock:
            for key, session in list(self.sessions.items()):
                if session.closed:
                    del self.sessions[key]
                    self.host.panel.remove_peer_panel(session.panel)

    # -- the network ------------------------------------------------------------------
    def start(self) -> None:
        """Join the room's signaling now (once the room is joined): reachable for links
        others open, before anyone asks for one here."""
        self._starting = self.kernel.loop.create_task(self._join_network())
        self._starting.add_done_callback(self._started)

    async def peer_network(self) -> PeerNetwork:
        """Our peer in the room's signaling (joined after the room, once)."""
        await self.host.ready(None)
        if self._starting is None:
            self._starting = self.kernel.loop.create_task(self._join_network())
        return await asyncio.shield(self._starting)

    def _started(self, task: asyncio.Task[PeerNetwork]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.host.closed:
            error = task.exception()
            self.host.report(f"peer-to-peer links are not available: {error}", error, traceback=False)

    async def _join_network(self) -> PeerNetwork:
        from . import ice
        from .peer import PeerNetwork

        host = self.host
        assert host.client is not None and host.user_id is not None and host.room is not None
        if self._host_addresses is not None:  # exactly these (join's `host_addresses=`)
            options: dict[str, Any] = {"host_addresses": self._host_addresses}
        elif self._loopback is None:
            options = {"host_addresses": ice.default_host_addresses()}
        else:
            options = {"loopback": self._loopback}
        if self._want_relay:  # over the network's own signaling socket
            options.update(relay=True, relay_after=host.relay_after)
        server = host.client.server
        since = datetime.now(timezone.utc).isoformat()
        network = await PeerNetwork.join(
            host.name,
            connections.peer_id_for(host.user_id, self.tag),
            server.url,
            server.token,
            signaling_options=self._signaling_options,
            max_transfer_bytes=host.max_transfer_bytes,
            user_of=connections.user_of,
            relays_to=connections.is_tagged,  # kernels (a page or a script takes no relay)
            verify_identity=self.directory.verify_peer,
            **options,
        )
        if host.closed:
            await network.close()
            raise ConnectionClosed(f"left {host.name!r}")
        self.network = network
        self.relay = network.relay
        self.directory.network_joined(since)

        def on_peer(event: Any) -> None:
            if event.kind == "left":
                self.directory.peer_left(event.peer_id)
            self.kernel.call(self.show_reachable)
            if event.kind == "joined":
                # a member with several connections: learn where each is, for the panel's list
                self.directory.describe_later(connections.user_of(event.peer_id))

        # a member with no peer of its own in the room (a script, a page without links)
        # cannot take a link: its button says so instead of waiting for a timeout
        network.on("peer", guarded(on_peer, "the peer list", host.report))
        network.on("refused", lambda refused: host.report(f"refused a peer link: {refused}", refused, traceback=False))
        self.show_reachable()
        # the peers already there: learn where the kernels of a member with several are
        for user in {connections.user_of(peer) for peer in network.peers}:
            self.directory.describe_later(user)
        self._accepting = self.kernel.loop.create_task(self._accept(network))
        return network

    def show_reachable(self) -> None:
        """The panel's Peer link buttons, as signaling lists the members' peers now."""
        if self.network is not None:
            self.host.panel.show_reachable(self.directory.reachable())

    async def _accept(self, network: PeerNetwork) -> None:
        """Links other members open to us get a session (and a panel) of their own."""
        while True:
            link = await network.accept()
            try:
                self._session_for_incoming(link.peer_id).attach(link)
            except Exception as error:
                self.host.report(f"could not take the link from {link.peer_id}: {error}", error)

    def _session_for_incoming(self, peer_id: str) -> PeerSession:
        """The session a link from `peer_id` belongs to: the one bound to that connection,
        else the member's default one if it has no open link elsewhere, else a new one."""
        user_id = connections.user_of(peer_id)
        with self._lock:
            for session in self.sessions.values():
                if session.peer_id == peer_id and not session.closed:
                    return session
            default = self.sessions.get(user_id)
            if default is not None and not default.closed and not (default.link is not None and default.link.open):
                return default
            key = user_id if default is None or default.closed else peer_id
            return self._new_session(key, user_id, connection=None if key == user_id else peer_id)

    async def close(self) -> None:
        """Close every link and leave the signaling (the sessions stay, closed)."""
        for session in list(self.sessions.values()):
            await session.close()
        if self._accepting is not None:
            self._accepting.cancel()
        if self._starting is not None:
            if not self._starting.done():
                self._starting.cancel()
            elif self.network is not None:
                await self.network.close()
        # the relay is the network's own: closed with it
        self._starting = self._accepting = self.relay = None
        self.network = None
