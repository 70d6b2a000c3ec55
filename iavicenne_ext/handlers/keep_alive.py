"""Keep-alive: Jupyter's pings for every socket of the server, from one timer."""

from __future__ import annotations

import collections
from typing import Protocol

from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.websocket import WebSocketClosedError, WebSocketProtocol


class PingedSocket(Protocol):
    """What `KeepAlive` needs of a socket: `WebSocketMixin`'s ping, and tornado's connection."""

    @property
    def ws_connection(self) -> WebSocketProtocol | None: ...

    @property
    def last_ping(self) -> float: ...

    def send_ping(self) -> None: ...


class KeepAlive:
    """Jupyter's keep-alive pings for every socket of the server, from one timer.

    `WebSocketMixin` gives each connection a PeriodicCallback of its own; ten thousand
    idle connections then hold ten thousand timers. Here the sockets wait in the order of
    their last ping (all share one interval) and a timer, once a second (or once an
    interval, if shorter), pings those whose interval is up (`WebSocketMixin.send_ping`: it also closes a socket whose pong is
    overdue), at most a second late.
    """

    TICK_MS = 1000

    def __init__(self) -> None:
        self.sockets: collections.deque[PingedSocket] = collections.deque()
        self._timer: PeriodicCallback | None = None
        self._interval = 0.0  # seconds

    def add(self, socket: PingedSocket, interval_ms: float) -> None:
        self._interval = interval_ms / 1000
        self.sockets.append(socket)
        if self._timer is None:
            self._timer = PeriodicCallback(self.tick, min(self.TICK_MS, interval_ms))
            self._timer.start()

    def tick(self) -> None:
        sockets = self.sockets
        now = IOLoop.current().time()
        while sockets and (_closing(sockets[0]) or now - sockets[0].last_ping >= self._interval):
            socket = sockets.popleft()
            if _closing(socket):  # closed or closing (a ping timeout, say): forgotten
                continue
            try:
                socket.send_ping()  # sets last_ping, or closes the socket
            except WebSocketClosedError:
                continue
            if not _closing(socket):
                sockets.append(socket)
        if not sockets and self._timer is not None:
            self._timer.stop()
            self._timer = None


def _closing(socket: PingedSocket) -> bool:
    conn = socket.ws_connection
    return conn is None or conn.is_closing()
