"""Rooms from a notebook cell: ``room = join("analysis")`` shows a live panel and returns
a `RoomSession`, whose plain Python API drives the same room.

Why it is built this way:

* **One loop, any thread.** A kernel (ipykernel) runs an asyncio loop in its main thread;
  `join` captures it, and every client task, callback and widget update runs on that
  loop, between and during cells. A call from another thread (ipykernel 7 runs widget
  events, Enter in the panel's box or a click on Send, on a subshell thread; a user may
  call from a worker) is handed to that loop (`iavicenne.background.KernelLoop`), and
  what it returns can be awaited on the caller's loop.
* **Errors are shown, not lost, and said in one sentence.** A user's callback that
  raises, a send that fails, a refused join: each lands in the panel's error area (and
  in `RoomSession.errors`), one entry a line. What a user did wrong fails at once, at
  the call: an invalid room name is a `ValueError` from ``join``, a link to someone who
  is not in the room a `PeerUnreachable` from ``room.peer``, a send after ``leave`` a
  `ConnectionClosed`, each without the library's internal traceback.
* **The panel shows the state plainly.** Closed (after ``leave()``) or offline (a fatal
  error): members greyed, the box and buttons disabled, and a Rejoin button
  (`rejoin`). Running the ``join`` cell again replaces the old session of the same user
  in the same room of this kernel: the old one leaves first (the others never see two
  connections), and the new one keeps its presence (status) unless given another.
* **Recent history.** On joining (and rejoining) the panel shows the last `history`
  messages the server keeps (the protocol's ``since`` replay), in `RoomSession.history`;
  they are not ``message`` events, so a callback never takes an old message for a new one.
* **Your name.** `user_id` defaults to the name of the identity the server verified for
  this connection (under JupyterHub, your Hub user; on a plain server, its owner): the
  client guesses nothing from the environment (``$USER`` is the user's to set, so it
  proves nothing). ``$JUPYTERHUB_USER`` is shown in the panel until the server answers.
* **A peer link goes to who holds the name.** ``room.peer("carol")`` takes a link only
  from the identity the server says holds ``carol`` in the room's presence: the server
  vouches for who sends each offer, answer and relayed frame (``source_identity``), and
  anyone else is refused with `PeerIdentityMismatch` (`iavicenne.peer`). ``link.identity``
  (and the panels) show who the other end is.
* **Rooms with members.** ``await create_room("q3", members=["bob"])`` makes a private
  room (`iavicenne.client.RoomClient.create_room`); ``await room.invite("carol")``,
  ``await room.remove_member("carol")`` for its owner.
* **Peer links go to a connection, not just a member.** A member may be in the room
  from two kernels and a browser; ``room.peer("bob")`` picks the one in the same kind
  of place (a kernel for a kernel), ``room.peer("bob", notebook="forecast.ipynb")`` a
  given one (`iavicenne.connections` has the peer id convention, ``"bob#3f2a1c"`` for a
  kernel). Where no direct path exists the link goes through the server
  (`iavicenne.relay`); ``link.path`` says which.
* **Nothing is missed between connecting and listening.** The session listens on the
  client's own events before it joins, so the presence snapshot and any replayed message
  reach the panel.
* **Parts that depend on the session, not the other way round.** `RoomSession`
  (`iavicenne.session`) hands its work to parts of one concept each: the conversation
  (`iavicenne.conversation`), its members' connections (`iavicenne.member_connections`),
  its peer links (`iavicenne.room_links`), the files offered to us
  (`iavicenne.file_inbox`); a `PeerSession` (imported only when a link is wanted) is one
  more. Each asks the session for what it needs through a small interface of its own
  (`iavicenne.peer_session.PeerHost` and the like), and none imports the session.
* **What another person sends is bounded** before it costs us memory: transfers
  (`max_transfer_bytes`), DataFrames (`max_dataframe_rows`, `max_dataframe_bytes`), and
  escaped before it reaches a widget (`iavicenne.panels`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import iavicenne_protocol as p

from . import share, wire
from .conversation import MESSAGES_KEPT
from .discovery import discover_server
from .member_connections import DESCRIBE, DESCRIBE_WAIT, DESCRIPTION, PEER_GRACE, current_notebook
from .room_connection import expected_user_id
from .session import DEFAULT_STATUS, HISTORY, RoomSession, check_name


async def pick_name(room: str, names: Sequence[str], *, url: str | None = None, token: str | None = None) -> str:
    """The first of `names` nobody in `room` uses now (the last one if all are taken): how
    a demo run in two kernels gives each a role without editing (the first to run is
    ``names[0]``, the next ``names[1]``). Asks the server's REST API (``GET
    iavicenne/api/rooms/<room>``); the server is found as `join` finds it."""
    import json

    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    check_name(room, "room")
    server = discover_server(url, token)
    headers = {"Authorization": f"token {server.token}"} if server.token else {}
    try:
        response = await AsyncHTTPClient().fetch(f"{server.url}{p.REST_PATH}rooms/{room}", headers=headers, request_timeout=10)
        present = {member.get("user_id") for member in json.loads(response.body).get("members", [])}
    except HTTPClientError as error:
        if error.code != 404:  # 404: nobody is in the room
            raise
        present = set()
    return next((name for name in names if name not in present), names[-1])


def join(
    room: str,
    *,
    user_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    status: str | None = DEFAULT_STATUS,
    state: dict[str, Any] | None = None,
    history: int = HISTORY,
    peers: bool = True,
    loopback: bool | None = None,
    relay: bool = True,
    max_transfer_bytes: int = wire.MAX_TRANSFER_BYTES,
    max_dataframe_rows: int = share.MAX_ROWS,
    max_dataframe_bytes: int = share.MAX_BYTES,
    display: bool = True,
    **client_options: Any,
) -> RoomSession:
    """Join `room` and show its live panel; returns the `RoomSession` at once.

    Call it from a cell (``room = join("analysis")``) or await it
    (``room = await join("analysis")`` returns once joined). An invalid room or user name
    is a `ValueError` here. `user_id` defaults to the name of the identity the server
    verified for you (your JupyterHub user, or a plain server's owner); the server is found by itself
    (`discover_server`: ``url=`` and ``token=``, else ``IAVICENNE_URL`` /
    ``IAVICENNE_TOKEN``, else the server that started this kernel). `status` and `state`
    are your initial presence (a cell run again keeps the status you had); the notebook
    you are in is added. `history` is how many earlier messages the panel shows (20).

    With `peers` (the default) you can open peer-to-peer links (``room.peer("bob")``) and
    others can open them to you; `loopback` chooses the local addresses a link may use:
    True 127.0.0.1 only (kernels of one machine); otherwise those
    ``$IAVICENNE_ICE_ADDRESSES`` lists, if set, else your network interfaces, and with
    None (the default) 127.0.0.1 too (`iavicenne.ice.default_host_addresses`). With
    `relay` (the default) a link that cannot be made directly goes through the server.

    What a peer sends is refused past a bound, with an error that names the option
    to raise: `max_transfer_bytes` (one payload on a peer link, 256 MiB),
    `max_dataframe_rows` and `max_dataframe_bytes` (a shared DataFrame once decoded,
    checked before it is, 10 million rows and 512 MiB). Extra keywords go to
    `RoomSession` (``peer_timeout=``, ``relay_after=``, ``host_addresses=``: exactly the
    local addresses links use) and `RoomClient` (``backoff=``, …).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "join() schedules its connection on the running event loop: call it from a notebook "
            "cell (an IPython kernel runs one) or from a coroutine"
        ) from None
    session = RoomSession(
        room,
        user_id=user_id,
        url=url,
        token=token,
        status=status,
        state=state,
        history=history,
        peers=peers,
        loopback=loopback,
        relay=relay,
        max_transfer_bytes=max_transfer_bytes,
        max_dataframe_rows=max_dataframe_rows,
        max_dataframe_bytes=max_dataframe_bytes,
        loop=loop,
        **client_options,
    )
    if display:
        from IPython.display import display as show

        show(session.panel)
    return session


__all__ = [
    "DEFAULT_STATUS",
    "DESCRIBE",
    "DESCRIBE_WAIT",
    "DESCRIPTION",
    "HISTORY",
    "MESSAGES_KEPT",
    "PEER_GRACE",
    "RoomSession",
    "check_name",
    "current_notebook",
    "expected_user_id",
    "join",
    "pick_name",
]
