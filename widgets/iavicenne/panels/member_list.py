"""Who is in the room: one row a member (name, verified identity, presence), with a Peer
link button for the others and a list of their connections when they have several."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from .text import esc, esc_name, identity_tag, verified_username


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
        name = f"<b class='iav-member-name'>{esc_name(self.user_id)}</b>" + identity_tag(self.user_id, identity)
        shown = identity.get("display_name") or identity.get("name")
        if shown and shown not in (self.user_id, verified_username(identity)):
            name += f" <span style='color:#757575'>({esc_name(shown)})</span>"
        if self.me or self.mine:
            name += " <span class='iav-you' style='color:#757575'>(you)</span>"
        parts = []
        if state.get("status"):
            parts.append(f"<span class='iav-member-status'>{esc(state['status'])}</span>")
        if state.get("notebook"):
            parts.append(f"<span class='iav-member-notebook' style='color:#757575'>in {esc_name(state['notebook'])}</span>")
        connections = member.get("connections")
        if isinstance(connections, int) and connections > 1:
            parts.append(f"<span style='color:#757575'>{connections:d} connections</span>")
        detail = " · ".join(parts)
        dot = "#9e9e9e" if self.closed else "#2e7d32"
        self.label.value = f"<span class='iav-dot' style='color:{dot}'>●</span> {name}" + (f" — {detail}" if detail else "")


class MemberList(W.VBox):
    """The members' rows, kept sorted (you first); rows are reused, so a presence change
    only rewrites one label."""

    def __init__(self) -> None:
        super().__init__()
        self.add_class("iav-members")
        self.rows: dict[str, MemberRow] = {}
        self.closed = False
        self._reachable: dict[str, tuple[list[tuple[str, str]], str]] | None = None  # None: not known
        self._open_peer: Callable[[str, str | None], Any] | None = None
        self._user_id: str | None = None
        self._identity: dict[str, Any] | None = None  # ours, as the server verified it
        self._shown: tuple[MemberRow, ...] = ()

    def on_open_peer(self, handler: Callable[[str, str | None], Any]) -> None:
        self._open_peer = handler

    def show_user(self, user_id: str | None, identity: dict[str, Any] | None = None) -> None:
        self._user_id = user_id
        if identity is not None:
            self._identity = identity
        for name, row in self.rows.items():
            if row.me != (name == user_id):
                row.set_me(name == user_id)
        self._order()

    def show_members(self, members: dict[str, dict[str, Any]]) -> None:
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

    def show_reachable(self, peers: dict[str, tuple[list[tuple[str, str]], str]]) -> None:
        self._reachable = dict(peers)
        for user_id, row in self.rows.items():
            if not row.me:
                options, default = self._reachable.get(user_id, ([], ""))
                row.show_reachable(user_id in self._reachable, options, default or None)

    def show_closed(self, closed: bool) -> None:
        self.closed = closed
        for row in self.rows.values():
            row.show_closed(closed)

    def _order(self) -> None:
        ordered = sorted(self.rows.values(), key=lambda r: (not r.me, r.user_id.casefold()))
        if tuple(ordered) != self._shown:
            self._shown = tuple(ordered)
            self.children = self._shown

    def _new_row(self, user_id: str) -> MemberRow:
        row = MemberRow(user_id, me=user_id == self._user_id)
        row.peer_button.on_click(lambda _button: self._open_peer(user_id, row.chosen_connection) if self._open_peer else None)
        if self._reachable is not None:
            options, default = self._reachable.get(user_id, ([], ""))
            row.show_reachable(user_id in self._reachable, options, default or None)
        if self.closed:
            row.show_closed(True)
        return row
