"""A direct peer-to-peer link with one member, from a notebook: ``room.peer("bob")``.

`PeerSession` sits on `iavicenne.peer.PeerLink` (a WebRTC data channel, aiortc) and adds
what a notebook wants: a panel (link state, messages, transfers with progress bars),
DataFrames and files (`iavicenne.share`: Arrow IPC or Parquet, never pickle), separate
mailboxes so ``await peer.receive_dataframe()`` does not swallow a chat line, and
callbacks whose errors show in the panel.

A session lives as long as its room session: when the link closes (the peer's kernel
restarted, it left), the session stays, shows why, and opens a new link on the next
send or click; a link the peer opens to us attaches to the same session.

**One connection of the member.** A member may have several connections (two kernels, a
kernel and a browser page); a session's link goes to one, chosen when the link opens
(`RoomSession.choose_connection`: the one asked for with ``notebook=`` or
``connection=``, else one in the same kind of place as this kernel) and kept while it
lives: an open link is never moved to another connection. If that connection went away,
the next link may go to another one, and the panel says so. The link says what carries
it, ``path`` ``"direct"`` (peer to peer) or ``"relay"`` (through the server), and so does
the panel.

Every method can be called from any thread; the work runs on the kernel's loop.

What the link brings is sorted by `iavicenne.peer_inbox` (bounded mailboxes, DataFrames
checked against the room session's bounds before they are decoded, files offered to us);
`store_dataframes` never replaces a variable it did not put there itself unless told to
(``overwrite=True``): a peer must not be able to rebind ``pd``.

A link is taken only from the identity that holds the member's name in the room (the
room session's `verify_peer`, `iavicenne.errors.PeerIdentityMismatch` otherwise);
``peer.identity`` is who the other end is, and the panel shows it beside the name when
the two differ.

A session needs a few things from its room session (who we are, how to run work in the
background, the room's peer network); `PeerHost` names them, so this module does not
reach into `RoomSession` (and does not import it).
"""

from __future__ import annotations

import asyncio
import keyword
import os
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import share
from .background import KernelLoop, Pending, Report, guarded, on_session_loop
from .connections import Connection
from .errors import PeerLinkClosed, PeerLinkError
from .events import Subscription
from .link import Link
from .panels.peer_panel import PeerPanel
from .peer import PeerNetwork
from .peer_inbox import PeerInbox, Throttled, now, preview

if TYPE_CHECKING:
    import pandas as pd

    from .files import FileOffer

T = TypeVar("T")


class PeerHost(Protocol):
    """What a `PeerSession` needs from the room session it belongs to (`RoomSession`)."""

    @property
    def user_id(self) -> str | None: ...

    @property
    def kernel(self) -> KernelLoop:
        """The kernel's loop, where the work runs whichever thread calls."""
        ...

    @property
    def errors(self) -> list[BaseException]:
        """Where every failure of the room session and its links is kept."""
        ...

    @property
    def peer_timeout(self) -> float: ...

    @property
    def max_dataframe_rows(self) -> int: ...

    @property
    def max_dataframe_bytes(self) -> int: ...

    def spawn(self, coro: Coroutine[Any, Any, T], what: str, report: Report | None = None) -> Pending[T]:
        """Run `coro` in the background; what it raises goes to `report`."""
        ...

    async def peer_network(self) -> PeerNetwork:
        """This member's peer in the room's signaling (joined on first use)."""
        ...

    async def choose_connection(self, user_id: str, *, notebook: str | None = None, connection: str | None = None) -> Connection:
        """The connection of `user_id` a new link goes to; `PeerUnreachable` saying why if none."""
        ...

    def on_loop(self, function: Callable[..., Any], *args: Any) -> None:
        """Call `function` on the kernel's loop (widgets are touched from there only)."""
        ...

    def file_for_link(self, link: Link, header: Any) -> FileOffer | bool:
        """The accepted offer a file header on `link` announces, True when the header is
        refused (its bytes are dropped), False when it is no file header."""
        ...


class PeerSession:
    """The link with one member (`remote`) of a room session (`room`), and its panel.

    `notebook` / `connection` say which of the member's connections to link to (see the
    module docstring); `peer_id` is the one it is linked to, once it is."""

    def __init__(self, room: PeerHost, remote: str, *, notebook: str | None = None, connection: str | None = None) -> None:
        self.room = room
        self.kernel = room.kernel
        self.remote = remote
        self.notebook = notebook
        self.wanted = connection
        self.peer_id: str | None = connection
        self.connection: Connection | None = None
        self.link: Link | None = None
        self.state = "new"
        self.closed = False
        self.errors: list[BaseException] = []
        self.panel = PeerPanel(room.user_id or "you", remote)
        self.panel.on_send(self._from_panel(self._send_from_panel))
        self._inbox = PeerInbox(room, remote, self.panel, link=lambda: self.link, report=self._report)
        self._opening: asyncio.Task[Link] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._link_error: BaseException | None = None

    def __repr__(self) -> str:
        where = f" ({self.peer_id}, {self.path})" if self.peer_id and self.link is not None else ""
        return f"<PeerSession {self.room.user_id!r} ⇄ {self.remote!r}{where}: {self.state}>"

    @property
    def messages(self) -> list[Any]:
        """Everything received that is not a shared object (the last `iavicenne.peer_inbox.KEPT` of them)."""
        return self._inbox.messages

    @property
    def identity(self) -> dict[str, Any] | None:
        """Who the other end of the link is, as the server verified it (``username``,
        ``name``, ``display_name``; `iavicenne.link.Link.identity`), None before a link."""
        return self.link.identity if self.link is not None else None

    @property
    def path(self) -> str | None:
        """What carries the link: ``"direct"`` (peer to peer), ``"relay"`` (the server), None before one."""
        return self.link.path if self.link is not None else None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.panel)

    # -- the link ---------------------------------------------------------------------
    def open(self) -> Pending[PeerSession]:
        """Open the link (what the member's "Peer link" button does); await for it."""
        return self.room.spawn(self._open_then_self(), f"opening a link to {self.remote}", self._report)

    @on_session_loop
    async def ready(self, timeout: float | None = 60.0) -> PeerSession:
        """Wait until the link is open (opening it if needed); `PeerUnreachable` at once
        when the member is not in the room or takes no links."""
        try:
            await asyncio.wait_for(self._ensure_link(), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"the link to {self.remote!r} did not open within {timeout} s") from None
        except PeerLinkError as error:
            raise error.with_traceback(None) from None
        return self

    async def _open_then_self(self) -> PeerSession:
        await self._ensure_link()
        return self

    async def _ensure_link(self) -> Link:
        if self.closed:
            raise PeerLinkClosed(f"the session with {self.remote!r} was closed; use room.peer({self.remote!r}) again")
        if self.link is not None and self.link.open:
            return self.link
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._opening)

    async def _connect(self) -> Link:
        self._show_state("connecting")
        try:
            network = await self.room.peer_network()
            target = self.wanted
            if target is None and self.peer_id is not None and self.peer_id in network.peers:
                target = self.peer_id  # the connection this session was linked to is still here
            chosen = await self.room.choose_connection(self.remote, notebook=self.notebook, connection=target)
            if self.peer_id is not None and chosen.peer_id != self.peer_id:
                self.panel.show_note(now(), f"{self.peer_id} is gone: the new link goes to {chosen.peer_id} ({chosen.label})")
            self.connection = chosen
            self._show_state("connecting", f"to {chosen.label}")
            link = await network.connect(chosen.peer_id, timeout=self.room.peer_timeout)
        except Exception as error:
            self._show_state("failed", str(error))
            raise
        self.attach(link)
        return link

    def attach(self, link: Link) -> None:
        """Use `link` (ours, or one the peer opened to us) from now on."""
        if link is self.link:
            return
        if self._reader is not None:
            self._reader.cancel()
        self.link = link
        self.peer_id = link.peer_id
        self.panel.show_connection(
            self.connection.label if self.connection is not None and self.connection.peer_id == link.peer_id else link.peer_id
        )
        self.panel.show_identity(link.identity)
        self._link_error = None
        link.on("progress", self._inbox.progress)
        link.on("close", self._on_close)
        link.on("error", lambda error: self._report(str(error), error, traceback=False))  # it names the peer
        self._reader = asyncio.ensure_future(self._inbox.read(link))
        if link.open:
            self._show_state("open", _PATHS.get(link.path, link.path))
            who = "we" if link.offerer else self.remote
            self.panel.show_note(now(), f"link open ({who} opened it, {_PATHS.get(link.path, link.path)})")

    def member_back(self) -> None:
        """The member (re)joined the room: a failed session may try again."""
        if self.state == "failed" and not self.closed:
            self._show_state("new")
            self.panel.show_note(now(), f"{self.remote} is in the room: the next send opens a link")

    @on_session_loop
    async def close(self) -> None:
        """Close the link; this session is done (``room.peer(...)`` makes a new one)."""
        self.closed = True
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self.link is not None:
            await self.link.close()
        if self._reader is not None:
            self._reader.cancel()
        self._show_state("closed")
        self.kernel.call(self.panel.show_closed, True)
        self._inbox.wake()

    # -- sending ----------------------------------------------------------------------
    def send(self, data: Any) -> Pending[None]:
        """Send text, bytes or a JSON-able object (never pickled). Returns once the peer's
        channel has it: await it, or not (a failure shows in the panel)."""
        return self.room.spawn(self._send(data), f"sending to {self.remote}", self._report)

    def _send_from_panel(self, text: str) -> None:
        sending = self.send(text)

        def done(future: Any) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.kernel.call(self.panel.composer.restore, text)

        sending.future.add_done_callback(done)

    def send_dataframe(self, df: pd.DataFrame, name: str = "dataframe", format: str = "arrow") -> Pending[None]:
        """Share a DataFrame as Arrow IPC (default) or Parquet, with a progress bar; the
        peer gets it with ``receive_dataframe()`` or ``on_dataframe``."""
        packed = share.pack_dataframe(df, name, format)  # here, so a bad DataFrame raises in the cell
        label = share.describe(share.unpack(packed).header)
        return self.room.spawn(self._transfer(packed, label), f"sending {name} to {self.remote}", self._report)

    def send_file(self, path: str | os.PathLike[str], name: str | None = None) -> Pending[None]:
        """Send a file (its base name travels with it; the receiver picks the folder)."""
        packed = share.pack_file(path, name)
        label = share.describe(share.unpack(packed).header)
        return self.room.spawn(self._transfer(packed, label), f"sending {Path(path).name} to {self.remote}", self._report)

    async def _send(self, data: Any) -> None:
        link = await self._ensure_link()
        await link.send(data)
        self.panel.show_message(now(), self.room.user_id or "you", preview(data))

    async def _transfer(self, packed: bytes, label: str) -> None:
        link = await self._ensure_link()
        row = self.panel.add_transfer(label, outgoing=True)
        try:
            await link.send(packed, progress=Throttled(row))
        except BaseException as error:
            row.finish(f"failed: {error}" if isinstance(error, Exception) else "cancelled", ok=False)
            raise
        row.finish("sent")

    # -- receiving --------------------------------------------------------------------
    @on_session_loop
    async def receive(self, timeout: float | None = 60.0) -> Any:
        """The next message (text, bytes or a JSON value) not yet taken."""
        return await self._take("message", timeout)

    @on_session_loop
    async def receive_dataframe(self, timeout: float | None = 120.0) -> pd.DataFrame:
        """The next DataFrame the peer shared (decoded from Arrow or Parquet); a
        `share.ShareError` if it is over the room session's ``max_dataframe_rows`` or
        ``max_dataframe_bytes`` (checked before it is decoded)."""
        shared: share.Shared = await self._take("dataframe", timeout)
        return self._inbox.decode(shared)

    @on_session_loop
    async def receive_file(self, folder: str | os.PathLike[str] = ".", timeout: float | None = 120.0) -> Path:
        """Save the next file the peer sent into `folder` (never elsewhere); its path."""
        shared: share.Shared = await self._take("file", timeout)
        return share.save_file(shared, folder)

    def on_message(self, callback: Callable[[Any], Any]) -> Subscription:
        """Call `callback(data)` for each message; errors it raises show in the panel."""
        return self._on("message", callback)

    def on_dataframe(self, callback: Callable[[str, pd.DataFrame], Any]) -> Subscription:
        """Call `callback(name, df)` for each DataFrame the peer shares."""
        return self._on("dataframe", callback)

    def on_file(self, callback: Callable[[str, bytes], Any]) -> Subscription:
        """Call `callback(name, content)` for each file the peer sends."""
        return self._on("file", callback)

    def store_dataframes(
        self, namespace: dict[str, Any] | None = None, prefix: str = "", *, overwrite: bool = False
    ) -> Subscription:
        """Put each DataFrame the peer shares into `namespace` (default: the notebook's
        variables) under its name (with `prefix`): ``sales`` shared → ``sales`` here.
        A name that is not a plain identifier, or is private, is not used as one.

        A name already bound here (``pd``, ``room``, your own ``sales``) is left alone and
        the panel says so, unless `overwrite`; a DataFrame stored here earlier is replaced
        by the next one of the same name. The DataFrame stays available from
        ``receive_dataframe()`` either way."""
        if namespace is None:
            from IPython import get_ipython

            shell = get_ipython()
            if shell is None:
                raise RuntimeError("no notebook here: pass the namespace (a dict) to store into")
            namespace = shell.user_ns
        target = namespace
        # variable -> the DataFrame this put there (weakly: a variable the user rebinds
        # or deletes must not keep an old DataFrame alive)
        stored: dict[str, weakref.ref[Any]] = {}

        def store(name: str, df: pd.DataFrame) -> None:
            variable = prefix + name
            if not variable.isidentifier() or keyword.iskeyword(variable) or variable.startswith("_"):
                variable = (
                    f"{prefix or 'shared_'}{share.safe_file_name(name).replace('.', '_').replace(' ', '_').replace('-', '_')}"
                )
                if not variable.isidentifier():
                    variable = f"{prefix or 'shared_'}dataframe"
            mine = stored.get(variable)
            ours = mine is not None and mine() is not None and target.get(variable) is mine()
            if variable in target and not ours and not overwrite:
                self.panel.show_note(
                    now(),
                    f"not stored as `{variable}`: that name is already used here (store_dataframes(overwrite=True) "
                    "or a prefix allows it); receive_dataframe() has it",
                )
                return
            target[variable] = df
            stored[variable] = weakref.ref(df)
            self.panel.show_note(now(), f"stored as `{variable}`")

        return self.on_dataframe(store)

    def _on(self, kind: str, callback: Callable[..., Any]) -> Subscription:
        what = f"your {kind!r} callback {getattr(callback, '__qualname__', callback)!r} for {self.remote}"
        return Subscription(kind, callback, self._inbox.on(kind, guarded(callback, what, self._report)))

    async def _take(self, kind: str, timeout: float | None) -> Any:
        mailbox = self._inbox.mail[kind]
        if not mailbox.items and not self.closed and self.link is None:
            await self.ready(timeout)  # nothing can arrive without a link: open one
        try:
            return await mailbox.get(timeout, self._why_nothing_more)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"no {kind} from {self.remote!r} within {timeout} s") from None

    def _why_nothing_more(self) -> BaseException | None:
        """Why waiting would hang: this session closed, or its link did (the peer left,
        its kernel stopped). A send opens a new link; a receive does not wait for one."""
        if self.closed:
            return PeerLinkClosed(f"the session with {self.remote!r} is closed")
        if self.link is not None and not self.link.open and self.link.state == "closed":
            return self._link_error or PeerLinkClosed(f"the link to {self.remote!r} closed")
        return None

    def _on_close(self, error: BaseException) -> None:
        self._link_error = error
        self._inbox.cut_off(error)
        if not self.closed:
            self._show_state("closed", str(error))
            self.panel.show_note(now(), f"link closed: {error}")

    # -- showing ----------------------------------------------------------------------
    def _show_state(self, state: str, detail: str = "") -> None:
        self.state = state
        self.kernel.call(self.panel.show_state, state, detail)

    def _report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
        if error is not None:
            self.errors.append(error)
            self.room.errors.append(error)
        self.kernel.call(self.panel.show_error, what, error if traceback else None)

    def _from_panel(self, action: Callable[..., Any]) -> Callable[..., None]:
        """A panel handler run on the kernel's loop, whichever thread the widget event came on."""
        run = guarded(
            action, "the peer panel's Send", lambda text, error=None, traceback=True: self._report(text, error, traceback=False)
        )
        return lambda *args: self.kernel.call(run, *args)


_PATHS = {"direct": "direct, peer to peer", "relay": "relayed through the server: no direct network path"}
