"""The load generator of peers.py: loadgen.py's lean clients, speaking iAvicenne or Socket.IO.

The worker processes, the RFC 6455 framing and the message counting are loadgen.py's
(imported, not copied: `WSClient`, `client_frame`, `Subscriber`, `Worker`,
`LoadGenerator`). Added here:

- Socket.IO (Engine.IO v4) over a plain WebSocket only, the least a client must do:
  ``GET /socket.io/?EIO=4&transport=websocket``, the server's ``0{...}`` open packet
  answered with ``40`` (connect to the default namespace) and the ``join`` event, events
  sent as ``42["name",{...}]``, the server's ping ``2`` answered with ``3``. Of what
  arrives only the event name is read (the first bytes of the frame) and, for ``message``,
  the publisher's frame index and send time, as loadgen does for iAvicenne: a Socket.IO
  client library would spend more per frame than the server it measures.
- iAvicenne subscribers that send the join fields of the protocol additions
  (``members_limit``, ``presence: "batched"``) when asked, and count ``presence-batch``.
- Per subscriber: the time from its join request to its ``room-joined``, and that frame's
  size; per worker, in shared memory: presence announcements received (``user-joined``,
  ``user-left``, the entries of a ``presence-batch``) and bytes received from the server
  (everything: handshakes, snapshots, announcements, messages).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from loadgen import (
    Endpoint,
    LoadGenerator,
    Publisher,
    Subscriber,
    Worker,
    WSClient,
    client_frame,
    event_loop_kind,
    frame_type,
    message_stamp,
    raise_nofile_limit,
    run_loop,
)

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
IAVICENNE, SOCKETIO = "iavicenne", "socketio"


def sio_event(name: str, data: dict[str, Any]) -> bytes:
    """An Engine.IO message packet (4) carrying a Socket.IO event (2) on the default namespace."""
    return b"42" + json.dumps([name, data], separators=(",", ":")).encode()


def sio_event_name(data: bytes) -> bytes:
    """The event name of a ``42["name",...]`` packet, read from its first bytes."""
    if not data.startswith(b'42["'):
        return b""
    return data[4 : data.find(b'"', 4)]


def sio_stamp(data: bytes) -> tuple[int, float]:
    """(i, t) of a ``message`` event whose payload is the publisher's ``{"t":..,"i":..}``.

    Read from the bytes whatever the JSON separators (python-socketio's encoder decides);
    anything unexpected falls back to the JSON decoder.
    """
    at = data.find(b'"message":')
    if at > 0:
        t_at = data.find(b'"t":', at)
        comma = data.find(b",", t_at)
        i_at = data.find(b'"i":', comma)
        end = data.find(b"}", i_at)
        if t_at > 0 and comma > 0 and i_at > 0 and end > 0:
            try:
                return int(data[i_at + 4 : end]), float(data[t_at + 4 : comma])
            except ValueError:
                pass
    body = json.loads(data[2:])[1]["message"]
    return body["i"], body["t"]


class CountingClient(WSClient):
    """A loadgen `WSClient` that adds every byte it receives to its worker's counter."""

    bytes_sink: tuple[Any, int] | None = None  # (the shared progress array, this worker's slot)

    @classmethod
    async def connect(cls, endpoint: Endpoint, on_text: Callable[[bytes], None], timeout: float = 30.0) -> CountingClient:
        client = await super().connect(endpoint, on_text, timeout)
        assert isinstance(client, CountingClient)  # made by cls
        return client

    def data_received(self, data: bytes) -> None:
        sink = CountingClient.bytes_sink
        if sink is not None:
            sink[0][sink[1]] += len(data)
        super().data_received(data)

    def send_text(self, text: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(text))


class PeerSubscriber(Subscriber):
    """A loadgen subscriber that also times its join and counts presence announcements."""

    __slots__ = ("join_payload", "join_seconds", "join_sent", "snapshot_bytes")

    def __init__(self, worker: PeerWorker, user_id: str, room: str, join_payload: dict[str, Any]) -> None:
        super().__init__(worker, user_id, room)
        self.join_payload = join_payload
        self.join_sent = 0.0
        self.join_seconds = float("nan")
        self.snapshot_bytes = 0

    def presence(self, n: int) -> None:
        worker = self.worker
        assert isinstance(worker, PeerWorker)
        worker.progress[worker.presence_slot] += n

    def room_joined(self, data: bytes) -> None:
        if not self.joined.done():
            self.join_seconds = time.perf_counter() - self.join_sent
            self.snapshot_bytes = len(data)
            self.joined.set_result(None)

    def failed(self, data: bytes) -> None:
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"{self.user_id}: {data[:300].decode(errors='replace')}"))


class IavicenneSubscriber(PeerSubscriber):
    """An iAvicenne room member; `join_payload` is the ``join-room`` payload it sends."""

    __slots__ = ()

    def on_text(self, data: bytes) -> None:
        worker = self.worker
        worker.progress[worker.frames_slot] += 1
        kind = frame_type(data)
        if kind == b"message":
            self.count_message(*message_stamp(data))
        elif kind in (b"user-joined", b"user-left"):
            self.presence(1)
        elif kind == b"presence-batch":  # rare: decoding it is cheap enough
            batch = json.loads(data)
            self.presence(len(batch.get("joined", ())) + len(batch.get("left", ())))
        elif kind == b"room-joined":
            self.room_joined(data)
        elif kind == b"error":
            self.failed(data)

    async def join(self, endpoint: Endpoint, timeout: float) -> None:
        client = self.client = await CountingClient.connect(endpoint, self.on_text, timeout)
        client.send({"type": "connect", "payload": {"user_id": self.user_id}})
        self.join_sent = time.perf_counter()
        client.send({"type": "join-room", "room": self.room, "payload": self.join_payload})
        await asyncio.wait_for(self.joined, timeout)


class SocketIOSubscriber(PeerSubscriber):
    """A Socket.IO room member of benchmarks/socketio_server.py."""

    __slots__ = ("early",)

    def __init__(self, worker: PeerWorker, user_id: str, room: str, join_payload: dict[str, Any]) -> None:
        super().__init__(worker, user_id, room, join_payload)
        # the open packet may come in the handshake's segment, before connect() has returned
        # the client it must be answered on: kept until then
        self.early: list[bytes] | None = []

    def on_text(self, data: bytes) -> None:
        if self.early is not None:
            self.early.append(data)
            return
        worker = self.worker
        worker.progress[worker.frames_slot] += 1
        event = sio_event_name(data)
        if event == b"message":
            self.count_message(*sio_stamp(data))
        elif event in (b"user-joined", b"user-left"):
            self.presence(1)
        elif event == b"room-joined":
            self.room_joined(data)
        elif data == b"2":  # Engine.IO ping: a pong, or the server drops the connection
            self._send(b"3")
        elif data[:1] == b"0":  # the open packet: connect to the namespace, then join
            self._send(b"40")
            self.join_sent = time.perf_counter()
            self._send(sio_event("join", {"room": self.room, "user_id": self.user_id}))
        elif data[:2] == b"44" or event == b"error":  # namespace connection refused, or an error event
            self.failed(data)

    def _send(self, text: bytes) -> None:
        assert isinstance(self.client, CountingClient)
        self.client.send_text(text)

    async def join(self, endpoint: Endpoint, timeout: float) -> None:
        self.client = await CountingClient.connect(endpoint, self.on_text, timeout)
        early, self.early = self.early or [], None
        for data in early:
            self.on_text(data)
        await asyncio.wait_for(self.joined, timeout)


class PeerWorker(Worker):
    """A loadgen worker whose subscribers speak iAvicenne or Socket.IO."""

    def __init__(self, index: int, workers: int, conn: Connection, progress: Any) -> None:
        super().__init__(index, workers, conn, progress)
        # progress: [counted] * workers + [frames] * workers + [presence] * workers + [bytes] * workers
        self.presence_slot = 2 * workers + index
        CountingClient.bytes_sink = (progress, 3 * workers + index)

    async def cmd_join(  # loadgen's command, with the protocol to speak and the join payload
        self,
        group: str,
        endpoints: list[Endpoint],
        room: str,
        users: list[tuple[str, int]],
        concurrency: int,
        timeout: float,
        payload: dict[str, Any] | None = None,
        protocol: str = IAVICENNE,
        join_payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Connect one subscriber per (user name, index in `endpoints`) and join `room`."""
        subscribers = self.groups.setdefault(group, [])
        gate = asyncio.Semaphore(concurrency)
        kind = SocketIOSubscriber if protocol == SOCKETIO else IavicenneSubscriber

        async def one(user: str, server: int) -> None:
            sub = kind(self, user, room, join_payload or payload or {})
            async with gate:
                await sub.join(endpoints[server], timeout)
            subscribers.append(sub)

        await asyncio.gather(*(one(user, server) for user, server in users))
        return {"joined": len(users)}

    async def cmd_join_stats(self, group: str) -> dict[str, list[float]]:
        """Each subscriber's join time (request to ``room-joined``, s) and snapshot size (bytes)."""
        subs = [s for s in self.groups.get(group, ()) if isinstance(s, PeerSubscriber)]
        return {"seconds": [s.join_seconds for s in subs], "snapshot_bytes": [float(s.snapshot_bytes) for s in subs]}


def peer_worker_main(index: int, workers: int, conn: Connection, progress: Any, loop: str) -> None:
    """Entry point of a worker process."""
    raise_nofile_limit()
    try:
        run_loop(PeerWorker(index, workers, conn, progress).serve(), loop)
    except KeyboardInterrupt:
        sys.exit(1)


class PeerLoadGenerator(LoadGenerator):
    """loadgen's `LoadGenerator`, its workers `PeerWorker`s with two more counters each."""

    def __init__(self, workers: int, loop: str = "auto") -> None:  # not super().__init__: it would start loadgen's workers
        import multiprocessing as mp

        self.loop = event_loop_kind(loop)
        ctx = mp.get_context("spawn")
        self.workers = workers
        self.progress = ctx.Array("q", 4 * workers, lock=False)
        self.pipes = []
        self.processes = []
        for index in range(workers):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=peer_worker_main,
                args=(index, workers, child, self.progress, self.loop),
                name=f"peers-worker-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def presence(self) -> int:
        """Presence announcements received by all subscribers since the start (monotonic)."""
        return sum(self.progress[2 * self.workers : 3 * self.workers])

    def bytes_received(self) -> int:
        """Bytes received by all subscribers since the start (monotonic)."""
        return sum(self.progress[3 * self.workers :])


class IavicennePublisher(Publisher):
    """loadgen's publisher, sending `join_payload` in its ``join-room``."""

    def __init__(self, room: str, join_payload: dict[str, Any]) -> None:
        super().__init__(room)
        self.join_payload = join_payload

    async def join(self, endpoint: Endpoint, user_id: str = "publisher", timeout: float = 30.0) -> None:
        self.joined = asyncio.get_running_loop().create_future()
        self.client = await WSClient.connect(endpoint, self._on_text, timeout)
        self.client.send({"type": "connect", "payload": {"user_id": user_id}})
        self.client.send({"type": "join-room", "room": self.room, "payload": self.join_payload})
        await asyncio.wait_for(self.joined, timeout)


class SocketIOPublisher(Publisher):
    """The Socket.IO publisher: joins like a subscriber, sends ``message`` events, reads nothing else."""

    def __init__(self, room: str) -> None:
        super().__init__(room)
        self.user_id = "publisher"
        self._client: CountingClient | None = None
        self._early: list[bytes] = []

    def _on_text(self, data: bytes) -> None:
        if self._client is None:
            self._early.append(data)
            return
        event = sio_event_name(data)
        if event == b"room-joined" and self.joined is not None and not self.joined.done():
            self.joined.set_result(None)
        elif data == b"2":
            self._client.send_text(b"3")
        elif data[:1] == b"0":
            self._client.send_text(b"40")
            self._client.send_text(sio_event("join", {"room": self.room, "user_id": self.user_id}))
        elif data[:2] == b"44" or event == b"error":
            print(f"\nsocket.io publisher got: {data[:300].decode(errors='replace')}", file=sys.stderr)
            if self.joined is not None and not self.joined.done():
                self.joined.set_exception(RuntimeError(data[:300].decode(errors="replace")))

    async def join(self, endpoint: Endpoint, user_id: str = "publisher", timeout: float = 30.0) -> None:
        self.user_id = user_id
        self.joined = asyncio.get_running_loop().create_future()
        client = await CountingClient.connect(endpoint, self._on_text, timeout)
        self.client = client
        self._client = client
        early, self._early = self._early, []
        for data in early:
            self._on_text(data)
        await asyncio.wait_for(self.joined, timeout)

    def publish(self, i: int) -> None:
        assert self._client is not None, "join() first"
        self._client.send_text(sio_event("message", {"room": self.room, "payload": {"t": time.time(), "i": i}}))
