"""One peer in its own process, for tests/client/test_peer.py: ``python peer_worker.py SCENARIO ME OTHER``.

It finds the Jupyter server from IAVICENNE_URL / IAVICENNE_TOKEN (as a kernel would from
its environment), joins signaling room $PEER_ROOM with loopback ICE, opens a link to
OTHER, plays SCENARIO and prints one JSON line: {"result": ...} or {"error": ...}.
Scenarios that end in "die" leave with os._exit(3) in the middle of a transfer: no
goodbye, as a killed kernel.

`ice_addresses` and `loopback_only` (which addresses a link's ICE used), `MemoryWatch`
(how much a hostile peer made this process grow) and `zlib_bomb` serve the in-process
tests too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import struct
import sys
import threading
import time
import traceback
import zlib
from typing import Any

import psutil

from iavicenne import PeerLinkError
from iavicenne.link import Link
from iavicenne.peer import PeerLink, PeerNetwork, Progress

BIG = 20 * 1024 * 1024
TEXT = "héllo from a kernel ✓"
OBJECT = {"rows": [[1, 2.5], [3, None]], "name": "ünïcode", "nested": {"ok": True}}


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def payload() -> bytes:
    return random.Random(20).randbytes(BIG)


def ice_addresses(link: Link) -> dict[str, Any]:
    """What an open link's ICE used: the addresses it offered, every pair it checked (local,
    remote) and the pair it selected. aiortc reports no candidate-pair stats, so this reads
    aioice's connection behind the data channel."""
    assert isinstance(link, PeerLink), f"{link!r} is not a direct link"
    offered = [line.split()[4] for line in link.pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
    assert link.pc.sctp is not None
    connection = link.pc.sctp.transport.transport._connection
    checked = [[pair.local_addr[0], pair.remote_addr[0]] for pair in connection._check_list]
    selected = connection._nominated.get(1)
    return {"offered": offered, "checked": checked, "selected": selected and [selected.local_addr[0], selected.remote_addr[0]]}


def loopback_only(addresses: dict[str, Any]) -> bool:
    """Whether `ice_addresses` offered, checked and selected loopback addresses only."""
    used = [*addresses["offered"], *(a for pair in addresses["checked"] for a in pair), *(addresses["selected"] or ())]
    return bool(addresses["offered"] and addresses["selected"]) and all(a in ("127.0.0.1", "::1") for a in used)


class MemoryWatch:
    """The peak resident memory of this process inside ``with``, sampled every 5 ms by a
    thread (a bomb that is inflated and dropped again between two looks at the end would
    go unseen): `growth` is the peak minus the resident memory at the start, in bytes."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> MemoryWatch:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def zlib_bomb(mib: int) -> bytes:
    """A valid zlib stream of `mib` MiB of zeros, about 1 KiB per MiB, built in a second: one
    compressed MiB ends with a full flush (byte-aligned, no reference to what came before),
    so it can be repeated; then an empty final block and the Adler-32 of the whole."""
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    header, block = first[:2], first[2:]
    checksum = 1
    for _ in range(mib):
        checksum = zlib.adler32(zeros, checksum)
    return header + block * mib + b"\x03\x00" + struct.pack("!I", checksum)


def die_after(nbytes: int) -> Any:
    def on_progress(progress: Progress) -> None:
        if progress.done >= nbytes:
            os._exit(3)

    return on_progress


async def main(scenario: str, me: str, other: str) -> None:
    net = await PeerNetwork.join(os.environ["PEER_ROOM"], me, loopback=True)
    link = await net.connect(other, timeout=30)
    started = time.monotonic()
    try:
        if scenario == "exchange":
            if me == "alice":
                data = payload()
                calls = 0

                def count(_: Progress) -> None:
                    nonlocal calls
                    calls += 1

                await link.send(TEXT)
                await link.send(OBJECT)
                await link.send(data, progress=count)
                reply = await link.recv(timeout=60)
                emit(
                    result={
                        "text": TEXT,
                        "object": OBJECT,
                        "bytes_len": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "reply": reply,
                        "offerer": link.offerer,
                        "ice": ice_addresses(link),
                        "progress_calls": calls,
                    }
                )
            else:
                text = await link.recv(timeout=60)
                obj = await link.recv(timeout=60)
                data = await link.recv(timeout=120)
                await link.send(f"thanks, {len(data)} bytes")
                emit(
                    result={
                        "text": text,
                        "object": obj,
                        "bytes_len": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "offerer": link.offerer,
                        "ice": ice_addresses(link),
                    }
                )
                await asyncio.sleep(0.5)  # let the reply reach alice before leaving
        elif scenario == "send-big":
            await link.send(payload())
            emit(result="sent")
        elif scenario == "recv-big":
            await link.recv(timeout=60)
            emit(result="received")
        elif scenario == "recv-then-die":
            link.on("progress", die_after(3 * 1024 * 1024))
            await link.recv(timeout=60)
            emit(result="received everything: should have died")
        elif scenario == "send-then-die":
            await link.send(payload(), progress=die_after(3 * 1024 * 1024))
            emit(result="sent everything: should have died")
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    except PeerLinkError as error:
        emit(error={"type": type(error).__name__, "message": str(error), "seconds": time.monotonic() - started})
    finally:
        await net.close()


async def run(scenario: str, me: str, other: str) -> None:
    """`main`, with any failure as an {"error": ...} line whose traceback is whole: the test
    shows the end of stderr, where asyncio's warnings about pending tasks hid the cause."""
    try:
        await main(scenario, me, other)
    except Exception as error:
        emit(error={"type": type(error).__name__, "message": str(error), "traceback": traceback.format_exc()})
        raise


if __name__ == "__main__":
    if os.environ.get("PEER_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)6.0f %(name)s %(message)s")
        for quiet in ("aioice", "aiortc"):
            logging.getLogger(quiet).setLevel(logging.INFO)
    asyncio.run(run(*sys.argv[1:4]))
