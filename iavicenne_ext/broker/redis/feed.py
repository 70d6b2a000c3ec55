"""The frames of the rooms this server is subscribed to: in seq order, each delivered once.

The algorithm on top of the pub/sub link, which knows nothing of Redis: a room's frames
come over its channel in seq order; after an outage (or a message the link dropped) a
gap shows in the seqs, and what was missed is read from the history before the frame
that revealed it. Frames that arrive twice (replay, then live) are delivered once, and
anything on a channel that this broker did not publish is dropped with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import iavicenne_protocol as p

from ..base import History
from ..events import Deliver, Publication, RoomFrame
from . import envelope

#: (room, since, epoch) -> what the history holds after `since`; no availability check
FetchHistory = Callable[[str, int, str], Awaitable[History]]


class _DropLog:
    """One warning per dropped message, at most one a second (with the count since the last)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._last = float("-inf")
        self._unsaid = 0

    def __call__(self, room: str, why: str, data: bytes) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._unsaid += 1
            return
        also = f" ({self._unsaid} more dropped since the last such line)" if self._unsaid else ""
        self._last, self._unsaid = now, 0
        self.log.warning(
            "iavicenne: dropped a message on room %r's Redis channel that this broker did not publish: %s; first bytes %r%s",
            room,
            why,
            data[:80],
            also,
        )


class RoomFeed:
    """Per subscribed room, the (epoch, seq) of the last frame delivered here."""

    def __init__(self, *, fetch: FetchHistory, deliver: Deliver, log: logging.Logger, echo_timeout: float) -> None:
        self._fetch = fetch
        self._deliver = deliver
        self.log = log
        self._dropped = _DropLog(log)
        self._echo_timeout = echo_timeout
        # rooms with local members: subscribed now, or again once Redis is back
        self.wanted: set[str] = set()
        self._last: dict[str, tuple[str, int]] = {}
        self._fresh: set[str] = set()  # subscribe sent, confirmation pending: not tracked yet
        self._echo_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def want(self, room: str) -> None:
        """A subscription to `room` is on its way."""
        self.wanted.add(room)
        self._last.pop(room, None)
        self._fresh.add(room)

    def unwant(self, room: str) -> None:
        self.wanted.discard(room)
        self._last.pop(room, None)
        self._fresh.discard(room)

    def reset(self) -> None:
        """The link is gone: pending subscriptions are void, nobody waits for an echo."""
        self._fresh.clear()
        for echoes in self._echo_waiters.values():
            for _, future in echoes:
                if not future.done():
                    future.set_result(None)
        self._echo_waiters.clear()

    # -- from the link ---------------------------------------------------------------
    async def on_subscribed(self, room: str) -> None:
        if room in self._fresh:
            self._fresh.discard(room)
            self._last.pop(room, None)  # frames before this point were of an older subscription
        elif room in self._last:
            await self._catch_up(room)  # a resubscription after an outage

    async def on_message(self, room: str, data: bytes) -> None:
        if room not in self.wanted:
            return  # no local member any more (the unsubscription is on its way)
        try:
            message = envelope.decode(data)
        except envelope.MalformedEnvelope as error:
            self._dropped(room, str(error), data)
            return
        seq, frame = message.seq, message.frame
        if seq:
            frame = p.with_seq(seq, frame)
            if room not in self._fresh:
                epoch = message.epoch
                assert epoch is not None  # decode checks that a seq comes with an epoch
                last = self._last.get(room)
                if last is not None:
                    if last[0] == epoch and seq <= last[1]:
                        return  # already delivered by a catch-up
                    if (last[0] != epoch or seq > last[1] + 1) and not await self._catch_up(room, until=(epoch, seq)):
                        self._dropped(room, f"seq {seq} of epoch {epoch!r} is not in the room's history", data)
                        return
                self._last[room] = (epoch, seq)
        self._deliver(message.event(room, frame))
        if seq and self._echo_waiters:
            self._release_echoes(room, seq)

    # -- catching up -------------------------------------------------------------------
    async def _catch_up(self, room: str, until: tuple[str, int] | None = None) -> bool:
        """Deliver what this server's members missed after the last frame they got.

        `until` is a live frame that revealed the gap: only what comes before it is
        delivered here, and False is returned when the history does not hold it (it was
        not published by a broker). Members are told plainly what cannot be replayed.
        """
        epoch, since = self._last[room]
        history = await self._fetch(room, since, epoch)
        genuine = until is None or (until[0] == history.epoch and until[1] <= history.seq)
        if not genuine:
            until = None  # deliver what the history holds; the live frame is dropped
        if history.epoch != epoch:
            # Redis lost the room (restarted without persistence, flushed): a new life
            self.log.warning("iavicenne: the history of room %r started over in Redis (new epoch)", room)
            self._notify(
                room,
                f"the history of room {room!r} started over (Redis lost it): seq numbers begin again "
                f"under epoch {history.epoch}, and messages after seq {since} may be missing",
                since=since,
                epoch=history.epoch,
            )
        elif not history.recovered:
            self.log.warning("iavicenne: frames of room %r after seq %d were lost on this server", room, since)
            self._notify(
                room,
                f"messages of room {room!r} after seq {since} were lost while this server could not "
                "reach Redis; join-room again with since to get what is left",
                since=since,
            )
        # the frames returned are contiguous and end at history.seq
        first = history.seq - len(history.messages) + 1
        delivered = since if history.epoch == epoch else first - 1
        for seq, frame in enumerate(history.messages, first):
            if until is not None and (until[0] != history.epoch or seq >= until[1]):
                break
            self._deliver(Publication(room, frame, seq))
            delivered = seq
        self._last[room] = (history.epoch, delivered)
        if self._echo_waiters:
            self._release_echoes(room, delivered)
        return genuine

    def _notify(self, room: str, text: str, **extra: Any) -> None:
        self._deliver(RoomFrame(room, p.encode(p.error_frame(p.ErrorCode.UNAVAILABLE, text, room=room, **extra))))

    # -- publish returns once its frame was delivered here -------------------------------
    def _release_echoes(self, room: str, seq: int) -> None:
        echoes = self._echo_waiters.get(room)
        if not echoes:
            return
        keep = []
        for wanted, future in echoes:
            if wanted <= seq:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((wanted, future))
        if keep:
            self._echo_waiters[room] = keep
        else:
            del self._echo_waiters[room]

    async def await_echo(self, room: str, seq: int) -> None:
        """Return once this server delivered `seq` locally, as the memory broker does before acking."""
        last = self._last.get(room)
        if room not in self.wanted or (last is not None and last[1] >= seq):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echo_waiters.setdefault(room, []).append((seq, future))
        # on a timeout the frame is stored and published all the same; the reader is just late
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(future, self._echo_timeout)
