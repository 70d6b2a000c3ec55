"""Fan-out benchmark: one publisher, S subscribers in one room, iAvicenne against a minimal server.

    python benchmarks/fanout.py                  # the full run (about 10 minutes)
    python benchmarks/fanout.py --quick          # a smoke run (about 20 s)
    python benchmarks/fanout.py --broker redis   # adds two Jupyter servers sharing one Redis
    python benchmarks/fanout.py --phases throughput -S 500 --repeats 5   # one figure, more runs

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
  * memory: RSS added to the server process(es) by --idle connections joined to one room
    (each its own user, joining in small batches: most of the run's time is the presence
    traffic of 10,000 users, each join announced to everyone already there);
  * CPU per delivery of the server and of the generator (psutil / process_time): unlike
    deliveries per second, it does not depend on the share of a busy machine one gets.
Every figure is the median of --repeats runs, the runs of the servers interleaved, because
the machine is shared. The evidence that the generator is not what limits our figure: it
drives the minimal server faster, and it spends less CPU per delivery than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

# loadgen and deployments are found next to this script (Python puts its folder on sys.path)
from deployments import Deployment, iavicenne_sets_nodelay, launch, new_workdir
from loadgen import LoadGenerator, Publisher, raise_nofile_limit
from tqdm import tqdm

TARGET_RATIO = 1.5  # of the minimal server's deliveries per second (issue 15, coalesced writes),
TARGET_CPU_RATIO = 1.5  # or, where the machine cannot drive that rate, its CPU per delivery x 2/3
TARGET_RATIO_REDIS = 0.6  # with the Redis broker (issue 3)
TARGET_P99_MS = 3.7  # at 50 subscribers, 50 messages/s: the README's before issue 15
# how iAvicenne's idle clients join: no member list, presence in batches (docs/protocol.md)
IDLE_JOIN_PAYLOAD: dict[str, Any] = {"members_limit": 0, "presence": "batched"}
# batched joins and leaves need no pacing for the frames' sake (one presence-batch per
# tick, whatever the count): in batches this large, settling after each costs little
BATCHED_JOIN_BATCH = 500
TARGET_IDLE_KIB = 25.0  # server memory per idle connection, 10,000 in one room (issue 15)
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
    server_us: float = math.nan  # CPU per delivery, microseconds
    generator_us: float = math.nan


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
class Failure:
    deployment: str
    phase: str
    error: str
    logs: str


@dataclass
class Results:
    args: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
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
    async def join(
        self,
        deployment: Deployment,
        group: str,
        room: str,
        prefix: str,
        count: int,
        label: str,
        *,
        paced: bool = False,
        one_user: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Connect `count` subscribers (spread over workers, and over the deployment's servers).

        `paced`: join in batches of --join-batch and let every member read the presence
        frames of a batch before the next one. Each join sends 2 frames to the joiner
        (room-joined, its user-joined) and 1 to each member already there: all at once,
        2,000 joins are 2 million frames queued in the server, a transient that says
        nothing about what an idle connection costs.
        """
        workers = len(self.gen.pipes)
        batch = self.args.join_batch if paced else count
        if paced and payload and payload.get("presence") == "batched":
            batch = max(batch, BATCHED_JOIN_BATCH)
        with tqdm(total=count, desc=f"{label}: connecting", unit="conn", leave=False, file=sys.stderr) as bar:
            for first in range(0, count, batch):
                last = min(count, first + batch)
                frames = self.gen.frames()
                # subscriber k is user `prefix-k` on server k % len(endpoints), held by worker k % workers
                per_worker = [
                    {
                        "group": group,
                        "endpoints": deployment.endpoints,
                        "room": room,
                        "users": [
                            (prefix if one_user else f"{prefix}-{k}", k % len(deployment.endpoints))
                            for k in range(first + w, last, workers)
                        ],
                        "concurrency": self.args.connect_concurrency,
                        "timeout": 120.0,
                        "payload": payload,
                    }
                    for w in range(workers)
                ]
                await self.gen.call("join", per_worker)
                if paced and payload and payload.get("presence") == "batched":
                    await self.wait_quiet()  # batches: how many frames is the server's choice
                elif paced and not one_user:
                    joined = last - first
                    expected = frames + 2 * joined + first * joined + joined * (joined - 1) // 2
                    await self.wait_frames(expected)
                bar.update(last - first)

    async def leave(self, group: str, count: int, label: str, *, paced: bool, batched: bool = False) -> None:
        """Close a group's `count` subscribers; `paced`: in batches, like `join`.

        Each leave sends ``user-left`` to every member still there; all at once, 2,000
        leaves are again millions of queued frames (and as many broker calls at once).
        """
        workers = len(self.gen.pipes)
        batch = max(workers, self.args.join_batch) if paced else count
        if paced and batched:
            batch = max(batch, BATCHED_JOIN_BATCH)
        left = count
        with tqdm(total=count, desc=f"{label}: closing", unit="conn", leave=False, file=sys.stderr) as bar:
            while left > 0:
                now = min(batch, left)
                frames = self.gen.frames()
                per_worker = [{"group": group, "count": now // workers + (1 if w < now % workers else 0)} for w in range(workers)]
                closed = sum(await self.gen.call("close", per_worker))
                left -= closed
                if paced and left > 0 and batched:
                    await self.wait_quiet()  # presence in batches: how many frames is the server's choice
                elif paced and left > 0:
                    await self.wait_frames(frames + closed * left)  # each one still there hears each leaver
                bar.update(closed)
                if not closed:
                    break

    async def wait_frames(self, target: int, stall: float = 10.0) -> None:
        """Until the subscribers have received `target` frames, or none came for `stall` s."""
        last, since = -1, time.monotonic()
        while (count := self.gen.frames()) < target:
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since > stall:
                return
            await asyncio.sleep(0.02)

    async def wait_quiet(self, quiet: float = 0.3, stall: float = 10.0) -> None:
        """Until no frame has arrived for `quiet` s (at most `stall` s of waiting in all)."""
        deadline = time.monotonic() + stall
        last, since = self.gen.frames(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            count = self.gen.frames()
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

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
    async def run(
        self, deployment: Deployment, publisher: Publisher, group: str, subscribers: int, mode: str, messages: int
    ) -> Run:
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
        if result.delivered:
            result.server_us = 1e6 * (cpu1 - cpu0) / result.delivered
            result.generator_us = 1e6 * (gcpu1 - gcpu0) / result.delivered
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
                self.runs_bar.set_postfix_str(
                    f"last: {run.deployment} S={run.subscribers} {run.mode} {note}, losses {run.losses}"
                )

    # -- phases -------------------------------------------------------------------------
    async def memory_phase(self, deployment: Deployment) -> None:
        """RSS added by --idle connections joined to one room (each its own user)."""
        minimal = deployment.name == "minimal"
        # the minimal server announces every join to every member: 10,000 distinct users are
        # 50 million frames (an hour here), so it is measured at --minimal-idle connections
        count = min(self.args.idle, self.args.minimal_idle) if minimal else self.args.idle
        group = f"idle-{deployment.name}"
        payload = None if minimal or self.args.idle_presence == "each" else dict(IDLE_JOIN_PAYLOAD)
        try:
            await self._warm_up(deployment)
            before = await self._settled_rss(deployment)
            t0 = time.monotonic()
            one_user = self.args.idle_users == "one"
            await self.join(
                deployment,
                group,
                "idle",
                "idle",
                count,
                f"{deployment.name} memory",
                paced=True,
                one_user=one_user,
                payload=payload,
            )
            seconds = time.monotonic() - t0
            after = await self._settled_rss(deployment)
            self.results.memory.append(Memory(deployment.name, count, before, after, seconds))
            await self.leave(group, count, f"{deployment.name} memory", paced=not one_user, batched=payload is not None)
        except Exception as error:
            await self.fail(deployment, "memory", error, [group, "warm-up"])
        if self.runs_bar is not None:
            self.runs_bar.update(1)

    async def fail(self, deployment: Deployment, phase: str, error: BaseException, groups: list[str]) -> None:
        """Record why a deployment failed, drop its clients, and go on with the others."""
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logs = ", ".join(str(s.log_path) for s in deployment.servers)
        self.results.failures.append(Failure(deployment.name, phase, first[:300], logs))
        tqdm.write(f"\n{deployment.name} failed during {phase}: {error}\n(server logs: {logs})", file=sys.stderr)
        for group in groups:
            with contextlib.suppress(Exception):  # a worker that lost its clients already
                await self.gen.call("close", group=group)

    @property
    def active(self) -> list[Deployment]:
        failed = {f.deployment for f in self.results.failures}
        return [d for d in self.deployments if d.name not in failed]

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

        def group_of(deployment: Deployment) -> str:
            return f"{deployment.name}-{subscribers}"

        async def guarded(deployment: Deployment, phase: str, step: Any) -> Any:
            try:
                deployment.check_alive()
                return await step
            except Exception as error:
                await self.fail(deployment, f"{phase} S={subscribers}", error, [group_of(deployment)])
                return None

        async def prepare(deployment: Deployment) -> None:
            await self.join(
                deployment, group_of(deployment), room, f"sub{subscribers}", subscribers, f"{deployment.name} S={subscribers}"
            )
            publishers[deployment.name] = publisher = Publisher(room)
            await publisher.join(deployment.endpoints[0])
            # warm-up: also drains the presence frames of the joins above
            warm_up = max(50, self.messages_for(subscribers) // 10)
            self.record(
                await self.run(deployment, publisher, group_of(deployment), subscribers, "throughput", warm_up), measured=False
            )

        for deployment in self.active:
            await guarded(deployment, "joining", prepare(deployment))
        modes = (["throughput"] if "throughput" in args.phases else []) + (
            ["rate"] if subscribers == args.rate_subscribers and "latency" in args.phases else []
        )
        for mode in modes:
            messages = self.messages_for(subscribers) if mode == "throughput" else args.rate_messages
            for repeat in range(args.repeats):
                # interleaved, alternating order: a noisy minute hits every server alike
                order = self.active if repeat % 2 == 0 else self.active[::-1]
                for deployment in order:
                    step = self.run(deployment, publishers[deployment.name], group_of(deployment), subscribers, mode, messages)
                    run = await guarded(deployment, mode, step)
                    if run is not None:
                        self.record(run)
        for deployment in self.deployments:
            if deployment.name in publishers:
                await self.leave(group_of(deployment), subscribers, f"{deployment.name} S={subscribers}", paced=True)
                await publishers[deployment.name].close()

    def messages_for(self, subscribers: int) -> int:
        if self.args.messages is not None:
            return self.args.messages
        # about the same number of deliveries per run at every S, so runs last alike
        return max(200, min(4000, self.args.deliveries // subscribers))

    def total_steps(self) -> int:
        a = self.args
        steps = len(self.deployments) * (1 if self.memory_wanted else 0)
        for s in self.fanout_sizes:
            runs = a.repeats if "throughput" in a.phases else 0
            runs += a.repeats if s == a.rate_subscribers and "latency" in a.phases else 0
            steps += len(self.deployments) * (1 + runs)
        return steps

    @property
    def memory_wanted(self) -> bool:
        return bool(self.args.idle) and "memory" in self.args.phases

    @property
    def fanout_sizes(self) -> list[int]:
        a = self.args
        if "throughput" in a.phases:
            return a.subscribers
        return [a.rate_subscribers] if "latency" in a.phases else []

    async def all(self) -> Results:
        with tqdm(total=self.total_steps(), desc="fanout", unit="run", file=sys.stderr) as self.runs_bar:
            if self.memory_wanted:
                for deployment in self.deployments:
                    await self.memory_phase(deployment)
            for subscribers in self.fanout_sizes:
                await self.fanout_phase(subscribers)
        self.runs_bar = None
        return self.results


# -- report -----------------------------------------------------------------------------
def summarize(results: Results) -> dict[str, Any]:
    """Medians per (deployment, mode, S) and the verdicts against the targets."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in results.runs:
        groups.setdefault((run.deployment, run.mode, run.subscribers), []).append(run)
    rows: list[dict[str, Any]] = []
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
                # CPU per delivery (µs): what each side pays, whatever share of the CPUs it got
                "server_us": median([r.server_us for r in runs]),
                "generator_us": median([r.generator_us for r in runs]),
            }
        )
    by_key = {(r["deployment"], r["mode"], r["subscribers"]): r for r in rows}
    for row in rows:
        minimal = by_key.get(("minimal", row["mode"], row["subscribers"]))
        row["ratio"] = row["per_second"] / minimal["per_second"] if minimal and minimal["per_second"] else math.nan
        # the same comparison by CPU per delivery: what a delivery costs, whatever CPU
        # share each server got on a shared machine (deliveries/s depend on that share)
        row["cpu_ratio"] = minimal["server_us"] / row["server_us"] if minimal and row["server_us"] else math.nan
    verdicts = []
    total_losses = sum(r["losses"] + r["duplicates"] for r in rows)
    for row in rows:
        if row["mode"] != "throughput" or row["deployment"] == "minimal":
            continue
        redis = row["deployment"] == "redis"
        target = TARGET_RATIO_REDIS if redis else TARGET_RATIO
        memory = by_key.get(("memory", "throughput", row["subscribers"]))
        versus_memory = ""
        if row["deployment"] != "memory" and memory and memory["per_second"]:
            versus_memory = f", {row['per_second'] / memory['per_second']:.2f} of the memory broker"
        verdicts.append(
            (
                f"throughput {row['deployment']} S={row['subscribers']}: {row['per_second']:,.0f} deliveries/s, "
                f"{row['ratio']:.2f} of the minimal server{versus_memory} (target >= {target}); "
                f"CPU per delivery {row['server_us']:.1f} µs, {row['cpu_ratio']:.2f} of the minimal server's efficiency"
                + ("" if redis else f" (or >= {TARGET_CPU_RATIO:g})"),
                row["ratio"] >= target or (not redis and row["cpu_ratio"] >= TARGET_CPU_RATIO),
            )
        )
    for row in rows:
        if row["mode"] == "rate" and row["deployment"] != "minimal":
            minimal = by_key.get(("minimal", "rate", row["subscribers"]))
            beside = f", minimal {minimal['p99_ms']:.2f} ms in this run" if minimal else ""
            verdicts.append(
                (
                    f"latency {row['deployment']} S={row['subscribers']}: p99 {row['p99_ms']:.2f} ms{beside} (target <= {TARGET_P99_MS:g} ms)",
                    row["p99_ms"] <= TARGET_P99_MS,
                )
            )
    minimal_memory = next((m for m in results.memory if m.deployment == "minimal"), None)
    for mem in results.memory:
        if mem.deployment == "memory":  # the target of the in-memory broker (issue 15)
            versus = ""
            if minimal_memory is not None and minimal_memory.per_connection_kib > 0:
                versus = f", {mem.per_connection_kib / minimal_memory.per_connection_kib:.2f}x the minimal server's {minimal_memory.per_connection_kib:.1f} KiB"
            verdicts.append(
                (
                    f"memory {mem.deployment}: {mem.connections:,} idle connections in one room add {mem.added_mib:.1f} MiB, "
                    f"{mem.per_connection_kib:.1f} KiB each{versus} (target < {TARGET_IDLE_KIB:g} KiB each at 10,000)",
                    mem.per_connection_kib < TARGET_IDLE_KIB,
                )
            )
    for failure in results.failures:
        verdicts.append((f"{failure.deployment} failed during {failure.phase}: {failure.error}", False))
    verdicts.append((f"losses: {total_losses} (every subscriber got every message exactly once)", total_losses == 0))
    return {"rows": rows, "verdicts": verdicts, "losses": total_losses, "failures": len(results.failures)}


def render(results: Results, summary: dict[str, Any], generator_workers: int) -> str:
    out: list[str] = []
    rows = summary["rows"]
    a = results.args
    order = {"minimal": 0, "memory": 1, "redis": 2}
    out.append("")
    out.append(
        f"Fan-out: 1 publisher, S subscribers in one room; median of {a['repeats']} run(s); generator: {generator_workers} worker processes"
    )
    for name, description in results.descriptions.items():
        out.append(f"  {name:8} {description}")
    out.append("")
    out.append("Throughput (publisher as fast as the subscribers take it)")
    out.append(
        "| S | server | messages | deliveries/s | ratio to minimal | losses | server CPU | server µs/delivery | "
        "CPU ratio | generator CPU | generator µs/delivery | all runs (deliveries/s) |"
    )
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in sorted(
        (r for r in rows if r["mode"] == "throughput"), key=lambda r: (r["subscribers"], order.get(r["deployment"], 9))
    ):
        out.append(
            f"| {row['subscribers']} | {row['deployment']} | {row['messages']} | {row['per_second']:,.0f} | {row['ratio']:.2f} | "
            f"{row['losses'] + row['duplicates']} | {row['server_cpu']:.0f}% | {row['server_us']:.1f} | {row['cpu_ratio']:.2f} | {row['generator_cpu']:.0f}% | "
            f"{row['generator_us']:.1f} | {', '.join(f'{v:,}' for v in row['per_second_all'])} |"
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
    if results.failures:
        out.append("")
        out.append("Failures (the other servers were measured without them)")
        for failure in results.failures:
            out.append(f"  {failure.deployment}, {failure.phase}: {failure.error}")
            out.append(f"    server logs: {failure.logs}")
    # the evidence that the generator is not the bottleneck
    out.append("")
    throughput = {(r["deployment"], r["subscribers"]): r for r in rows if r["mode"] == "throughput"}
    best: dict[int, Run] = {}
    for run in results.runs:
        if run.mode == "throughput" and (run.subscribers not in best or run.per_second > best[run.subscribers].per_second):
            best[run.subscribers] = run
    for (name, subscribers), row in sorted(throughput.items()):
        minimal = throughput.get(("minimal", subscribers))
        if name == "minimal" or minimal is None:
            continue
        evidence = []
        if minimal["per_second"] > row["per_second"]:
            evidence.append(
                f"it drove the minimal server faster ({minimal['per_second']:,.0f}/s, {minimal['per_second'] / row['per_second']:.2f}x)"
            )
        top = best.get(subscribers)
        if top is not None and top.per_second > 1.1 * row["per_second"]:
            evidence.append(f"it delivered up to {top.per_second:,.0f}/s in this run ({top.deployment})")
        if row["generator_us"] < row["server_us"]:
            evidence.append(
                f"it spent {row['generator_us']:.1f} µs of CPU per delivery against the server's {row['server_us']:.1f} µs "
                f"(CPU used: server {row['server_cpu']:.0f}%, generator {row['generator_cpu']:.0f}% over {generator_workers} workers)"
            )
        if evidence:
            out.append(
                f"Generator check S={subscribers}, {name} at {row['per_second']:,.0f}/s: the generator is not the limit: {'; '.join(evidence)}."
            )
        else:
            out.append(
                f"Generator check S={subscribers}, {name} at {row['per_second']:,.0f}/s: the generator may be the limit "
                f"(no faster run, and it spends {row['generator_us']:.1f} µs per delivery against the server's {row['server_us']:.1f}); "
                "try more --workers, a larger --batch-ms, or a bigger machine."
            )
    out.append("")
    out.append("---- summary (paste into the README) ----")
    out.append(
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {a['repeats']} run(s):"
    )
    for text, ok in summary["verdicts"]:
        out.append(f"- {'MET    ' if ok else 'NOT MET'} {text}")
    out.append("---- end of summary ----")
    return "\n".join(out)


# -- command line -----------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: S=50 only, few messages, 1 run each, 200 idle connections"
    )
    parser.add_argument(
        "--broker",
        choices=["memory", "redis"],
        default="memory",
        help="'redis' adds two Jupyter servers sharing one Redis (default: memory only)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the Redis of --broker redis (a unique key prefix is used and deleted afterwards)",
    )
    parser.add_argument("-S", "--subscribers", type=int, nargs="+", default=None, help="room sizes to measure (default: 50 500)")
    parser.add_argument(
        "-M",
        "--messages",
        type=int,
        default=None,
        help="messages per throughput run (default: --deliveries/S, within 200..4000; 300 with --quick)",
    )
    parser.add_argument(
        "--deliveries", type=int, default=300_000, help="deliveries per throughput run when -M is not given (default: 300000)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure; the median is reported (default: 3)")
    parser.add_argument(
        "--window",
        type=int,
        default=20000,
        help="deliveries the publisher may have ahead of the subscribers (default: 20000, i.e. 400 messages at S=50, 40 at S=500)",
    )
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=20.0,
        help="throughput runs: generator workers read every this many ms, many frames per read (default: 20; 0 reads each frame as it comes)",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of the generator workers (default: uvloop when installed)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second of the latency runs (default: 50)")
    parser.add_argument("--rate-subscribers", type=int, default=50, help="room size of the latency runs (default: 50)")
    parser.add_argument("--rate-messages", type=int, default=None, help="messages per latency run (default: 500)")
    parser.add_argument(
        "--idle",
        type=int,
        default=None,
        help="idle connections of the memory measure, 0 to skip (default: 10000; 200 with --quick)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="load generator processes (default: 2, or the CPU count when larger, at most 4)"
    )
    parser.add_argument(
        "--idle-presence",
        choices=["batched", "each"],
        default="batched",
        help="memory measure: iAvicenne's idle clients join with members_limit 0 and presence 'batched' (default; "
        "docs/protocol.md, Large rooms), or as seed clients (one user-joined to every member per join)",
    )
    parser.add_argument(
        "--minimal-idle",
        type=int,
        default=2000,
        help="memory measure: idle connections of the minimal server, at most (default 2000: it announces each join "
        "to every member, so 10,000 distinct users take it an hour); KiB per connection are compared",
    )
    parser.add_argument(
        "--idle-users",
        choices=["distinct", "one"],
        default="distinct",
        help="memory measure: each idle connection its own user (default), or all one user's (no presence traffic)",
    )
    parser.add_argument(
        "--join-batch",
        type=int,
        default=10,
        help="memory measure: users joining (and leaving) at once, whose presence frames are read before the next ones (default: 10)",
    )
    parser.add_argument("--connect-concurrency", type=int, default=64, help="connections each worker opens at once (default: 64)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="seconds without a receipt after which missing messages count as lost (default: 10)",
    )
    parser.add_argument(
        "--phases",
        type=lambda v: set(v.split(",")),
        default={"memory", "throughput", "latency"},
        help="comma-separated subset of memory,throughput,latency (default: all)",
    )
    parser.add_argument(
        "--minimal-nodelay",
        choices=["auto", "on", "off"],
        default="auto",
        help="TCP_NODELAY on the minimal server's sockets (default: auto, the same as iAvicenne's)",
    )
    parser.add_argument(
        "--without-minimal",
        action="store_true",
        help="leave out the minimal server (no ratios): e.g. --phases memory --idle-users one at 10,000, where the "
        "minimal server, announcing each of one user's connections to all the others, would take an hour",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (kept anyway when a server fails)")
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
        args.idle = 200 if quick else 10_000
    unknown = args.phases - {"memory", "throughput", "latency"}
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose among memory, throughput, latency")
    if args.workers is None:
        args.workers = min(4, max(2, os.cpu_count() or 2))
    return args


async def main_async(args: argparse.Namespace) -> tuple[Results, dict[str, Any]]:
    names = ["minimal", "memory"] + (["redis"] if args.broker == "redis" else [])
    if args.without_minimal:
        names.remove("minimal")
    workdir = new_workdir()
    deployments: list[Deployment] = []
    generator: LoadGenerator | None = None
    try:
        print(f"starting {', '.join(names)} (logs in {workdir}) and {args.workers} generator processes", file=sys.stderr)
        generator = LoadGenerator(args.workers, args.loop)
        nodelay = iavicenne_sets_nodelay() if args.minimal_nodelay == "auto" else args.minimal_nodelay == "on"
        for name in names:
            deployments.append(launch(name, workdir, redis_url=args.redis_url, nodelay=nodelay))
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
            "memory": [
                asdict(m) | {"added_mib": m.added_mib, "per_connection_kib": m.per_connection_kib} for m in results.memory
            ],
            "rows": summary["rows"],
            "verdicts": [{"text": t, "met": ok} for t, ok in summary["verdicts"]],
            "losses": summary["losses"],
            "failures": [asdict(f) for f in results.failures],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if summary["losses"] == 0 and not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
