"""What another user feels while someone attacks: the round trip of their acknowledged
messages, measured the whole time an attack runs.

A bystander is a second identity in a room of its own (so it shares nothing with the
attacker but the server) sending one acknowledged message every `interval` seconds and
timing each `ack`. Abuse tests start one beside the attack and assert its median and p99:
what a colleague would notice as a frozen chat.

    async with Bystander(await connect(headers=BOB), room="calm") as bob:
        ...attack...
    assert bob.p99_ms < 50, bob.summary()
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from types import TracebackType

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient


class Bystander:
    """One client sending a message with a `ref` every `interval` seconds and timing its ack.

    ``rtts_ms`` holds every round trip; an ack that does not come within `timeout` counts
    as `timeout` (the chat was frozen at least that long) and in ``lost``."""

    def __init__(
        self,
        client: WSClient,
        *,
        room: str = "bystanders",
        user_id: str | None = None,
        interval: float = 0.02,
        timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.room = room
        self.user_id = user_id
        self.interval = interval
        self.timeout = timeout
        self.rtts_ms: list[float] = []
        self.lost = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def __aenter__(self) -> Bystander:
        await self.client.join(self.room, self.user_id)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        await self.stop()

    async def stop(self) -> None:
        """End the measuring loop after its current message. Asked, not only cancelled: in
        Python 3.11 `asyncio.wait_for` (under `WSClient.recv`) can swallow a cancellation
        that comes as its frame arrives, and the loop would then go on for ever."""
        self._stopping = True
        if self._task is None:
            return
        done, _ = await asyncio.wait([self._task], timeout=self.timeout + 5)
        task, self._task = self._task, None
        if done:
            task.result()  # a bystander whose socket failed says so
            return
        task.cancel()  # stuck in a send: cancel it, and wait for the cancellation to land
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        n = 0
        while not self._stopping:
            n += 1
            ref = f"bystander-{n}"
            started = time.perf_counter()
            await self.client.send({"type": p.MESSAGE, "room": self.room, "ref": ref, "payload": {"content": f"still here {n}"}})
            try:
                await self.client.expect(p.ACK, timeout=self.timeout, where=lambda frame: frame.get("ref") == ref)  # noqa: B023 - awaited here
                self.rtts_ms.append((time.perf_counter() - started) * 1000)
            except (TimeoutError, asyncio.TimeoutError):
                self.lost += 1
                self.rtts_ms.append(self.timeout * 1000)
            await asyncio.sleep(self.interval)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rtts_ms) if self.rtts_ms else float("inf")

    @property
    def p99_ms(self) -> float:
        if not self.rtts_ms:
            return float("inf")
        ordered = sorted(self.rtts_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def summary(self) -> str:
        return f"bystander: {len(self.rtts_ms)} acks, median {self.median_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.lost} timed out"
