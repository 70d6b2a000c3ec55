"""What a hostile member's shared frames cost the server (issue 22), against a baseline
measured in the same run.

    python benchmarks/shared_sync.py                    # memory broker
    python benchmarks/shared_sync.py --broker redis     # two servers' worth of keys on one Redis
    python benchmarks/shared_sync.py --quick            # a smoke run
    python benchmarks/shared_sync.py --fill-only --option max_shared_bytes_total=33554432
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/shared_sync.py   # the same, on older code

It starts a real `jupyter server` (rate limits raised, as for every benchmark; the shared
budgets at their defaults unless given) with several identities (tests/access_support.py),
and measures:

  * step 1: the server's CPU (utime + stime of its process) per sync step 1 answered,
    against a full document (max_shared_bytes, 4 MiB): with the state vector of the whole
    document (the client lacks nothing: 120 bytes in, what a reconnecting client sends) and
    with an empty one (the client lacks everything);
  * fairness: erin's ack round trip (tests/bystander.py, median and p99) alone, then while
    bob sends --flood step 1 frames a second with the whole document's state vector, then
    with an empty one, then with a new unknown one each time (bob in a process of his own, at the lowest priority: reading his
    answers, megabytes each, in erin's process delayed her round trips more than the server);
  * fill-and-leave: bob fills a room's document to max_shared_bytes, leaves, and does it
    again under a new name, --rounds times; the server's RSS growth, the bytes accepted and
    the refusals (a refusal ``rate-limited`` is waited out and sent again, as an attacker
    would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pycrdt
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from access_support import SERVER_CONFIG  # noqa: E402 - tests/ is put on the path above
from bystander import Bystander  # noqa: E402
from servers import connect, drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix  # noqa: E402

import iavicenne_ext  # noqa: E402
import iavicenne_protocol as p  # noqa: E402
from iavicenne_ext.testing import JupyterProcess, WSClient  # noqa: E402
from iavicenne_protocol import SyncMessage, decode_sync  # noqa: E402

OPTIONS: dict[str, Any] = {
    "messages_per_second": 100_000,
    "burst": 100_000,
    "chat_messages_per_second": 100_000,
    "chat_messages_burst": 100_000,
    "bytes_per_second": 10**9,
    "burst_bytes": 10**9,
    # the attacker reads his answers slower than the server sends them: room for all of them
    "max_outbound_bytes": 2**30,
    "max_outbound_bytes_total": 2**30,
}
ITEMS, VALUE = 2_000, "v" * 40  # per update: about 110 KB (max_shared_update_bytes is 256 KiB)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def frame(room: str, step: int, payload: bytes, ref: str) -> dict[str, Any]:
    return {"type": p.SHARED, "room": room, "ref": ref, "payload": {"sync": SyncMessage(step, payload).b64()}}


async def answer(client: WSClient, ref: str, timeout: float = 60.0) -> dict[str, Any]:
    """The reply to `ref` (shared, ack or error), skipping the rest."""
    while True:
        got = await client.recv(timeout)
        if got.get("ref") == ref and got.get("type") in (p.SHARED, p.ACK, p.ERROR):
            return got


async def send_update(client: WSClient, room: str, update: bytes, ref: str) -> dict[str, Any]:
    """Send one update, waiting out `rate-limited` refusals; the final reply."""
    while True:
        await client.send(frame(room, p.SyncStep.UPDATE, update, ref))
        got = await answer(client, ref)
        if got.get("code") != p.ErrorCode.RATE_LIMITED:
            return got
        await asyncio.sleep(0.2)


async def fill(client: WSClient, room: str, tag: str) -> tuple[int, list[str]]:
    """Fill `room`'s document until the server refuses: the bytes accepted, the refusals' options.

    Each update comes from a client of its own (as many members' edits would) and sets
    ITEMS small keys: a document of many small items, what makes one costly to build."""
    accepted, refusals = 0, []
    for i in range(10_000):
        doc: pycrdt.Doc = pycrdt.Doc()
        doc["m"] = data = pycrdt.Map[str]()
        with doc.transaction():
            for j in range(ITEMS):
                data[f"{tag}{i}.{j}"] = VALUE
        update = doc.get_update()
        got = await send_update(client, room, update, f"{room}-{i}")
        if got.get("type") == p.ERROR:
            refusals.append(str(got.get("option") or got.get("code")))
            return accepted, refusals
        accepted += len(update)
    return accepted, refusals


async def joined(client: WSClient, room: str) -> None:
    await client.send({"type": p.JOIN_ROOM, "room": room})
    await client.expect(p.ROOM_JOINED, timeout=30)


async def step1_cpu(server: JupyterProcess, bob: WSClient, room: str, state: bytes, count: int) -> tuple[float, int]:
    """Server CPU ms per step 1 answered (one at a time), and how many were refused."""
    refused = 0
    start = cpu_seconds(server.pid)
    for n in range(count):
        ref = f"s1-{n}-{time.monotonic_ns()}"
        await bob.send(frame(room, p.SyncStep.STEP1, state, ref))
        got = await answer(bob, ref)
        refused += got.get("type") == p.ERROR
    return (cpu_seconds(server.pid) - start) * 1000 / count, refused


def unknown_state(n: int) -> bytes:
    """A state vector naming a writer the server never heard of (client 10,000 + `n`): the
    answer is the whole document, and no two are the same (nothing kept encoded serves it)."""

    def varuint(value: int) -> bytes:
        out = bytearray()
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        return bytes([*out, value])

    return varuint(1) + varuint(10_000 + n) + varuint(5)


async def _flood_in_process(url: str, token: str, room: str, state: bytes, rate: float, seconds: float, pipe: Connection) -> None:
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
    bob = WSClient(await websocket_connect(request, max_message_size=2**31))
    await bob.send({"type": p.CONNECT, "payload": {"user_id": "bob"}})
    await bob.expect(p.CONNECT)
    await joined(bob, room)
    stop = asyncio.Event()
    refused = 0

    async def drain() -> None:
        # read as bytes: only the errors are parsed
        nonlocal refused
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(bob.ws.read_message(), 0.5)
            except (TimeoutError, asyncio.TimeoutError):
                continue
            if raw is None:
                return  # closed
            if len(raw) < 10_000 and json.loads(raw).get("type") == p.ERROR:
                refused += 1

    reader = asyncio.create_task(drain())
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go"
    sent = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        vector = state if state else unknown_state(sent)
        await bob.send(frame(room, p.SyncStep.STEP1, vector, f"flood-{sent}"))
        sent += 1
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(3.0)  # the last answers
    stop.set()
    await reader
    bob.close()
    pipe.send((sent, refused))


def _flood_main(url: str, token: str, room: str, state: bytes, rate: float, seconds: float, pipe: Connection) -> None:
    # an attacker reads on a machine of his own: here his reading of megabytes of answers
    # takes the CPUs that the server and the bystander (this process) share last
    os.nice(19)
    asyncio.run(_flood_in_process(url, token, room, state, rate, seconds, pipe))


async def flood(erin: WSClient, server: JupyterProcess, room: str, state: bytes, rate: float, seconds: float) -> str:
    """Erin's acks while bob sends `rate` step 1 frames a second from a process of his own,
    each with state vector `state` (empty bytes: `unknown_state`, a new one each time)."""
    context = multiprocessing.get_context("spawn")  # never fork a process running a loop
    pipe, child = context.Pipe()
    attacker = context.Process(
        target=_flood_main, args=(server.ws_url(), "bob-token", room, state, rate, seconds, child), daemon=True
    )
    attacker.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, pipe.recv) == "ready"
        async with Bystander(erin, room=f"calm-{len(state)}") as bystander:
            pipe.send("go")
            sent, refused = await loop.run_in_executor(None, pipe.recv)
    finally:
        attacker.join(10)
        if attacker.is_alive():
            attacker.kill()
    return f"{bystander.median_ms:10.1f} {bystander.p99_ms:10.1f} {len(bystander.rtts_ms):6d} {sent:6d} {refused:6d}"


async def run(args: argparse.Namespace, server: JupyterProcess) -> None:
    bob = await connect(server, "bob", token="bob-token")
    erin = await connect(server, "erin", token="erin-token")
    room = "full"
    await joined(bob, room)
    accepted, refusals = await fill(bob, room, "b")
    print(f"document filled: {accepted / 2**20:.2f} MiB accepted, then refused by {refusals}")
    # what the server holds, as a client synced with it would: its state vector
    await bob.send(frame(room, p.SyncStep.STEP1, b"\x00", "whole"))
    whole = decode_sync((await answer(bob, "whole"))["sync"], max_bytes=2**31).payload
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(whole)
    state = doc.get_state()
    print(f"state vector: {len(state)} bytes; document as sent: {len(whole) / 2**20:.2f} MiB")
    bob.seen.clear()

    print(f"\n{'step 1 (server CPU)':34} {'ms/frame':>10} {'refused':>8}")
    for name, vector, count in (("whole state vector", state, args.count), ("empty state vector", b"\x00", args.count // 4)):
        ms, refused = await step1_cpu(server, bob, room, vector, max(2, count))
        print(f"{name:34} {ms:10.2f} {refused:8d}/{max(2, count)}")

    print(f"\n(server pid {server.pid}: profile the floods with py-spy record -p {server.pid})", flush=True)
    print(f"{'erin ack while bob floods':34} {'median ms':>10} {'p99 ms':>10} {'acks':>6} {'sent':>6} {'refused':>6}")
    async with Bystander(erin, room="calm-alone") as alone:
        await asyncio.sleep(args.seconds)
    print(f"{'nobody flooding (baseline)':34} {alone.median_ms:10.1f} {alone.p99_ms:10.1f} {len(alone.rtts_ms):6d}")
    for name, vector in (("whole vector", state), ("empty vector", b"\x00"), ("unknown vectors", b"")):
        print(f"{f'{args.flood:g}/s step 1, {name}':34} " + await flood(erin, server, room, vector, args.flood, args.seconds))

    bob.close()
    erin.close()


async def fill_and_leave(args: argparse.Namespace, server: JupyterProcess) -> None:
    """On a server of its own (the floods' memory would hide what this one keeps)."""
    bob = await connect(server, "bob", token="bob-token")
    print(f"\nfill-and-leave, {args.rounds} rounds of max_shared_bytes (bob), on a fresh server:")
    rss0, started = rss_mib(server.pid), time.perf_counter()
    kept, refused_by = 0, []
    for i in range(args.rounds):
        name = f"fill-{i}"
        await joined(bob, name)
        got, refusals = await fill(bob, name, "x")
        kept += got
        refused_by += [r for r in refusals if r != "max_shared_bytes"]
        bob.seen.clear()
        await bob.send({"type": p.LEAVE_ROOM, "room": name})
    seconds = time.perf_counter() - started
    rss1 = rss_mib(server.pid)
    print(f"  accepted {kept / 2**20:.1f} MiB in {seconds:.1f} s; RSS {rss0:.0f} -> {rss1:.0f} MiB (+{rss1 - rss0:.0f} MiB)")
    print(f"  refusals other than max_shared_bytes: {sorted(set(refused_by)) or 'none'} ({len(refused_by)} rounds)")
    bob.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=("memory", "redis"), default="memory")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, default=20, help="step 1 frames timed one by one")
    parser.add_argument("--flood", type=float, default=4.0, help="step 1 frames a second during the flood")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of each flood (and of the baseline)")
    parser.add_argument("--rounds", type=int, default=20, help="fill-and-leave rounds")
    parser.add_argument("--fill-only", action="store_true", help="only the fill-and-leave attack")
    parser.add_argument("--option", action="append", default=[], help="an IAvicenne option, name=value (repeatable)")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds, args.rounds = 6, 2.0, 3
    options = {**OPTIONS, **dict(item.split("=", 1) for item in args.option)}
    print(f"iavicenne_ext from {Path(iavicenne_ext.__file__).parent}; broker {args.broker}; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as workdir:
        prefix, url = "", ""
        if args.broker == "redis":
            url, prefix = args.redis_url or shared_redis_url(), unique_prefix("bench-sync")
        for phase, work in enumerate((fill_and_leave,) if args.fill_only else (run, fill_and_leave)):
            if args.broker == "redis":
                server = jupyter_on_redis(Path(workdir) / str(phase), url, prefix, "server", **options)
            else:
                server = JupyterProcess(Path(workdir) / str(phase), name="memory", options={"broker": "memory", **options})
            server.config.mkdir(parents=True, exist_ok=True)
            (server.config / "jupyter_server_config.py").write_text(SERVER_CONFIG)
            server.start()
            try:
                asyncio.run(work(args, server))
            finally:
                server.stop()
                if prefix:
                    drop_prefix(url, prefix)


if __name__ == "__main__":
    main()
