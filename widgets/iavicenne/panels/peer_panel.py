"""A peer link's panel: its state and path (direct or relayed), what came and went, and
each DataFrame or file on its way with a progress bar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from .composer import Composer
from .error_area import ErrorArea
from .message_log import MessageLog
from .text import badge, esc, esc_name, identity_tag


class TransferRow(W.HBox):
    """One DataFrame or file on its way, in either direction, with a progress bar."""

    def __init__(self, label: str, outgoing: bool) -> None:
        self.arrow = "↑" if outgoing else "↓"
        self.label = W.HTML(layout=W.Layout(width="45%"))
        self.relabel(label)
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="35%"))
        self.status = W.HTML("", layout=W.Layout(width="20%"))
        super().__init__([self.label, self.bar, self.status], layout=W.Layout(align_items="center"))
        self.add_class("iav-transfer")

    def relabel(self, label: str) -> None:
        """Say what the transfer is, once known (a peer's name for it, escaped)."""
        self.label.value = f"{self.arrow} {esc_name(label)}"

    def progress(self, done: int, total: int) -> None:
        self.bar.value = min(1.0, done / total) if total else 1.0
        self.status.value = f"{done * 100 // total if total else 100}%"

    def finish(self, text: str = "done", ok: bool = True) -> None:
        if ok:
            self.bar.value = 1.0
        self.bar.bar_style = "success" if ok else "danger"
        self.status.value = esc(text)


class PeerPanel(W.VBox):
    """A peer-to-peer link with one member: its state (and path: direct or relayed),
    what came and went, transfers."""

    def __init__(self, local: str, remote: str) -> None:
        self.remote = remote
        self.header = W.HTML()
        self.header.add_class("iav-peer-header")
        self.conversation = MessageLog("iav-peer-log")
        self.composer = Composer(f"Write to {remote} directly…", "iav-peer-compose")
        self.transfers = W.VBox()
        self.transfers.add_class("iav-transfers")
        self.errors = ErrorArea()
        self._local = local
        self._connection = ""
        self._identity: dict[str, Any] | None = None
        self._state = ("new", "")
        super().__init__(
            [self.header, self.conversation, self.transfers, self.composer, self.errors],
            layout=W.Layout(border="1px dashed #90a4ae", padding="4px", margin="4px 0 0 0"),
        )
        self.add_class("iav-peer-panel")
        self.show_state("new")

    def on_send(self, handler: Callable[[str], Any]) -> None:
        self.composer.on_send(handler)

    def show_connection(self, label: str) -> None:
        """Which of the member's connections the link goes to."""
        self._connection = label
        self.show_state(*self._state)

    def show_state(self, state: str, detail: str = "") -> None:
        self._state = (state, detail)
        where = (
            f" <span class='iav-peer-connection' style='color:#757575'>({esc_name(self._connection)})</span>"
            if self._connection
            else ""
        )
        self.header.value = (
            f"Peer-to-peer link <b>{esc_name(self._local)}</b> ⇄ <b class='iav-peer-name'>{esc_name(self.remote)}</b>"
            f"{identity_tag(self.remote, self._identity)}{where} "
            f"&nbsp;{badge(state, detail)}"
        )

    def show_closed(self, closed: bool) -> None:
        self.composer.set_enabled(not closed, "this link's room session was left")

    def show_message(self, timestamp: str, who: str, text: str) -> None:
        self.conversation.add(timestamp, who, text, mine=who == self._local)

    def show_identity(self, identity: dict[str, Any] | None) -> None:
        """Who the other end is, as the server verified it (the link's identity)."""
        self._identity = identity
        self.show_state(*self._state)

    def show_note(self, timestamp: str, text: str) -> None:
        self.conversation.add(timestamp, "", text, note=True)

    def add_transfer(self, label: str, outgoing: bool) -> TransferRow:
        row = TransferRow(label, outgoing)
        # keep the last few: a long session must not grow the panel without bound
        self.transfers.children = (*self.transfers.children[-9:], row)
        return row

    def show_error(self, what: str, error: BaseException | None = None) -> None:
        self.errors.show(what, error)
