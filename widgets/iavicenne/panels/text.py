"""What the panels write: text escaped for an ``HTML`` widget, names beside the identity
the server verified, state badges, times in the kernel's local time.

Every string that comes from another person reaches an ``HTML`` widget's value through
`esc` only (see `iavicenne.panels`), so nothing in it is markup: a message's
``![x](/hub/logout)`` or ``<img src=...>`` is shown as those characters and fetches
nothing. Every name (a person's, a room's, a file's) goes through `safe_name` (in `named`,
`identity_tag`, `esc_name`): bidi and invisible characters are written out, so
``report\u202efdp.py`` reads ``report[U+202E]fdp.py``, not ``reportyp.pdf``.
"""

from __future__ import annotations

import html
import re
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


# C0 and C1 controls, bidi marks, embeddings, overrides and isolates, zero-width and other
# invisible format characters, tags: as the JupyterLab panel's names.ts and demo.js
_HIDDEN = re.compile(
    "[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb\U000e0000-\U000e0fff]"
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def safe_name(value: Any) -> str:
    """A name as it may be shown: every hidden character written out (``[U+202E]``)."""
    return _HIDDEN.sub(lambda match: f"[U+{ord(match.group()):04X}]", "" if value is None else str(value))


def esc_name(value: Any) -> str:
    """A name for an ``HTML`` widget: `safe_name`, escaped."""
    return esc(safe_name(value))


def verified_username(identity: dict[str, Any] | None) -> str:
    """The username the server verified (`identity` is a public identity dict), or ""."""
    username = (identity or {}).get("username")
    return username if isinstance(username, str) else ""


def named(name: str, identity: dict[str, Any] | None) -> str:
    """`name` as text, with the verified username beside it when it differs: what a
    reader must see to tell ``carol`` held by carol from ``carol`` held by bob."""
    username = verified_username(identity)
    shown = safe_name(name)
    return f"{shown} (@{safe_name(username)})" if username and username != name else shown


def identity_tag(name: str, identity: dict[str, Any] | None) -> str:
    """HTML: the verified username beside `name` when it differs (escaped), else ""."""
    username = verified_username(identity)
    if not username or username == name:
        return ""
    return f" <span class='iav-identity' title='verified identity' style='color:#bf360c'>@{esc_name(username)}</span>"


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
