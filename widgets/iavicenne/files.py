"""A file another member offers to this kernel: ``room.on_file_offer(callback)``.

The protocol (docs/protocol.md, "Files between people"): the sender (a JupyterLab window's
"Send to…") sends the direct message ``{"iavicenne": "file-offer", "id", "name", "size",
"peer_id"}`` to the user, so every connection of theirs sees it; the first to answer
``{"iavicenne": "file-accept", "id", "peer_id"}`` (its own peer) gets it: the sender links
to that peer and sends the JSON value ``{"iavicenne": "file", "id", "name", "size"}`` and
then the bytes as one transfer (bounded by ``max_transfer_bytes``, with progress).

What this kernel takes: bytes only for an id it accepted, only on a link whose verified
identity is the one that made the offer (the server names the sender of a direct message
and the holder of a peer), and never more or fewer than the offered size. What it writes:
the name's last path segment only, cleaned (`iavicenne.share.safe_file_name`), inside the
folder the receiver chose; an existing file is kept (the new one gets a numbered name,
claimed atomically: a file appearing meanwhile is not overwritten either) unless
``overwrite=True``. Once the bytes arrived, the sender is told what became of them
(``file-outcome``: saved as which name, or why not), so its "done" means saved.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from iavicenne_protocol import control

from . import share
from .background import KernelLoop, Pending, guarded, on_session_loop
from .link import Link, Progress, same_identity
from .panels.file_offer_row import FileOfferRow
from .panels.text import verified_username

if TYPE_CHECKING:
    from .background import Report

FILE_OFFER, FILE_ACCEPT, FILE_DECLINE, FILE = (
    control.ControlKind.FILE_OFFER,
    control.ControlKind.FILE_ACCEPT,
    control.ControlKind.FILE_DECLINE,
    control.ControlKind.FILE,
)
MAX_PENDING = 20  # offers kept waiting for an answer: a member cannot fill our memory with them
ID_MAX = control.FILE_ID_MAX_LENGTH
NAME_MAX = 1000


class FileHost(Protocol):
    """What an offer needs from its room session."""

    @property
    def kernel(self) -> KernelLoop: ...

    @property
    def max_transfer_bytes(self) -> int: ...

    async def answer_file_offer(self, offer: FileOffer, accept: bool) -> None: ...

    async def tell_file_outcome(self, offer: FileOffer) -> None:
        """Tell the sender what became of `offer`'s bytes (``file-outcome``)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str, report: Report | None = None) -> Pending[Any]: ...

    def report(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None:
        """Show a failure in the room's panel (and keep it in its errors)."""
        ...


class FileOffer:
    """One file offered to us. `accept(folder)` asks for it (the bytes go to `folder`),
    `decline()` refuses it; ``await offer.received()`` is the saved file's `Path`.

    `state`: ``offered``, ``accepted``, ``receiving``, ``done``, ``declined``, ``failed``.
    `sender` is the member's name, `identity` who the server says sent the offer."""

    def __init__(self, host: FileHost, *, id: str, name: str, size: int, sender: str, identity: dict[str, Any] | None) -> None:
        self.host = host
        self.kernel = host.kernel
        self.id, self.name, self.size = id, name, size
        self.sender, self.identity = sender, identity
        self.state = "offered"
        self.folder: Path | None = None
        self.overwrite = False
        self.path: Path | None = None
        self.error: str | None = None
        self.done = 0
        self._progress: list[Callable[[int, int], None]] = []
        self._received: asyncio.Future[Path] = self.kernel.loop.create_future()
        self.row = FileOfferRow(id, name, size, sender, identity)
        self.row.on_accept(lambda folder: self.accept(folder))
        self.row.on_decline(lambda: self.decline())

    def __repr__(self) -> str:
        return f"<FileOffer {self.name!r} ({self.size} B) from {self.sender!r}: {self.state}>"

    # -- the receiver's answer --------------------------------------------------------
    def accept(self, path: str | os.PathLike[str] = ".", *, overwrite: bool = False) -> Pending[None]:
        """Ask for the file; it is saved into the folder `path` under its name's last
        segment. `ValueError` at once if already answered or larger than max_transfer_bytes."""
        if self.state != "offered":
            raise ValueError(f"the offer of {self.name!r} was already answered ({self.state})")
        if self.size > self.host.max_transfer_bytes:
            raise ValueError(
                f"{self.name!r} is {share.human_size(self.size)}, over max_transfer_bytes "
                f"({share.human_size(self.host.max_transfer_bytes)}; an option of join())"
            )
        self.folder = Path(path).expanduser()
        self.overwrite = overwrite
        self._show("accepted")
        return self.host.spawn(self.host.answer_file_offer(self, True), f"accepting {self.name!r} from {self.sender}")

    def decline(self) -> Pending[None]:
        if self.state != "offered":
            raise ValueError(f"the offer of {self.name!r} was already answered ({self.state})")
        self._show("declined")
        self._end(error=f"you declined {self.name!r}")
        return self.host.spawn(self.host.answer_file_offer(self, False), f"declining {self.name!r} from {self.sender}")

    @on_session_loop
    async def received(self, timeout: float | None = None) -> Path:
        """The saved file, once it arrived whole; raises why not (declined, refused, cut off)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._received), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"{self.name!r} from {self.sender} not received within {timeout} s") from None

    def on_progress(self, callback: Callable[[int, int], Any]) -> None:
        """`callback(done, total)` as bytes arrive."""
        self._progress.append(guarded(callback, f"your progress callback for {self.name!r}", self.host.report))

    # -- what the link brings ---------------------------------------------------------
    def may_come_on(self, link: Link, header: dict[str, Any], user_of: Callable[[str], str]) -> str | None:
        """Why the file header `header` on `link` is refused, or None when it is ours."""
        if self.state != "accepted":
            return f"{self.name!r} was not accepted here ({self.state})"
        if user_of(link.peer_id) != self.sender or not same_identity(link.identity, self.identity):
            return (
                f"a link of {verified_username(link.identity) or link.peer_id!r} sent {self.name!r}, "
                f"offered by {verified_username(self.identity) or self.sender!r}: refused"
            )
        if header.get("size") != self.size:
            return f"{self.name!r} was offered with {self.size} bytes, the link says {header.get('size')!r}: refused"
        return None

    def receiving(self) -> None:
        self._show("receiving")

    def progress(self, progress: Progress) -> None:
        self.done = progress.done
        self.row.progress(progress.done, progress.total)
        for callback in list(self._progress):
            callback(progress.done, progress.total)

    def arrived(self, data: bytes) -> None:
        """The bytes: saved, or the offer fails saying why."""
        if len(data) != self.size:
            self.fail(f"{len(data)} bytes arrived, {self.size} were offered: not saved")
            return
        assert self.folder is not None
        try:
            self.path = save(self.folder, self.name, data, overwrite=self.overwrite)
        except OSError as error:
            self.fail(f"could not save {self.name!r} in {self.folder}: {error}")
            return
        self.done = len(data)
        for callback in list(self._progress):
            callback(self.done, self.size)
        self.state = "done"
        self.row.finish(f"saved as {self.path.name}", ok=True)
        self._end(path=self.path)
        self._tell_sender()

    def fail(self, why: str) -> None:
        if self.state in ("done", "failed", "declined"):
            return
        accepted = self.state in ("accepted", "receiving")
        self.error = why
        self.state = "failed"
        self.row.finish(why, ok=False)
        self._end(error=why)
        if accepted:  # the sender waits for an outcome only once we accepted
            self._tell_sender()

    def outcome(self) -> dict[str, Any]:
        """The ``file-outcome`` message for this offer: the name it was saved as (never our
        folder's path: that is the receiver's business), or why not."""
        if self.state == "done" and self.path is not None:
            return control.file_outcome(self.id, path=self.path.name)
        return control.file_outcome(self.id, error=self.error or "not received")

    def _tell_sender(self) -> None:
        self.host.spawn(self.host.tell_file_outcome(self), f"telling {self.sender} what became of {self.name!r}")

    def _show(self, state: str) -> None:
        self.state = state
        self.row.show_state(state)

    def _end(self, *, path: Path | None = None, error: str | None = None) -> None:
        if self._received.done():
            return
        if path is not None:
            self._received.set_result(path)
        else:
            self._received.set_exception(FileNotReceived(error or "not received"))
            self._received.exception()  # retrieved: nobody has to await it


class FileNotReceived(Exception):
    """An offered file that did not arrive: declined, refused, or cut off on the way."""


def parse_offer(host: FileHost, content: dict[str, Any], sender: str, identity: dict[str, Any] | None) -> FileOffer | None:
    """A ``file-offer`` direct message as a `FileOffer`, or None when it is malformed."""
    offer_id, name, size = content.get("id"), content.get("name"), content.get("size")
    if not isinstance(offer_id, str) or not 0 < len(offer_id) <= ID_MAX or not isinstance(name, str):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    return FileOffer(host, id=offer_id, name=name[:NAME_MAX], size=size, sender=sender, identity=identity)


#: how many numbered names ("x (1).csv", ...) are tried before saving is refused
MAX_NUMBERED = 1000


def save(folder: Path, name: str, data: bytes, *, overwrite: bool = False) -> Path:
    """Write `data` into `folder` (never elsewhere) under `name`'s last segment, cleaned;
    an existing file is kept and the new one numbered, unless `overwrite`. The name is
    claimed with O_EXCL: a file that appears between the look and the write (or a symlink
    planted under the name) is never written through."""
    folder.mkdir(parents=True, exist_ok=True)
    base = share.safe_file_name(name)
    target = folder / base
    if target.resolve().parent != folder.resolve():  # a symlinked name cannot lead out either
        raise OSError(f"{target} is not inside {folder}")
    if overwrite:
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
        return target
    stem, dot, suffix = base.partition(".")
    for counter in range(MAX_NUMBERED + 1):
        if counter:
            target = folder / f"{stem} ({counter}){dot}{suffix}"
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return target
    raise OSError(f"{base!r} and {MAX_NUMBERED} numbered names are taken in {folder}")


def answer(offer: FileOffer, accept: bool, peer_id: str) -> dict[str, Any]:
    """The direct message that answers `offer`."""
    if accept:
        return control.file_accept(offer.id, peer_id)
    return control.file_decline(offer.id)


__all__ = ["FileNotReceived", "FileOffer"]
