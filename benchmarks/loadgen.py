"""The load generator of fanout.py: a lean WebSocket client, subscribers spread over processes.

On a small machine the generator shares the CPUs with the server it measures, so every
microsecond it spends per received frame is taken from the server. The client here is
therefore an `asyncio.Protocol` that does RFC 6455 framing itself (a few integer
operations per frame) and decodes only the frames it counts, instead of a full client
library. Each worker process runs its own event loop with a share of the subscribers and
reports its progress through shared memory, which is also the publisher's backpressure.

Time stamps are `time.time()`: one clock for every process of one machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import sys
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


@dataclass(frozen=True)
class Endpoint:
    """Where a room socket listens, and the token it wants."""

    host: str
    port: int
    path: str
    token: str


def client_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One masked client frame (clients must mask, RFC 6455 section 5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class WSClient(asyncio.Protocol):
    """A WebSocket client connection; `on_text` gets the payload of every data frame."""

    def __init__(self, endpoint: Endpoint, on_text: Callable[[bytes], None]) -> None:
        self.endpoint = endpoint
        self.on_text = on_text
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaking = True
        self._fragments: list[bytes] = []
        self._accept = b""

    @classmethod
    async def connect(cls, endpoint: Endpoint, on_text: Callable[[bytes], None], timeout: float = 30.0) -> WSClient:
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(lambda: cls(endpoint, on_text), endpoint.host, endpoint.port), timeout
        )
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
        return client

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        e = self.endpoint
        self.transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: token %s\r\n\r\n"
            % (e.path.encode(), e.host.encode(), e.port, key, e.token.encode())
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None  # connection_made came first
        buf = self._buffer
        buf += data
        if self._handshaking:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._handshaking = False
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" " or self._accept not in head:
                self.opened.set_exception(ConnectionError(f"handshake refused: {status.decode(errors='replace')}"))
                transport.close()
                return
            self.opened.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > size:
                break
            payload = bytes(buf[start:end])
            pos = end
            opcode = b0 & 0x0F
            if opcode in (_OP_TEXT, _OP_BINARY, _OP_CONT):
                if b0 & 0x80 and not self._fragments:
                    self.on_text(payload)
                elif b0 & 0x80:
                    self._fragments.append(payload)
                    self.on_text(b"".join(self._fragments))
                    self._fragments.clear()
                else:
                    self._fragments.append(payload)
            elif opcode == _OP_PING:
                transport.write(client_frame(payload, _OP_PONG))
            elif opcode == _OP_CLOSE and not transport.is_closing():
                transport.write(client_frame(payload[:2], _OP_CLOSE))
                transport.close()
        del buf[:pos]

    # -- API ------------------------------------------------------------------------
    def send(self, frame: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(json.dumps(frame, separators=(",", ":")).encode()))

    async def close(self, timeout: float = 5.0) -> None:
        """Close handshake: send close, wait for the server to close the TCP connection."""
        if self.transport is None:
            return
        if not self.transport.is_closing():
            self.transport.write(client_frame((1000).to_bytes(2, "big"), _OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()


def frame_type(data: bytes) -> bytes:
    """The ``type`` of a server frame, read from its first bytes without decoding it.

    Both servers put ``type`` near the start (after ``seq`` at most), which lets a
    subscriber skip the JSON decoding of everything it does not count.
    """
    at = data.find(b'"type":"', 0, 48)
    if at < 0:
        return b""
    at += 8
    return data[at : data.find(b'"', at)]


_STAMP = b'"message":{"t":'


def message_stamp(data: bytes) -> tuple[int, float]:
    """(i, t) of a ``message`` frame whose payload is the publisher's ``{"t":..,"i":..}``.

    Read straight from the bytes: decoding every frame as JSON was a third of the
    generator's time. Anything unexpected falls back to the JSON decoder.
    """
    at = data.find(_STAMP)
    if at > 0:
        at += len(_STAMP)
        comma = data.find(b',"i":', at)
        end = data.find(b"}", comma)
        if comma > 0 and end > 0:
            try:
                return int(data[comma + 5 : end]), float(data[at:comma])
            except ValueError:
                pass
    body = json.loads(data)["message"]
    return body["i"], body["t"]


# -- subscribers ------------------------------------------------------------------------
class Subscriber:
    """One room member that counts the benchmark's messages it receives."""

    __slots__ = (
        "base",
        "client",
        "count",
        "disorder",
        "duplicates",
        "joined",
        "last",
        "latencies",
        "payload",
        "received",
        "record",
        "room",
        "seen",
        "user_id",
        "worker",
    )

    def __init__(self, worker: Worker, user_id: str, room: str, payload: dict[str, Any] | None = None) -> None:
        self.worker = worker
        self.user_id = user_id
        self.room = room
        self.payload = payload or {}  # the join-room payload (e.g. members_limit, presence "batched")
        self.client: WSClient | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.expect(0, 0, False)

    def expect(self, base: int, count: int, record: bool) -> None:
        """Count messages ``base <= i < base + count`` from now on."""
        self.base, self.count, self.record = base, count, record
        self.seen = bytearray(count)
        self.received = self.duplicates = self.disorder = 0
        self.last = -1
        self.latencies = array("d")

    def on_text(self, data: bytes) -> None:
        worker = self.worker
        worker.progress[worker.frames_slot] += 1
        kind = frame_type(data)
        if kind == b"message":
            self.count_message(*message_stamp(data))
        elif kind == b"room-joined":
            if not self.joined.done():
                self.joined.set_result(None)
        elif kind == b"error" and not self.joined.done():
            self.joined.set_exception(RuntimeError(f"{self.user_id}: {data[:300].decode(errors='replace')}"))

    def count_message(self, i: int, sent: float) -> None:
        """One benchmark message, index `i` sent at `sent`: counted once, in order, its latency."""
        now = time.time()
        i -= self.base
        if not 0 <= i < self.count:
            return
        if self.seen[i]:
            self.duplicates += 1
            return
        self.seen[i] = 1
        if i < self.last:
            self.disorder += 1
        self.last = i
        self.received += 1
        if self.record:
            self.latencies.append(now - sent)
        self.worker.counted(now)

    async def join(self, endpoint: Endpoint, timeout: float) -> None:
        self.client = await WSClient.connect(endpoint, self.on_text, timeout)
        self.client.send({"type": "connect", "payload": {"user_id": self.user_id}})
        self.client.send({"type": "join-room", "room": self.room, "payload": self.payload})
        await asyncio.wait_for(self.joined, timeout)


class Worker:
    """A process of the load generator: runs commands from the parent on its subscribers."""

    def __init__(self, index: int, workers: int, conn: Connection, progress: Any) -> None:
        self.index = index
        self.conn = conn
        # shared with the parent: [messages counted by each worker] + [frames received by each worker]
        self.progress = progress
        self.frames_slot = workers + index
        self.groups: dict[str, list[Subscriber]] = {}
        self.first = self.last = 0.0
        self._pacer: asyncio.Future[None] | None = None

    def counted(self, now: float) -> None:
        self.progress[self.index] += 1
        if not self.first:
            self.first = now
        self.last = now

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), lambda: commands.put_nowait(self.conn.recv()))
        while True:
            name, args = await commands.get()
            if name == "exit":
                await self.cmd_close()
                return
            try:
                result: Any = await getattr(self, f"cmd_{name}")(**args)
            except Exception as error:  # reported to the parent, which stops the run
                result = {"error": f"worker {self.index}: {error!r}\n{traceback.format_exc()}"}
            self.conn.send(result)

    async def cmd_join(
        self,
        group: str,
        endpoints: list[Endpoint],
        room: str,
        users: list[tuple[str, int]],
        concurrency: int,
        timeout: float,
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Connect one subscriber per (user name, index in `endpoints`) and join `room` (with `payload`)."""
        subscribers = self.groups.setdefault(group, [])
        gate = asyncio.Semaphore(concurrency)

        async def one(user: str, server: int) -> None:
            sub = Subscriber(self, user, room, payload)
            async with gate:
                await sub.join(endpoints[server], timeout)
            subscribers.append(sub)

        await asyncio.gather(*(one(user, server) for user, server in users))
        return {"joined": len(users)}

    async def cmd_expect(self, group: str, base: int, count: int, record: bool, batch_ms: float = 0.0) -> None:
        """Start counting a run's messages; with `batch_ms`, read in batches (see `_pace`)."""
        self.first = self.last = 0.0
        for sub in self.groups.get(group, ()):
            sub.expect(base, count, record)
        self._stop_pacing()
        if batch_ms > 0:
            self._pacer = asyncio.ensure_future(self._pace(batch_ms / 1000))

    async def _pace(self, pause: float) -> None:
        """Hold the event loop for `pause` seconds between two rounds of reading.

        Frames pile up in the kernel meanwhile, so one wake-up and one recv() carry many
        frames instead of one: the generator's cost per frame drops several times. The
        server's work is the same (one send per frame and member either way). Used for
        throughput only: it delays a receipt by up to `pause`, so latency runs do not.
        """
        while True:
            time.sleep(pause)
            await asyncio.sleep(0)  # one round: every socket that became readable

    def _stop_pacing(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None

    async def cmd_report(self, group: str) -> dict[str, Any]:
        self._stop_pacing()
        subs = self.groups.get(group, [])
        latencies = array("d")
        for sub in subs:
            latencies.extend(sub.latencies)
        return {
            "received": [sub.received for sub in subs],
            "duplicates": sum(sub.duplicates for sub in subs),
            "disorder": sum(sub.disorder for sub in subs),
            "closed": sum(1 for sub in subs if sub.client is None or sub.client.closed.done()),
            "first": self.first,
            "last": self.last,
            "latencies": latencies.tobytes(),
            "cpu": time.process_time(),
        }

    async def cmd_cpu(self) -> float:
        return time.process_time()

    async def cmd_close(self, group: str | None = None, count: int | None = None) -> int:
        """Close a group's subscribers (every group's when None); only `count` of them if given."""
        names = [group] if group is not None else list(self.groups)
        subs: list[Subscriber] = []
        for name in names:
            members = self.groups.get(name, [])
            take = len(members) if count is None else min(count, len(members))
            subs += members[len(members) - take :]
            del members[len(members) - take :]
            if not members:
                self.groups.pop(name, None)
        await asyncio.gather(*(sub.client.close() for sub in subs if sub.client is not None))
        return len(subs)


def event_loop_kind(wanted: str = "auto") -> str:
    """'uvloop' when wanted and installed (a C event loop: less generator time per frame)."""
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise
        return "asyncio"
    return "uvloop"


def run_loop(main: Any, kind: str) -> Any:
    if kind == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def worker_main(index: int, workers: int, conn: Connection, progress: Any, loop: str) -> None:
    """Entry point of a worker process."""
    raise_nofile_limit()
    try:
        run_loop(Worker(index, workers, conn, progress).serve(), loop)
    except KeyboardInterrupt:
        sys.exit(1)


# -- the parent's side ----------------------------------------------------------------
class LoadGenerator:
    """Worker processes with their subscribers, driven from the parent's event loop."""

    def __init__(self, workers: int, loop: str = "auto") -> None:
        import multiprocessing as mp

        self.loop = event_loop_kind(loop)

        ctx = mp.get_context("spawn")  # a clean interpreter, not a copy of the parent
        self.workers = workers
        self.progress = ctx.Array("q", 2 * workers, lock=False)
        self.pipes: list[Connection] = []
        self.processes = []
        for index in range(workers):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=worker_main,
                args=(index, workers, child, self.progress, self.loop),
                name=f"fanout-worker-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]  # all started in __init__

    def counted(self) -> int:
        """Messages counted by all subscribers since the start (monotonic)."""
        return sum(self.progress[: self.workers])

    def frames(self) -> int:
        """Frames of any type received by all subscribers since the start (monotonic)."""
        return sum(self.progress[self.workers :])

    async def _reply(self, pipe: Connection) -> Any:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(pipe.fileno(), readable)
        try:
            await ready
        finally:
            loop.remove_reader(pipe.fileno())
        result = pipe.recv()
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(result["error"])
        return result

    async def call(self, name: str, per_worker: list[dict[str, Any]] | None = None, **args: Any) -> list[Any]:
        """Run a command on every worker (with its own arguments if `per_worker`) and gather the replies."""
        for k, pipe in enumerate(self.pipes):
            pipe.send((name, per_worker[k] if per_worker is not None else args))
        # every reply is read, even after an error, so that none is left for the next call
        replies = await asyncio.gather(*(self._reply(pipe) for pipe in self.pipes), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return list(replies)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):  # a worker that is gone already
                pipe.send(("exit", {}))
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


class Publisher:
    """The room member that sends the benchmark's messages (it gets its own echo, unread)."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.client: WSClient | None = None
        self.joined: asyncio.Future[None] | None = None

    def _on_text(self, data: bytes) -> None:
        kind = frame_type(data)
        if kind == b"room-joined" and self.joined is not None and not self.joined.done():
            self.joined.set_result(None)
        elif kind == b"error":
            print(f"\npublisher got an error frame: {data[:300].decode(errors='replace')}", file=sys.stderr)

    async def join(self, endpoint: Endpoint, user_id: str = "publisher", timeout: float = 30.0) -> None:
        self.joined = asyncio.get_running_loop().create_future()
        self.client = await WSClient.connect(endpoint, self._on_text, timeout)
        self.client.send({"type": "connect", "payload": {"user_id": user_id}})
        self.client.send({"type": "join-room", "room": self.room, "payload": {}})
        await asyncio.wait_for(self.joined, timeout)

    def publish(self, i: int) -> None:
        assert self.client is not None, "join() first"
        self.client.send({"type": "message", "room": self.room, "payload": {"t": time.time(), "i": i}})

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
