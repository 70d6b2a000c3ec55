"""What edits, deletions and read positions cost, on each broker (no server: the brokers
themselves, as the hub calls them).

    python benchmarks/edits.py                 # memory, and Redis at 127.0.0.1:6379 if it answers
    python benchmarks/edits.py --messages 2000 --redis redis://127.0.0.1:6379/0

Figures (medians of --runs runs, each over --messages messages of one room):

- publish, and publish then `mark_read` (what a sender's message costs with its read
  position moved, as the room socket does after the ack), per message;
- `rewrite_message` (an edit) per message;
- a replay of the whole history with none, and with 10 % of the messages rewritten (on
  Redis the rewritten ones are merged back from `revised:R`: the ratio is what that costs);
- an export of the history to Markdown and to ``.chat`` (export.py), per message.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import iavicenne_protocol as p
from iavicenne_ext import export
from iavicenne_ext.broker import MemoryBroker
from iavicenne_ext.broker.interfaces import Broker

BUDGETS: dict[str, Any] = {"history_size": 100_000, "history_ttl": 600.0, "dedup_ttl": 600.0}


def frame(n: int) -> bytes:
    identity = {"username": "alice", "name": "alice", "display_name": "Alice"}
    return p.encoded(
        p.MESSAGE, user_id="alice", message={"content": f"message number {n} " + "x" * 80}, room="r", identity=identity
    )


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def one_run(broker: Broker, messages: int) -> dict[str, float]:
    room = "bench-" + secrets.token_hex(4)
    figures: dict[str, float] = {}

    async def publish() -> None:
        for n in range(messages):
            await broker.publish(room, frame(n))

    async def publish_and_read() -> None:
        for n in range(messages):
            published = await broker.publish(room + "-read", frame(n))
            await broker.mark_read(room + "-read", "alice", published.seq)

    figures["publish us/msg"] = await timed(publish) / messages * 1e6
    figures["publish+mark_read us/msg"] = await timed(publish_and_read) / messages * 1e6
    whole = await timed(lambda: broker.history(room, 0, None))
    edited = list(range(1, messages + 1, 10))

    async def edit() -> None:
        for seq in edited:
            kept = await broker.kept_message(room, seq)
            assert kept is not None
            assert await broker.rewrite_message(room, seq, kept, kept.replace(b"message number", b"edited number"))

    figures["edit us/msg"] = await timed(edit) / len(edited) * 1e6
    history = await broker.history(room, 0, None)
    assert len(history.messages) == messages and all(b'"seq":' in m for m in history.messages[:3])
    with_edits = await timed(lambda: broker.history(room, 0, None))
    figures["replay ms"] = whole * 1e3
    figures["replay, 10% edited ms"] = with_edits * 1e3
    kept = export.kept_messages(history.messages)
    start = time.perf_counter()
    export.to_markdown(room, kept)
    export.to_chat(room, history.epoch, kept)
    figures["export md+chat us/msg"] = (time.perf_counter() - start) / messages * 1e6
    return figures


async def measure(name: str, make: Callable[[], Broker], messages: int, runs: int) -> None:
    results: list[dict[str, float]] = []
    for _ in range(runs):
        broker = make()
        await broker.start()
        try:
            results.append(await one_run(broker, messages))
        finally:
            await broker.close()
    print(f"\n{name} ({messages} messages, median of {runs})")
    for key in results[0]:
        print(f"  {key:28} {statistics.median(r[key] for r in results):10.1f}")
    replay = statistics.median(r["replay ms"] for r in results)
    edited = statistics.median(r["replay, 10% edited ms"] for r in results)
    print(f"  {'replay ratio edited/plain':28} {edited / replay:10.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    await measure("memory", lambda: MemoryBroker(**BUDGETS), args.messages, args.runs)
    import redis

    try:
        redis.Redis.from_url(args.redis, socket_timeout=1).ping()
    except (redis.RedisError, OSError):
        print(f"\nredis: nothing answers at {args.redis}; skipped")
        return
    from iavicenne_ext.broker.redis import RedisBroker

    prefix = "iavbench-" + secrets.token_hex(4)
    try:
        await measure("redis", lambda: RedisBroker(url=args.redis, prefix=prefix, **BUDGETS), args.messages, args.runs)
    finally:
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    asyncio.run(main())
