"""The room's panel: who is in it, the conversation, the box to write, the connection's
state (and Rejoin once closed), files offered, the peer links opened from here, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from .composer import Composer
from .error_area import ErrorArea
from .member_list import MemberList, MemberRow
from .message_log import STYLE, MessageLog
from .text import DOWN, badge, esc_name


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
        self.members_box = MemberList()
        self.conversation = MessageLog("iav-log")
        self.composer = Composer(f"Write to {room}…", "iav-compose")
        self.errors = ErrorArea()
        self.peers_box = W.VBox()
        self.peers_box.add_class("iav-peers")
        self.files_box = W.VBox()
        self.files_box.add_class("iav-file-offers")
        self._rejoin: Callable[[], Any] | None = None
        self._user_id: str | None = None
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
        self.members_box.on_open_peer(handler)

    def on_rejoin(self, handler: Callable[[], Any]) -> None:
        self._rejoin = handler

    # -- what the session shows -------------------------------------------------------
    @property
    def rows(self) -> dict[str, MemberRow]:
        """The members' rows, by user_id."""
        return self.members_box.rows

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
            self.members_box.show_closed(down)

    def show_user(self, user_id: str | None, identity: dict[str, Any] | None = None) -> None:
        """Who we are: our name in the room and, once the server said it, our identity
        (its other names' rows say "(you)" too)."""
        self._user_id = user_id
        self.members_box.show_user(user_id, identity)
        self._render_header()

    def show_members(self, members: dict[str, dict[str, Any]]) -> None:
        """Make the rows match `members` (kept sorted, you first)."""
        self.members_box.show_members(members)
        self._render_header()

    def show_reachable(self, peers: dict[str, tuple[list[tuple[str, str]], str]]) -> None:
        """Which members take peer links, and through which connections: ``{user_id:
        ([(label, peer_id), ...], default peer_id)}``."""
        self.members_box.show_reachable(peers)

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
        who = f" as <b class='iav-me'>{esc_name(self._user_id)}</b>" if self._user_id else ""
        count = len(self.rows)
        members = f" · {count} member{'s' if count != 1 else ''}" if count else ""
        self.header.value = (
            f"<div style='font-size:110%'>Room <b class='iav-room-name'>{esc_name(self.room)}</b>{who}{members} "
            f"&nbsp;{badge(state, detail)}</div>"
        )
