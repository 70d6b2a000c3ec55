"""What keeping rooms costs: the SQLite store (the default broker) against the memory broker,
measured in the same run (issue 23).

    python benchmarks/store.py             # the full run (a few minutes)
    python benchmarks/store.py --quick     # a smoke run
    python benchmarks/store.py --phases restart,history

It starts real `jupyter server`s with iAvicenne on 127.0.0.1 (rate limits raised, as for
every benchmark), one on the store and one on the memory broker, and measures:

  * restart: alice sends --restart-messages messages and gets every ack; the server is
    SIGKILLed 0.1 s after the last ack (or stopped cleanly, SIGTERM) and started again on
    the same data directory; bob joins with since=0: the messages kept;
  * fan-out: deliveries per second at 50 and 500 subscribers (fanout.py's throughput runs,
    its load generator and its windowed publisher), and the p50/p99 of 50 messages/s to 50
    subscribers; the store's ratio to the memory broker's;
  * history: a room holding --history messages; then one more message: from alice's send
    to bob's receipt, and to alice's ack (which, on the store, waits for its commit); and a
    join with since=0 (room-joined to the last message replayed), with its bytes.

Every figure is the median of --repeats runs (the servers interleaved: the machine is
shared). Results to stdout; progress (tqdm) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deployments import ROOM_PATH, Deployment, jupyter, new_workdir
from fanout import Bench, Run
from fanout import parse_args as fanout_args
from loadgen import Endpoint, LoadGenerator, frame_type, raise_nofile_limit
from loadgen import WSClient as LoadClient
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect
from tqdm import tqdm

import iavicenne_protocol as p
from iavicenne_ext.testing import LOOPBACK, JupyterProcess, WSClient

TARGET_FANOUT_RATIO = 0.9  # of the memory broker's deliveries per second
TARGET_ONE_MORE_MS = 1.0  # one more message in a room of 10,000
TARGET_JOIN_MS = 100.0  # a join replaying 10,000 messages
BROKERS = {"store": "sqlite", "memory": "memory"}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def connect(server: JupyterProcess, user_id: str) -> WSClient:
    request = HTTPRequest(server.ws_url(), headers={"Authorization": f"token {server.token}"})
    client = WSClient(await websocket_connect(request, max_message_size=1 << 30))
    await client.send({"type": p.CONNECT, "payload": {"user_id": user_id}})
    await client.expect(p.CONNECT)
    return client


async def say(client: WSClient, room: str, count: int, prefix: str, bar: tqdm | None = None) -> float:
    """Send `count` messages with refs, as fast as the acks come back (at most 200 ahead);
    the time of the last ack."""
    window = 200
    acked = 0
    for n in range(count):
        await client.send({"type": p.MESSAGE, "room": room, "ref": f"{prefix}{n}", "payload": {"content": f"message {n}"}})
        if n - acked >= window:
            await client.expect(p.ACK, timeout=60)
            acked += 1
            if bar is not None:
                bar.update(1)
    while acked < count:
        frame = await client.expect(p.ACK, timeout=60)
        assert not frame.get("duplicate"), frame
        acked += 1
        if bar is not None:
            bar.update(1)
    return time.monotonic()


class Raw:
    """A room socket of loadgen.py's (frames counted as they arrive, not decoded): what the
    server sends is measured, not this client's JSON."""

    def __init__(self, server: JupyterProcess) -> None:
        self.endpoint = Endpoint(LOOPBACK, server.port, ROOM_PATH, server.token)
        self.client: LoadClient | None = None
        self.waiting: tuple[bytes, bytes, asyncio.Future[float]] | None = None  # (type, bytes in it, answered)
        self.messages = 0
        self.bytes = 0
        self.last = 0.0

    def _on_text(self, data: bytes) -> None:
        kind = frame_type(data)
        self.bytes += len(data)
        if kind == b"message":
            self.messages += 1
            self.last = time.perf_counter()
        if self.waiting is not None:
            wanted, marker, answered = self.waiting
            if kind == wanted and marker in data and not answered.done():
                answered.set_result(time.perf_counter())

    async def connect(self, user_id: str) -> Raw:
        self.client = await LoadClient.connect(self.endpoint, self._on_text)
        assert self.client.transport is not None  # no Nagle: a probe leaves when it is sent
        self.client.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self.ask({"type": p.CONNECT, "payload": {"user_id": user_id}}, b"connect", b"")
        return self

    def expect(self, kind: bytes, marker: bytes) -> asyncio.Future[float]:
        answered: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting = (kind, marker, answered)
        return answered

    async def ask(self, frame: dict[str, Any], kind: bytes, marker: bytes) -> float:
        answered = self.expect(kind, marker)
        assert self.client is not None
        self.client.send(frame)
        return await asyncio.wait_for(answered, 120)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def replay(server: JupyterProcess, room: str, user_id: str) -> tuple[int, float, int]:
    """Join `room` with since=0: the messages replayed, the seconds from the join-room to the
    last of them, and the bytes received until then."""
    reader = await Raw(server).connect(user_id)
    try:
        reader.messages, reader.bytes = 0, 0
        t0 = time.perf_counter()
        # the joiner's own user-joined follows the replay
        await reader.ask({"type": p.JOIN_ROOM, "room": room, "payload": {"since": 0}}, b"user-joined", user_id.encode())
        return reader.messages, reader.last - t0, reader.bytes
    finally:
        await reader.close()


# -- restart ------------------------------------------------------------------------------
async def restart_once(workdir: Path, broker: str, how: str, messages: int, label: str) -> int:
    server = jupyter(workdir, label, broker=broker).start()
    try:
        alice = await connect(server, "alice")
        await alice.join("r")
        await say(alice, "r", messages, "m")
        await asyncio.sleep(0.1)
        alice.close()
        if how == "SIGKILL":
            server.kill()
        else:
            server.stop()
        await asyncio.to_thread(server.start)
        kept, _, _ = await replay(server, "r", "bob")
        return kept
    finally:
        server.stop()


async def restart_phase(args: argparse.Namespace, workdir: Path) -> list[str]:
    kept: dict[tuple[str, str], list[int]] = {}
    runs = [(name, how) for how in ("SIGKILL", "clean stop") for name in BROKERS]
    with tqdm(total=len(runs) * args.repeats, desc="restart", unit="restart", file=sys.stderr) as bar:
        for repeat in range(args.repeats):
            for name, how in runs:
                label = f"restart-{name}-{how.replace(' ', '-')}-{repeat}"
                kept.setdefault((name, how), []).append(
                    await restart_once(workdir, BROKERS[name], how, args.restart_messages, label)
                )
                bar.update(1)
    lines = [f"restart: {args.restart_messages} acknowledged messages, then the server stopped and started again"]
    for how in ("SIGKILL", "clean stop"):
        store, memory = median(kept[("store", how)]), median(kept[("memory", how)])
        when = "SIGKILL 0.1 s after the last ack" if how == "SIGKILL" else "a clean stop (SIGTERM)"
        met = "met" if store == args.restart_messages else "NOT met"
        lines.append(
            f"  after {when}: store keeps {store:.0f}/{args.restart_messages}, memory {memory:.0f}/{args.restart_messages}"
            f"  [target {args.restart_messages}/{args.restart_messages}: {met}]"
        )
    return lines


# -- fan-out: fanout.py's runs, store and memory ---------------------------------------------
async def fanout_phase(args: argparse.Namespace, workdir: Path) -> list[str]:
    options = ["--without-minimal", "--phases", "throughput,latency", "--repeats", str(args.repeats)]
    options += ["-S", *[str(s) for s in args.subscribers]]
    if args.quick:
        options += ["--messages", "300", "--rate-messages", "50"]
    bench_args = fanout_args(options)
    generator = LoadGenerator(bench_args.workers, bench_args.loop)
    deployments: list[Deployment] = []
    try:
        for name, broker in BROKERS.items():
            server = jupyter(workdir, f"fanout-{name}", broker=broker).start()
            deployments.append(Deployment(name, f"iAvicenne, {broker}", [server]))
        bench = Bench(bench_args, deployments, generator)
        with tqdm(total=bench.total_steps(), desc="fan-out", unit="run", file=sys.stderr) as bench.runs_bar:
            for subscribers in bench.fanout_sizes:
                await bench.fanout_phase(subscribers)
        runs = bench.results.runs
        failures = bench.results.failures
    finally:
        generator.close()
        for deployment in deployments:
            deployment.stop()
    lines = ["fan-out: one publisher, S subscribers in one room (fanout.py's runs), median of the runs"]
    for failure in failures:
        lines.append(f"  FAILED {failure.deployment} {failure.phase}: {failure.error}")

    def of(name: str, mode: str, subscribers: int) -> list[Run]:
        return [r for r in runs if r.deployment == name and r.mode == mode and r.subscribers == subscribers]

    for subscribers in args.subscribers:
        store = median([r.per_second for r in of("store", "throughput", subscribers)])
        memory = median([r.per_second for r in of("memory", "throughput", subscribers)])
        losses = sum(r.losses for name in BROKERS for r in of(name, "throughput", subscribers))
        ratio = store / memory if memory else float("nan")
        met = "met" if ratio >= TARGET_FANOUT_RATIO else "NOT met"
        lines.append(
            f"  S={subscribers}: store {store:,.0f} deliveries/s, memory {memory:,.0f}/s: ratio {ratio:.2f} "
            f"[target >= {TARGET_FANOUT_RATIO}: {met}], losses {losses}"
        )
    rate = {name: of(name, "rate", bench_args.rate_subscribers) for name in BROKERS}
    if rate["store"] and rate["memory"]:
        p50 = {name: median([r.p50_ms for r in runs]) for name, runs in rate.items()}
        p99 = {name: median([r.p99_ms for r in runs]) for name, runs in rate.items()}
        met = "met" if p50["store"] - p50["memory"] <= 1.0 else "NOT met"
        lines.append(
            f"  {bench_args.rate:g} messages/s to {bench_args.rate_subscribers}: p50 store {p50['store']:.2f} ms, memory "
            f"{p50['memory']:.2f} ms [target within 1 ms: {met}]; p99 store {p99['store']:.2f} ms, memory {p99['memory']:.2f} ms"
        )
    return lines


# -- a room with a long history ------------------------------------------------------------------
async def one_more(alice: Raw, bob: Raw, room: str, n: int) -> tuple[float, float]:
    """alice sends one message: seconds to bob's receipt, and to alice's ack."""
    ref = f'"x{n}"'.encode()
    received = bob.expect(b"message", ref)
    t0 = time.perf_counter()
    acked = await alice.ask({"type": p.MESSAGE, "room": room, "ref": f"x{n}", "payload": {"content": n}}, b"ack", ref)
    return await asyncio.wait_for(received, 60) - t0, acked - t0


async def history_phase(args: argparse.Namespace, workdir: Path) -> list[str]:
    size = args.history
    budgets = {"history_size": size * 2, "history_bytes_per_room": 1 << 30, "max_replay_bytes": 1 << 30}
    servers = {name: jupyter(workdir, f"history-{name}", broker=broker, **budgets) for name, broker in BROKERS.items()}
    for server in servers.values():
        server.options["max_outbound_bytes"] = 1 << 30
        server.launch()
    delivery: dict[str, list[float]] = {name: [] for name in servers}
    acks: dict[str, list[float]] = {name: [] for name in servers}
    joins: dict[str, list[float]] = {name: [] for name in servers}
    sizes: dict[str, list[int]] = {name: [] for name in servers}
    try:
        clients: dict[str, tuple[Raw, Raw]] = {}
        with tqdm(total=size * len(servers), desc=f"filling {size:,}-message rooms", unit="msg", file=sys.stderr) as bar:
            for name, server in servers.items():
                server.wait_serving()
                filler = await connect(server, "filler")
                await filler.join("long")
                await say(filler, "long", size, "h", bar)
                filler.close()
                alice, bob = await Raw(server).connect("alice"), await Raw(server).connect("bob")
                for member in (alice, bob):
                    await member.ask({"type": p.JOIN_ROOM, "room": "long", "payload": {}}, b"room-joined", b"")
                clients[name] = (alice, bob)
        probes = args.probes
        with tqdm(total=probes * len(servers) * args.repeats, desc="one more message", unit="msg", file=sys.stderr) as bar:
            for k in range(probes * args.repeats):
                for name, (alice, bob) in clients.items():
                    received, ack = await one_more(alice, bob, "long", k)
                    delivery[name].append(received)
                    acks[name].append(ack)
                    bar.update(1)
        with tqdm(total=args.repeats * len(servers), desc=f"joins replaying {size:,}", unit="join", file=sys.stderr) as bar:
            for repeat in range(args.repeats):
                for name, server in servers.items():
                    count, seconds, received_bytes = await replay(server, "long", f"reader{repeat}")
                    assert count >= size, (name, count)
                    joins[name].append(seconds)
                    sizes[name].append(received_bytes)
                    bar.update(1)
        for alice, bob in clients.values():
            await alice.close()
            await bob.close()
    finally:
        for server in servers.values():
            server.stop()
    ms = {name: 1000 * median(values) for name, values in delivery.items()}
    ack_ms = {name: 1000 * median(values) for name, values in acks.items()}
    join_ms = {name: 1000 * median(values) for name, values in joins.items()}
    met = "met" if ms["store"] < TARGET_ONE_MORE_MS else "NOT met"
    join_met = "met" if join_ms["store"] < TARGET_JOIN_MS else "NOT met"
    return [
        f"a room with {size:,} messages of history (medians; {args.probes * args.repeats} messages, {args.repeats} joins)",
        f"  one more message, send to another member's receipt: store {ms['store']:.2f} ms, memory {ms['memory']:.2f} ms "
        f"[target < {TARGET_ONE_MORE_MS:g} ms: {met}]",
        f"  its ack (the store's waits for the commit): store {ack_ms['store']:.2f} ms, memory {ack_ms['memory']:.2f} ms",
        f"  a join replaying them all: store {join_ms['store']:.1f} ms, memory {join_ms['memory']:.1f} ms "
        f"[target < {TARGET_JOIN_MS:g} ms: {join_met}]; {median(sizes['store']) / 1e6:.2f} MB sent "
        f"(memory {median(sizes['memory']) / 1e6:.2f} MB)",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, S=50 only, 1,000 messages of history")
    parser.add_argument("--phases", type=lambda v: v.split(","), default=["restart", "fanout", "history"])
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure, the median reported (default: 3)")
    parser.add_argument("--restart-messages", type=int, default=100)
    parser.add_argument("-S", "--subscribers", type=int, nargs="+", default=None, help="room sizes (default: 50 500)")
    parser.add_argument("--history", type=int, default=None, help="messages of history (default: 10000)")
    parser.add_argument("--probes", type=int, default=100, help="one-more-message probes per repeat (default: 100)")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.subscribers is None:
        args.subscribers = [50] if args.quick else [50, 500]
    if args.history is None:
        args.history = 1000 if args.quick else 10_000
    unknown = set(args.phases) - {"restart", "fanout", "history"}
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}")
    return args


async def main_async(args: argparse.Namespace) -> list[str]:
    workdir = new_workdir()
    print(f"server logs in {workdir}", file=sys.stderr)
    lines = [f"iAvicenne's store (broker='sqlite', the default) against broker='memory', same run, on {os.cpu_count()} CPUs"]
    phases = {"restart": restart_phase, "fanout": fanout_phase, "history": history_phase}
    for phase in args.phases:
        lines += [""] + await phases[phase](args, workdir)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_nofile_limit()
    print("\n".join(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
