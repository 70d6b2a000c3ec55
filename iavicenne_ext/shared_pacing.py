"""Pacing of shared-document work per identity (shared_state.py).

A shared frame may cost the server far more than it cost its sender: a sync step 1 with
an empty state vector makes the server encode the whole document, a large update is
decoded twice and applied. Each identity may spend at most `rate` seconds of the
server's time per second on such work (``shared_cpu_per_second``), with a burst of
`burst` seconds saved up; a frame from an identity already over its share is refused
(``rate-limited``, naming the option) before any work is done, so one member cannot take
more than a fair share of the event loop. The time is measured, not estimated: whatever
makes a frame costly is paid for by whoever sent it.
"""

from __future__ import annotations

import time

import iavicenne_protocol as p


class Meter:
    """CPU seconds the event loop's thread spent inside its `with` blocks (the synchronous
    parts of one request). CPU time, not wall-clock time: on a busy machine the wall clock
    also counts other processes' turns, and a member would be charged for them."""

    __slots__ = ("_start", "spent")

    def __init__(self) -> None:
        self.spent = 0.0
        self._start = 0.0

    def __enter__(self) -> Meter:
        self._start = time.thread_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.spent += time.thread_time() - self._start


class SharedPacing:
    """Each identity's share of the server's time for shared-document work."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._balance: dict[str, tuple[float, float]] = {}  # username -> (seconds left, when)

    def _left(self, who: str, now: float) -> float:
        kept = self._balance.get(who)
        if kept is None:
            return self.burst
        return min(self.burst, kept[0] + (now - kept[1]) * self.rate)

    def check(self, who: str) -> None:
        """Refuse (``rate-limited``) when `who` has spent more than its share: nothing is done then."""
        now = time.monotonic()
        left = self._left(who, now)
        if left >= self.burst:
            self._balance.pop(who, None)  # full again: nothing to remember
        if left < 0:
            wait = -left / self.rate if self.rate > 0 else 1.0
            raise p.limit_exceeded(
                "shared_cpu_per_second",
                self.rate,
                f"shared frame refused: {who}'s shared-document requests have taken more than their share of "
                f"the server's time; nothing was changed, send it again in {wait:.1f} s",
                code=p.ErrorCode.RATE_LIMITED,
            )

    def charge(self, who: str, seconds: float) -> None:
        now = time.monotonic()
        self._balance[who] = (self._left(who, now) - seconds, now)
        if len(self._balance) > 4096:  # identities gone with a full share again: forget them
            for name in [name for name in self._balance if self._left(name, now) >= self.burst]:
                del self._balance[name]
