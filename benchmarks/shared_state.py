"""Shared-state benchmark: a write in one kernel to the observer firing in another, against
the plain room message path, in the same run.

    python benchmarks/shared_state.py             # the full run (about 1 minute)
    python benchmarks/shared_state.py --quick     # a smoke run (about 15 s)
    python benchmarks/shared_state.py --broker redis --redis-url redis://127.0.0.1:6379/0

It starts a real `jupyter server` with the iAvicenne extension on 127.0.0.1 (rate limits
raised, as for every benchmark), and two Python clients (`iavicenne.RoomClient`, as a
kernel holds them), alice writing and bob observing, in one room. It measures, for each
path (a shared key: ``alice.shared["t"] = i``, bob's ``observe`` callback; a message:
``room.send({"i": i})``, bob's ``message`` event):

  * latency: --rate writes per second, median and p99 from the write to bob's callback;
  * sustained rate: --count writes as fast as bob takes them (at most --window not yet
    seen by bob), writes per second from the first write to the last one bob saw.

Both clients run in this process, on one event loop, so one clock times both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from iavicenne import RoomClient
from iavicenne.shared import SharedChange, share
from iavicenne_ext.testing import JupyterProcess

OPTIONS = {
    "messages_per_second": 100_000,
    "burst": 100_000,
    "bytes_per_second": 10**9,
    "burst_bytes": 10**9,
    "chat_messages_per_second": 100_000,
    "chat_messages_burst": 100_000,
}


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Path2:
    """One way from alice to bob: `write(i)` on alice's side, `seen[i]` when bob got it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.last = -1
        self.arrived = asyncio.Event()

    def got(self, i: int) -> None:
        """Bob has write `i`; a key holds the last value, so the writes before it that bob never
        saw as such (superseded before his callback ran) count as seen now, the later time."""
        if i <= self.last:
            return
        now = time.perf_counter()
        for j in range(max(self.last + 1, i - 100_000), i + 1):
            self.seen.setdefault(j, now)
        self.last = i
        self.arrived.set()

    async def wait_for(self, i: int, timeout: float = 30.0) -> None:
        deadline = time.perf_counter() + timeout
        while self.last < i:
            self.arrived.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{self.name}: write {i} not seen by bob within {timeout} s")
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                continue


async def latency(path: Path2, write: Any, count: int, rate: float, base: int) -> list[float]:
    delays: list[float] = []
    for n in range(count):
        i = base + n
        path.sent[i] = time.perf_counter()
        write(i)
        await asyncio.sleep(1.0 / rate)
    await path.wait_for(base + count - 1)
    for n in range(count):
        i = base + n
        delays.append((path.seen[i] - path.sent[i]) * 1000)
    return sorted(delays)


async def sustained(path: Path2, write: Any, count: int, window: int, base: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        i = base + n
        if n >= window:
            await path.wait_for(i - window)
        write(i)
        await asyncio.sleep(0)  # one update per write: the shared state batches a loop turn's writes
    await path.wait_for(base + count - 1)
    return count / (time.perf_counter() - start)


async def run(args: argparse.Namespace, server: JupyterProcess) -> dict[str, dict[str, float]]:
    alice_client = await RoomClient.connect(url=server.url, token=server.token, user_id="alice")
    bob_client = await RoomClient.connect(url=server.url, token=server.token, user_id="bob")
    try:
        alice_room = await alice_client.join("bench-shared")
        bob_room = await bob_client.join("bench-shared")
        alice, bob = share(alice_room), share(bob_room)
        await alice.synced()
        await bob.synced()
        shared_path, message_path = Path2("shared"), Path2("message")

        def on_shared(change: SharedChange) -> None:
            if "t" in change.keys and not change.local:
                shared_path.got(int(bob["t"]))

        bob.observe(on_shared)
        bob_room.on("message", lambda m: message_path.got(int(m.content["i"])))

        def write_shared(i: int) -> None:
            alice["t"] = i

        acks: list[asyncio.Future[dict[str, Any]]] = []

        def write_message(i: int) -> None:
            acks.append(alice_room.send_nowait({"i": i}))

        results: dict[str, dict[str, float]] = {}
        paths = ((message_path, write_message), (shared_path, write_shared))
        base = 0
        # the latency runs of both paths first, then the sustained ones: neither path's
        # latency is measured in the wake of the other's flood
        for path, write in paths:
            await latency(path, write, 20, args.rate, base)  # warm-up
            base += 20
            delays = await latency(path, write, args.latency_count, args.rate, base)
            base += args.latency_count
            results[path.name] = {"median_ms": statistics.median(delays), "p99_ms": percentile(delays, 0.99)}
        for path, write in paths:
            results[path.name]["per_second"] = await sustained(path, write, args.count, args.window, base)
            base += args.count
        await asyncio.wait_for(asyncio.gather(*acks), 60)  # every message acknowledged before closing
        return results
    finally:
        await alice_client.close()
        await bob_client.close()


def render(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        f"shared state vs room messages, broker {args.broker}, {args.latency_count} writes at {args.rate:g}/s "
        f"for latency, {args.count} (window {args.window}) for the sustained rate",
        f"{'path':<10} {'median ms':>10} {'p99 ms':>8} {'writes/s':>10}",
    ]
    for name in ("message", "shared"):
        r = results[name]
        lines.append(f"{name:<10} {r['median_ms']:>10.2f} {r['p99_ms']:>8.2f} {r['per_second']:>10.0f}")
    ratio = results["shared"]["per_second"] / results["message"]["per_second"]
    lines.append(f"shared / message sustained rate: {ratio:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--broker", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second of the latency runs (default: 50)")
    parser.add_argument("--latency-count", type=int, default=None, help="writes per latency run (default: 500)")
    parser.add_argument("--count", type=int, default=None, help="writes of the sustained run (default: 5000)")
    parser.add_argument("--window", type=int, default=50, help="writes not yet seen by bob, at most (default: 50)")
    args = parser.parse_args(argv)
    args.latency_count = args.latency_count or (100 if args.quick else 500)
    args.count = args.count or (500 if args.quick else 5000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options: dict[str, Any] = {**OPTIONS, "broker": args.broker}
    if args.broker == "redis":
        options.update(redis_url=args.redis_url, redis_prefix=f"bench-shared-{time.time_ns()}")
    with tempfile.TemporaryDirectory(prefix="iav-shared-bench-") as workdir:
        server = JupyterProcess(Path(workdir), name="bench", options=options).start()
        try:
            # a setting the extension refused leaves it on its defaults (rate limits included)
            log = (server.workdir / "server.log").read_text()
            if f"rooms on the {args.broker} broker" not in log or "TraitError" in log:
                raise SystemExit(f"the server did not take the benchmark's options:\n{log[-3000:]}")
            results = asyncio.run(run(args, server))
        except BaseException:
            print((server.workdir / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
