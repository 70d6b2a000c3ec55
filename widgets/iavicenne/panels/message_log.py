"""The conversation of a panel: its last lines, newest at the bottom and kept in view.

The log scrolls in a ``column-reverse`` box, which browsers keep at its bottom as lines
are added; lines are added a chunk at a time (`CHUNK_LINES`) without redrawing the older
ones, so a reader who scrolled up stays where they are. The marker under the log ("newer
messages below") shows while the newest line is out of sight, through a scroll-driven
animation (`STYLE`); browsers without scroll-driven animations never show it.
"""

from __future__ import annotations

from collections import deque

import ipywidgets as W

from .text import esc, esc_name, when

LOG_LINES = 200  # lines a log shows; older ones stay in the session's Python lists
CHUNK_LINES = 25  # lines drawn by one HTML widget: a new line redraws its chunk only

STYLE = """<style>
.iav-line { padding: 1px 0; }
.iav-line-old { color: #616161; }
.iav-member-offline { opacity: 0.55; }
.iav-unread { visibility: hidden; }
@supports (animation-timeline: scroll()) {
  /* the log scrolls in a column-reverse box: its scroll progress is 0 at the newest line
     and grows as the reader scrolls up; past 8 px up, the marker shows */
  .iav-log-box { timeline-scope: --iav-log; }
  .iav-log-box .iav-scroll { scroll-timeline: --iav-log block; }
  .iav-unread { animation: iav-scrolled-up linear forwards; animation-timeline: --iav-log; animation-range: 8px 100%; }
  @keyframes iav-scrolled-up { from, to { visibility: visible; } }
}
</style>"""


class MessageLog(W.VBox):
    """The last `LOG_LINES` lines of a conversation, newest at the bottom, kept in view
    (see the module docstring); `value` is the markup of every line shown."""

    def __init__(self, css_class: str) -> None:
        self.lines = W.VBox(layout=W.Layout(flex="0 0 auto"))
        self.lines.add_class("iav-log-lines")
        self.scroller = W.VBox(
            [self.lines],
            layout=W.Layout(
                flex_flow="column-reverse", overflow="auto", max_height="220px", border="1px solid #e0e0e0", padding="4px"
            ),
        )
        self.scroller.add_class("iav-scroll")
        self.placeholder = W.HTML("<div style='color:#9e9e9e'>no messages yet</div>")
        self.unread = W.HTML("<div style='font-size:85%;color:#1565c0;text-align:right'>↓ newer messages below</div>")
        self.unread.add_class("iav-unread")
        super().__init__([self.placeholder, self.scroller, self.unread])
        self.add_class(css_class)
        self.add_class("iav-log-box")
        self.add_class("iav-log-empty")
        self._chunks: deque[tuple[W.HTML, list[str]]] = deque()
        self.count = 0

    @property
    def value(self) -> str:
        return "".join("".join(lines) for _, lines in self._chunks)

    def add(self, timestamp: str, who: str, text: str, *, note: bool = False, mine: bool = False, old: bool = False) -> None:
        classes = "iav-line" + (" iav-line-note" if note else "") + (" iav-line-old" if old else "")
        style = "color:#757575;font-style:italic" if note else ""
        who_style = "color:#1565c0" if mine else "color:#6a1b9a"
        line = (
            f"<div class='{classes}' style='{style}'><span class='iav-time' style='color:#9e9e9e'>{esc(when(timestamp))}</span> "
        )
        if who:
            line += f"<b style='{who_style}'>{esc_name(who)}</b>: "
        line += f"{esc(text)}</div>"
        if self.count == 0:
            self.placeholder.layout.display = "none"
            self.remove_class("iav-log-empty")
        self.count += 1
        if not self._chunks or len(self._chunks[-1][1]) >= CHUNK_LINES:
            if self._chunks:
                self._draw(*self._chunks[-1], newest=False)
            chunk = W.HTML()
            chunk.add_class("iav-log-chunk")
            self._chunks.append((chunk, []))
            dropped = self._chunks.popleft()[0] if len(self._chunks) > LOG_LINES // CHUNK_LINES else None
            self.lines.children = tuple(widget for widget, _ in self._chunks)
            if dropped is not None:
                dropped.close()
        widget, lines = self._chunks[-1]
        lines.append(line)
        self._draw(widget, lines, newest=True)

    @staticmethod
    def _draw(widget: W.HTML, lines: list[str], *, newest: bool) -> None:
        if newest and lines:
            # the newest line is marked (for a page, a test or a theme)
            last = lines[-1].replace("<div class='", "<div class='iav-newest ", 1)
            widget.value = "".join(lines[:-1]) + last
        else:
            widget.value = "".join(lines)
