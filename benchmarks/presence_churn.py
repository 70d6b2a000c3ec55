"""Presence churn: one identity joining and leaving a room of a thousand seed clients in a loop.

    python benchmarks/presence_churn.py           # 1,000 members, 4 sockets x 100 frames/s, 10 s
    python benchmarks/presence_churn.py --quick   # 300 members, 3 s (a smoke run)
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/presence_churn.py   # that code's server

A room is filled with `--members` members, each a different user (``member<i>``, a token of
its own: see CROWD_CONFIG) on one socket, joined with presence as the seed sends it (one
``user-joined`` / ``user-left`` frame per change to every member; ``members_limit`` 0 only
makes the fill quick). Then mallory (one identity, `--sockets` sockets, each under a
``user_id`` of its own) sends join-room and leave-room alternately, `--rate` frames a
second per socket, for `--seconds`. Meanwhile bob, in a room of his own, sends a message
with a ``ref`` every 20 ms and times its ``ack``: what another user feels.

Run twice in one server each, in the same run: with the default options (the bound:
``joins_per_second`` / ``join_burst``), then with them lifted (the server as it was before
the bound; on older code, which ignores those options, both runs are the old server).
Printed per run: the server's CPU per churn frame sent, the bytes of presence fan-out the
members received during the churn (in all, and per member), mallory's frames refused
(``rate-limited``), bob's ack median / p99 during the churn beside his quiet median before
it, and the ratios of the lifted run to the bounded one. The load average is printed at the
start and at the end: on a shared machine the figures move with it.

The generator is benchmarks/loadgen.py's lean client: the members in a process of their own
(`CrowdProcess`), mallory and bob in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from loadgen import Endpoint, WSClient, raise_nofile_limit

from iavicenne_ext.testing import LOOPBACK, JupyterProcess, start_all, stop_all

ROOM_PATH = "/iavicenne/ws/mcp"
ROOM = "crowd"
#: the defaults (JupyterProcess raises the per-connection rate for tests: put back here)
DEFAULTS = {"messages_per_second": 100, "burst": 200}
#: the bound lifted: the server as it was before joins_per_second
LIFTED = {**DEFAULTS, "joins_per_second": 1e9, "join_burst": 1_000_000_000, "join_fanout_per_second": 1e12}

# A server's identity provider in which every token "<name>-token" is the user <name>: a
# crowd of different users (one identity each, as a room of a thousand colleagues is),
# beside the server's own token. Written into the server's jupyter_server_config.py.
CROWD_CONFIG = '''
from jupyter_server.auth.identity import PasswordIdentityProvider, User


class Crowd(PasswordIdentityProvider):
    """Every token "<name>-token" is user <name>; the server's token works as always."""

    async def get_user(self, handler):
        token = self.get_token(handler) or ""
        if token.endswith("-token") and token[:-6].isalnum():
            name = token[:-6]
            handler._token_authenticated = True
            return User(username=name, name=name, display_name=name)
        return await self._get_user(handler)


c.ServerApp.identity_provider_class = Crowd
'''


def crowd_server(workdir: Path, name: str, options: dict[str, Any] | None = None) -> JupyterProcess:
    """A Jupyter server (not started) whose users are the crowd's, logging warnings only."""
    server = JupyterProcess(workdir, name=name, options=options, log_level="WARN")
    server.config.mkdir(parents=True, exist_ok=True)
    (server.config / "jupyter_server_config.py").write_text(CROWD_CONFIG)
    return server


def endpoint(port: int, user: str) -> Endpoint:
    return Endpoint(LOOPBACK, port, ROOM_PATH, f"{user}-token")


class Member:
    """One member of the crowd: counts every byte it receives."""

    __slots__ = ("client", "joined", "received")

    def __init__(self) -> None:
        self.client: WSClient | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0

    def on_text(self, data: bytes) -> None:
        self.received += len(data)
        if not self.joined.done():
            if data.startswith(b'{"type":"room-joined"'):
                self.joined.set_result(None)
            elif data.startswith(b'{"type":"error"'):
                self.joined.set_exception(RuntimeError(data[:300].decode(errors="replace")))

    async def join(self, port: int, user: str, room: str, timeout: float = 60.0) -> None:
        self.client = await WSClient.connect(endpoint(port, user), self.on_text, timeout)
        self.client.send({"type": "connect", "payload": {"user_id": user}})
        # presence as the seed sends it (no "presence" field); no snapshot: only a quicker fill
        self.client.send({"type": "join-room", "room": room, "payload": {"members_limit": 0}})
        await asyncio.wait_for(asyncio.shield(self.joined), timeout)


class Crowd:
    """`size` members in one room, each a user of its own."""

    def __init__(self) -> None:
        self.members: list[Member] = []

    async def fill(self, port: int, size: int, room: str = ROOM, at_once: int = 50) -> Crowd:
        for first in range(0, size, at_once):
            group = [Member() for _ in range(min(at_once, size - first))]
            self.members.extend(group)
            await asyncio.gather(*(m.join(port, f"member{first + k}", room) for k, m in enumerate(group)))
        await self.quiet()
        return self

    @property
    def received(self) -> int:
        return sum(m.received for m in self.members)

    async def quiet(self, still: float = 0.5, limit: float = 60.0) -> None:
        """Wait until no member received anything for `still` seconds."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            now = self.received
            if now == last:
                return
            last = now
            await asyncio.sleep(still)

    async def close(self) -> None:
        for first in range(0, len(self.members), 200):
            chunk = [m.client for m in self.members[first : first + 200] if m.client is not None]
            await asyncio.gather(*(c.close(timeout=2.0) for c in chunk))


class CrowdProcess:
    """A `Crowd` in a process of its own (at the lowest priority), so that reading the
    fan-out of a thousand members does not delay the bystander's round trips measured here."""

    def __init__(self, port: int, size: int, room: str = ROOM) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process running a loop
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_crowd_main, args=(child, port, size, room), daemon=True)

    async def start(self) -> CrowdProcess:
        self.process.start()
        await self.call("filled")
        return self

    async def call(self, command: str) -> Any:
        self.pipe.send(command)
        answer = await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def received(self) -> int:
        """Bytes the members received so far."""
        return int(await self.call("received"))

    async def quiet(self) -> int:
        """Wait until the members received nothing for half a second (at most 30 s); `received`."""
        return int(await self.call("quiet"))

    async def close(self) -> None:
        if self.process.is_alive():
            try:
                await asyncio.wait_for(self.call("close"), 30)
            finally:
                self.process.join(5)
                if self.process.is_alive():
                    self.process.kill()


def _crowd_main(pipe: Connection, port: int, size: int, room: str) -> None:
    raise_nofile_limit()
    # real members read on machines of their own: here their reading takes the CPUs the
    # server and the bystander share last
    os.nice(19)
    asyncio.run(_serve_crowd(pipe, port, size, room))


async def _serve_crowd(pipe: Connection, port: int, size: int, room: str) -> None:
    crowd = Crowd()
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        try:
            if command == "filled":
                await crowd.fill(port, size, room)
                pipe.send(True)
            elif command == "received":
                pipe.send(crowd.received)
            elif command == "quiet":
                await crowd.quiet(limit=30)
                pipe.send(crowd.received)
            elif command == "close":
                await crowd.close()
                pipe.send(True)
                return
        except Exception as error:
            pipe.send(error)


@dataclass
class Churn:
    """What mallory sent and what came back."""

    sent: int = 0
    joined: int = 0  # room-joined frames: the joins carried out
    refused: int = 0  # error frames with code rate-limited
    not_in_room: int = 0  # the leaves that followed a refused join
    errors: list[str] = field(default_factory=list)  # other errors (the first few)

    def on_text(self, data: bytes) -> None:
        if data.startswith(b'{"type":"room-joined"'):
            self.joined += 1
        elif data.startswith(b'{"type":"error"'):
            frame = json.loads(data)
            if frame.get("code") == "rate-limited":
                self.refused += 1
            elif frame.get("code") == "not-in-room":
                self.not_in_room += 1
            elif len(self.errors) < 5:
                self.errors.append(str(frame.get("message")))


async def churn(server: JupyterProcess, *, sockets: int, rate: float, seconds: float, room: str = ROOM) -> Churn:
    """mallory's `sockets` sockets send join-room / leave-room alternately, `rate` a second each."""
    result = Churn()
    clients = [await WSClient.connect(endpoint(server.port, "mallory"), result.on_text) for _ in range(sockets)]
    for k, client in enumerate(clients):
        client.send({"type": "connect", "payload": {"user_id": f"mallory-{k}"}})
    join = {"type": "join-room", "room": room, "payload": {"members_limit": 0}}
    leave = {"type": "leave-room", "room": room}

    async def loop(client: WSClient) -> None:
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < start + seconds:
            due = int((now - start) * rate) + 1
            while n < due:
                client.send(join if n % 2 == 0 else leave)
                n += 1
                result.sent += 1
            await asyncio.sleep(1 / rate)

    await asyncio.gather(*(loop(c) for c in clients))
    await asyncio.gather(*(c.close(timeout=2.0) for c in clients))
    return result


class AckTimer:
    """bob in a room of his own: a message with a ref every `interval` s, each ack timed."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.sent: dict[str, float] = {}
        self.rtts_ms: list[float] = []
        self.client: WSClient | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_text(self, data: bytes) -> None:
        if data.startswith(b'{"type":"ack"'):
            ref = json.loads(data).get("ref")
            started = self.sent.pop(ref, None)
            if started is not None:
                self.rtts_ms.append((time.perf_counter() - started) * 1000)
        elif data.startswith(b'{"type":"room-joined"') and not self.ready.done():
            self.ready.set_result(None)

    async def open(self, server: JupyterProcess) -> AckTimer:
        self.client = await WSClient.connect(endpoint(server.port, "bob"), self.on_text)
        self.client.send({"type": "join-room", "room": "calm", "payload": {}})
        await asyncio.wait_for(self.ready, 30)
        return self

    async def run(self, seconds: float) -> list[float]:
        """Time acks for `seconds`; the round trips (an ack still missing counts its wait)."""
        assert self.client is not None
        self.rtts_ms = []
        stop = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < stop:
            n += 1
            ref = f"bob-{n}-{time.perf_counter_ns()}"
            self.sent[ref] = time.perf_counter()
            self.client.send({"type": "message", "room": "calm", "ref": ref, "payload": {"n": n}})
            await asyncio.sleep(self.interval)
        await asyncio.sleep(0.2)
        now = time.perf_counter()
        self.rtts_ms.extend((now - started) * 1000 for started in self.sent.values())
        self.sent.clear()
        return list(self.rtts_ms)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@dataclass
class Run:
    label: str
    members: int
    sent: int = 0
    refused: int = 0
    cpu: float = 0.0  # server CPU seconds during the churn
    fanout: int = 0  # bytes the members received during the churn
    fanout_after: int = 0  # ... and until the room was quiet again
    quiet_ms: list[float] = field(default_factory=list)
    churn_ms: list[float] = field(default_factory=list)

    @property
    def cpu_per_frame_ms(self) -> float:
        return self.cpu / max(1, self.sent) * 1000


async def measure(server: JupyterProcess, label: str, args: argparse.Namespace) -> Run:
    """Fill the room on `server`, time bob quietly, then during mallory's churn."""
    crowd = await CrowdProcess(server.port, args.members).start()
    bob = await AckTimer().open(server)
    run = Run(label, args.members)
    try:
        run.quiet_ms = await bob.run(min(2.0, args.seconds))
        received, cpu = await crowd.received(), cpu_seconds(server.pid)
        timing = asyncio.ensure_future(bob.run(args.seconds))
        churned = await churn(server, sockets=args.sockets, rate=args.rate, seconds=args.seconds)
        run.cpu = cpu_seconds(server.pid) - cpu
        run.fanout = await crowd.received() - received
        run.churn_ms = await timing
        run.fanout_after = await crowd.quiet() - received
        run.sent, run.refused = churned.sent, churned.refused
        if churned.errors:
            print(f"{label}: mallory's other errors: {churned.errors}", file=sys.stderr)
        if not server.running():
            raise RuntimeError(f"{server.name} died:\n{server.log_text()[-3000:]}")
    finally:
        if bob.client is not None:
            await bob.client.close(timeout=2.0)
        await crowd.close()
    return run


def report(runs: list[Run], args: argparse.Namespace) -> None:
    mib = 1024 * 1024
    print(
        f"\n{args.members} seed members; mallory: {args.sockets} sockets x {args.rate:g} join/leave frames/s "
        f"for {args.seconds:g} s"
    )
    print(
        f"{'run':<10} {'frames':>7} {'refused':>8} {'CPU ms/frame':>13} {'server CPU %':>13} {'fan-out MiB':>12} "
        f"{'KiB/member':>11} {'(until quiet)':>14} {'bob quiet median':>17} {'bob median':>11} {'bob p99 ms':>11}"
    )
    for run in runs:
        print(
            f"{run.label:<10} {run.sent:>7} {run.refused:>8} {run.cpu_per_frame_ms:>13.3f} "
            f"{run.cpu / args.seconds * 100:>13.0f} {run.fanout / mib:>12.1f} {run.fanout / run.members / 1024:>11.1f} "
            f"{run.fanout_after / mib:>13.1f}M {statistics.median(run.quiet_ms):>17.1f} "
            f"{statistics.median(run.churn_ms):>11.1f} {p99(run.churn_ms):>11.1f}"
        )
    if len(runs) == 2:
        bounded, lifted = runs
        print(
            f"ratio lifted/bounded: CPU {lifted.cpu / max(bounded.cpu, 1e-9):.1f}x, fan-out bytes "
            f"{lifted.fanout / max(bounded.fanout, 1):.1f}x, bob's p99 {p99(lifted.churn_ms) / p99(bounded.churn_ms):.1f}x"
        )


async def main(args: argparse.Namespace) -> int:
    limit = raise_nofile_limit()  # the servers started below inherit it
    if limit < 2 * args.members + 100:
        print(f"the open-file limit is {limit}, under what {args.members} members need", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or os.path.join("/tmp", f"iavicenne-churn-{os.getpid()}"))
    code = os.environ.get("PYTHONPATH") or "this checkout"
    print(f"server code: {code}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    runs: list[Run] = []
    try:
        for label, options in (("bounded", DEFAULTS), ("lifted", LIFTED)):
            servers = start_all([crowd_server(workdir, label, options)])
            try:
                runs.append(await measure(servers[0], label, args))
            finally:
                stop_all(servers)
        report(runs, args)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--sockets", type=int, default=4, help="mallory's churning sockets")
    parser.add_argument("--rate", type=float, default=100.0, help="join/leave frames a second per socket")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.seconds = 300, 3.0
    return args


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(asyncio.run(main(parse())))
