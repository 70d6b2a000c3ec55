"""Pacing of shared-document work per identity (shared_state.py).

A shared frame may cost the server far more than it cost its sender: a sync step 1 with
an empty state vector makes the server encode the whole document, a large update is
decoded twice and applied. Each identity may spend at most `rate` seconds of the
server's time per second (of the time it could run: `_server_clock`) on such work (``shared_cpu_per_second``), with a burst of
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


_SCHEDSTAT = "/proc/thread-self/schedstat"  # Linux: ns on a CPU, ns waiting for one, timeslices


def _server_clock() -> float:
    """Seconds the calling thread (the event loop's) ran or could have run: the monotonic
    clock less the time it waited for a CPU that other processes held (Linux's schedstat;
    elsewhere the monotonic clock). A share is refilled by this clock: on a machine so loaded
    that the server got a seventh of a core, a wall-clock refill gave a member about as many
    seconds as the server had, and the pacing refused nothing while one member took them all."""
    now = time.monotonic()
    try:
        with open(_SCHEDSTAT, "rb") as stat:
            return now - int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return now


class SharedPacing:
    """Each identity's share of the server's time for shared-document work."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._balance: dict[str, tuple[float, float]] = {}  # username -> (seconds left, when: _server_clock)

    def _left(self, who: str, now: float) -> float:
        kept = self._balance.get(who)
        if kept is None:
            return self.burst
        return min(self.burst, kept[0] + (now - kept[1]) * self.rate)

    def check(self, who: str) -> None:
        """Refuse (``rate-limited``) when `who` has spent more than its share: nothing is done then."""
        now = _server_clock()
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
        now = _server_clock()
        self._balance[who] = (self._left(who, now) - seconds, now)
        if len(self._balance) > 4096:  # identities gone with a full share again: forget them
            for name in [name for name in self._balance if self._left(name, now) >= self.burst]:
                del self._balance[name]
