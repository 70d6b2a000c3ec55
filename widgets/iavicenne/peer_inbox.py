"""What a member's peer link brings to a `PeerSession`, sorted: messages, DataFrames and
files each into a mailbox of their own (``await peer.receive_dataframe()`` does not
swallow a chat line) and to the user's callbacks, a file offered to us and accepted
matched to its offer (`iavicenne.files`), and a transfer row with a progress bar for each
payload on its way.

The mailboxes keep what nobody asked for yet, up to a bound (`KEPT`): a forgotten
``receive_dataframe()`` must not keep every DataFrame a peer ever sent in memory. A
DataFrame is checked against the room session's bounds (rows, bytes) before it is
decoded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import share
from .background import Report
from .errors import PeerLinkError, TransferRefused
from .link import Link, Progress
from .panels.peer_panel import PeerPanel, TransferRow

if TYPE_CHECKING:
    import pandas as pd

    from .files import FileOffer

T = TypeVar("T")
KEPT = {"message": 1000, "dataframe": 20, "file": 20}
PROGRESS_INTERVAL = 0.1  # seconds between two progress bar updates: widgets cost a comm message each


class Mailbox(Generic[T]):
    """Items in arrival order; ``await get()`` takes the oldest (or waits). Bounded: past
    `limit` the oldest is dropped (and counted)."""

    def __init__(self, limit: int) -> None:
        self.items: deque[T] = deque()
        self.limit = limit
        self.dropped = 0
        self._arrived = asyncio.Event()

    def put(self, item: T) -> None:
        self.items.append(item)
        while len(self.items) > self.limit:
            self.items.popleft()
            self.dropped += 1
        self._arrived.set()

    async def get(self, timeout: float | None, closed: Callable[[], BaseException | None]) -> T:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.items:
            error = closed()
            if error is not None:
                raise error
            self._arrived.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise asyncio.TimeoutError(f"nothing arrived within {timeout} s")
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                continue
        return self.items.popleft()

    def wake(self) -> None:
        self._arrived.set()


def now() -> str:
    """Now, as the panels' timestamps are written (ISO 8601, UTC)."""
    return datetime.now(timezone.utc).isoformat()


def preview(data: Any) -> str:
    """What a panel shows of a message: bytes by their size, long text cut."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"({share.human_size(len(data))} of bytes)"
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= 300 else text[:300] + "…"


class Throttled:
    """A transfer row fed by progress events, redrawn at most every PROGRESS_INTERVAL."""

    def __init__(self, row: TransferRow) -> None:
        self.row = row
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if progress.done >= progress.total or now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.row.progress(progress.done, progress.total)


class InboxHost(Protocol):
    """What a `PeerInbox` needs from the room session (`iavicenne.peer_session.PeerHost` has it)."""

    @property
    def max_dataframe_rows(self) -> int: ...

    @property
    def max_dataframe_bytes(self) -> int: ...

    def file_for_link(self, link: Link, header: Any) -> FileOffer | bool:
        """The accepted offer a file header on `link` announces, True when the header is
        refused, False when it is no file header."""
        ...


class PeerInbox:
    """What the links of one peer session bring (`messages`, the mailboxes in `mail`).

    `link` says which link is the session's now (a file header is matched to its offer
    on that link); `report` shows a failure in the session's panel."""

    def __init__(
        self, host: InboxHost, remote: str, panel: PeerPanel, *, link: Callable[[], Link | None], report: Report
    ) -> None:
        self.host = host
        self.remote = remote
        self.panel = panel
        self.messages: list[Any] = []  # everything received that is not a shared object
        self.mail: dict[str, Mailbox[Any]] = {kind: Mailbox(limit) for kind, limit in KEPT.items()}
        self._link = link
        self._report = report
        self._callbacks: dict[str, list[Callable[..., None]]] = {"message": [], "dataframe": [], "file": []}
        self._incoming: Throttled | None = None
        # after a file header: the offer its bytes are for, or True when they are refused
        self._file: FileOffer | bool = False

    def on(self, kind: str, callback: Callable[..., None]) -> Callable[[], None]:
        """Call `callback` (guarded already) for each `kind`; returns what stops it."""
        self._callbacks[kind].append(callback)

        def off() -> None:
            if callback in self._callbacks[kind]:
                self._callbacks[kind].remove(callback)

        return off

    def decode(self, shared: share.Shared) -> pd.DataFrame:
        return shared.dataframe(max_rows=self.host.max_dataframe_rows, max_bytes=self.host.max_dataframe_bytes)

    def wake(self) -> None:
        """A waiting receive looks again (and ends, when nothing more can come)."""
        for mailbox in self.mail.values():
            mailbox.wake()

    async def read(self, link: Link) -> None:
        """Take every message off `link` (so its own queue never grows) and sort it."""
        while True:
            try:
                data = await link.recv()
            except TransferRefused as refused:
                # refused, and reported by the link's "error" event: the next payload follows
                self._end_file(f"refused: {refused}")
                if self._incoming is not None:
                    self._incoming.row.finish("refused", ok=False)
                    self._incoming = None
                continue
            except PeerLinkError:
                return  # the session's `close` says why
            try:
                self._dispatch(data)
            except Exception as error:
                self._report(f"could not read what {self.remote} sent: {error}", error, traceback=False)

    def progress(self, progress: Progress) -> None:
        """A payload on its way to us: its offer's progress, or a transfer row's."""
        if progress.direction != "receive":
            return
        if self._file is not False:
            if self._file is not True:
                self._file.progress(progress)
            return
        if self._incoming is None:
            size = share.human_size(progress.total)
            self._incoming = Throttled(self.panel.add_transfer(f"incoming from {self.remote} ({size})", outgoing=False))
        self._incoming(progress)

    def cut_off(self, error: BaseException) -> None:
        """The link closed: what was on its way will not come."""
        self._end_file(f"cut off: {error}")
        self.wake()  # a waiting receive ends with `error` instead of hanging
        if self._incoming is not None:
            self._incoming.row.finish("cut off", ok=False)
            self._incoming = None

    def _dispatch(self, data: Any) -> None:
        if self._take_file(data):
            return
        incoming, self._incoming = self._incoming, None  # the transfer that brought `data`, if one did
        if share.is_shared(data):
            try:
                shared = share.unpack(data)
            except share.ShareError:
                if incoming is not None:
                    incoming.row.finish("refused", ok=False)
                raise
            label = share.describe(shared.header)
            if incoming is None:  # small enough for one message: no progress on the way
                incoming = Throttled(self.panel.add_transfer(label, outgoing=False))
            incoming.row.relabel(label)
            incoming.row.finish("received")
            if shared.kind == share.DATAFRAME:
                self.mail["dataframe"].put(shared)
                if self._callbacks["dataframe"]:
                    df = self.decode(shared)
                    for callback in list(self._callbacks["dataframe"]):
                        callback(shared.name, df)
            else:
                self.mail["file"].put(shared)
                for callback in list(self._callbacks["file"]):
                    callback(shared.name, shared.payload)
            return
        if incoming is not None:
            incoming.row.finish("received")
        self.messages.append(data)
        del self.messages[: -KEPT["message"]]
        self.mail["message"].put(data)
        self.panel.show_message(now(), self.remote, preview(data))
        for callback in list(self._callbacks["message"]):
            callback(data)

    def _take_file(self, data: Any) -> bool:
        """A file offered to us and accepted: its header, then its bytes (True: taken)."""
        expected, self._file = self._file, False
        if expected is not False and isinstance(data, (bytes, bytearray, memoryview)):
            if expected is not True:
                expected.arrived(bytes(data))
            return True  # the bytes of a refused header are dropped, never read as a message
        if expected is not False and expected is not True:
            expected.fail("the sender sent something else than the file")
        link = self._link()
        if link is None:
            return False
        found = self.host.file_for_link(link, data)
        if found is False:
            return False
        self._file = found
        return True

    def _end_file(self, why: str) -> None:
        expected, self._file = self._file, False
        if expected is not False and expected is not True:
            expected.fail(why)
