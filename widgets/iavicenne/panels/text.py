"""What the panels write: text escaped for an ``HTML`` widget, names beside the identity
the server verified, state badges, times in the kernel's local time.

Every string that comes from another person reaches an ``HTML`` widget's value through
`esc` only (see `iavicenne.panels`).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

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


def esc(value: Any) -> str:
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


def identity_tag(name: str, identity: dict[str, Any] | None) -> str:
    """HTML: the verified username beside `name` when it differs (escaped), else ""."""
    username = verified_username(identity)
    if not username or username == name:
        return ""
    return f" <span class='iav-identity' title='verified identity' style='color:#bf360c'>@{esc(username)}</span>"


def badge(state: str, detail: str = "") -> str:
    colour, label = STATES.get(state, ("#757575", state))
    extra = f" <span style='color:#757575'>({esc(detail)})</span>" if detail else ""
    return f"<span class='iav-state iav-state-{esc(state)}' style='color:{colour};font-weight:600'>● {esc(label)}</span>{extra}"


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
