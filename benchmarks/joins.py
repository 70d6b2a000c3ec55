"""Joins into rooms of thousands: what a join costs the server, in time and in bytes.

    python benchmarks/joins.py                 # 2,000 joins ten at a time; a 10,000-member room
    python benchmarks/joins.py --quick         # small sizes (the smoke test CI runs)
    python benchmarks/joins.py --broker redis  # two servers sharing Redis (127.0.0.1:6379)

Phase (a): `--users` users join one room, `--at-once` at a time (each opens its socket,
sends ``connect`` and ``join-room``, and waits for its ``room-joined``), twice in the same
run: as seed clients (a ``join-room`` with no new field: the snapshot lists up to
``max_snapshot_members``, every join is announced to every member by its own
``user-joined``), and as clients that ask for ``members_limit`` and ``presence: "batched"``
(docs/protocol.md, "Large rooms"). Printed: the total seconds, each join's answer time
(median, p99), the bytes the room's clients received per join (snapshots and presence
frames, until the room is quiet), and the server's CPU seconds per join; the ratio of the
two totals.

A third run opens the same sockets and sends ``connect`` only, joining nothing: the floor
of a join here (the WebSocket handshake and Jupyter's authentication of each socket).

Phase (b): a room filled to `--room-size` members (batched, ``members_limit`` 0: quick),
then `--probes` more joins one after another, alternately seed and batched: each one's
answer time (median, p99) and answer size.

The generator is one process with benchmarks/loadgen.py's minimal RFC 6455 client, which
counts bytes and reads a frame's type from its first bytes, nothing more; its CPU is
printed beside the server's. Every client is the same identity (the server's token), so
the per-identity budgets are raised (deployments.UNLIMITED); with the defaults, one
identity may hold 32 sockets (max_connections_per_identity). A room of 10,000 different
users hits no default budget: max_room_members is for private rooms' invitations only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from deployments import Deployment, launch, new_workdir
from loadgen import Endpoint, WSClient, raise_nofile_limit
from tqdm import tqdm

BATCHED_PAYLOAD: dict[str, Any] = {"members_limit": 100, "presence": "batched"}
SEED_PAYLOAD: dict[str, Any] = {}
FILL_PAYLOAD: dict[str, Any] = {"members_limit": 0, "presence": "batched"}
#: no join at all: the socket (Jupyter's authentication) and ``connect``, what a join costs at least
CONNECT_ONLY: dict[str, Any] = {"connect": "only"}


class Joiner:
    """One user: its socket, when its join was sent and answered, what it received."""

    __slots__ = ("answer_bytes", "answered", "client", "joined", "received", "room", "sent")

    def __init__(self) -> None:
        self.client: WSClient | None = None
        self.room: str | None = None  # None: only the socket and `connect` (the floor of a join)
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent = self.answered = 0.0
        self.received = 0
        self.answer_bytes = 0

    def on_text(self, data: bytes) -> None:
        self.received += len(data)
        if self.joined.done():
            return
        if data.startswith(b'{"type":"room-joined"') or (self.room is None and data.startswith(b'{"type":"connect"')):
            self.answered = time.perf_counter()
            self.answer_bytes = len(data)
            self.joined.set_result(None)
        elif data.startswith(b'{"type":"error"'):
            self.joined.set_exception(RuntimeError(data[:300].decode(errors="replace")))

    async def join(self, endpoint: Endpoint, room: str, user_id: str, payload: dict[str, Any], timeout: float) -> None:
        self.room = None if payload is CONNECT_ONLY else room
        self.client = await WSClient.connect(endpoint, self.on_text, timeout)
        self.sent = time.perf_counter()
        self.client.send({"type": "connect", "payload": {"user_id": user_id}})
        if self.room is not None:
            self.client.send({"type": "join-room", "room": room, "payload": payload})
        await asyncio.wait_for(asyncio.shield(self.joined), timeout)

    @property
    def answer_seconds(self) -> float:
        return self.answered - self.sent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return percentile(values, 0.5)


@dataclass
class JoinRun:
    mode: str
    users: int
    total: float = 0.0
    answers: list[float] = field(default_factory=list)
    bytes_per_join: float = 0.0
    answer_bytes: float = 0.0
    server_cpu_per_join: float = 0.0
    generator_cpu_per_join: float = 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, deployment: Deployment) -> None:
        self.args = args
        self.deployment = deployment
        self.endpoints = deployment.endpoints
        self.me = psutil.Process()
        self.tag = secrets.token_hex(3)

    def endpoint(self, i: int) -> Endpoint:
        return self.endpoints[i % len(self.endpoints)]

    def generator_cpu(self) -> float:
        times = self.me.cpu_times()
        return times.user + times.system

    async def quiet(self, joiners: list[Joiner], still: float = 0.5, limit: float = 60.0) -> None:
        """Wait until no client received anything for `still` seconds (the last batches)."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            now = sum(j.received for j in joiners)
            if now == last:
                return
            last = now
            await asyncio.sleep(still)

    async def close(self, joiners: list[Joiner], label: str) -> None:
        with tqdm(total=len(joiners), desc=f"closing {label}", unit="socket", leave=False) as bar:
            for start in range(0, len(joiners), 200):
                chunk = [j.client for j in joiners[start : start + 200] if j.client is not None]
                await asyncio.gather(*(c.close() for c in chunk))
                bar.update(len(chunk))
        await asyncio.sleep(0.5)  # the server's leaves

    async def joins(self, mode: str, payload: dict[str, Any]) -> JoinRun:
        """Phase (a) for one kind of client."""
        args = self.args
        room = f"joins-{mode}-{self.tag}"
        run = JoinRun(mode, args.users)
        joiners: list[Joiner] = []
        cpu0, gen0 = self.deployment.cpu_seconds(), self.generator_cpu()
        start = time.perf_counter()
        with tqdm(total=args.users, desc=f"(a) {mode} joins", unit="join", leave=False) as bar:
            for first in range(0, args.users, args.at_once):
                group = [Joiner() for _ in range(min(args.at_once, args.users - first))]
                joiners.extend(group)
                await asyncio.gather(
                    *(
                        j.join(self.endpoint(first + k), room, f"u{first + k}-{mode}", payload, args.timeout)
                        for k, j in enumerate(group)
                    )
                )
                bar.update(len(group))
        run.total = time.perf_counter() - start
        await self.quiet(joiners)
        run.server_cpu_per_join = (self.deployment.cpu_seconds() - cpu0) / args.users
        run.generator_cpu_per_join = (self.generator_cpu() - gen0) / args.users
        run.answers = [j.answer_seconds for j in joiners]
        run.bytes_per_join = sum(j.received for j in joiners) / args.users
        run.answer_bytes = sum(j.answer_bytes for j in joiners) / args.users
        self.deployment.check_alive()
        await self.close(joiners, mode)
        return run

    async def big_room(self) -> dict[str, JoinRun]:
        """Phase (b): a room of `room_size` members, then `probes` joins measured one by one."""
        args = self.args
        room = f"big-{self.tag}"
        members: list[Joiner] = []
        with tqdm(total=args.room_size, desc="(b) filling the room", unit="member", leave=False) as bar:
            for first in range(0, args.room_size, args.fill_at_once):
                group = [Joiner() for _ in range(min(args.fill_at_once, args.room_size - first))]
                members.extend(group)
                await asyncio.gather(
                    *(
                        j.join(self.endpoint(first + k), room, f"m{first + k}", FILL_PAYLOAD, args.timeout)
                        for k, j in enumerate(group)
                    )
                )
                bar.update(len(group))
        await self.quiet(members)
        runs = {"seed": JoinRun("seed", 0), "batched": JoinRun("batched", 0)}
        probes: list[Joiner] = []
        cpu0 = self.deployment.cpu_seconds()
        with tqdm(total=args.probes, desc="(b) joins into the full room", unit="join", leave=False) as bar:
            for i in range(args.probes):
                mode = "seed" if i % 2 else "batched"
                probe = Joiner()
                probes.append(probe)
                await probe.join(
                    self.endpoint(i), room, f"p{i}", SEED_PAYLOAD if mode == "seed" else BATCHED_PAYLOAD, args.timeout
                )
                run = runs[mode]
                run.users += 1
                run.answers.append(probe.answer_seconds)
                run.answer_bytes += probe.answer_bytes
                await asyncio.sleep(args.probe_pause)
                bar.update()
        cpu = self.deployment.cpu_seconds() - cpu0
        for run in runs.values():
            run.answer_bytes /= max(1, run.users)
            run.server_cpu_per_join = cpu / max(1, args.probes)  # both kinds together
        self.deployment.check_alive()
        await self.close(probes + members, "the full room")
        return runs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report_joins(runs: list[JoinRun]) -> None:
    print(f"\n(a) {runs[0].users} users joining one room, ten at a time")
    print(
        f"{'clients':<10} {'total s':>8} {'join median ms':>15} {'join p99 ms':>12} "
        f"{'bytes/join':>11} {'room-joined B':>14} {'server CPU ms/join':>19} {'generator CPU ms/join':>22}"
    )
    for run in runs:
        print(
            f"{run.mode:<10} {run.total:>8.2f} {ms(median(run.answers)):>15} {ms(percentile(run.answers, 0.99)):>12} "
            f"{run.bytes_per_join:>11.0f} {run.answer_bytes:>14.0f} {run.server_cpu_per_join * 1000:>19.2f} "
            f"{run.generator_cpu_per_join * 1000:>22.2f}"
        )
    seed, batched = runs[:2]
    print(
        f"ratio seed/batched: total {seed.total / batched.total:.1f}x, bytes per join "
        f"{seed.bytes_per_join / batched.bytes_per_join:.1f}x, server CPU per join "
        f"{seed.server_cpu_per_join / max(batched.server_cpu_per_join, 1e-9):.1f}x"
    )


def report_big(size: int, runs: dict[str, JoinRun]) -> None:
    print(f"\n(b) joins into a room of {size} members, one at a time")
    print(f"{'clients':<10} {'joins':>6} {'median ms':>10} {'p99 ms':>8} {'room-joined B':>14}")
    for run in runs.values():
        print(
            f"{run.mode:<10} {run.users:>6} {ms(median(run.answers)):>10} {ms(percentile(run.answers, 0.99)):>8} "
            f"{run.answer_bytes:>14.0f}"
        )
    print(
        f"server CPU per join (both kinds, presence-batches to the room included): {runs['seed'].server_cpu_per_join * 1000:.2f} ms"
    )


async def main(args: argparse.Namespace) -> int:
    limit = raise_nofile_limit()  # the servers started below inherit it
    needed = max(args.users, args.room_size + args.probes) + 100
    if limit < needed:
        print(f"the open-file limit is {limit}, under the {needed} sockets this run needs; lower --room-size", file=sys.stderr)
        return 2
    workdir = new_workdir()
    deployment = launch(args.broker, workdir, redis_url=args.redis_url)
    try:
        bench = Bench(args, deployment)
        load = os.getloadavg()
        print(f"{deployment.description}; {os.cpu_count()} CPUs, load average {load[0]:.1f} at the start")
        runs = [
            await bench.joins("seed", SEED_PAYLOAD),
            await bench.joins("batched", BATCHED_PAYLOAD),
            await bench.joins("connect", CONNECT_ONLY),  # the floor: sockets and connect, no room
        ]
        report_joins(runs)
        if args.room_size:
            report_big(args.room_size, await bench.big_room())
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        deployment.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--users", type=int, default=2000, help="phase (a): users joining")
    parser.add_argument("--at-once", type=int, default=10, help="phase (a): joins sent together")
    parser.add_argument("--room-size", type=int, default=10_000, help="phase (b): members before the probes (0: skip)")
    parser.add_argument("--fill-at-once", type=int, default=100)
    parser.add_argument("--probes", type=int, default=200, help="phase (b): joins measured")
    parser.add_argument("--probe-pause", type=float, default=0.02, help="seconds between two probes")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.room_size, args.probes = 100, 300, 10
    return args


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(asyncio.run(main(parse())))
