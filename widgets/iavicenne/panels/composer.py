"""The box a panel writes in: a text field and a Send button (Enter sends too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W


class Composer(W.HBox):
    """A text box and a Send button; Enter in the box sends too."""

    def __init__(self, placeholder: str, css_class: str) -> None:
        self.placeholder = placeholder
        self.text = W.Text(placeholder=placeholder, layout=W.Layout(flex="1 1 auto", width="auto"))
        self.button = W.Button(description="Send", button_style="primary", layout=W.Layout(width="80px"))
        super().__init__([self.text, self.button], layout=W.Layout(width="100%"))
        self.add_class(css_class)
        self._handler: Callable[[str], Any] | None = None
        self.button.on_click(lambda _: self._submit())
        # the Text view sends {"event": "submit"} on Enter (what the deprecated on_submit read)
        self.text.on_msg(self._on_text_message)

    def _on_text_message(self, _widget: W.Widget, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit":
            self._submit()

    def on_send(self, handler: Callable[[str], Any]) -> None:
        self._handler = handler

    def _submit(self) -> None:
        value = self.text.value.strip()
        if not value or self._handler is None or self.text.disabled:
            return
        self.text.value = ""
        self._handler(value)

    def restore(self, text: str) -> None:
        """Put back what was typed when it could not be sent (unless something new is there)."""
        if not self.text.value:
            self.text.value = text

    def set_enabled(self, enabled: bool, why: str = "") -> None:
        self.text.disabled = self.button.disabled = not enabled
        self.text.placeholder = self.placeholder if enabled else why
