"""How fast `iavicenne-migrate` copies a store into Redis (issue 23 item 9).

    python benchmarks/migrate.py                    # 100,000 messages in 100 rooms, 3 runs
    python benchmarks/migrate.py --messages 10000 --rooms 10 --repeats 1

Fills a store through the SQLite broker (as a server would), then runs the command (a
subprocess, as a person would) into a fresh prefix of the Redis at --redis-url, which is
dropped afterwards. Prints the median messages/s of the whole command (reading the
store, writing Redis, starting Python).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

import iavicenne_protocol as p
from iavicenne_ext.broker.base import DedupKey
from iavicenne_ext.broker.sqlite import SQLiteBroker

MiB = 1024 * 1024


async def fill(path: Path, messages: int, rooms: int) -> None:
    per_room = messages // rooms
    store = SQLiteBroker(
        path=str(path),
        history_size=per_room,
        history_ttl=3600.0,
        dedup_ttl=60.0,
        history_bytes_per_room=64 * MiB,
        history_bytes_total=4096 * MiB,
    )
    await store.start()
    try:
        for room in range(rooms):
            for n in range(per_room):
                frame = p.encode(
                    {
                        "type": p.MESSAGE,
                        "user_id": "alice",
                        "message": {"content": f"message {n} " + "x" * 80},
                        "timestamp": p.now_iso(),
                    }
                )
                await store.publish(f"room-{room}", frame, dedup=DedupKey(f"room-{room}", "alice", "alice", f"r{n}"))
    finally:
        await store.close()


def run_once(path: Path, url: str) -> tuple[float, str]:
    prefix = f"iavbench-migrate-{secrets.token_hex(4)}"
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "iavicenne_ext.migrate",
                "--store",
                str(path),
                "--redis-url",
                url,
                "--redis-prefix",
                prefix,
                "--quiet",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return time.perf_counter() - started, done.stdout.strip()
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rooms.sqlite3"
        asyncio.run(fill(path, args.messages, args.rooms))
        rates = []
        for _ in range(args.repeats):
            elapsed, summary = run_once(path, args.redis_url)
            copied = int(re.search(r"(\d+) messages,", summary).group(1))  # type: ignore[union-attr]
            rates.append(copied / elapsed)
            print(summary, file=sys.stderr)
        print(
            f"iavicenne-migrate: {copied} messages in {args.rooms} rooms, "
            f"median {statistics.median(rates):,.0f} messages/s over {args.repeats} runs (whole command)"
        )


if __name__ == "__main__":
    main()
