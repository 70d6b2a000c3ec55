"""What a notebook starts without waiting for it, made visible, from whichever thread.

A cell that calls ``room.send(...)`` gets a `Pending` back at once (await it, or leave
it); a callback given to an event loop is `guarded`, so that what it raises reaches the
panel instead of a log nobody reads. Both the room session and the peer sessions use
them (`iavicenne.room`, `iavicenne.peer_session`).

**Any thread, one loop.** A session's work runs on the loop of the kernel's main thread.
A call may come from elsewhere: ipykernel 7 runs widget events (Enter in a text box, a
button click) on a subshell thread with a loop of its own, and a user may call from a
worker thread. `KernelLoop` hands such calls over (`spawn`, `call`, `run`) instead of
refusing them, and a `Pending` can be awaited on any loop or waited for from a plain
thread (``pending.result(timeout)``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Report(Protocol):
    """Where failures go: ``report(what, error)``, shown in a panel's error area."""

    def __call__(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None: ...


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Pending(Generic[T]):
    """What a call that works in the background returns (``room.send(...)``): await it
    for the result (on any loop), or leave it. Its repr says where it stands, so a cell
    that ends with such a call prints something readable instead of a task's internals.

    `task` is the asyncio task on the session's loop; it exists once the loop has started
    it (at once when the call came from the loop's own thread).
    """

    def __init__(self, what: str, loop: asyncio.AbstractEventLoop, thread: int | None = None) -> None:
        self.what = what
        self.loop = loop
        self._thread = thread  # the loop's thread: waiting there would stop the loop
        self.task: asyncio.Task[T] | None = None
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._cancelled_early = False

    def _start(self, coro: Coroutine[Any, Any, T], report: Report | None) -> None:
        """On the loop's thread: run `coro` as this Pending's task."""
        if self._cancelled_early or self.future.cancelled():
            coro.close()
            self.future.cancel()
            return
        self.task = task = self.loop.create_task(coro)

        def done(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                self.future.cancel()
                return
            error = task.exception()
            if error is not None:
                self.future.set_exception(error)
                if report is not None:
                    report(f"{self.what} failed: {error}", error, traceback=False)
            else:
                self.future.set_result(task.result())

        task.add_done_callback(done)

    def __await__(self) -> Any:
        here = running_loop()
        if here is self.loop and self.task is not None:
            return self.task.__await__()
        return asyncio.wrap_future(self.future, loop=here).__await__()

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = 0) -> T:
        """The result once done (from a plain thread: wait up to `timeout` seconds for it).

        On the loop's own thread never wait: that would stop the loop that does the work."""
        if not self.future.done() and (timeout == 0 or threading.get_ident() == self._thread):
            raise asyncio.InvalidStateError(f"{self.what}: not done yet; await it")
        return self.future.result(timeout)

    def cancel(self) -> bool:
        if self.future.done():
            return False
        if self.task is None:
            self._cancelled_early = True
            self.future.cancel()
            return True
        self.loop.call_soon_threadsafe(self.task.cancel)
        return True

    def __repr__(self) -> str:
        if not self.future.done():
            return f"<{self.what}: pending>"
        if self.future.cancelled():
            return f"<{self.what}: cancelled>"
        error = self.future.exception()
        return f"<{self.what}: failed: {error}>" if error is not None else f"<{self.what}: done>"


class KernelLoop:
    """The loop a session lives on (the kernel's main loop) and its thread: work from
    any other thread is handed to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: int | None = None) -> None:
        self.loop = loop
        self.thread = thread if thread is not None else threading.get_ident()

    def here(self) -> bool:
        """Whether this call runs on the loop's own thread."""
        return threading.get_ident() == self.thread

    def spawn(self, coro: Coroutine[Any, Any, T], what: str, report: Report | None = None) -> Pending[T]:
        """Run `coro` on the loop, from any thread; a failure goes to `report` too."""
        pending: Pending[T] = Pending(what, self.loop, self.thread)
        if self.here():
            pending._start(coro, report)
        else:
            self.loop.call_soon_threadsafe(pending._start, coro, report)
        return pending

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call `function` now when on the loop's thread, else soon on the loop."""
        if self.here():
            function(*args, **kwargs)
        else:
            self.loop.call_soon_threadsafe(functools.partial(function, *args, **kwargs))

    def run(self, function: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
        """`function(*args)` on the loop's thread, its result here (waiting from another
        thread: for what must happen on the loop before the caller goes on)."""
        if self.here():
            return function(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to the caller's thread
                future.set_exception(error)

        self.loop.call_soon_threadsafe(call)
        return future.result(timeout)

    async def await_on_loop(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` (made for this loop) from whichever loop runs this coroutine."""
        if running_loop() is self.loop:
            return await awaitable

        async def inside() -> T:
            return await awaitable

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(inside(), self.loop))


def on_session_loop(method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """A coroutine method of an object with a `kernel` (`KernelLoop`), run on that loop
    whichever loop awaits it: ``await room.ready()`` from a subshell's loop works."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        kernel: KernelLoop = self.kernel
        if running_loop() is kernel.loop:
            return await method(self, *args, **kwargs)
        future = asyncio.run_coroutine_threadsafe(method(self, *args, **kwargs), kernel.loop)
        return await asyncio.wrap_future(future)

    return wrapper


def guarded(callback: Callable[..., Any], what: str, report: Report) -> Callable[..., None]:
    """`callback` that hands what it raises to `report(what, error)`, also when it is a
    coroutine function (its task's failure is reported when it ends): an event loop's
    callbacks must not fail where nobody looks."""

    def call(*args: Any) -> None:
        try:
            result = callback(*args)
        except Exception as error:
            report(f"{what} raised {type(error).__name__}: {error}", error)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)

            def done(task: asyncio.Future[Any]) -> None:
                if not task.cancelled() and task.exception() is not None:
                    error = task.exception()
                    report(f"{what} raised {type(error).__name__}: {error}", error)

            task.add_done_callback(done)

    return call


def callback_name(callback: Callable[..., Any]) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
