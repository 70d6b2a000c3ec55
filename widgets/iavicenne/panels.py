"""The views: a room panel and a peer panel, composed from standard ipywidgets only.

No custom front-end code, so they render wherever ipywidgets do (JupyterLab, Notebook 7,
VS Code) with nothing to build. They hold no logic: `RoomSession` and `PeerSession`
(``iavicenne.room``, ``iavicenne.peer_session``) call their ``show_*`` methods, and they
call back through the handlers given to ``on_send`` / ``on_open_peer`` / ``on_rejoin``.
A widget event may arrive on any thread (ipykernel 7 runs them on a subshell thread):
the sessions hand every handler to the kernel's loop.

Every string that comes from another person (user ids, display names, messages,
presence values, notebook names, share and file names, error texts that quote them)
reaches an ``HTML`` widget's value through `_esc` only: an ipywidgets HTML value is
markup in the receiver's JupyterLab page, where a peer's ``<img onerror=...>`` could
read ``_xsrf`` and run code in the receiver's kernels. Values set on other widgets
(``tooltip``, ``placeholder``, ``description``, a Dropdown's labels) are plain text there.

**The conversation keeps to its newest line** with CSS alone: the log scrolls in a
``column-reverse`` box, which browsers keep at its bottom as lines are added, and lines
are added a chunk at a time without redrawing the older ones, so a reader who scrolled
up stays where they are. A marker under the log ("newer messages below") shows while
the newest line is out of sight: a scroll-driven animation (CSS ``view-timeline``) hides
it whenever that line is in view; browsers without scroll-driven animations never show
it. Times are the kernel's local time, with the date when it is not today's.

**Who someone really is.** A name in a room is chosen by its holder; the identity the
server verified is not. Where a member's (or a link's, a message's) verified username
differs from the name they show, it is shown beside it (``carol`` ``@bob``), escaped like
every other string; "(you)" marks the rows of your own identity.

**Closed or offline, plainly.** Members greyed, the box and the buttons disabled, and a
Rejoin button.

Every part carries a CSS class (``iav-…``) so a page, a test or a theme can find it.
"""

from __future__ import annotations

import html
import traceback
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ipywidgets as W

from .share import human_size

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
DOWN = ("closed", "offline")  # states in which nothing can be sent: the panel says so
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


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def verified_username(identity: dict[str, Any] | None) -> str:
    """The username the server verified (`identity` is a public identity dict), or ""."""
    username = (identity or {}).get("username")
    return username if isinstance(username, str) else ""


def named(name: str, identity: dict[str, Any] | None) -> str:
    """`name` as text, with the verified username beside it when it differs: what a
    reader must see to tell ``carol`` held by carol from ``carol`` held by bob."""
    username = verified_username(identity)
    return f"{name} (@{username})" if username and username != name else name


def _identity_tag(name: str, identity: dict[str, Any] | None) -> str:
    """HTML: the verified username beside `name` when it differs (escaped), else ""."""
    username = verified_username(identity)
    if not username or username == name:
        return ""
    return f" <span class='iav-identity' title='verified identity' style='color:#bf360c'>@{_esc(username)}</span>"


def _badge(state: str, detail: str = "") -> str:
    colour, label = STATES.get(state, ("#757575", state))
    extra = f" <span style='color:#757575'>({_esc(detail)})</span>" if detail else ""
    return f"<span class='iav-state iav-state-{_esc(state)}' style='color:{colour};font-weight:600'>● {_esc(label)}</span>{extra}"


def when(timestamp: str, now: datetime | None = None) -> str:
    """An ISO timestamp (the server's, in UTC) as the kernel's local time: ``HH:MM:SS``
    today, ``YYYY-MM-DD HH:MM:SS`` another day; "" if it cannot be read."""
    if not timestamp:
        return ""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    local = moment.astimezone() if moment.tzinfo is not None else moment
    today = (now or datetime.now(local.tzinfo)).date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


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
        entry = f"<div class='iav-error'><b>{_esc(what)}</b>"
        if detail:
            entry += f"<pre style='white-space:pre-wrap;margin:2px 0'>{_esc(detail)}</pre>"
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
            f"<div class='{classes}' style='{style}'><span class='iav-time' style='color:#9e9e9e'>{_esc(when(timestamp))}</span> "
        )
        if who:
            line += f"<b style='{who_style}'>{_esc(who)}</b>: "
        line += f"{_esc(text)}</div>"
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


class MemberRow(W.HBox):
    """One member: name, presence (status, notebook), and for others a Peer link button
    (with a list of their connections when they have several)."""

    def __init__(self, user_id: str, me: bool) -> None:
        self.user_id = user_id
        self.label = W.HTML(layout=W.Layout(flex="1 1 auto"))
        self.peer_button = W.Button(
            description="Peer link",
            icon="link",
            tooltip=f"open a direct peer-to-peer link with {user_id}",
            layout=W.Layout(width="auto"),
        )
        self.peer_button.add_class("iav-peer-button")
        self.connections = W.Dropdown(options=[], layout=W.Layout(width="auto", max_width="260px", display="none"))
        self.connections.add_class("iav-connections")
        self.default_connection: str | None = None
        super().__init__([self.label], layout=W.Layout(align_items="center"))
        self.add_class("iav-member")
        self.me = False
        self.mine = False  # a row of our own identity (another name of ours), "(you)" too
        self.closed = False
        self.reachable: bool | None = None
        self._member: dict[str, Any] = {}
        self.set_me(me)

    def set_me(self, me: bool) -> None:
        """Your own row: "(you)", and no Peer link (a link goes to someone else)."""
        self.me = me
        self.peer_button.layout.display = "none" if me else None
        self.children = (self.label,) if me else (self.label, self.connections, self.peer_button)
        if self._member:
            self.show(self._member)

    def show_reachable(self, reachable: bool, options: list[tuple[str, str]] | None = None, default: str | None = None) -> None:
        self.reachable = reachable
        self.peer_button.disabled = not reachable or self.closed
        self.peer_button.tooltip = (
            f"open a direct peer-to-peer link with {self.user_id}"
            if reachable
            else f"{self.user_id} takes no peer links (no peer of theirs in this room)"
        )
        options = options or []
        if len(options) > 1:
            # which of their connections a link goes to: theirs in the same kind of place by default
            if list(self.connections.options) != options:
                picked = self.connections.value
                self.connections.options = options
                values = [value for _, value in options]
                self.connections.value = (
                    picked if picked in values and picked != self.default_connection else (default or values[0])
                )
            self.default_connection = default
            self.connections.layout.display = None
        else:
            self.default_connection = default
            self.connections.layout.display = "none"

    @property
    def chosen_connection(self) -> str | None:
        """The connection picked in the list, None for the member's default one."""
        if self.connections.layout.display == "none" or self.connections.value == self.default_connection:
            return None
        value = self.connections.value
        return value if isinstance(value, str) else None

    def show_closed(self, closed: bool) -> None:
        self.closed = closed
        if closed:
            self.add_class("iav-member-offline")
        else:
            self.remove_class("iav-member-offline")
        self.peer_button.disabled = closed or self.reachable is False
        self.connections.disabled = closed
        if self._member:
            self.show(self._member)

    def show(self, member: dict[str, Any]) -> None:
        self._member = member
        state = member.get("state") or {}
        identity = member.get("identity") or {}
        name = f"<b class='iav-member-name'>{_esc(self.user_id)}</b>" + _identity_tag(self.user_id, identity)
        shown = identity.get("display_name") or identity.get("name")
        if shown and shown not in (self.user_id, verified_username(identity)):
            name += f" <span style='color:#757575'>({_esc(shown)})</span>"
        if self.me or self.mine:
            name += " <span class='iav-you' style='color:#757575'>(you)</span>"
        parts = []
        if state.get("status"):
            parts.append(f"<span class='iav-member-status'>{_esc(state['status'])}</span>")
        if state.get("notebook"):
            parts.append(f"<span class='iav-member-notebook' style='color:#757575'>in {_esc(state['notebook'])}</span>")
        connections = member.get("connections")
        if isinstance(connections, int) and connections > 1:
            parts.append(f"<span style='color:#757575'>{connections:d} connections</span>")
        detail = " · ".join(parts)
        dot = "#9e9e9e" if self.closed else "#2e7d32"
        self.label.value = f"<span class='iav-dot' style='color:{dot}'>●</span> {name}" + (f" — {detail}" if detail else "")


class RoomPanel(W.VBox):
    """Who is in the room, the conversation, a box to write, the connection's state (and
    Rejoin once closed), the peer links opened from here, and an error area."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.style = W.HTML(STYLE, layout=W.Layout(display="none"))
        self.header = W.HTML(layout=W.Layout(flex="1 1 auto"))
        self.header.add_class("iav-header")
        self.rejoin_button = W.Button(description="Rejoin", icon="sign-in", layout=W.Layout(width="auto", display="none"))
        self.rejoin_button.add_class("iav-rejoin")
        self.top = W.HBox([self.header, self.rejoin_button], layout=W.Layout(align_items="center"))
        self.members_box = W.VBox()
        self.members_box.add_class("iav-members")
        self.conversation = MessageLog("iav-log")
        self.composer = Composer(f"Write to {room}…", "iav-compose")
        self.errors = ErrorArea()
        self.peers_box = W.VBox()
        self.peers_box.add_class("iav-peers")
        self.files_box = W.VBox()
        self.files_box.add_class("iav-file-offers")
        self.rows: dict[str, MemberRow] = {}
        self._reachable: dict[str, tuple[list[tuple[str, str]], str]] | None = None  # None: not known
        self._open_peer: Callable[[str, str | None], Any] | None = None
        self._rejoin: Callable[[], Any] | None = None
        self._user_id: str | None = None
        self._identity: dict[str, Any] | None = None  # ours, as the server verified it
        self._state = ("connecting", "")
        self.rejoin_button.on_click(lambda _: self._rejoin() if self._rejoin else None)
        super().__init__(
            [
                self.style,
                self.top,
                self.members_box,
                self.conversation,
                self.composer,
                self.files_box,
                self.errors,
                self.peers_box,
            ],
            layout=W.Layout(border="1px solid #cfd8dc", padding="6px", max_width="760px"),
        )
        self.add_class("iav-room-panel")
        self._render_header()

    # -- wiring -----------------------------------------------------------------------
    def on_send(self, handler: Callable[[str], Any]) -> None:
        self.composer.on_send(handler)

    def on_open_peer(self, handler: Callable[[str, str | None], Any]) -> None:
        """`handler(user_id, connection)`: connection is a peer id picked in the row's list, or None."""
        self._open_peer = handler

    def on_rejoin(self, handler: Callable[[], Any]) -> None:
        self._rejoin = handler

    # -- what the session shows -------------------------------------------------------
    @property
    def down(self) -> bool:
        return self._state[0] in DOWN

    def show_state(self, state: str, detail: str = "") -> None:
        was_down = self.down
        self._state = (state, detail)
        self._render_header()
        down = self.down
        if down != was_down:
            self.composer.set_enabled(not down, f"{'left' if state == 'closed' else 'offline'}: Rejoin to write")
            self.rejoin_button.layout.display = None if down else "none"
            for row in self.rows.values():
                row.show_closed(down)

    def show_user(self, user_id: str | None, identity: dict[str, Any] | None = None) -> None:
        """Who we are: our name in the room and, once the server said it, our identity
        (its other names' rows say "(you)" too)."""
        self._user_id = user_id
        if identity is not None:
            self._identity = identity
        for name, row in self.rows.items():
            if row.me != (name == user_id):
                row.set_me(name == user_id)
        self._order()
        self._render_header()

    def show_members(self, members: dict[str, dict[str, Any]]) -> None:
        """Make the rows match `members` (kept sorted, you first); rows are reused so a
        presence change only rewrites one label."""
        for user_id in [u for u in self.rows if u not in members]:
            self.rows.pop(user_id).close()
        for user_id, member in members.items():
            if user_id not in self.rows:
                self.rows[user_id] = self._new_row(user_id)
            row = self.rows[user_id]
            mine = verified_username(self._identity)
            row.mine = bool(mine) and verified_username(member.get("identity")) == mine
            row.show(member)
        self._order()
        self._render_header()

    def _order(self) -> None:
        ordered = sorted(self.rows.values(), key=lambda r: (not r.me, r.user_id.casefold()))
        if tuple(self.members_box.children) != tuple(ordered):
            self.members_box.children = ordered

    def _new_row(self, user_id: str) -> MemberRow:
        row = MemberRow(user_id, me=user_id == self._user_id)
        row.peer_button.on_click(lambda _button: self._open_peer(user_id, row.chosen_connection) if self._open_peer else None)
        if self._reachable is not None:
            options, default = self._reachable.get(user_id, ([], ""))
            row.show_reachable(user_id in self._reachable, options, default or None)
        if self.down:
            row.show_closed(True)
        return row

    def show_reachable(self, peers: dict[str, tuple[list[tuple[str, str]], str]]) -> None:
        """Which members take peer links, and through which connections: ``{user_id:
        ([(label, peer_id), ...], default peer_id)}``."""
        self._reachable = dict(peers)
        for user_id, row in self.rows.items():
            if not row.me:
                options, default = self._reachable.get(user_id, ([], ""))
                row.show_reachable(user_id in self._reachable, options, default or None)

    def show_message(self, timestamp: str, who: str, text: str, *, direct: bool = False, old: bool = False) -> None:
        label = f"{who} → you" if direct else who
        self.conversation.add(timestamp, label, text, mine=who == self._user_id, old=old)

    def show_note(self, timestamp: str, text: str) -> None:
        self.conversation.add(timestamp, "", text, note=True)

    def show_error(self, what: str, error: BaseException | None = None) -> None:
        self.errors.show(what, error)

    def add_peer_panel(self, panel: W.Widget) -> None:
        if panel not in self.peers_box.children:
            self.peers_box.children = (*self.peers_box.children, panel)

    def add_file_offer(self, row: W.Widget) -> None:
        """A file another member offers: its row (accept into a folder, or decline)."""
        if row not in self.files_box.children:
            self.files_box.children = (*self.files_box.children, row)

    def remove_file_offer(self, row: W.Widget) -> None:
        self.files_box.children = tuple(child for child in self.files_box.children if child is not row)

    def remove_peer_panel(self, panel: W.Widget) -> None:
        if panel in self.peers_box.children:
            self.peers_box.children = tuple(child for child in self.peers_box.children if child is not panel)

    def _render_header(self) -> None:
        state, detail = self._state
        who = f" as <b class='iav-me'>{_esc(self._user_id)}</b>" if self._user_id else ""
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


class FileOfferRow(W.VBox):
    """A file offered to us: who sends it (their verified username), its name and size
    (escaped: both are the sender's words), a folder field, Accept and Decline, then a
    progress bar while it arrives."""

    def __init__(self, offer_id: str, name: str, size: int, sender: str, identity: dict[str, Any] | None) -> None:
        self.offer_id = offer_id
        self.label = W.HTML(
            f"<b class='iav-file-sender'>{_esc(sender)}</b>{_identity_tag(sender, identity)} offers "
            f"<span class='iav-file-name'>{_esc(name)}</span> ({_esc(human_size(size))})"
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
        self.status.value = _esc(state)

    def progress(self, done: int, total: int) -> None:
        self.bar.layout.display = None
        self.bar.value = min(1.0, done / total) if total else 1.0
        self.status.value = f"{done * 100 // total if total else 100}%"

    def finish(self, text: str, ok: bool) -> None:
        if ok:
            self.bar.value = 1.0
        self.bar.bar_style = "success" if ok else "danger"
        self.status.value = _esc(text)


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
            f" <span class='iav-peer-connection' style='color:#757575'>({_esc(self._connection)})</span>"
            if self._connection
            else ""
        )
        self.header.value = (
            f"Peer-to-peer link <b>{_esc(self._local)}</b> ⇄ <b class='iav-peer-name'>{_esc(self.remote)}</b>"
            f"{_identity_tag(self.remote, self._identity)}{where} "
            f"&nbsp;{_badge(state, detail)}"
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
