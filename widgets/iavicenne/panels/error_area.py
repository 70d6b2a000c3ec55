"""Where a panel shows what failed: one entry a line, the traceback when there is one."""

from __future__ import annotations

import traceback
from collections import deque

import ipywidgets as W

from .text import esc


class ErrorArea(W.VBox):
    """Where failures land (a user's callback that raised, a send that failed), one
    entry a line; hidden while empty, with a button to clear it."""

    def __init__(self) -> None:
        self.text = W.HTML()
        self.clear_button = W.Button(description="Clear errors", button_style="", layout=W.Layout(width="auto"))
        self.clear_button.on_click(lambda _: self.clear())
        self.count = 0
        super().__init__([self.text, self.clear_button])
        self.add_class("iav-errors")
        self.layout.display = "none"
        self._entries: deque[str] = deque(maxlen=20)

    def show(self, what: str, error: BaseException | None = None) -> None:
        self.count += 1
        detail = ""
        if error is not None:
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        entry = f"<div class='iav-error'><b>{esc(what)}</b>"
        if detail:
            entry += f"<pre style='white-space:pre-wrap;margin:2px 0'>{esc(detail)}</pre>"
        self._entries.append(entry + "</div>")
        self.text.value = (
            "<div style='border-left:3px solid #c62828;padding:2px 6px;background:#fff5f5;"
            "max-height:240px;overflow-y:auto'>" + "".join(self._entries) + "</div>"
        )
        self.layout.display = None

    def clear(self) -> None:
        self._entries.clear()
        self.text.value = ""
        self.layout.display = "none"
