"""Join time with the Redis broker, against the memory broker measured in the same run.

    python benchmarks/redis_join.py                 # 300 joins per deployment, 3 rounds
    python benchmarks/redis_join.py --joins 1000 --rounds 5

One client joins a room, waits for its ``room-joined`` (and its own ``user-joined``),
leaves, and joins again, --joins times per round, against a Jupyter server with the memory
broker and one with the Redis broker (--redis-url, a unique key prefix deleted
afterwards); the rounds of the two alternate, because the machine may be shared. It
prints the median and p90 of the time from sending ``join-room`` to reading
``user-joined``, and the server's CPU per join (psutil): what every join costs in
requests to the broker (the access check, the join script, history, members) before any
member is told.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from deployments import Deployment, launch, new_workdir
from loadgen import WSClient, frame_type
from tqdm import tqdm


async def join_cycles(deployment: Deployment, joins: int, room: str) -> tuple[list[float], float]:
    """(join times in ms, server CPU seconds) of `joins` join/leave cycles on one socket."""
    frames: asyncio.Queue[bytes] = asyncio.Queue()
    client = await WSClient.connect(deployment.endpoints[0], frames.put_nowait)

    async def until(kind: bytes) -> bytes:
        while True:
            data = await asyncio.wait_for(frames.get(), 30)
            found = frame_type(data)
            if found == b"error":
                raise RuntimeError(data[:300].decode(errors="replace"))
            if found == kind:
                return data

    client.send({"type": "connect", "payload": {"user_id": "joiner"}})
    await until(b"connect")  # its answer has the request's type
    times = []
    cpu = deployment.cpu_seconds()
    for _ in range(joins):
        started = time.perf_counter()
        client.send({"type": "join-room", "room": room, "payload": {}})
        await until(b"user-joined")
        times.append((time.perf_counter() - started) * 1000)
        client.send({"type": "leave-room", "room": room, "payload": {}})
        await until(b"room-left")
    cpu = deployment.cpu_seconds() - cpu
    await client.close()
    return times, cpu


async def main(args: argparse.Namespace) -> None:
    workdir = new_workdir()
    deployments = [launch("memory", workdir), launch("redis", workdir, redis_url=args.redis_url, redis_servers=1)]
    results: dict[str, list[tuple[list[float], float]]] = {d.name: [] for d in deployments}
    try:
        with tqdm(total=args.rounds * len(deployments), desc="rounds", file=sys.stderr) as bar:
            for k in range(args.rounds):
                for deployment in deployments:
                    results[deployment.name].append(await join_cycles(deployment, args.joins, f"join-bench-{k}"))
                    bar.update()
    finally:
        for deployment in deployments:
            deployment.stop()
    summary = {}
    for name, rounds in results.items():
        medians = [statistics.median(times) for times, _ in rounds]
        p90s = [statistics.quantiles(times, n=10)[-1] for times, _ in rounds]
        cpu_us = [cpu / args.joins * 1e6 for _, cpu in rounds]
        summary[name] = {
            "median_ms": statistics.median(medians),
            "p90_ms": statistics.median(p90s),
            "server_cpu_us_per_join": statistics.median(cpu_us),
        }
    base = summary["memory"]
    print(f"{args.joins} join/leave cycles x {args.rounds} rounds, medians of the rounds:")
    print(f"{'broker':<8} {'join median':>12} {'p90':>9} {'server CPU/join':>16} {'vs memory':>10}")
    for name, row in summary.items():
        print(
            f"{name:<8} {row['median_ms']:>9.2f} ms {row['p90_ms']:>6.2f} ms {row['server_cpu_us_per_join']:>13.0f} us"
            f" {row['median_ms'] / base['median_ms']:>9.2f}x"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "summary": summary}, out, indent=2, default=str)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=300, help="join/leave cycles per round (default: 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per deployment, alternating (default: 3)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
