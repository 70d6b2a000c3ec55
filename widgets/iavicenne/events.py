"""Events: what the client and the peer links tell you, and the one small emitter that
carries them, as callbacks and async iterators.

The event types: `Message` (a chat or direct message), `PresenceEvent`, `Gap` (of a
room endpoint), `PeerEvent` and `Signal` (of a signaling room).

``emitter.on("message", callback)`` calls `callback(event)` for each event (a coroutine
function is scheduled as a task) and returns a `Subscription` (call it to stop; its repr
says what it is, so a cell that ends with ``room.on_message(...)`` prints one readable
line); ``async for event in emitter.stream("message")`` reads them in order. A stream
sees the events emitted after it was created, without limit, so a slow reader never makes
the connection drop anything; it ends when the emitter closes. A stream belongs to the
loop the emitter runs on; read from another thread's loop, each read is handed to it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("iavicenne.client")

_END = object()


# -- what the client tells you ------------------------------------------------------------
@dataclass(slots=True)
class Message:
    """A chat message (``message``) or a direct message (``direct-message``) of a room."""

    room: str
    user_id: str
    content: dict[str, Any]  # the sender's payload; the seed's clients put text in "content"
    seq: int | None  # None for direct messages (not kept in history)
    identity: dict[str, Any]
    timestamp: str
    direct: bool = False
    ref: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> Any:
        return self.content.get("content")

    @property
    def reply(self) -> dict[str, Any] | None:
        """What it replies to, as the server filled it: ``seq``, ``user_id``, ``identity``
        (the replied-to author as verified) and ``quote``; None for a message that is no reply."""
        reply = self.raw.get("reply")
        return reply if isinstance(reply, dict) else None

    @property
    def edited(self) -> bool:
        return "edited_at" in self.raw

    @property
    def deleted(self) -> bool:
        """Deleted by its author or the room's owner: its text is gone (a message of the history)."""
        return "deleted" in self.raw


@dataclass(slots=True)
class MessageChange:
    """A kept message changed: ``kind`` "edited" (`content` is its new payload) or "deleted"
    (`content` is empty). `identity` is who changed it (verified), `user_id` the message's author."""

    room: str
    seq: int
    kind: str
    user_id: str
    content: dict[str, Any]
    identity: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class PresenceEvent:
    """``joined`` / ``left`` / ``state`` of one member, or a ``snapshot`` after (re)joining."""

    room: str
    kind: str
    user_id: str | None
    state: dict[str, Any]
    members: dict[str, dict[str, Any]]


@dataclass(slots=True)
class PeerEvent:
    """A peer ``joined`` or ``left`` the signaling room."""

    room: str
    kind: str
    peer_id: str
    rejoined: bool = False
    #: whose peer it is, as the server verified (None when it does not say, and on ``left``)
    identity: dict[str, Any] | None = None


@dataclass(slots=True)
class Signal:
    """An offer, answer, ICE candidate or relay frame relayed from another peer."""

    kind: str  # protocol.OFFER, ANSWER, ICE_CANDIDATE or RELAY
    source: str
    body: dict[str, Any] | None
    room: str
    #: who sent it, as the server verified (``source_identity``: username, name,
    #: display_name); None from a server that does not say
    identity: dict[str, Any] | None = None


@dataclass(slots=True)
class Gap:
    """Messages of `room` after `since` could not all be recovered (history gone or too short)."""

    room: str
    since: int | None
    epoch_changed: bool


# -- carrying them ---------------------------------------------------------------------------
class Subscription:
    """What ``on(kind, callback)`` returns: call it to stop the callback."""

    __slots__ = ("_stop", "callback", "kind")

    def __init__(self, kind: str, callback: Callable[..., Any], stop: Callable[[], None]) -> None:
        self.kind = kind
        self.callback = callback
        self._stop = stop

    def __call__(self) -> None:
        self._stop()

    def __repr__(self) -> str:
        name = getattr(self.callback, "__qualname__", None) or repr(self.callback)
        return f"<calling {name} for each {self.kind!r} event; call this to stop>"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class EventStream:
    """An async iterator over the events of some kinds; ``close()`` (or ``async with``) ends it.

    Its queue lives on `loop` (the emitter's: the loop current where it was made, unless
    given); reading it from another loop hands each read to that one.
    """

    def __init__(
        self, emitter: EventEmitter, kinds: frozenset[str] | None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._emitter = emitter
        self.kinds = kinds
        self._loop = loop or _running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def _put(self, event: Any) -> None:
        if not self.closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        if self._loop is not None and _running_loop() is not self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)  # the queue is not thread-safe
            return
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(_END)
            self._emitter._streams.discard(self)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> Any:
        """The next event; `asyncio.TimeoutError` after `timeout` s, `EOFError` once closed."""
        here = _running_loop()
        if self._loop is not None and here is not self._loop:
            # another thread's loop (an ipykernel subshell, a worker): read on ours
            future = asyncio.run_coroutine_threadsafe(self._get(timeout), self._loop)
            return await asyncio.wrap_future(future)
        return await self._get(timeout)

    async def _get(self, timeout: float | None) -> Any:
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is _END:
            self._queue.put_nowait(_END)
            raise EOFError("the event stream is closed")
        return event

    def pending(self) -> int:
        return self._queue.qsize()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventEmitter:
    """Callbacks and streams by event kind (``message``, ``presence``, ...)."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], Any]]] = {}
        self._streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, kind: str, callback: Callable[[Any], Any]) -> Subscription:
        """Call `callback(event)` for every `kind` event; returns a `Subscription` (call it to stop)."""
        self._callbacks.setdefault(kind, []).append(callback)

        def off() -> None:
            callbacks = self._callbacks.get(kind, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return Subscription(kind, callback, off)

    def stream(self, *kinds: str, loop: asyncio.AbstractEventLoop | None = None) -> EventStream:
        """An async iterator over the events of `kinds` (every kind when none is given)."""
        stream = EventStream(self, frozenset(kinds) if kinds else None, loop)
        self._streams.add(stream)
        return stream

    def emit(self, kind: str, event: Any) -> None:
        for stream in list(self._streams):
            if stream.kinds is None or kind in stream.kinds:
                stream._put(event)
        for callback in list(self._callbacks.get(kind, ())):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                # a user's callback must not break the connection that called it
                log.exception("iavicenne: the %r callback %r failed", kind, callback)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("iavicenne: an event callback failed", exc_info=task.exception())

    def end_streams(self) -> None:
        """End every stream (their iterators stop); the callbacks stay."""
        for stream in list(self._streams):
            stream.close()

    def close(self) -> None:
        """End every stream (their iterators stop) and forget the callbacks."""
        self.end_streams()
        self._callbacks.clear()


__all__ = ["EventEmitter", "EventStream", "Gap", "Message", "PeerEvent", "PresenceEvent", "Signal", "Subscription"]
