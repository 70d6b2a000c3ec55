"""Fan-out benchmark: one publisher, S subscribers in one room, iAvicenne against a minimal server.

    python benchmarks/fanout.py              # the full run (a few minutes)
    python benchmarks/fanout.py --quick      # a smoke run (under a minute)
    python benchmarks/fanout.py --broker redis   # adds two Jupyter servers sharing one Redis

In one run it starts, on 127.0.0.1 only:
  * a real `jupyter server` with the iAvicenne extension (memory broker), rate limits raised;
  * benchmarks/minimal_server.py, a Tornado server that does only what the protocol needs
    (parse the frame, encode the broadcast once, write it to every member): the baseline;
  * with ``--broker redis``, two Jupyter servers sharing the Redis at --redis-url, the
    subscribers spread over both;
and measures, for each, with the same load generator (worker processes, see loadgen.py):
  * throughput: the publisher sends M messages as fast as the subscribers take them (at
    most --window messages not yet received), deliveries per second = S*M / time from the
    first send to the last receipt;
  * latency: 50 messages/s to 50 subscribers, p50/p99 from send to receipt;
  * losses: every subscriber must receive every message exactly once;
  * memory: RSS added to the server process(es) by --idle connections joined to one room.
Every figure is the median of --repeats runs, the runs of the servers interleaved, because
the machine is shared. The generator drives the minimal server faster than ours: that is
the evidence that the generator is not what limits our figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tqdm import tqdm  # noqa: E402

from loadgen import LoadGenerator, Publisher, raise_nofile_limit  # noqa: E402
from servers import Deployment, launch, new_workdir  # noqa: E402

TARGET_RATIO = 0.8  # of the minimal server's deliveries per second (issue 2)
TARGET_RATIO_REDIS = 0.6  # with the Redis broker (issue 3)
TARGET_P99_MS = 25.0  # at 50 subscribers, 50 messages/s
TARGET_IDLE_MIB = 100.0  # added by 2,000 idle connections in one room
MiB = 1024 * 1024


@dataclass
class Run:
    """One measured run of one deployment."""

    deployment: str
    mode: str  # "throughput" or "rate"
    subscribers: int
    messages: int
    delivered: int = 0
    losses: int = 0
    duplicates: int = 0
    disorder: int = 0
    closed: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    server_cpu: float = 0.0  # % of one core, summed over the deployment's processes
    generator_cpu: float = 0.0  # % of one core, summed over workers and publisher


@dataclass
class Memory:
    deployment: str
    connections: int
    before: int
    after: int
    seconds: float

    @property
    def added_mib(self) -> float:
        return (self.after - self.before) / MiB

    @property
    def per_connection_kib(self) -> float:
        return (self.after - self.before) / 1024 / max(1, self.connections)


@dataclass
class Results:
    args: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


class Bench:
    """Runs the phases against every deployment with one load generator."""

    def __init__(self, args: argparse.Namespace, deployments: list[Deployment], generator: LoadGenerator) -> None:
        self.args = args
        self.deployments = deployments
        self.gen = generator
        self.results = Results(vars(args).copy(), descriptions={d.name: d.description for d in deployments})
        self.next_i = 0  # message indexes never repeat across runs, so a late frame is never counted twice
        self.runs_bar: tqdm | None = None

    # -- helpers ----------------------------------------------------------------------
    async def join(self, deployment: Deployment, group: str, room: str, prefix: str, count: int, label: str) -> None:
        """Connect `count` subscribers (spread over workers, and over the deployment's servers)."""
        # subscriber k is user `prefix-k` on server k % len(endpoints), held by worker k % workers
        workers = len(self.gen.pipes)
        per_worker = [
            {
                "group": group,
                "endpoints": deployment.endpoints,
                "room": room,
                "users": [(f"{prefix}-{k}", k % len(deployment.endpoints)) for k in range(w, count, workers)],
                "concurrency": self.args.connect_concurrency,
                "timeout": 60.0,
            }
            for w in range(workers)
        ]
        with tqdm(total=count, desc=f"{label}: connecting", unit="conn", leave=False, file=sys.stderr) as bar:
            task = asyncio.ensure_future(self.gen.call("join", per_worker))
            base = await self._connections_open(deployment)
            while not task.done():
                await asyncio.sleep(0.2)
                bar.n = min(count, max(0, await self._connections_open(deployment) - base))
                bar.refresh()
            await task
            bar.n = count
            bar.refresh()

    async def _connections_open(self, deployment: Deployment) -> int:
        import psutil

        total = 0
        for pid in deployment.pids:
            try:
                total += sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.status == "ESTABLISHED")
            except psutil.Error:
                pass
        return total

    async def generator_cpu(self) -> float:
        return sum(await self.gen.call("cpu")) + time.process_time()

    async def wait_counted(self, target: int, bar: tqdm | None, start: int) -> None:
        """Until `target` messages are counted, or nothing arrives for --idle-timeout s."""
        last_count, last_change = -1, time.monotonic()
        while True:
            count = self.gen.counted()
            if bar is not None:
                bar.n = count - start
                bar.refresh()
            if count >= target:
                return
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            elif now - last_change > self.args.idle_timeout:
                return
            await asyncio.sleep(0.02)

    # -- one run ------------------------------------------------------------------------
    async def run(self, deployment: Deployment, publisher: Publisher, group: str, subscribers: int, mode: str, messages: int) -> Run:
        base, self.next_i = self.next_i, self.next_i + messages
        record = mode == "rate"
        batch_ms = 0.0 if record else self.args.batch_ms
        await self.gen.call("expect", group=group, base=base, count=messages, record=record, batch_ms=batch_ms)
        expected = subscribers * messages
        start = self.gen.counted()
        cpu0, gcpu0 = deployment.cpu_seconds(), await self.generator_cpu()
        label = f"{deployment.name} S={subscribers} {mode}"
        bar = tqdm(total=expected, desc=label, unit="msg", unit_scale=True, leave=False, file=sys.stderr, mininterval=0.2)
        waiter = asyncio.ensure_future(self._progress(bar, start))
        loop = asyncio.get_running_loop()
        t0 = time.time()
        try:
            if mode == "throughput":
                window = max(4, self.args.window // subscribers)
                for k in range(messages):
                    if k >= window:
                        floor = start + (k - window + 1) * subscribers
                        while self.gen.counted() < floor:
                            await asyncio.sleep(0.001)
                            deployment.check_alive()
                    publisher.publish(base + k)
                    if k % 16 == 15:
                        await asyncio.sleep(0)
            else:
                interval, begin = 1.0 / self.args.rate, loop.time()
                for k in range(messages):
                    delay = begin + k * interval - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    publisher.publish(base + k)
            await self.wait_counted(start + expected, None, start)
        finally:
            waiter.cancel()
            bar.close()
        wall = time.time() - t0
        cpu1, gcpu1 = deployment.cpu_seconds(), await self.generator_cpu()
        reports = await self.gen.call("report", group=group)
        received = [n for report in reports for n in report["received"]]
        last = max((r["last"] for r in reports), default=0.0)
        result = Run(deployment.name, mode, subscribers, messages)
        result.delivered = sum(received)
        result.losses = expected - result.delivered
        result.duplicates = sum(r["duplicates"] for r in reports)
        result.disorder = sum(r["disorder"] for r in reports)
        result.closed = sum(r["closed"] for r in reports)
        result.seconds = (last - t0) if last else wall
        result.per_second = result.delivered / result.seconds if result.seconds > 0 else 0.0
        result.server_cpu = 100 * (cpu1 - cpu0) / wall
        result.generator_cpu = 100 * (gcpu1 - gcpu0) / wall
        if record:
            latencies = array("d")
            for r in reports:
                latencies.frombytes(r["latencies"])
            ordered = sorted(latencies)
            result.p50_ms = 1000 * percentile(ordered, 0.50)
            result.p99_ms = 1000 * percentile(ordered, 0.99)
            result.max_ms = 1000 * ordered[-1] if ordered else math.nan
        return result

    async def _progress(self, bar: tqdm, start: int) -> None:
        while True:
            bar.n = self.gen.counted() - start
            bar.refresh()
            await asyncio.sleep(0.25)

    def record(self, run: Run, measured: bool = True) -> None:
        if measured:
            self.results.runs.append(run)
        if self.runs_bar is not None:
            self.runs_bar.update(1)
            if measured:
                note = f"p99 {run.p99_ms:.1f} ms" if run.mode == "rate" else f"{run.per_second:,.0f}/s"
                self.runs_bar.set_postfix_str(f"last: {run.deployment} S={run.subscribers} {run.mode} {note}, losses {run.losses}")

    # -- phases -------------------------------------------------------------------------
    async def memory_phase(self, deployment: Deployment) -> None:
        """RSS added by --idle connections joined to one room (each its own user)."""
        count = self.args.idle
        await self._warm_up(deployment)
        before = await self._settled_rss(deployment)
        t0 = time.monotonic()
        group = f"idle-{deployment.name}"
        await self.join(deployment, group, "idle", "idle", count, f"{deployment.name} memory")
        seconds = time.monotonic() - t0
        after = await self._settled_rss(deployment)
        self.results.memory.append(Memory(deployment.name, count, before, after, seconds))
        with tqdm(total=count, desc=f"{deployment.name} memory: closing", unit="conn", leave=False, file=sys.stderr) as bar:
            await self.gen.call("close", group=group)
            bar.update(count)
        if self.runs_bar is not None:
            self.runs_bar.update(1)

    async def _warm_up(self, deployment: Deployment) -> None:
        """Exercise every code path once, so lazy imports and caches are not counted as memory."""
        publisher = Publisher("warm-up")
        await publisher.join(deployment.endpoints[0], "warm-up-publisher")
        await self.join(deployment, "warm-up", "warm-up", "warm", 4, f"{deployment.name} warm-up")
        await self.run(deployment, publisher, "warm-up", 4, "throughput", 50)
        await self.gen.call("close", group="warm-up")
        await publisher.close()

    async def _settled_rss(self, deployment: Deployment) -> int:
        """RSS once it stops moving (frames still being written inflate it for a moment)."""
        previous = deployment.rss()
        for _ in range(40):
            await asyncio.sleep(0.25)
            current = deployment.rss()
            if abs(current - previous) < 64 * 1024:
                return current
            previous = current
        return previous

    async def fanout_phase(self, subscribers: int) -> None:
        """Throughput (and latency, at --rate-subscribers) for S subscribers on every deployment."""
        args = self.args
        room = f"fanout-{subscribers}"
        publishers: dict[str, Publisher] = {}
        for deployment in self.deployments:
            group = f"{deployment.name}-{subscribers}"
            await self.join(deployment, group, room, f"sub{subscribers}", subscribers, f"{deployment.name} S={subscribers}")
            publishers[deployment.name] = publisher = Publisher(room)
            await publisher.join(deployment.endpoints[0])
            # warm-up: also drains the presence frames of the joins above
            self.record(await self.run(deployment, publisher, group, subscribers, "throughput", max(50, self.messages_for(subscribers) // 10)), measured=False)
        order = list(self.deployments)
        for repeat in range(args.repeats):
            for deployment in order if repeat % 2 == 0 else reversed(order):
                group = f"{deployment.name}-{subscribers}"
                run = await self.run(deployment, publishers[deployment.name], group, subscribers, "throughput", self.messages_for(subscribers))
                self.record(run)
        if subscribers == args.rate_subscribers:
            for repeat in range(args.repeats):
                for deployment in order if repeat % 2 == 0 else reversed(order):
                    group = f"{deployment.name}-{subscribers}"
                    self.record(await self.run(deployment, publishers[deployment.name], group, subscribers, "rate", args.rate_messages))
        for deployment in self.deployments:
            await self.gen.call("close", group=f"{deployment.name}-{subscribers}")
            await publishers[deployment.name].close()

    def messages_for(self, subscribers: int) -> int:
        if self.args.messages is not None:
            return self.args.messages
        # about the same number of deliveries per run at every S, so runs last alike
        return max(200, min(4000, self.args.deliveries // subscribers))

    def total_steps(self) -> int:
        a = self.args
        steps = len(self.deployments) * (1 if a.idle else 0)
        for s in a.subscribers:
            steps += len(self.deployments) * (1 + a.repeats + (a.repeats if s == a.rate_subscribers else 0))
        return steps

    async def all(self) -> Results:
        with tqdm(total=self.total_steps(), desc="fanout", unit="run", file=sys.stderr) as self.runs_bar:
            if self.args.idle:
                for deployment in self.deployments:
                    await self.memory_phase(deployment)
            for subscribers in self.args.subscribers:
                await self.fanout_phase(subscribers)
        self.runs_bar = None
        return self.results


# -- report -----------------------------------------------------------------------------
def summarize(results: Results) -> dict[str, Any]:
    """Medians per (deployment, mode, S) and the verdicts against the targets."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in results.runs:
        groups.setdefault((run.deployment, run.mode, run.subscribers), []).append(run)
    rows = []
    for (name, mode, subscribers), runs in groups.items():
        rows.append(
            {
                "deployment": name,
                "mode": mode,
                "subscribers": subscribers,
                "messages": runs[0].messages,
                "runs": len(runs),
                "per_second": median([r.per_second for r in runs]),
                "per_second_all": [round(r.per_second) for r in runs],
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "max_ms": max((r.max_ms for r in runs if not math.isnan(r.max_ms)), default=math.nan),
                "losses": sum(r.losses for r in runs),
                "duplicates": sum(r.duplicates for r in runs),
                "disorder": sum(r.disorder for r in runs),
                "server_cpu": median([r.server_cpu for r in runs]),
                "generator_cpu": median([r.generator_cpu for r in runs]),
            }
        )
    by_key = {(r["deployment"], r["mode"], r["subscribers"]): r for r in rows}
    for row in rows:
        minimal = by_key.get(("minimal", row["mode"], row["subscribers"]))
        row["ratio"] = row["per_second"] / minimal["per_second"] if minimal and minimal["per_second"] else math.nan
    verdicts = []
    total_losses = sum(r["losses"] + r["duplicates"] for r in rows)
    for row in rows:
        if row["mode"] != "throughput" or row["deployment"] == "minimal":
            continue
        target = TARGET_RATIO_REDIS if row["deployment"] == "redis" else TARGET_RATIO
        verdicts.append(
            (
                f"throughput {row['deployment']} S={row['subscribers']}: {row['ratio']:.2f} of the minimal server (target >= {target})",
                row["ratio"] >= target,
            )
        )
    for row in rows:
        if row["mode"] == "rate" and row["deployment"] != "minimal":
            verdicts.append(
                (f"latency {row['deployment']} S={row['subscribers']}: p99 {row['p99_ms']:.1f} ms (target < {TARGET_P99_MS:g} ms)", row["p99_ms"] < TARGET_P99_MS)
            )
    for mem in results.memory:
        if mem.deployment != "minimal":
            scaled = mem.added_mib * 2000 / max(1, mem.connections)
            note = "" if mem.connections == 2000 else f", {scaled:.1f} MiB scaled to 2,000"
            verdicts.append(
                (
                    f"memory {mem.deployment}: {mem.connections} idle connections add {mem.added_mib:.1f} MiB{note} (target < {TARGET_IDLE_MIB:g} MiB for 2,000)",
                    scaled < TARGET_IDLE_MIB,
                )
            )
    verdicts.append((f"losses: {total_losses} (every subscriber got every message exactly once)", total_losses == 0))
    return {"rows": rows, "verdicts": verdicts, "losses": total_losses}


def render(results: Results, summary: dict[str, Any], generator_workers: int) -> str:
    out: list[str] = []
    rows = summary["rows"]
    a = results.args
    order = {"minimal": 0, "memory": 1, "redis": 2}
    out.append("")
    out.append(f"Fan-out: 1 publisher, S subscribers in one room; median of {a['repeats']} run(s); generator: {generator_workers} worker processes")
    for name, description in results.descriptions.items():
        out.append(f"  {name:8} {description}")
    out.append("")
    out.append("Throughput (publisher as fast as the subscribers take it)")
    out.append("| S | server | messages | deliveries/s | ratio to minimal | losses | server CPU | generator CPU | all runs |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for row in sorted((r for r in rows if r["mode"] == "throughput"), key=lambda r: (r["subscribers"], order.get(r["deployment"], 9))):
        out.append(
            f"| {row['subscribers']} | {row['deployment']} | {row['messages']} | {row['per_second']:,.0f} | {row['ratio']:.2f} | "
            f"{row['losses'] + row['duplicates']} | {row['server_cpu']:.0f}% | {row['generator_cpu']:.0f}% | {', '.join(f'{v:,}' for v in row['per_second_all'])} |"
        )
    latency = [r for r in rows if r["mode"] == "rate"]
    if latency:
        out.append("")
        out.append(f"Latency ({a['rate']:g} messages/s, send to receipt)")
        out.append("| S | server | messages | p50 ms | p99 ms | max ms | losses | server CPU |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for row in sorted(latency, key=lambda r: (r["subscribers"], order.get(r["deployment"], 9))):
            out.append(
                f"| {row['subscribers']} | {row['deployment']} | {row['messages']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{row['max_ms']:.1f} | {row['losses'] + row['duplicates']} | {row['server_cpu']:.0f}% |"
            )
    if results.memory:
        out.append("")
        out.append("Memory (idle connections, each its own user, joined to one room; server RSS)")
        out.append("| connections | server | RSS before MiB | RSS after MiB | added MiB | per connection KiB | connect+join s |")
        out.append("|---:|---|---:|---:|---:|---:|---:|")
        for mem in sorted(results.memory, key=lambda m: order.get(m.deployment, 9)):
            out.append(
                f"| {mem.connections} | {mem.deployment} | {mem.before / MiB:.1f} | {mem.after / MiB:.1f} | "
                f"{mem.added_mib:.1f} | {mem.per_connection_kib:.1f} | {mem.seconds:.1f} |"
            )
    # the evidence that the generator is not the bottleneck
    out.append("")
    throughput = {(r["deployment"], r["subscribers"]): r for r in rows if r["mode"] == "throughput"}
    for (name, subscribers), row in sorted(throughput.items()):
        minimal = throughput.get(("minimal", subscribers))
        if name == "minimal" or minimal is None:
            continue
        if minimal["per_second"] > row["per_second"]:
            out.append(
                f"Generator check S={subscribers}: the same generator drove the minimal server at {minimal['per_second']:,.0f}/s, "
                f"{minimal['per_second'] / row['per_second']:.2f}x {name}'s {row['per_second']:,.0f}/s: it is not what limits {name}."
            )
        else:
            out.append(
                f"Generator check S={subscribers}: {name} ({row['per_second']:,.0f}/s) was not slower than the minimal server "
                f"({minimal['per_second']:,.0f}/s): the generator may be the limit; use more --workers or a bigger machine."
            )
    out.append("")
    out.append("---- summary (paste into the README) ----")
    out.append(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {a['repeats']} run(s):")
    for text, ok in summary["verdicts"]:
        out.append(f"- {'MET    ' if ok else 'NOT MET'} {text}")
    out.append("---- end of summary ----")
    return "\n".join(out)


# -- command line -----------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run: S=50 only, few messages, 1 run each, 200 idle connections")
    parser.add_argument("--broker", choices=["memory", "redis"], default="memory", help="'redis' adds two Jupyter servers sharing one Redis (default: memory only)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the Redis of --broker redis (a unique key prefix is used and deleted afterwards)")
    parser.add_argument("-S", "--subscribers", type=int, nargs="+", default=None, help="room sizes to measure (default: 50 500)")
    parser.add_argument("-M", "--messages", type=int, default=None, help="messages per throughput run (default: --deliveries/S, within 200..4000; 300 with --quick)")
    parser.add_argument("--deliveries", type=int, default=300_000, help="deliveries per throughput run when -M is not given (default: 300000)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure; the median is reported (default: 3)")
    parser.add_argument("--window", type=int, default=20000, help="deliveries the publisher may have ahead of the subscribers (default: 20000, i.e. 400 messages at S=50, 40 at S=500)")
    parser.add_argument("--batch-ms", type=float, default=20.0, help="throughput runs: generator workers read every this many ms, many frames per read (default: 20; 0 reads each frame as it comes)")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="event loop of the generator workers (default: uvloop when installed)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second of the latency runs (default: 50)")
    parser.add_argument("--rate-subscribers", type=int, default=50, help="room size of the latency runs (default: 50)")
    parser.add_argument("--rate-messages", type=int, default=None, help="messages per latency run (default: 500)")
    parser.add_argument("--idle", type=int, default=None, help="idle connections of the memory measure, 0 to skip (default: 2000)")
    parser.add_argument("--workers", type=int, default=None, help="load generator processes (default: 2, or the CPU count when larger, at most 4)")
    parser.add_argument("--connect-concurrency", type=int, default=64, help="connections each worker opens at once (default: 64)")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="seconds without a receipt after which missing messages count as lost (default: 10)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run and the summary to this JSON file")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.subscribers is None:
        args.subscribers = [50] if quick else [50, 500]
    if args.messages is None and quick:
        args.messages = 300
    if args.repeats is None:
        args.repeats = 1 if quick else 3
    if args.rate_messages is None:
        args.rate_messages = 50 if quick else 500
    if args.idle is None:
        args.idle = 200 if quick else 2000
    if args.workers is None:
        args.workers = min(4, max(2, os.cpu_count() or 2))
    return args


async def main_async(args: argparse.Namespace) -> tuple[Results, dict[str, Any]]:
    names = ["minimal", "memory"] + (["redis"] if args.broker == "redis" else [])
    workdir = new_workdir()
    deployments: list[Deployment] = []
    generator: LoadGenerator | None = None
    try:
        print(f"starting {', '.join(names)} (logs in {workdir}) and {args.workers} generator processes", file=sys.stderr)
        generator = LoadGenerator(args.workers, args.loop)
        for name in names:
            deployments.append(launch(name, workdir, redis_url=args.redis_url))
        bench = Bench(args, deployments, generator)
        results = await bench.all()
    except BaseException:
        print(f"\nthe benchmark stopped; server logs are kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if generator is not None:
            generator.close()
        for deployment in deployments:
            deployment.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return results, summarize(results)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that the servers and workers are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    limit = raise_nofile_limit()  # inherited by the server subprocesses and the workers
    needed = max(args.idle, max(args.subscribers)) * 2 + 256
    if limit < needed:
        print(f"warning: open-file limit {limit} < {needed}; lower --idle or raise the hard limit (ulimit -Hn)", file=sys.stderr)
    results, summary = asyncio.run(main_async(args))
    print(render(results, summary, args.workers), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in results.args.items()},
            "runs": [asdict(r) for r in results.runs],
            "memory": [asdict(m) | {"added_mib": m.added_mib, "per_connection_kib": m.per_connection_kib} for m in results.memory],
            "rows": summary["rows"],
            "verdicts": [{"text": t, "met": ok} for t, ok in summary["verdicts"]],
            "losses": summary["losses"],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if summary["losses"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
