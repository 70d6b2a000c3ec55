"""The inbound side of a socket: each text frame parsed once and handed to its method.

`FrameDispatch.on_message` counts the frame against the connection's rate and the
identity's bytes (budgets.py), parses it with `protocol.parse_request`, calls the method
that `frame_handlers` names for its type, and turns a `ProtocolError` (or a broker that is
down, or a bug) into an error frame. Frames that need no waiting are handled at once, in
the turn that read them (the trampoline, `_carry_on`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ClassVar

import iavicenne_protocol as p

from ..broker.base import BrokerUnavailable
from .budgets import Account, Limits, TokenBucket
from .outbound import OutboundSocket

# How many frames of one client are handled one after the other without letting the
# event loop turn (FrameDispatch.on_message): enough that a burst is handled, and its
# frames written, together; few enough that a flooding client cannot hold up the others.
MAX_FRAMES_PER_TURN = 64
# ... and for how long: 64 ordinary frames take a few milliseconds, but one frame may take
# tens (a whole shared document encoded for a sync step 1), and a client that sends them back
# to back held the loop for their sum (20 a second put another user's ack p99 at 0.35-0.9 s).
# Once the frames handled in a turn took this long, the next waits for a turn: every other
# connection is read in between.
MAX_SECONDS_PER_TURN = 0.005
# Room messages of one connection whose publish is waiting for the broker (Redis) while the
# next frames are read: tornado reads a frame only once the last one is handled, so without
# this a publisher's messages went one broker round trip at a time. They stay in order: the
# Redis broker sends its requests in call order on one connection (broker/redis/lane.py),
# and each one's ack or error is sent when its own publish is answered.
MAX_PUBLISHES_IN_FLIGHT = 32
# Lines logged about one identity's bad frames (a traceback, or frames the server could not
# read): the first of each interval, the next says how many were left out. A client can send
# thousands of bad frames a second and each line costs the server its writing and its disk
# (8 sockets once made 0.76 MiB/s of tracebacks); a line every 10 s still tells an operator
# who it is and what they send.
BAD_FRAME_LOG_INTERVAL = 10.0
# a frame that is a room message (a cheap look before parsing: see on_message)
_MESSAGE_TYPE = re.compile(rb'"type"\s*:\s*"message"')

Handler = Callable[[p.Request], Awaitable[None]]


class FrameDispatch(OutboundSocket):
    """A socket's inbound frames, each to its method; `ProtocolSocket` is one."""

    known_types: frozenset[str] = frozenset()
    # frame type -> the name of the method that answers it (one table per class, not a
    # dict of bound methods per connection)
    frame_handlers: ClassVar[dict[str, str]] = {}
    # the identity's, once the socket is open and counted (ProtocolSocket.open)
    account: Account | None
    # username -> when its last bad-frame line was logged, and how many were left out since
    # (_log_bad_frame): per identity, over all its sockets
    _bad_frame_logs: ClassVar[dict[str, tuple[float, int]]] = {}

    def start_dispatch(self, limits: Limits) -> None:
        self._bucket = TokenBucket(limits.messages_per_second, limits.burst)
        self._frames_this_turn = 0  # see on_message
        self._seconds_this_turn = 0.0  # the time those took
        self._publishes: set[asyncio.Future[None]] = set()  # room messages in flight (on_message)
        self._publishing = False  # set by a handler about to wait for its publish only
        self._dropped = 0
        self._last_limit_notice = 0.0

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Handle one frame, at once when it needs no waiting (None), else in a task.

        Tornado reads the next frame only once this one is handled. Handed a coroutine, it
        makes it a task: every frame then costs turns of the event loop, and the frames of
        a burst are never handled, nor their broadcasts written, in the same turn. Most
        frames wait for nothing (the memory broker answers at once), so the coroutine is
        run here until it first waits; only then does a task carry on with it. After
        MAX_FRAMES_PER_TURN frames handled at once, or MAX_SECONDS_PER_TURN spent on them,
        the next waits for a turn, so that one client's burst does not hold up the others.
        """
        if self._publishes and not _is_message(message):
            # only room messages go on past publishes still in flight; anything else
            # (a leave, a join, a presence change) waits until those are answered
            return asyncio.ensure_future(self._after_publishes(message))
        handling = self._handle_frame(message)
        if self._frames_this_turn >= MAX_FRAMES_PER_TURN or self._seconds_this_turn >= MAX_SECONDS_PER_TURN:
            self._frames_this_turn, self._seconds_this_turn = 0, 0.0
            return asyncio.ensure_future(handling)  # a task starts in the next turn
        self._publishing = False
        started = time.perf_counter()
        try:
            waiting_on = handling.send(None)
        except StopIteration:
            self._frames_this_turn += 1
            self._seconds_this_turn += time.perf_counter() - started
            return None
        self._frames_this_turn, self._seconds_this_turn = 0, 0.0
        task = asyncio.ensure_future(_carry_on(handling, waiting_on))
        if self._publishing and len(self._publishes) < MAX_PUBLISHES_IN_FLIGHT:
            # a room message waiting for its publish only: read the next frame meanwhile
            self._publishes.add(task)
            task.add_done_callback(self._publishes.discard)
            return None
        return task

    async def _after_publishes(self, message: str | bytes) -> None:
        while self._publishes:
            await asyncio.wait(list(self._publishes))
        await self._handle_frame(message)

    async def _handle_frame(self, message: str | bytes) -> None:
        if self._gone:
            return
        ref: str | None = None
        try:
            if not self._bucket.take():
                self._rate_limited("messages_per_second")
                return
            # counted before parsing: a flood of big frames is dropped unparsed
            if self.account is not None and not self.account.bytes.take(len(message)):
                self._rate_limited("bytes_per_second")
                # and this socket is not read until the budget would hold the frame (at most
                # a second; tornado reads the next frame once this returns): the flood then
                # waits in the sender's socket instead of costing this server its reading
                await asyncio.sleep(min(1.0, self.account.bytes.wait(len(message))))
                return
            request = p.parse_request(message, self.known_types)
            ref = request.ref
            handler: Handler = getattr(self, self.frame_handlers[request.type])
            await handler(request)
        except p.ProtocolError as error:
            self.send_error_frame(error.code, error.message, ref if ref is not None else error.ref, **error.fields)
        except BrokerUnavailable as error:
            self.send_error_frame(p.ErrorCode.UNAVAILABLE, f"not delivered: {error}", ref)
        except Exception as error:
            self.send_error_frame(p.ErrorCode.INTERNAL, "internal error; the request was not carried out", ref)
            self._log_bad_frame(error)

    def _log_bad_frame(self, error: Exception) -> None:
        """Log a frame that failed in the server, at most one line per identity a BAD_FRAME_LOG_INTERVAL."""
        username = str(self.identity.get("username"))
        now = time.monotonic()
        log = FrameDispatch._bad_frame_logs
        since, left_out = log.get(username, (-BAD_FRAME_LOG_INTERVAL, 0))
        if now - since < BAD_FRAME_LOG_INTERVAL:
            log[username] = (since, left_out + 1)
            return
        for name, (at, _) in list(log.items()):  # kept only while they may still be left out
            if now - at >= BAD_FRAME_LOG_INTERVAL:
                del log[name]
        log[username] = (now, 0)
        more = f" ({left_out} more since the last line, not logged)" if left_out else ""
        self.log.error("iavicenne: error handling a frame from %s (%s)%s", self.key, username, more, exc_info=error)

    def _rate_limited(self, option: str) -> None:
        """Drop the frame; say so at most once a second (the notice must not be a flood too)."""
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_limit_notice < 1.0:
            return
        self._last_limit_notice = now
        limits = self.limits
        dropped = f"{self._dropped} frame(s) dropped, send them again later"
        if option == "messages_per_second":
            limit: float = limits.messages_per_second
            what = f"rate limited: more than {limit:g} frames per second (burst {limits.burst}); {dropped}"
        else:
            limit = limits.bytes_per_second
            what = (
                f"rate limited: more than {limit:g} bytes per second from {self.identity['username']} over all "
                f"its connections (burst {limits.burst_bytes}); {dropped}"
            )
        error = p.limit_exceeded(option, limit, what, code=p.ErrorCode.RATE_LIMITED)
        self.send_error_frame(error.code, error.message, dropped=self._dropped, **error.fields)
        self._dropped = 0


def _is_message(frame: str | bytes) -> bool:
    """Whether a frame looks like a room message, before it is parsed (a frame whose
    payload holds such a key can only reorder its own sender's frames)."""
    data = frame.encode() if isinstance(frame, str) else frame
    return _MESSAGE_TYPE.search(data, 0, 512) is not None


async def _carry_on(started: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Run the rest of a coroutine already run up to its first wait (on `waiting_on`)."""
    await _Resumed(started, waiting_on)


class _Resumed:
    """Awaiting this runs `started` on from where it waits: what `await` does for a
    coroutine, from its second step on (the first was run by the caller)."""

    __slots__ = ("started", "waiting_on")

    def __init__(self, started: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.started = started
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        started, waiting_on = self.started, self.waiting_on
        while True:
            try:
                yield waiting_on  # the task waits on it, as it would have for `started`
            except BaseException as error:  # cancelled (or thrown into): passed on
                try:
                    waiting_on = started.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = started.send(None)
                except StopIteration:
                    return
