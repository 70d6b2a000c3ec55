"""The room session's view of its members' connections: which peers each member has in the
room's signaling, where each is (the describe / connection control messages), whose each
is (the identity the server says holds it), and which one a new link goes to.

`iavicenne.connections` has the rules (peer ids, descriptions, the choice); this module
keeps what a session learns of them as it goes:

* **Where a member's kernels are.** ``describe`` asks a member's kernels with the control
  message ``{"iavicenne": "describe", "q": nonce}``; each answers where it is (its
  notebook, since when). We answer the same question for our own kernel, at most twice
  a second to one asker (a member cannot make us flood the room).
* **Whose a peer is.** A peer named like bob's (``"bob#3f2a1c"``) is bob's only if the
  identity the server says holds it is the identity that holds ``bob`` in the room's
  presence (`verify_peer`): anyone else is an impostor, never offered as bob's.
* **The choice** (`choose`): the connection asked for, else one like ours; a member who
  just joined (or a peer network that just started) is given `PEER_GRACE` seconds to
  show up in signaling before the choice says they take no links.

What it needs from the room session (its members, its peer network, the room to send
on) is `DirectoryHost`: this module does not import the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from iavicenne_protocol import control

from . import connections
from .background import Pending, Report
from .connections import Connection, NoSuchConnection
from .errors import PeerIdentityMismatch, PeerUnreachable, RequestFailed
from .link import same_identity
from .panels.text import verified_username

if TYPE_CHECKING:
    from .background import KernelLoop
    from .client_room import Room as ClientRoom
    from .events import Message
    from .peer import PeerNetwork

log = logging.getLogger("iavicenne.room")
PEER_GRACE = 5.0  # seconds a member's peer may take to show up in signaling after its join
DESCRIBE_WAIT = 1.5  # seconds to wait for a member's kernels to describe themselves
DESCRIBE, DESCRIPTION = control.ControlKind.DESCRIBE, control.ControlKind.CONNECTION
NONCE_MAX = control.CONTROL_ID_MAX_LENGTH


def current_notebook() -> str | None:
    """The notebook this kernel runs for, as Jupyter told the kernel (None outside one)."""
    path = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server >= 2 for its kernels
    if not path:
        with contextlib.suppress(Exception):
            from IPython import get_ipython

            shell = get_ipython()
            path = shell.user_ns.get("__session__") if shell is not None else None
    return os.path.basename(path) if path else None


class DirectoryHost(Protocol):
    """What `MemberConnections` needs from its room session (`iavicenne.session.RoomSession`)."""

    @property
    def name(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    @property
    def kernel(self) -> KernelLoop: ...

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        """Who is in the room now, with the identity that holds each name."""
        ...

    @property
    def room(self) -> ClientRoom | None:
        """The joined room (None before the join)."""
        ...

    @property
    def network(self) -> PeerNetwork | None:
        """Our peer in the room's signaling, once it joined."""
        ...

    async def ready(self, timeout: float | None = 30.0) -> Any: ...

    async def peer_network(self) -> PeerNetwork: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str, report: Report | None = None) -> Pending[Any]: ...


def quietly(what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
    """For lookups in the background (where a member's kernels are): a member who left
    meanwhile is no failure of the user's; the log has it."""
    log.info("iavicenne: %s", what)


class MemberConnections:
    """The connections of the room's members, as this session knows them now.

    `changed` is called (on the kernel's loop) when a description arrives: what the
    panel lists for a member may have changed."""

    def __init__(self, host: DirectoryHost, *, notebook: str | None, changed: Callable[[], None]) -> None:
        self.host = host
        self.kernel = host.kernel
        self.notebook = notebook  # ours: what we answer, and what a choice prefers
        self.changed = changed
        self.since = ""  # when our peer joined the signaling (ISO): what we answer
        self._network_up = 0.0  # the same, in loop time: the grace of a choice counts from it
        self._described: dict[str, Connection] = {}  # by peer_id: what a connection said of itself
        self._queries: dict[str, asyncio.Event] = {}  # describe nonces we wait answers for
        self._answered: dict[str, float] = {}  # user -> when we last answered them (no amplification)
        self._arrived: dict[str, float] = {}  # user -> when we saw them join (loop time)

    # -- what the session tells us ----------------------------------------------------
    def network_joined(self, since: str) -> None:
        self.since = since
        self._network_up = self.kernel.loop.time()

    def member_joined(self, user_id: str) -> None:
        self._arrived[user_id] = self.kernel.loop.time()

    def peer_left(self, peer_id: str) -> None:
        self._described.pop(peer_id, None)

    def take_control(self, message: Message) -> None:
        """A control message of the room about connections (a question or an answer)."""
        content = message.content
        kind = control.kind_of(content)
        if kind == DESCRIBE:
            self._answer_describe(message.user_id, content.get("q"))
        elif kind == DESCRIPTION:
            self._take_description(message.user_id, content)

    # -- whose a peer is --------------------------------------------------------------
    def verify_peer(self, peer_id: str, identity: dict[str, Any] | None) -> None:
        """`PeerIdentityMismatch`, saying who is who, unless `identity` holds the member
        name of `peer_id` in the room's presence (see `RoomSession.verify_peer`)."""
        user = connections.user_of(peer_id)
        member = self.host.members.get(user)
        expected = member.get("identity") if member is not None else None
        name = self.host.name
        if not expected:
            raise PeerIdentityMismatch(
                f"{peer_id!r} would be {user!r}'s, but nobody holds {user!r} in room {name!r}: link refused"
            )
        if identity is None:
            raise PeerIdentityMismatch(
                f"the server did not say who holds {peer_id!r} (a server without verified signaling?): link refused",
                expected,
            )
        if not same_identity(expected, identity):
            raise PeerIdentityMismatch(
                f"{peer_id!r} is held by {verified_username(identity)!r}, but {user!r} in room {name!r} is "
                f"{verified_username(expected)!r}: link refused (someone took a name that is not theirs)",
                expected,
                identity,
            )

    def refusal(self, network: PeerNetwork, peer_id: str) -> PeerIdentityMismatch | None:
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

    def of(self, user_id: str) -> list[Connection]:
        """The connections of member `user_id` that take peer links, newest first (see
        `RoomSession.connections`)."""
        network = self.host.network
        if network is None:
            return []
        peers = [peer for peer in sorted(network.peers) if self.refusal(network, peer) is None]
        found = [self._described.get(peer) or connections.undescribed(peer) for peer in peers]
        return sorted((c for c in found if c.user_id == user_id), key=lambda c: c.since, reverse=True)

    def impostors(self, user_id: str) -> list[PeerIdentityMismatch]:
        """Why each peer named like `user_id`'s, held by another identity, is refused."""
        network = self.host.network
        if network is None:
            return []
        found = [self.refusal(network, peer) for peer in sorted(network.peers) if connections.user_of(peer) == user_id]
        return [refusal for refusal in found if refusal is not None]

    def reachable(self) -> dict[str, tuple[list[tuple[str, str]], str]]:
        """For the panel: each member with a peer of theirs, ``([(label, peer_id), ...],
        the default peer_id)``."""
        network = self.host.network
        if network is None:
            return {}
        by_user: dict[str, list[Connection]] = {}
        for peer in network.peers:
            if self.refusal(network, peer) is not None:
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
        return choices

    def absent(self, user_id: str) -> str:
        """Why a link to `user_id` cannot be: they are not in the room."""
        here = ", ".join(sorted(self.host.members)) or "nobody"
        return (
            f"{user_id!r} is not in room {self.host.name!r} (here: {here}); "
            f"wait for them with `await room.wait_for_member({user_id!r})`"
        )

    # -- which one a link goes to -----------------------------------------------------
    async def choose(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> Connection:
        """The connection of `user_id` a new link goes to; `PeerUnreachable` saying why."""
        host = self.host
        await host.ready(None)
        if user_id not in host.members:
            raise PeerUnreachable(self.absent(user_id))
        network = await host.peer_network()
        refused = self.refusal(network, connection) if connection is not None else None
        if refused is not None:
            raise refused  # asked for by its peer id, but it is not theirs
        # just joined (they or we): their peer may still be joining the signaling
        loop = self.kernel.loop
        deadline = max(self._arrived.get(user_id, 0.0), self._network_up) + PEER_GRACE
        while not self.of(user_id) and user_id in host.members and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not self.of(user_id):
            if user_id not in host.members:
                raise PeerUnreachable(self.absent(user_id))
            impostors = self.impostors(user_id)
            if impostors:  # a peer by that name, held by someone else: say so, not "no links"
                raise impostors[0]
            raise PeerUnreachable(
                f"{user_id!r} takes no peer links: none of their connections in {host.name!r} has a peer "
                "(a script, or a page without links); send through the room instead (room.direct)"
            )
        if notebook is not None or connection is not None or len(self.of(user_id)) > 1:
            await self.describe(user_id)
        try:
            return connections.choose(
                self.of(user_id), user_id, notebook=notebook, connection=connection, my_notebook=self.notebook
            )
        except NoSuchConnection as error:
            raise PeerUnreachable(str(error)) from None

    async def describe(self, user_id: str, timeout: float = DESCRIBE_WAIT) -> list[Connection]:
        """Ask `user_id`'s kernels where they are; their connections once they said it."""
        await self.host.ready(None)
        room = self.host.room
        undescribed = [c for c in self.of(user_id) if not c.described and c.kind == connections.KERNEL]
        if not undescribed or room is None:
            return self.of(user_id)
        nonce = os.urandom(6).hex()
        arrived = self._queries[nonce] = asyncio.Event()
        loop = self.kernel.loop
        try:
            await room.direct(user_id, control.describe(nonce))
            deadline = loop.time() + timeout
            while any(not c.described and c.kind == connections.KERNEL for c in self.of(user_id)):
                left = deadline - loop.time()
                if left <= 0:
                    break
                arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), left)
        except RequestFailed:
            pass  # they left meanwhile: the choice says so
        finally:
            self._queries.pop(nonce, None)
        return self.of(user_id)

    def describe_later(self, user_id: str) -> None:
        """Learn where the kernels of `user_id` are, if they have several (for the panel's list)."""
        if len(self.of(user_id)) > 1:
            self.host.spawn(self.describe(user_id), "asking where a member's kernels are", quietly)

    # -- the control messages ---------------------------------------------------------
    def _answer_describe(self, asker: str, nonce: Any) -> None:
        network, room = self.host.network, self.host.room
        if network is None or room is None or not isinstance(nonce, str) or len(nonce) > NONCE_MAX or asker == self.host.user_id:
            return
        now = time.monotonic()
        if now - self._answered.get(asker, 0.0) < 0.5:
            return  # asked again at once: one answer is enough (a member cannot make us flood)
        self._answered[asker] = now
        answer = control.connection(nonce, network.peer_id, connections.KERNEL, notebook=self.notebook, since=self.since)
        self.host.spawn(room.direct(asker, answer), f"telling {asker} where this kernel is", quietly)

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
        self.kernel.call(self.changed)
