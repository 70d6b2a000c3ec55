"""A file another member offers us, as a row of the room's panel: who sends it, its name
and size, a folder field, Accept and Decline, then a progress bar while it arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..share import human_size
from .text import esc, esc_name, identity_tag


class FileOfferRow(W.VBox):
    """A file offered to us: who sends it (their verified username), its name and size
    (escaped: both are the sender's words), a folder field, Accept and Decline, then a
    progress bar while it arrives."""

    def __init__(self, offer_id: str, name: str, size: int, sender: str, identity: dict[str, Any] | None) -> None:
        self.offer_id = offer_id
        self.label = W.HTML(
            f"<b class='iav-file-sender'>{esc_name(sender)}</b>{identity_tag(sender, identity)} offers "
            f"<span class='iav-file-name'>{esc_name(name)}</span> ({esc(human_size(size))})"
        )
        self.folder = W.Text(value=".", description="Save in", layout=W.Layout(width="40%"))
        self.folder.add_class("iav-file-folder")
        self.accept_button = W.Button(
            description="Accept", icon="download", button_style="success", layout=W.Layout(width="auto")
        )
        self.accept_button.add_class("iav-file-accept")
        self.decline_button = W.Button(description="Decline", layout=W.Layout(width="auto"))
        self.decline_button.add_class("iav-file-decline")
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="40%", display="none"))
        self.status = W.HTML("", layout=W.Layout(width="auto"))
        self.status.add_class("iav-file-status")
        self.controls = W.HBox([self.folder, self.accept_button, self.decline_button, self.bar, self.status])
        self._accept: Callable[[str], Any] | None = None
        self._decline: Callable[[], Any] | None = None
        self.accept_button.on_click(lambda _: self._accept(self.folder.value) if self._accept else None)
        self.decline_button.on_click(lambda _: self._decline() if self._decline else None)
        super().__init__([self.label, self.controls], layout=W.Layout(border_top="1px dashed #cfd8dc", padding="4px 0"))
        self.add_class("iav-file-offer")

    def on_accept(self, handler: Callable[[str], Any]) -> None:
        self._accept = handler

    def on_decline(self, handler: Callable[[], Any]) -> None:
        self._decline = handler

    def show_state(self, state: str) -> None:
        answered = state != "offered"
        self.accept_button.disabled = self.decline_button.disabled = self.folder.disabled = answered
        if state in ("accepted", "receiving"):
            self.bar.layout.display = None
        self.status.value = esc(state)

    def progress(self, done: int, total: int) -> None:
        self.bar.layout.display = None
        self.bar.value = min(1.0, done / total) if total else 1.0
        self.status.value = f"{done * 100 // total if total else 100}%"

    def finish(self, text: str, ok: bool) -> None:
        if ok:
            self.bar.value = 1.0
        self.bar.bar_style = "success" if ok else "danger"
        self.status.value = esc(text)
