"""The baseline for benchmarks/fanout.py: the least a Tornado server must do to carry a room.

It speaks the part of the room protocol the benchmark uses (``connect``, ``join-room``,
``leave-room``, ``message``; ``user-joined``/``user-left`` as the seed sends them) and
nothing more: no Jupyter, no authentication beyond one token comparison, no presence
list, no history, no limits. Each ``message`` is parsed once, its broadcast encoded once
and the same bytes written to every member. Whatever iAvicenne costs above this is the
price of Jupyter and of its features; fanout.py prints the ratio.

    python benchmarks/minimal_server.py --port 8899 --token secret
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import resource
from datetime import datetime, timezone
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

WRITE_MESSAGE = False  # --write-message: tornado's public write_message for every frame
NODELAY = False  # --nodelay: TCP_NODELAY on every connection, as iAvicenne may set it


def encode(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class Room:
    __slots__ = ("members", "seq")

    def __init__(self) -> None:
        self.members: dict[int, RoomSocket] = {}
        self.seq = 0

    def broadcast(self, frame: bytes) -> None:
        for member in list(self.members.values()):
            member.write_text(frame)


class RoomSocket(WebSocketHandler):
    def initialize(self, rooms: dict[str, Room], token: str) -> None:
        self.rooms = rooms
        self.token = token
        self.user_id = "anonymous"
        self.joined: set[str] = set()

    def open(self) -> None:
        if NODELAY:
            self.set_nodelay(True)

    def prepare(self) -> None:
        given = self.request.headers.get("Authorization", "").removeprefix("token ").strip()
        given = given or self.get_query_argument("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPError(403)

    def check_origin(self, origin: str) -> bool:
        return True

    def reply(self, frame: dict[str, Any]) -> None:
        frame["timestamp"] = now_iso()
        self.write_text(encode(frame))

    def write_text(self, frame: bytes) -> None:
        """The same write primitive as iAvicenne's ProtocolSocket._write_text.

        write_message creates a task per frame; tornado's frame writer does not. Both
        servers use the cheaper one, so that the ratio is the cost of everything else.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if WRITE_MESSAGE:
            try:  # noqa: SIM105 - a try costs nothing per frame, contextlib.suppress a call
                self.write_message(frame)
            except WebSocketClosedError:
                pass
        else:
            try:  # noqa: SIM105 - as above
                conn._write_frame(True, 0x1, frame)  # type: ignore[attr-defined]  # WebSocketProtocol13's
            except StreamClosedError:
                pass

    async def on_message(self, message: str | bytes) -> None:
        # A coroutine, like iAvicenne's handler: tornado then takes one frame per turn of
        # the event loop. A plain method handles every buffered frame in one turn, and each
        # write_message leaves a pending task, so a burst of N frames to S members leaves
        # N*S tasks at once: the garbage collector then costs a third of the time.
        try:
            frame = json.loads(message)
            kind = frame["type"]
        except (ValueError, TypeError, KeyError):
            self.reply({"type": "error", "message": "Invalid JSON format"})
            return
        payload = frame.get("payload") or {}
        room_name = frame.get("room")
        if kind == "message":
            room = self.rooms.get(room_name) if room_name in self.joined else None
            if room is None:
                self.reply({"type": "error", "message": "Not connected to any room"})
                return
            room.seq += 1
            room.broadcast(
                encode(
                    {
                        "seq": room.seq,
                        "type": "message",
                        "user_id": self.user_id,
                        "message": payload,
                        "room": room_name,
                        "timestamp": now_iso(),
                    }
                )
            )
        elif kind == "connect":
            self.user_id = str(payload.get("user_id") or "anonymous")
            self.reply({"type": "connect", "status": "success", "user_id": self.user_id})
        elif kind == "join-room":
            room = self.rooms.setdefault(room_name, Room())
            room.members[id(self)] = self
            self.joined.add(room_name)
            self.reply({"type": "room-joined", "room": room_name, "user_id": self.user_id})
            room.broadcast(encode({"type": "user-joined", "user_id": self.user_id, "room": room_name, "timestamp": now_iso()}))
        elif kind == "leave-room":
            self.leave(room_name)
            self.reply({"type": "room-left", "room": room_name})
        else:
            self.reply({"type": "error", "message": f"Unknown message type: {kind}"})

    def leave(self, room_name: str) -> None:
        room = self.rooms.get(room_name)
        self.joined.discard(room_name)
        if room is not None and room.members.pop(id(self), None) is not None:
            room.broadcast(encode({"type": "user-left", "user_id": self.user_id, "room": room_name, "timestamp": now_iso()}))
            if not room.members:
                del self.rooms[room_name]

    def on_close(self) -> None:
        for room_name in list(self.joined):
            self.leave(room_name)


def make_app(token: str) -> web.Application:
    rooms: dict[str, Room] = {}
    return web.Application([(r"/iavicenne/ws/mcp/?", RoomSocket, {"rooms": rooms, "token": token})])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY on every connection (no Nagle coalescing)")
    parser.add_argument(
        "--write-message", action="store_true", help="write with write_message (a task per frame) instead of the frame writer"
    )
    args = parser.parse_args()
    global WRITE_MESSAGE, NODELAY
    WRITE_MESSAGE = args.write_message
    NODELAY = args.nodelay
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    make_app(args.token).listen(args.port, address="127.0.0.1")
    print(f"minimal server on 127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
