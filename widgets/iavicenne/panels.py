"""The views: a room panel and a peer panel, composed from standard ipywidgets only.

No custom front-end code, so they render wherever ipywidgets do (JupyterLab, Notebook 7,
VS Code) with nothing to build. They hold no logic: `RoomSession` and `PeerSession`
(``iavicenne.room``) call their ``show_*`` methods, and they call back through the
handlers given to ``on_send`` / ``on_open_peer``.

Every string that comes from another person (user ids, display names, messages,
presence values, notebook names, share and file names, error texts that quote them)
reaches an ``HTML`` widget's value through `_esc` only: an ipywidgets HTML value is
markup in the receiver's JupyterLab page, where a peer's ``<img onerror=...>`` could
read ``_xsrf`` and run code in the receiver's kernels. Values set on other widgets
(``tooltip``, ``placeholder``, ``description``) are plain text there.

Every part carries a CSS class (``iav-…``) so a page, a test or a theme can find it.
"""

from __future__ import annotations

import html
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as W

# connection or link state -> (colour, what the user reads)
STATES: dict[str, tuple[str, str]] = {
    "connecting": ("#b58900", "connecting…"),
    "online": ("#2e7d32", "online"),
    "reconnecting": ("#e65100", "reconnecting…"),
    "offline": ("#c62828", "offline"),
    "closed": ("#757575", "closed"),
    # peer links
    "new": ("#757575", "not connected"),
    "open": ("#2e7d32", "open"),
    "failed": ("#c62828", "failed"),
}
LOG_LINES = 200  # lines a log shows; older ones stay in the session's Python lists


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(state: str, detail: str = "") -> str:
    colour, label = STATES.get(state, ("#757575", state))
    extra = f" <span style='color:#757575'>({_esc(detail)})</span>" if detail else ""
    return f"<span class='iav-state iav-state-{_esc(state)}' style='color:{colour};font-weight:600'>● {_esc(label)}</span>{extra}"


def _time(timestamp: str) -> str:
    """``HH:MM:SS`` of an ISO timestamp (the server's, in UTC)."""
    return timestamp[11:19] if len(timestamp) >= 19 else ""


class ErrorArea(W.VBox):
    """Where failures land (a user's callback that raised, a send that failed); hidden
    while empty, with a button to clear it."""

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
        entry = f"<b>{_esc(what)}</b>"
        if detail:
            entry += f"<pre style='white-space:pre-wrap;margin:2px 0'>{_esc(detail)}</pre>"
        self._entries.append(entry)
        self.text.value = (
            "<div style='border-left:3px solid #c62828;padding:2px 6px;background:#fff5f5;"
            "max-height:240px;overflow-y:auto'>" + "".join(self._entries) + "</div>"
        )
        self.layout.display = None

    def clear(self) -> None:
        self._entries.clear()
        self.text.value = ""
        self.layout.display = "none"


class MessageLog(W.HTML):
    """The last `LOG_LINES` lines of a conversation, newest at the bottom."""

    def __init__(self, css_class: str) -> None:
        super().__init__()
        self.add_class(css_class)
        self._lines: deque[str] = deque(maxlen=LOG_LINES)
        self._render()

    def add(self, timestamp: str, who: str, text: str, *, note: bool = False, mine: bool = False) -> None:
        style = "color:#757575;font-style:italic" if note else ""
        who_style = "color:#1565c0" if mine else "color:#6a1b9a"
        line = f"<div class='iav-line' style='{style}'><span style='color:#9e9e9e'>{_esc(_time(timestamp))}</span> "
        if who:
            line += f"<b style='{who_style}'>{_esc(who)}</b>: "
        line += f"{_esc(text)}</div>"
        self._lines.append(line)
        self._render()

    def _render(self) -> None:
        body = "".join(self._lines) or "<div style='color:#9e9e9e'>no messages yet</div>"
        self.value = (
            f"<div style='max-height:220px;overflow-y:auto;border:1px solid #e0e0e0;padding:4px;font-size:90%'>{body}</div>"
        )


class Composer(W.HBox):
    """A text box and a Send button; Enter in the box sends too."""

    def __init__(self, placeholder: str, css_class: str) -> None:
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
        if not value or self._handler is None:
            return
        self.text.value = ""
        self._handler(value)


class MemberRow(W.HBox):
    """One member: name, presence (status, notebook), and a button for a peer link."""

    def __init__(self, user_id: str, me: bool) -> None:
        self.user_id = user_id
        self.label = W.HTML(layout=W.Layout(flex="1 1 auto"))
        self.peer_button = W.Button(
            description="Peer link",
            icon="link",
            tooltip=f"open a direct peer-to-peer link with {user_id}",
            layout=W.Layout(width="auto", display="none" if me else None),
        )
        self.peer_button.add_class("iav-peer-button")
        super().__init__([self.label, self.peer_button], layout=W.Layout(align_items="center"))
        self.add_class("iav-member")
        self.me = me

    def show_reachable(self, reachable: bool) -> None:
        self.peer_button.disabled = not reachable
        self.peer_button.tooltip = (
            f"open a direct peer-to-peer link with {self.user_id}"
            if reachable
            else f"{self.user_id} takes no peer links (no peer of theirs in this room)"
        )

    def show(self, member: dict[str, Any]) -> None:
        state = member.get("state") or {}
        identity = member.get("identity") or {}
        name = f"<b class='iav-member-name'>{_esc(self.user_id)}</b>"
        shown = identity.get("display_name") or identity.get("name")
        # a token's identity is the server's login, the same for every kernel: no news
        personal = not str(identity.get("username", "")).startswith("token-")
        if shown and personal and shown != self.user_id:
            name += f" <span style='color:#757575'>({_esc(shown)})</span>"
        if self.me:
            name += " <span style='color:#757575'>(you)</span>"
        parts = []
        if state.get("status"):
            parts.append(f"<span class='iav-member-status'>{_esc(state['status'])}</span>")
        if state.get("notebook"):
            parts.append(f"<span class='iav-member-notebook' style='color:#757575'>in {_esc(state['notebook'])}</span>")
        connections = member.get("connections")
        if isinstance(connections, int) and connections > 1:
            parts.append(f"<span style='color:#757575'>{connections:d} connections</span>")
        detail = " · ".join(parts)
        self.label.value = f"<span style='color:#2e7d32'>●</span> {name}" + (f" — {detail}" if detail else "")


class RoomPanel(W.VBox):
    """Who is in the room, the conversation, a box to write, the connection's state, the
    peer links opened from here, and an error area."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.header = W.HTML()
        self.header.add_class("iav-header")
        self.members_box = W.VBox()
        self.members_box.add_class("iav-members")
        self.conversation = MessageLog("iav-log")
        self.composer = Composer(f"Write to {room}…", "iav-compose")
        self.errors = ErrorArea()
        self.peers_box = W.VBox()
        self.peers_box.add_class("iav-peers")
        self.rows: dict[str, MemberRow] = {}
        self._reachable: set[str] | None = None  # members that take peer links; None: not known
        self._open_peer: Callable[[str], Any] | None = None
        self._user_id: str | None = None
        self._state = ("connecting", "")
        super().__init__(
            [self.header, self.members_box, self.conversation, self.composer, self.errors, self.peers_box],
            layout=W.Layout(border="1px solid #cfd8dc", padding="6px", max_width="760px"),
        )
        self.add_class("iav-room-panel")
        self._render_header()

    # -- wiring -----------------------------------------------------------------------
    def on_send(self, handler: Callable[[str], Any]) -> None:
        self.composer.on_send(handler)

    def on_open_peer(self, handler: Callable[[str], Any]) -> None:
        self._open_peer = handler

    # -- what the session shows -------------------------------------------------------
    def show_state(self, state: str, detail: str = "") -> None:
        self._state = (state, detail)
        self._render_header()

    def show_user(self, user_id: str | None) -> None:
        self._user_id = user_id
        self._render_header()

    def show_members(self, members: dict[str, dict[str, Any]]) -> None:
        """Make the rows match `members` (kept sorted, you first); rows are reused so a
        presence change only rewrites one label."""
        for user_id in [u for u in self.rows if u not in members]:
            self.rows.pop(user_id).close()
        for user_id, member in members.items():
            if user_id not in self.rows:
                self.rows[user_id] = self._new_row(user_id)
            self.rows[user_id].show(member)
        ordered = sorted(self.rows.values(), key=lambda r: (not r.me, r.user_id.casefold()))
        if tuple(self.members_box.children) != tuple(ordered):
            self.members_box.children = ordered
        self._render_header()

    def _new_row(self, user_id: str) -> MemberRow:
        row = MemberRow(user_id, me=user_id == self._user_id)
        row.peer_button.on_click(lambda _button: self._open_peer(user_id) if self._open_peer else None)
        if self._reachable is not None:
            row.show_reachable(user_id in self._reachable)
        return row

    def show_reachable(self, peers: set[str]) -> None:
        """Which members take peer links (have a peer in the room's signaling)."""
        self._reachable = set(peers)
        for user_id, row in self.rows.items():
            if not row.me:
                row.show_reachable(user_id in self._reachable)

    def show_message(self, timestamp: str, who: str, text: str, *, direct: bool = False) -> None:
        label = f"{who} → you" if direct else who
        self.conversation.add(timestamp, label, text, mine=who == self._user_id)

    def show_note(self, timestamp: str, text: str) -> None:
        self.conversation.add(timestamp, "", text, note=True)

    def show_error(self, what: str, error: BaseException | None = None) -> None:
        self.errors.show(what, error)

    def add_peer_panel(self, panel: W.Widget) -> None:
        if panel not in self.peers_box.children:
            self.peers_box.children = (*self.peers_box.children, panel)

    def _render_header(self) -> None:
        state, detail = self._state
        who = f" as <b>{_esc(self._user_id)}</b>" if self._user_id else ""
        count = len(self.rows)
        members = f" · {count} member{'s' if count != 1 else ''}" if count else ""
        self.header.value = (
            f"<div style='font-size:110%'>Room <b class='iav-room-name'>{_esc(self.room)}</b>{who}{members} "
            f"&nbsp;{_badge(state, detail)}</div>"
        )


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
        self.label.value = f"{self.arrow} {_esc(label)}"

    def progress(self, done: int, total: int) -> None:
        self.bar.value = min(1.0, done / total) if total else 1.0
        self.status.value = f"{done * 100 // total if total else 100}%"

    def finish(self, text: str = "done", ok: bool = True) -> None:
        if ok:
            self.bar.value = 1.0
        self.bar.bar_style = "success" if ok else "danger"
        self.status.value = _esc(text)


class PeerPanel(W.VBox):
    """A peer-to-peer link with one member: its state, what came and went, transfers."""

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
        super().__init__(
            [self.header, self.conversation, self.transfers, self.composer, self.errors],
            layout=W.Layout(border="1px dashed #90a4ae", padding="4px", margin="4px 0 0 0"),
        )
        self.add_class("iav-peer-panel")
        self.show_state("new")

    def on_send(self, handler: Callable[[str], Any]) -> None:
        self.composer.on_send(handler)

    def show_state(self, state: str, detail: str = "") -> None:
        self.header.value = (
            f"Peer-to-peer link <b>{_esc(self._local)}</b> ⇄ <b class='iav-peer-name'>{_esc(self.remote)}</b> "
            f"&nbsp;{_badge(state, detail)}"
        )

    def show_message(self, timestamp: str, who: str, text: str) -> None:
        self.conversation.add(timestamp, who, text, mine=who == self._local)

    def show_note(self, timestamp: str, text: str) -> None:
        self.conversation.add(timestamp, "", text, note=True)

    def add_transfer(self, label: str, outgoing: bool) -> TransferRow:
        row = TransferRow(label, outgoing)
        # keep the last few: a long session must not grow the panel without bound
        self.transfers.children = (*self.transfers.children[-9:], row)
        return row

    def show_error(self, what: str, error: BaseException | None = None) -> None:
        self.errors.show(what, error)
