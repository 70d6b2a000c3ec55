"""Control messages: the libraries talking to each other across connections.

A control message is a ``direct-message`` (to a user: every connection of theirs gets
it) whose payload carries `CONTROL_KEY` with a string value, its `ControlKind`; clients
hand it to their "control" event and never show it as chat. docs/protocol.md, "Control
messages", has each with an example:

* **Where a member's connections are.** ``describe`` (``q``: a nonce) asks a user's
  connections to describe themselves; each answers ``connection`` with the same ``q``,
  its ``peer_id``, its `ConnectionKind` and where it is (``notebook`` and ``since`` for a
  kernel, ``document`` for a JupyterLab window).
* **Files between people.** ``file-offer`` (``id``, ``name``, ``size``, the sender's
  ``peer_id``); the first connection to answer ``file-accept`` (``id``, its ``peer_id``)
  gets it, or one answers ``file-decline`` (``id``). The sender then links to that peer
  and sends ``file`` (``id``, ``name``, ``size``) *on the peer link*, then the bytes.
  A decline may say why (``reason``). Once the bytes arrived, the receiver tells the
  sender what became of them: ``file-outcome`` (``id``, ``ok``, and ``path`` where it
  was saved or ``error`` why not): the sender's "done" means saved, not only sent.
* **A copy of what a member looks at** (follow across servers). ``copy-request`` (``id``,
  ``path``: the document the asker saw in their presence, ``peer_id``) asks them for a
  copy; they answer with a ``file-offer`` carrying ``request`` (the request's ``id``),
  ``cell`` and ``cell_id`` (where they are in it), which the asker takes without asking
  again, or ``copy-decline`` (``id``, ``reason``).
* **Peer links through the server** (``iavicenne.relay``): ``relay-open``,
  ``relay-accept``, ``relay-data`` (``n`` and ``b`` base64 bytes or ``t`` text),
  ``relay-credit`` (``bytes``, cumulative) and ``relay-close`` (``reason``), each with
  ``link`` (the link's id), ``from`` and ``to`` (peer ids).

The builders below are what the Python client sends; `kind_of` is how it reads one.
"""

from __future__ import annotations

from typing import Any

#: the payload key that makes a direct message a control message; its value is the kind
CONTROL_KEY = "iavicenne"


class ControlKind:
    """The value of `CONTROL_KEY`: what a control message is."""

    # where a member's connections are: the question, and each connection's answer
    DESCRIBE = "describe"
    CONNECTION = "connection"
    # files between people: the offer and its answers (direct messages), then the file's
    # header on the peer link the sender opens to whoever accepted
    FILE_OFFER = "file-offer"
    FILE_ACCEPT = "file-accept"
    FILE_DECLINE = "file-decline"
    FILE = "file"
    # what became of a file once its bytes arrived (saved where, or why not)
    FILE_OUTCOME = "file-outcome"
    # a copy of the document a member looks at: the request, and its refusal (an accepted
    # request is answered by a file-offer naming it)
    COPY_REQUEST = "copy-request"
    COPY_DECLINE = "copy-decline"
    # a peer link through the server, when no direct path exists
    RELAY_OPEN = "relay-open"
    RELAY_ACCEPT = "relay-accept"
    RELAY_DATA = "relay-data"
    RELAY_CREDIT = "relay-credit"
    RELAY_CLOSE = "relay-close"


#: the kinds of a relayed peer link's frames
RELAY_KINDS = frozenset(
    {
        ControlKind.RELAY_OPEN,
        ControlKind.RELAY_ACCEPT,
        ControlKind.RELAY_DATA,
        ControlKind.RELAY_CREDIT,
        ControlKind.RELAY_CLOSE,
    }
)


class ConnectionKind:
    """A ``connection`` answer's ``kind``: what sort of place a connection is."""

    KERNEL = "kernel"
    # a JupyterLab window (it says which ``document`` it shows)
    LAB = "lab"
    # not on the wire: a connection that did not describe itself (a browser page, a script)
    PAGE = "page"


#: the longest ``q`` (describe nonce) and relay ``link`` id a client takes
CONTROL_ID_MAX_LENGTH = 64
#: the longest file-offer ``id`` (and copy-request ``id``) a client takes
FILE_ID_MAX_LENGTH = 100
#: the longest ``reason`` / ``error`` a file or copy answer carries (a client cuts longer ones)
REASON_MAX_LENGTH = 300

ControlMessage = dict[str, Any]


def kind_of(payload: Any) -> str | None:
    """The `ControlKind` of a direct message's payload (or a peer link's JSON value), or
    None when it is not a control message."""
    if not isinstance(payload, dict):
        return None
    kind = payload.get(CONTROL_KEY)
    return kind if isinstance(kind, str) else None


def describe(nonce: str) -> ControlMessage:
    """Ask a user's connections where they are; each answers `connection` with `nonce`."""
    return {CONTROL_KEY: ControlKind.DESCRIBE, "q": nonce}


def connection(nonce: str, peer_id: str, kind: str, **where: Any) -> ControlMessage:
    """The answer to `describe`: this connection's peer, its `ConnectionKind`, and where it is
    (``notebook=``, ``since=`` for a kernel; ``document=`` for a JupyterLab window)."""
    return {CONTROL_KEY: ControlKind.CONNECTION, "q": nonce, "peer_id": peer_id, "kind": kind, **where}


def file_offer(offer_id: str, name: str, size: int, peer_id: str) -> ControlMessage:
    """Offer the file `name` (`size` bytes) from the sender's peer `peer_id`."""
    return {CONTROL_KEY: ControlKind.FILE_OFFER, "id": offer_id, "name": name, "size": size, "peer_id": peer_id}


def file_accept(offer_id: str, peer_id: str) -> ControlMessage:
    """Accept an offer: the file comes to `peer_id` (the answering connection's peer)."""
    return {CONTROL_KEY: ControlKind.FILE_ACCEPT, "id": offer_id, "peer_id": peer_id}


def file_decline(offer_id: str, reason: str | None = None) -> ControlMessage:
    """Refuse an offer; `reason` (optional) says why (a folder that cannot be made, ...)."""
    message: ControlMessage = {CONTROL_KEY: ControlKind.FILE_DECLINE, "id": offer_id}
    if reason:
        message["reason"] = reason[:REASON_MAX_LENGTH]
    return message


def file_outcome(offer_id: str, *, path: str | None = None, error: str | None = None) -> ControlMessage:
    """What became of an accepted file once its bytes arrived: saved at `path` (the
    receiver's, relative to its folder or server root), or not, and why (`error`)."""
    if error is not None:
        return {CONTROL_KEY: ControlKind.FILE_OUTCOME, "id": offer_id, "ok": False, "error": error[:REASON_MAX_LENGTH]}
    return {CONTROL_KEY: ControlKind.FILE_OUTCOME, "id": offer_id, "ok": True, "path": path or ""}


def copy_request(request_id: str, path: str, peer_id: str) -> ControlMessage:
    """Ask a member for a copy of the document `path` they are looking at (their presence's)."""
    return {CONTROL_KEY: ControlKind.COPY_REQUEST, "id": request_id, "path": path, "peer_id": peer_id}


def copy_decline(request_id: str, reason: str) -> ControlMessage:
    return {CONTROL_KEY: ControlKind.COPY_DECLINE, "id": request_id, "reason": reason[:REASON_MAX_LENGTH]}


def file_header(offer_id: str, name: str, size: int) -> ControlMessage:
    """The JSON value sent on the peer link right before an accepted file's bytes."""
    return {CONTROL_KEY: ControlKind.FILE, "id": offer_id, "name": name, "size": size}


def relay_frame(kind: str, link_id: str, **fields: Any) -> ControlMessage:
    """The `data` of a ``relay`` signaling frame of the relayed link `link_id` (the peers are
    the frame's target and the source the server names)."""
    return {CONTROL_KEY: kind, "link": link_id, **fields}
