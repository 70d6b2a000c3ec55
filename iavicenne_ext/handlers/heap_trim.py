"""Giving the heap back: after a burst of queued frames, ask glibc to return freed memory.

glibc keeps the heap pages of freed buffers: after a burst of queued frames (slow readers,
a replay) the server's resident memory stayed ~100 MiB up once they were all written or
dropped. After `TRIM_AFTER_BYTES` left the queues, it is asked to give them back
(``malloc_trim``), at most once a second; elsewhere (no glibc) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_AFTER_BYTES = 32 * 1024 * 1024


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _find_malloc_trim()


class HeapTrimmer:
    """Counts the bytes that left the server's outbound queues; trims the heap now and then."""

    __slots__ = ("_released", "_trimming")

    def __init__(self) -> None:
        self._released = 0  # bytes that left the queues since the heap was last trimmed
        self._trimming = False

    def released(self, size: int) -> None:
        """`size` queued bytes were written or dropped: now and then, give the memory back."""
        self._released += size
        if self._released >= TRIM_AFTER_BYTES and not self._trimming and _MALLOC_TRIM is not None:
            self._trimming = True
            asyncio.get_running_loop().call_later(1.0, self._trim)

    def _trim(self) -> None:
        self._trimming = False
        self._released = 0
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)
