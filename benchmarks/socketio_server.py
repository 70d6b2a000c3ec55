"""The peer of benchmarks/peers.py: rooms as a python-socketio user would build them.

A python-socketio ``AsyncServer`` in aiohttp mode, served by aiohttp's web runner, with the
room semantics of iAvicenne as closely as python-socketio allows:

- ``join`` ``{"room", "user_id"}``: the connection enters the Socket.IO room, is answered
  with ``room-joined`` ``{"room", "members": [...]}`` (like iAvicenne's ``room-joined``),
  and ``user-joined`` ``{"room", "user_id"}`` is emitted to the room, the joiner included
  (as iAvicenne and the seed protocol do);
- ``message`` ``{"room", "payload"}``: ``message`` ``{"room", "user_id", "message"}`` is
  emitted to the whole room, the sender included;
- ``leave`` ``{"room"}`` and a disconnect: ``user-left`` ``{"room", "user_id"}`` to the
  members still there.

With ``--redis URL`` the server uses python-socketio's ``AsyncRedisManager``, so several
processes share the rooms (each emit goes through Redis pub/sub to every process). Socket.IO
has no shared member list: a python-socketio user keeps one in Redis, here a hash per room
(user id -> member entry), written on join and leave and read whole for each joiner's
``room-joined``. Without Redis the member list is a dict in the process.

What it does not do, and iAvicenne does: one ``user-joined`` per *user* across several
connections of that user (here one per connection; the benchmark has one connection per
user), removing the members of a process that died (no expiry on the hash), history,
limits, the seed protocol. Events are handled in order (``async_handlers=False``): with
python-socketio's default each event runs in its own task and two messages of one sender
may be broadcast out of order, which iAvicenne promises never happens.

    python benchmarks/socketio_server.py --port 8900 --token secret [--redis redis://127.0.0.1:6379/0 --prefix bench]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import resource
import signal
from datetime import datetime, timezone
from typing import Any

import socketio
from aiohttp import web


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class MemberStore:
    """Who is in which room, in this process (one server)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, str]] = {}

    async def add(self, room: str, user_id: str, entry: str) -> list[Any]:
        """Add a member and return the room's members, the joiner included."""
        members = self.rooms.setdefault(room, {})
        members[user_id] = entry
        return [json.loads(e) for e in members.values()]

    async def remove(self, room: str, user_id: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(user_id, None)
            if not members:
                del self.rooms[room]


class RedisMemberStore(MemberStore):
    """The member lists in Redis, a hash per room, shared by every process."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(url)
        self.prefix = prefix

    def key(self, room: str) -> str:
        return f"{self.prefix}:members:{room}"

    async def add(self, room: str, user_id: str, entry: str) -> list[Any]:
        # one round trip: the write and the read of the whole list
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(room), user_id, entry)
            pipe.hvals(self.key(room))
            _, values = await pipe.execute()
        return [json.loads(v) for v in values]

    async def remove(self, room: str, user_id: str) -> None:
        await self.redis.hdel(self.key(room), user_id)


class Rooms:
    """The event handlers: what each connection joined, and the member store."""

    def __init__(self, sio: socketio.AsyncServer, store: MemberStore, token: str) -> None:
        self.sio = sio
        self.store = store
        self.token = token
        # sid -> (user id, rooms joined): kept here rather than in the Socket.IO session,
        # which would cost a copy of the session per event
        self.connections: dict[str, tuple[str, set[str]]] = {}
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        sio.on("join", self.join)
        sio.on("leave", self.leave)
        sio.on("message", self.message)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        given = environ.get("HTTP_AUTHORIZATION", "").removeprefix("token ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise socketio.exceptions.ConnectionRefusedError("bad token")

    async def join(self, sid: str, data: dict[str, Any]) -> None:
        room, user_id = str(data["room"]), str(data["user_id"])
        user, rooms = self.connections.setdefault(sid, (user_id, set()))
        await self.sio.enter_room(sid, room)
        rooms.add(room)
        entry = json.dumps({"user_id": user, "joined_at": now_iso()}, separators=(",", ":"))
        members = await self.store.add(room, user, entry)
        await self.sio.emit("room-joined", {"room": room, "members": members}, to=sid)
        await self.sio.emit("user-joined", {"room": room, "user_id": user}, room=room)

    async def message(self, sid: str, data: dict[str, Any]) -> None:
        known = self.connections.get(sid)
        room = str(data["room"])
        if known is None or room not in known[1]:
            await self.sio.emit("error", {"message": f"not in room {room}"}, to=sid)
            return
        await self.sio.emit("message", {"room": room, "user_id": known[0], "message": data.get("payload")}, room=room)

    async def _left(self, sid: str, user_id: str, room: str) -> None:
        await self.sio.leave_room(sid, room)
        await self.store.remove(room, user_id)
        await self.sio.emit("user-left", {"room": room, "user_id": user_id}, room=room, skip_sid=sid)

    async def leave(self, sid: str, data: dict[str, Any]) -> None:
        known = self.connections.get(sid)
        room = str(data["room"])
        if known is not None and room in known[1]:
            known[1].discard(room)
            await self._left(sid, known[0], room)
        await self.sio.emit("room-left", {"room": room}, to=sid)

    async def disconnect(self, sid: str, *reason: Any) -> None:  # 5.12 added the reason argument
        known = self.connections.pop(sid, None)
        if known is not None:
            for room in known[1]:
                await self._left(sid, known[0], room)


async def serve(port: int, token: str, redis_url: str | None, prefix: str) -> None:
    manager: socketio.AsyncManager | None = None
    store: MemberStore = MemberStore()
    if redis_url:
        manager = socketio.AsyncRedisManager(redis_url, channel=f"{prefix}:socketio")
        store = RedisMemberStore(redis_url, prefix)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        async_handlers=False,  # in order, see the module's docstring
        cors_allowed_origins="*",
        transports=["websocket"],
    )
    Rooms(sio, store, token)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)  # no log line per connection, as the other servers
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"socketio server on 127.0.0.1:{port}" + (f", Redis {redis_url}" if redis_url else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True, help="the token clients send as 'Authorization: token ...'")
    parser.add_argument("--redis", default=None, help="Redis URL: AsyncRedisManager and member lists in Redis")
    parser.add_argument("--prefix", default="sio-bench", help="prefix of the Redis channel and keys (default: sio-bench)")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets
    asyncio.run(serve(args.port, args.token, args.redis, args.prefix))


if __name__ == "__main__":
    main()
