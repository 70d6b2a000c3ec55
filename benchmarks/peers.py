"""The peer a user would pick instead: iAvicenne against python-socketio, in one run.

    python benchmarks/peers.py                 # the full run (about 15-25 minutes on 2 busy cores)
    python benchmarks/peers.py --quick         # a smoke run (about a minute)
    python benchmarks/peers.py --phases joins --joins 2000 --json peers.json

In one run it starts, on 127.0.0.1 only, its own `redis-server` (a free port; or
--redis-url) and four systems:
  * iavicenne          one real `jupyter server` with the extension, memory broker, rate limits raised;
  * socketio           benchmarks/socketio_server.py: python-socketio's AsyncServer in aiohttp
                       mode, one process (member lists in the process);
  * iavicenne-redis    two Jupyter servers sharing the Redis (--broker redis);
  * socketio-redis     two socketio_server.py processes with AsyncRedisManager on the same Redis
                       (member lists in a Redis hash per room);
and drives them with one load generator (sio_load.py: loadgen.py's lean clients, which
speak Socket.IO over plain WebSocket frames too), the systems' runs interleaved:
  (a) fan-out, one server: one publisher, S subscribers in one room, the publisher as
      fast as the subscribers take it: deliveries/s and server CPU per delivery;
  (b) the same on two servers sharing Redis (subscribers spread over both, the
      publisher on the first);
  (c) joins: --joins users joining --join-batch at a time into one room on one server,
      each batch's presence announcements delivered before the next batch: total time,
      time from join request to the snapshot (median), bytes sent to the clients per join,
      server CPU per join; then the same users leaving the same way;
  (d) the whole run, two servers with Redis: --whole-subscribers users joining ten at a
      time, --whole-messages messages to all of them, everyone leaving ten at a time:
      total CPU of all server processes (and of Redis, beside it).
Every subscriber must receive every message exactly once, in order. Figures are medians
of --repeats runs. Ratios are "how many times better iAvicenne is": deliveries/s
iAvicenne / python-socketio, and CPU python-socketio / iAvicenne (above 1: iAvicenne leads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# found next to this script (Python puts its folder on sys.path)
from deployments import HERE, ROOM_PATH, Deployment, MinimalServer, launch, new_workdir
from loadgen import Endpoint, Publisher, raise_nofile_limit
from sio_load import IAVICENNE, SIO_PATH, SOCKETIO, IavicennePublisher, PeerLoadGenerator, SocketIOPublisher
from tqdm import tqdm

from iavicenne_ext.testing import LOOPBACK, free_port, wait_until

PHASES = ("fanout", "redis", "joins", "whole")


class SocketIOServer(MinimalServer):
    """benchmarks/socketio_server.py on a free loopback port (a `MinimalServer` in all but its command)."""

    def __init__(self, workdir: Path, *, name: str, redis_url: str | None = None, prefix: str = "sio-bench") -> None:
        super().__init__(workdir, name=name)
        self.redis_url = redis_url
        self.prefix = prefix

    def start(self, timeout: float = 30.0) -> SocketIOServer:
        args = [sys.executable, str(HERE / "socketio_server.py"), f"--port={self.port}", f"--token={self.token}"]
        if self.redis_url:
            args += [f"--redis={self.redis_url}", f"--prefix={self.prefix}"]
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)

        def accepting() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(accepting, timeout, f"{self.name} on port {self.port}", interval=0.1)
        return self


class RedisServer:
    """A private `redis-server` on a free port, no persistence: its CPU is measured too."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        binary = binary or shutil.which("redis-server") or shutil.which("redis-server", path=str(Path(sys.executable).parent))
        if binary is None:
            raise SystemExit("no redis-server found: apt-get install redis-server, or pass --redis-server or --redis-url")
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        log = open(workdir / "redis.log", "wb")  # noqa: SIM115  # the child keeps its own descriptor
        self.proc = subprocess.Popen(
            [binary, "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_until(lambda: self._up(), 10, f"redis-server on port {self.port}", interval=0.1)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({self.proc.returncode})")
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass
class System:
    """One measured system: its protocol, its processes (a `Deployment`), its endpoints."""

    name: str
    protocol: str
    deployment: Deployment
    redis: bool

    @property
    def endpoints(self) -> list[Endpoint]:
        path = SIO_PATH if self.protocol == SOCKETIO else ROOM_PATH
        return [Endpoint(LOOPBACK, s.port, path, s.token) for s in self.deployment.servers]


@dataclass
class Measure:
    """One measured run of one system in one phase; the fields a phase does not use stay 0."""

    phase: str
    system: str
    subscribers: int = 0
    messages: int = 0
    expected: int = 0
    delivered: int = 0
    losses: int = 0
    duplicates: int = 0
    disorder: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    server_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    server_us: float = math.nan  # server CPU per delivery
    generator_us: float = math.nan
    joins: int = 0
    join_seconds: float = 0.0  # all the joins, announcements delivered
    join_median_ms: float = math.nan
    join_p90_ms: float = math.nan
    snapshot_bytes: float = math.nan  # median size of the joiner's room-joined frame
    bytes_per_join: float = math.nan  # everything the clients received during the joins, per join
    cpu_ms_per_join: float = math.nan
    leave_seconds: float = 0.0
    cpu_ms_per_leave: float = math.nan
    presence_expected: int = 0
    presence_received: int = 0
    # the whole run's server CPU, by part
    join_cpu_s: float = 0.0
    message_cpu_s: float = 0.0
    leave_cpu_s: float = 0.0


@dataclass
class Results:
    args: dict[str, Any]
    measures: list[Measure] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Bench:
    def __init__(
        self, args: argparse.Namespace, systems: list[System], gen: PeerLoadGenerator, redis: RedisServer | None
    ) -> None:
        self.args = args
        self.systems = systems
        self.gen = gen
        self.redis = redis
        self.results = Results(vars(args).copy(), descriptions={s.name: s.deployment.description for s in systems})
        self.next_i = 0  # message indexes never repeat across runs: a late frame is never counted twice
        self.bar: tqdm | None = None
        if args.iavicenne_join_fields == "new":
            self.join_payload: dict[str, Any] = {"members_limit": args.members_limit, "presence": "batched"}
        else:
            self.join_payload = {}

    def system(self, name: str) -> System | None:
        return next((s for s in self.systems if s.name == name), None)

    def payload_of(self, system: System) -> dict[str, Any]:
        return self.join_payload if system.protocol == IAVICENNE else {}

    def publisher(self, system: System, room: str) -> Publisher:
        if system.protocol == SOCKETIO:
            return SocketIOPublisher(room)
        return IavicennePublisher(room, self.join_payload)

    def redis_cpu(self) -> float:
        return cpu_of(self.redis.pid) if self.redis is not None else 0.0

    # -- joins and leaves ---------------------------------------------------------------
    async def join(self, system: System, group: str, room: str, prefix: str, count: int, batch: int, *, label: str) -> int:
        """Connect `count` subscribers, `batch` at a time (each batch's announcements delivered
        before the next one), subscriber k on server k % servers; returns the announcements
        they should have received (one ``user-joined`` per joiner to itself and to everyone
        already there; the entries of a presence batch count one each)."""
        workers = len(self.gen.pipes)
        servers = len(system.endpoints)
        expected = 0
        with tqdm(total=count, desc=f"{label}: joining", unit="join", leave=False, file=sys.stderr) as bar:
            for first in range(0, count, batch):
                last = min(count, first + batch)
                before = self.gen.presence()
                per_worker = [
                    {
                        "group": group,
                        "endpoints": system.endpoints,
                        "room": room,
                        "users": [(f"{prefix}-{k}", k % servers) for k in range(first + w, last, workers)],
                        "concurrency": self.args.connect_concurrency,
                        "timeout": 120.0,
                        "protocol": system.protocol,
                        "join_payload": self.payload_of(system),
                    }
                    for w in range(workers)
                ]
                await self.gen.call("join", per_worker)
                joined = last - first
                announced = joined + first * joined + joined * (joined - 1) // 2
                expected += announced
                if batch < count:
                    await self.wait_presence(before + announced)
                bar.update(joined)
        return expected

    async def leave(self, group: str, count: int, batch: int, *, label: str) -> int:
        """Close a group's `count` subscribers `batch` at a time; returns the ``user-left``
        announcements the ones still there should have received."""
        workers = len(self.gen.pipes)
        left, expected = count, 0
        with tqdm(total=count, desc=f"{label}: leaving", unit="leave", leave=False, file=sys.stderr) as bar:
            while left > 0:
                now = min(batch, left)
                before = self.gen.presence()
                per_worker = [{"group": group, "count": now // workers + (1 if w < now % workers else 0)} for w in range(workers)]
                closed = sum(await self.gen.call("close", per_worker))
                left -= closed
                expected += closed * left
                if left > 0 and batch < count:
                    await self.wait_presence(before + closed * left)
                bar.update(closed)
                if not closed:
                    break
        return expected

    async def wait_presence(self, target: int, stall: float = 5.0) -> None:
        """Until the subscribers have received `target` announcements, or none came for `stall` s."""
        last, since = -1, time.monotonic()
        while (count := self.gen.presence()) < target:
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since > stall:
                return
            await asyncio.sleep(0.005)

    # -- one throughput run -------------------------------------------------------------
    async def throughput(self, system: System, publisher: Publisher, group: str, subscribers: int, messages: int) -> Measure:
        base, self.next_i = self.next_i, self.next_i + messages
        await self.gen.call("expect", group=group, base=base, count=messages, record=False, batch_ms=self.args.batch_ms)
        expected = subscribers * messages
        start = self.gen.counted()
        cpu0, rcpu0, gcpu0 = system.deployment.cpu_seconds(), self.redis_cpu(), await self.generator_cpu()
        t0 = time.time()
        window = max(4, self.args.window // subscribers)
        with tqdm(
            total=expected, desc=f"{system.name} S={subscribers}", unit="msg", unit_scale=True, leave=False, file=sys.stderr
        ) as bar:
            for k in range(messages):
                if k >= window:
                    floor = start + (k - window + 1) * subscribers
                    while self.gen.counted() < floor:
                        await asyncio.sleep(0.001)
                        system.deployment.check_alive()
                    if k % 64 == 0:
                        bar.n = self.gen.counted() - start
                        bar.refresh()
                publisher.publish(base + k)
                if k % 16 == 15:
                    await asyncio.sleep(0)
            await self.wait_counted(start + expected)
        wall = time.time() - t0
        cpu1, rcpu1, gcpu1 = system.deployment.cpu_seconds(), self.redis_cpu(), await self.generator_cpu()
        reports = await self.gen.call("report", group=group)
        last = max((r["last"] for r in reports), default=0.0)
        m = Measure("", system.name, subscribers, messages, expected)
        m.delivered = sum(n for r in reports for n in r["received"])
        m.losses = expected - m.delivered
        m.duplicates = sum(r["duplicates"] for r in reports)
        m.disorder = sum(r["disorder"] for r in reports)
        m.seconds = (last - t0) if last else wall
        m.per_second = m.delivered / m.seconds if m.seconds > 0 else 0.0
        m.server_cpu_s, m.redis_cpu_s = cpu1 - cpu0, rcpu1 - rcpu0
        if m.delivered:
            m.server_us = 1e6 * m.server_cpu_s / m.delivered
            m.generator_us = 1e6 * (gcpu1 - gcpu0) / m.delivered
        return m

    async def wait_counted(self, target: int) -> None:
        """Until `target` messages are counted, or none arrived for --idle-timeout s (losses)."""
        last, since = -1, time.monotonic()
        while (count := self.gen.counted()) < target:
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since > self.args.idle_timeout:
                return
            await asyncio.sleep(0.01)

    async def generator_cpu(self) -> float:
        return sum(await self.gen.call("cpu")) + time.process_time()

    def messages_for(self, subscribers: int) -> int:
        return self.args.messages or max(100, min(4000, self.args.deliveries // subscribers))

    # -- failures -----------------------------------------------------------------------
    async def fail(self, system: System, phase: str, error: BaseException, groups: list[str]) -> None:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logs = ", ".join(str(s.log_path) for s in system.deployment.servers)
        self.results.failures.append({"system": system.name, "phase": phase, "error": text[:300], "logs": logs})
        tqdm.write(f"\n{system.name} failed during {phase}: {error}\n(server logs: {logs})", file=sys.stderr)
        for group in groups:
            with contextlib.suppress(Exception):
                await self.gen.call("close", group=group)

    def alive(self, names: list[str]) -> list[System]:
        failed = {f["system"] for f in self.results.failures}
        return [s for name in names if (s := self.system(name)) is not None and s.name not in failed]

    def tick(self, note: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(note)

    # -- phases ---------------------------------------------------------------------------
    async def fanout(self, phase: str, names: list[str], subscribers: int) -> None:
        """(a)/(b): throughput runs of every system in `names`, interleaved."""
        room = f"{phase}-{subscribers}"
        publishers: dict[str, Publisher] = {}
        for system in self.alive(names):
            group = f"{phase}-{system.name}-{subscribers}"
            try:
                await self.join(
                    system, group, room, f"s{subscribers}", subscribers, subscribers, label=f"{system.name} S={subscribers}"
                )
                publishers[system.name] = publisher = self.publisher(system, room)
                await publisher.join(system.endpoints[0])
                # warm-up, unmeasured: also drains the joins' announcements
                await self.throughput(system, publisher, group, subscribers, max(50, self.messages_for(subscribers) // 10))
            except Exception as error:
                await self.fail(system, f"{phase} S={subscribers} joining", error, [group])
            self.tick(f"{system.name} S={subscribers} joined")
        for repeat in range(self.args.repeats):
            order = self.alive(names) if repeat % 2 == 0 else self.alive(names)[::-1]  # a noisy minute hits both
            for system in order:
                group = f"{phase}-{system.name}-{subscribers}"
                try:
                    m = await self.throughput(system, publishers[system.name], group, subscribers, self.messages_for(subscribers))
                    m.phase = phase
                    self.results.measures.append(m)
                    self.tick(f"{system.name} S={subscribers}: {m.per_second:,.0f}/s, {m.server_us:.1f} µs, losses {m.losses}")
                except Exception as error:
                    await self.fail(system, f"{phase} S={subscribers}", error, [group])
        for system in self.alive(names):
            with contextlib.suppress(Exception):
                await self.gen.call("close", group=f"{phase}-{system.name}-{subscribers}")
            if system.name in publishers:
                await publishers[system.name].close()

    async def joins(self, names: list[str]) -> None:
        """(c): --joins users joining --join-batch at a time, then leaving the same way."""
        count, batch = self.args.joins, self.args.join_batch
        for repeat in range(self.args.join_repeats):
            order = self.alive(names) if repeat % 2 == 0 else self.alive(names)[::-1]
            for system in order:
                group, room = f"joins-{system.name}-{repeat}", f"joins-{repeat}"
                try:
                    m = Measure("joins", system.name, subscribers=count, joins=count)
                    cpu0, bytes0, presence0 = system.deployment.cpu_seconds(), self.gen.bytes_received(), self.gen.presence()
                    t0 = time.monotonic()
                    m.presence_expected = await self.join(system, group, room, f"j{repeat}", count, batch, label=system.name)
                    m.join_seconds = time.monotonic() - t0
                    cpu1, bytes1 = system.deployment.cpu_seconds(), self.gen.bytes_received()
                    stats = await self.gen.call("join_stats", group=group)
                    seconds = [s for st in stats for s in st["seconds"]]
                    m.join_median_ms = 1000 * median(seconds)
                    m.join_p90_ms = 1000 * quantile(seconds, 0.9)
                    m.snapshot_bytes = median([b for st in stats for b in st["snapshot_bytes"]])
                    m.bytes_per_join = (bytes1 - bytes0) / count
                    m.server_cpu_s = cpu1 - cpu0
                    m.cpu_ms_per_join = 1000 * (cpu1 - cpu0) / count
                    t1 = time.monotonic()
                    m.presence_expected += await self.leave(group, count, batch, label=system.name)
                    m.leave_seconds = time.monotonic() - t1
                    m.cpu_ms_per_leave = 1000 * (system.deployment.cpu_seconds() - cpu1) / count
                    m.presence_received = self.gen.presence() - presence0
                    self.results.measures.append(m)
                    self.tick(f"{system.name} {count} joins: {m.join_seconds:.1f} s, {m.join_median_ms:.1f} ms median")
                except Exception as error:
                    await self.fail(system, "joins", error, [group])

    async def whole(self, names: list[str]) -> None:
        """(d): joining, publishing, leaving on two servers with Redis; the CPU of it all."""
        count, messages = self.args.whole_subscribers, self.args.whole_messages
        for repeat in range(self.args.repeats):
            order = self.alive(names) if repeat % 2 == 0 else self.alive(names)[::-1]
            for system in order:
                group, room = f"whole-{system.name}-{repeat}", f"whole-{repeat}"
                try:
                    m = Measure("whole", system.name, subscribers=count, messages=messages, joins=count)
                    cpu0, rcpu0, presence0 = system.deployment.cpu_seconds(), self.redis_cpu(), self.gen.presence()
                    t0 = time.monotonic()
                    publisher = self.publisher(system, room)
                    await publisher.join(system.endpoints[0])
                    m.presence_expected = await self.join(system, group, room, f"w{repeat}", count, 10, label=system.name)
                    m.join_seconds = time.monotonic() - t0
                    cpu1 = system.deployment.cpu_seconds()
                    run = await self.throughput(system, publisher, group, count, messages)
                    cpu2 = system.deployment.cpu_seconds()
                    t1 = time.monotonic()
                    m.presence_expected += await self.leave(group, count, 10, label=system.name)
                    await publisher.close()
                    m.leave_seconds = time.monotonic() - t1
                    m.seconds = time.monotonic() - t0
                    m.server_cpu_s = system.deployment.cpu_seconds() - cpu0
                    m.join_cpu_s, m.message_cpu_s, m.leave_cpu_s = cpu1 - cpu0, cpu2 - cpu1, cpu0 + m.server_cpu_s - cpu2
                    m.redis_cpu_s = self.redis_cpu() - rcpu0
                    m.expected, m.delivered, m.losses = run.expected, run.delivered, run.losses
                    m.duplicates, m.disorder, m.per_second, m.server_us = (
                        run.duplicates,
                        run.disorder,
                        run.per_second,
                        run.server_us,
                    )
                    m.presence_received = self.gen.presence() - presence0
                    self.results.measures.append(m)
                    self.tick(f"{system.name} whole run: {m.server_cpu_s:.1f} CPU s, losses {m.losses}")
                except Exception as error:
                    await self.fail(system, "whole", error, [group])

    def steps(self) -> int:
        a = self.args
        n = 0
        if "fanout" in a.phases:
            n += len(a.subscribers) * 2 * (1 + a.repeats)
        if "redis" in a.phases:
            n += len(a.subscribers) * 2 * (1 + a.repeats)
        if "joins" in a.phases:
            n += 2 * a.join_repeats
        if "whole" in a.phases:
            n += 2 * a.repeats
        return n

    async def all(self) -> Results:
        a = self.args
        with tqdm(total=self.steps(), desc="peers", unit="step", file=sys.stderr) as self.bar:
            for subscribers in a.subscribers:
                if "fanout" in a.phases:
                    await self.fanout("fanout", ["iavicenne", "socketio"], subscribers)
                if "redis" in a.phases:
                    await self.fanout("redis", ["iavicenne-redis", "socketio-redis"], subscribers)
            if "joins" in a.phases:
                await self.joins(["iavicenne", "socketio"])
            if "whole" in a.phases:
                await self.whole(["iavicenne-redis", "socketio-redis"])
        self.bar = None
        return self.results


# -- the report --------------------------------------------------------------------------
PAIRS = {"fanout": ("iavicenne", "socketio"), "redis": ("iavicenne-redis", "socketio-redis")}


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def summarize(results: Results) -> dict[str, Any]:
    """Medians per (phase, system, S), the ratios, and the checks."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, int], list[Measure]] = {}
    for m in results.measures:
        groups.setdefault((m.phase, m.system, m.subscribers), []).append(m)
    for (phase, system, subscribers), ms in groups.items():
        row: dict[str, Any] = {"phase": phase, "system": system, "subscribers": subscribers, "runs": len(ms)}
        for name in (
            "per_second",
            "server_us",
            "generator_us",
            "server_cpu_s",
            "redis_cpu_s",
            "seconds",
            "join_seconds",
            "join_median_ms",
            "join_p90_ms",
            "snapshot_bytes",
            "bytes_per_join",
            "cpu_ms_per_join",
            "leave_seconds",
            "cpu_ms_per_leave",
            "join_cpu_s",
            "message_cpu_s",
            "leave_cpu_s",
        ):
            row[name] = median([float(getattr(m, name)) for m in ms])
        row["losses"] = sum(m.losses + m.duplicates for m in ms)
        row["disorder"] = sum(m.disorder for m in ms)
        row["presence_missing"] = sum(max(0, m.presence_expected - m.presence_received) for m in ms)
        row["per_second_all"] = [round(m.per_second) for m in ms]
        row["server_cpu_all"] = [round(m.server_cpu_s, 2) for m in ms]
        rows.append(row)
    by = {(r["phase"], r["system"], r["subscribers"]): r for r in rows}
    ratios: list[dict[str, Any]] = []
    for (phase, system, subscribers), row in sorted(by.items()):
        iav_name, sio_name = PAIRS.get(
            phase, ("iavicenne-redis", "socketio-redis") if phase == "whole" else ("iavicenne", "socketio")
        )
        if system != iav_name or (phase, sio_name, subscribers) not in by:
            continue
        sio = by[(phase, sio_name, subscribers)]
        entry: dict[str, Any] = {"phase": phase, "subscribers": subscribers}
        if phase in PAIRS:
            entry["deliveries_ratio"] = ratio(row["per_second"], sio["per_second"])
            entry["cpu_ratio"] = ratio(sio["server_us"], row["server_us"])
        elif phase == "joins":
            entry["join_time_ratio"] = ratio(sio["join_seconds"], row["join_seconds"])
            entry["join_median_ratio"] = ratio(sio["join_median_ms"], row["join_median_ms"])
            entry["bytes_ratio"] = ratio(sio["bytes_per_join"], row["bytes_per_join"])
            entry["cpu_ratio"] = ratio(sio["cpu_ms_per_join"], row["cpu_ms_per_join"])
            entry["leave_cpu_ratio"] = ratio(sio["cpu_ms_per_leave"], row["cpu_ms_per_leave"])
        else:
            entry["cpu_ratio"] = ratio(sio["server_cpu_s"], row["server_cpu_s"])
            for part in ("join", "message", "leave"):
                entry[f"{part}_cpu_ratio"] = ratio(sio[f"{part}_cpu_s"], row[f"{part}_cpu_s"])
            entry["cpu_with_redis_ratio"] = ratio(
                sio["server_cpu_s"] + sio["redis_cpu_s"], row["server_cpu_s"] + row["redis_cpu_s"]
            )
        ratios.append(entry)
    losses = sum(r["losses"] for r in rows)
    return {
        "rows": rows,
        "ratios": ratios,
        "losses": losses,
        "disorder": sum(r["disorder"] for r in rows),
        "presence_missing": sum(r["presence_missing"] for r in rows),
        "failures": len(results.failures),
    }


def render(results: Results, summary: dict[str, Any]) -> str:
    a = results.args
    rows, out = summary["rows"], []
    by = {(r["phase"], r["system"], r["subscribers"]): r for r in rows}
    rat = {(r["phase"], r["subscribers"]): r for r in summary["ratios"]}
    out.append("")
    out.append(f"iAvicenne against python-socketio: median of {a['repeats']} run(s), generator: {a['workers']} worker processes")
    for name, description in results.descriptions.items():
        out.append(f"  {name:16} {description}")
    out.append(f"  iAvicenne clients' join-room payload: {json.dumps(results.args['join_payload'])}")
    for phase, title in (("fanout", "(a) Fan-out, one server"), ("redis", "(b) Fan-out, two servers sharing Redis")):
        if not any(r["phase"] == phase for r in rows):
            continue
        out.append("")
        out.append(f"{title}: the publisher as fast as the subscribers take it")
        out.append(
            "| S | server | deliveries/s | server CPU µs/delivery | generator µs/delivery | losses | all runs (deliveries/s) |"
        )
        out.append("|---:|---|---:|---:|---:|---:|---|")
        for (ph, system, s), r in sorted(by.items(), key=lambda kv: (kv[0][2], kv[0][1])):
            if ph == phase:
                out.append(
                    f"| {s} | {system} | {r['per_second']:,.0f} | {r['server_us']:.1f} | {r['generator_us']:.1f} | "
                    f"{r['losses']} | {', '.join(f'{v:,}' for v in r['per_second_all'])} |"
                )
        for (ph, s), x in sorted(rat.items()):
            if ph == phase:
                out.append(
                    f"  S={s}: iAvicenne delivers {x['deliveries_ratio']:.2f}x python-socketio's rate; "
                    f"python-socketio spends {x['cpu_ratio']:.2f}x iAvicenne's CPU per delivery"
                )
    if any(r["phase"] == "joins" for r in rows):
        out.append("")
        out.append(f"(c) Joins: {a['joins']} users joining {a['join_batch']} at a time into one room, one server, then leaving")
        out.append(
            "| server | total s | join median ms | p90 ms | snapshot bytes (median) | bytes per join | "
            "server CPU ms/join | leaves total s | server CPU ms/leave |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (ph, system, _), r in sorted(by.items()):
            if ph == "joins":
                out.append(
                    f"| {system} | {r['join_seconds']:.1f} | {r['join_median_ms']:.1f} | {r['join_p90_ms']:.1f} | "
                    f"{r['snapshot_bytes']:,.0f} | {r['bytes_per_join']:,.0f} | {r['cpu_ms_per_join']:.2f} | "
                    f"{r['leave_seconds']:.1f} | {r['cpu_ms_per_leave']:.2f} |"
                )
        for (ph, _), x in sorted(rat.items()):
            if ph == "joins":
                out.append(
                    f"  python-socketio / iAvicenne: total time {x['join_time_ratio']:.2f}x, join median {x['join_median_ratio']:.2f}x, "
                    f"bytes per join {x['bytes_ratio']:.2f}x, CPU per join {x['cpu_ratio']:.2f}x, CPU per leave {x['leave_cpu_ratio']:.2f}x"
                )
    if any(r["phase"] == "whole" for r in rows):
        out.append("")
        out.append(
            f"(d) The whole run, two servers sharing Redis: {a['whole_subscribers']} users joining 10 at a time, "
            f"{a['whole_messages']} messages to all, everyone leaving 10 at a time"
        )
        out.append(
            "| server | total s | server CPU s (all server processes) | of which joins / messages / leaves | Redis CPU s | "
            "deliveries/s | losses | all runs (server CPU s) |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for (ph, system, _), r in sorted(by.items()):
            if ph == "whole":
                out.append(
                    f"| {system} | {r['seconds']:.1f} | {r['server_cpu_s']:.2f} | "
                    f"{r['join_cpu_s']:.2f} / {r['message_cpu_s']:.2f} / {r['leave_cpu_s']:.2f} | {r['redis_cpu_s']:.2f} | "
                    f"{r['per_second']:,.0f} | {r['losses']} | {', '.join(str(v) for v in r['server_cpu_all'])} |"
                )
        for (ph, _), x in sorted(rat.items()):
            if ph == "whole":
                lead = "leads" if x["cpu_ratio"] > 1 else "does not lead"
                out.append(
                    f"  python-socketio spends {x['cpu_ratio']:.2f}x iAvicenne's server CPU over the whole run "
                    f"({x['cpu_with_redis_ratio']:.2f}x with Redis's): iAvicenne {lead} (goal: above 1); "
                    f"joins {x['join_cpu_ratio']:.2f}x, messages {x['message_cpu_ratio']:.2f}x, leaves {x['leave_cpu_ratio']:.2f}x"
                )
    if results.failures:
        out.append("")
        out.append("Failures (the other systems were measured without them)")
        for f in results.failures:
            out.append(f"  {f['system']}, {f['phase']}: {f['error']} (logs: {f['logs']})")
    out.append("")
    out.append(
        f"Checks: losses and duplicates {summary['losses']}, out of order {summary['disorder']}, "
        f"presence announcements missing {summary['presence_missing']}, failures {summary['failures']}"
    )
    out.append(
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average before the run {a['load_before']}"
    )
    return "\n".join(out)


# -- command line ----------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: S=50, few messages, 1 run each, 100 joins, 60 users in the whole run"
    )
    parser.add_argument(
        "--phases",
        type=lambda v: v.split(","),
        default=list(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    parser.add_argument("-S", "--subscribers", type=int, nargs="+", default=None, help="fan-out room sizes (default: 50 500)")
    parser.add_argument(
        "-M", "--messages", type=int, default=None, help="messages per fan-out run (default: --deliveries / S, within 100..4000)"
    )
    parser.add_argument(
        "--deliveries", type=int, default=200_000, help="deliveries per fan-out run when -M is not given (default: 200000)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per fan-out and whole-run figure; medians reported (default: 3, 1 with --quick)",
    )
    parser.add_argument("--joins", type=int, default=None, help="users of the joins phase (default: 2000, 100 with --quick)")
    parser.add_argument(
        "--join-batch", type=int, default=10, help="users joining (and leaving) at once in the joins phase (default: 10)"
    )
    parser.add_argument("--join-repeats", type=int, default=1, help="runs of the joins phase per system (default: 1)")
    parser.add_argument(
        "--whole-subscribers", type=int, default=None, help="users of the whole run (default: 500, 60 with --quick)"
    )
    parser.add_argument(
        "--whole-messages", type=int, default=None, help="messages of the whole run (default: 200, 30 with --quick)"
    )
    parser.add_argument(
        "--iavicenne-join-fields",
        choices=["new", "seed"],
        default="new",
        help="'new': iAvicenne clients ask for a paged snapshot and batched presence (members_limit, presence: "
        "'batched', protocol additions; a server without them ignores the fields); 'seed': an empty payload (default: new)",
    )
    parser.add_argument("--members-limit", type=int, default=100, help="members_limit of the 'new' join fields (default: 100)")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="a Redis to use instead of starting one (its CPU is then not measured; keys under a unique prefix)",
    )
    parser.add_argument("--redis-server", default=None, help="the redis-server binary to start (default: the one on PATH)")
    parser.add_argument(
        "--window", type=int, default=20000, help="deliveries the publisher may be ahead of the subscribers (default: 20000)"
    )
    parser.add_argument(
        "--batch-ms", type=float, default=20.0, help="fan-out runs: generator workers read every this many ms (default: 20)"
    )
    parser.add_argument("--workers", type=int, default=None, help="load generator processes (default: 2)")
    parser.add_argument(
        "--loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="event loop of the generator workers"
    )
    parser.add_argument("--connect-concurrency", type=int, default=64, help="connections each worker opens at once (default: 64)")
    parser.add_argument(
        "--idle-timeout", type=float, default=10.0, help="seconds without a receipt after which missing messages count as lost"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (kept anyway when one fails)")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every run, the medians and the ratios to this JSON file"
    )
    args = parser.parse_args(argv)
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose among {', '.join(PHASES)}")
    q = args.quick
    args.subscribers = args.subscribers or ([50] if q else [50, 500])
    if args.messages is None and q:
        args.messages = 200
    args.repeats = args.repeats or (1 if q else 3)
    args.joins = args.joins or (100 if q else 2000)
    args.whole_subscribers = args.whole_subscribers or (60 if q else 500)
    args.whole_messages = args.whole_messages or (30 if q else 200)
    args.workers = args.workers or min(4, max(2, os.cpu_count() or 2))
    args.join_payload = (
        {"members_limit": args.members_limit, "presence": "batched"} if args.iavicenne_join_fields == "new" else {}
    )
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return args


async def main_async(args: argparse.Namespace) -> tuple[Results, dict[str, Any]]:
    workdir = new_workdir()
    systems: list[System] = []
    redis: RedisServer | None = None
    gen: PeerLoadGenerator | None = None
    needs_redis = bool({"redis", "whole"} & set(args.phases))
    try:
        if needs_redis and args.redis_url is None:
            redis = RedisServer(workdir, args.redis_server)
        redis_url = args.redis_url or (redis.url if redis else "")
        print(f"starting the servers (logs in {workdir}) and {args.workers} generator processes", file=sys.stderr)
        gen = PeerLoadGenerator(args.workers, args.loop)
        if {"fanout", "joins"} & set(args.phases):
            systems.append(System("iavicenne", IAVICENNE, launch("memory", workdir), False))
            sio = SocketIOServer(workdir, name="socketio").start()
            systems.append(
                System(
                    "socketio",
                    SOCKETIO,
                    Deployment("socketio", "python-socketio AsyncServer, aiohttp, one process", [sio]),
                    False,
                )
            )
        if needs_redis:
            systems.append(System("iavicenne-redis", IAVICENNE, launch("redis", workdir, redis_url=redis_url), True))
            prefix = f"siobench-{secrets.token_hex(4)}"
            servers = [SocketIOServer(workdir, name=f"socketio-redis-{k}", redis_url=redis_url, prefix=prefix) for k in range(2)]
            deployment = Deployment(
                "socketio-redis",
                "python-socketio AsyncServer, aiohttp, AsyncRedisManager, 2 processes; members in a Redis hash per room",
                [],
                redis_url=redis_url,
                redis_prefix=prefix,
            )
            systems.append(System("socketio-redis", SOCKETIO, deployment, True))
            for server in servers:
                deployment.servers.append(server.start())
        bench = Bench(args, systems, gen, redis)
        results = await bench.all()
    except BaseException:
        print(f"\nthe benchmark stopped; server logs are kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if gen is not None:
            gen.close()
        for system in systems:
            system.deployment.stop()
        if redis is not None:
            redis.stop()
    if results.failures or args.keep_logs:
        print(f"server logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, summarize(results)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that the servers and workers are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    raise_nofile_limit()  # inherited by the servers and the workers
    results, summary = asyncio.run(main_async(args))
    print(render(results, summary), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = summary | {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in results.args.items()},
            "measures": [asdict(m) for m in results.measures],
            "failures": results.failures,  # the list, not the summary's count
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    ok = summary["losses"] == 0 and summary["disorder"] == 0 and summary["presence_missing"] == 0 and not summary["failures"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
