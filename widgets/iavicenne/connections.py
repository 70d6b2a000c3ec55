"""Which of a member's connections a peer link goes to: peer ids, descriptions, the choice.

A person is one member of a room however many connections they have (two kernels, a
kernel and a browser page): the room's presence folds them into one entry. A peer link
goes to one of them, so each connection has a peer of its own in the room's signaling:

* **Peer ids.** A kernel's peer is ``"<user_id>#<tag>"``, `tag` six hex digits derived
  from the kernel (its connection file), e.g. ``"bob#3f2a1c"``: the same kernel keeps its
  peer id when ``join`` runs again, two kernels of bob have two. A peer named exactly
  like its user (``"bob"``) is a browser page, a script, or any client that takes one
  peer per user. The name rule of the protocol allows ``#``; a user_id so long that the
  tag does not fit (over 57 characters) keeps one peer per user. `user_of` reads a peer
  id back: ``"bob#3f2a1c"`` is bob's, ``"bob"`` is bob's.
* **Descriptions.** Signaling says which peers exist, not where they are. A kernel
  describes itself to whoever asks (a control message of the room, see
  `iavicenne.client.CONTROL`): ``{"iavicenne": "describe", "q": nonce}`` to a user, and
  each of its kernels answers ``{"iavicenne": "connection", "q": nonce, "peer_id":
  ..., "kind": "kernel", "notebook": "forecast.ipynb", "since": ...}``. A peer that does
  not answer (a browser page) is described by its id alone.
* **The choice** (`choose`): the connection asked for (``connection="bob#3f2a1c"``, or
  ``notebook="forecast.ipynb"``); else one of the same kind as ours (a kernel for a
  kernel), the one in the same notebook as ours if there is one, else the newest. An
  open link is never moved: a `PeerSession` keeps its connection until the link closes,
  and says so in its panel when a new link goes elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import iavicenne_protocol as p
from iavicenne_protocol import control

TAG_LENGTH = 6
_TAGGED = re.compile(rf"^(?P<user>.+)#(?P<tag>[0-9a-f]{{{TAG_LENGTH}}})$")
KERNEL = control.ConnectionKind.KERNEL
PAGE = control.ConnectionKind.PAGE  # a peer without a tag: a browser page or a script

_process_tag: str | None = None


def kernel_tag() -> str:
    """This kernel's tag: from its connection file (stable while the kernel lives), else
    made once for this process."""
    global _process_tag
    if _process_tag is None:
        seed = None
        try:
            from ipykernel.connect import get_connection_file

            seed = get_connection_file()
        except Exception:  # not in a kernel (a script, a test): any unique seed does
            seed = None
        seed = seed or f"{os.getpid()}-{secrets.token_hex(8)}"
        _process_tag = hashlib.sha256(seed.encode()).hexdigest()[:TAG_LENGTH]
    return _process_tag


def peer_id_for(user_id: str, tag: str) -> str:
    """The peer id of a connection of `user_id` with `tag` (see the module docstring)."""
    peer_id = f"{user_id}#{tag}"
    return peer_id if len(peer_id) <= p.NAME_MAX_LENGTH else user_id


def user_of(peer_id: str) -> str:
    """The user a peer id belongs to."""
    found = _TAGGED.match(peer_id)
    return found.group("user") if found else peer_id


def is_tagged(peer_id: str) -> bool:
    return _TAGGED.match(peer_id) is not None


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection of a member that takes peer links."""

    peer_id: str
    user_id: str
    kind: str = PAGE  # KERNEL, or PAGE when it did not describe itself
    notebook: str | None = None
    since: str = ""  # when it joined (ISO 8601), as it said
    described: bool = False

    @property
    def label(self) -> str:
        """What a person reads in a list of connections."""
        if self.kind == KERNEL:
            return f"kernel · {self.notebook}" if self.notebook else "kernel"
        return "browser page or script"


def undescribed(peer_id: str) -> Connection:
    return Connection(peer_id, user_of(peer_id), KERNEL if is_tagged(peer_id) else PAGE)


def _same_notebook(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and os.path.basename(str(a)) == os.path.basename(str(b))


class NoSuchConnection(LookupError):
    """No connection of the member matches what was asked (the message lists theirs)."""


def choose(
    candidates: Iterable[Connection],
    user_id: str,
    *,
    notebook: str | None = None,
    connection: str | None = None,
    my_kind: str = KERNEL,
    my_notebook: str | None = None,
) -> Connection:
    """The connection a new link to `user_id` goes to (see the module docstring)."""
    options = [c for c in candidates if c.user_id == user_id]
    listing = ", ".join(f"{c.peer_id} ({c.label})" for c in options) or "none"
    if connection is not None:
        for option in options:
            if option.peer_id == connection:
                return option
        raise NoSuchConnection(f"{user_id} has no connection {connection!r} taking peer links (theirs: {listing})")
    if notebook is not None:
        matching = [c for c in options if _same_notebook(c.notebook, notebook)]
        if not matching:
            raise NoSuchConnection(f"{user_id} has no kernel in {notebook!r} taking peer links (theirs: {listing})")
        return max(matching, key=lambda c: c.since)
    if not options:
        raise NoSuchConnection(f"{user_id} has no connection taking peer links")
    same_kind = [c for c in options if c.kind == my_kind] or options
    here = [c for c in same_kind if _same_notebook(c.notebook, my_notebook)]
    return max(here or same_kind, key=lambda c: (c.since, c.peer_id))


__all__ = [
    "KERNEL",
    "PAGE",
    "Connection",
    "NoSuchConnection",
    "choose",
    "is_tagged",
    "kernel_tag",
    "peer_id_for",
    "undescribed",
    "user_of",
]
