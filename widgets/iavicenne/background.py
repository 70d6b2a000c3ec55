"""What a notebook starts without waiting for it, made visible.

A cell that calls ``room.send(...)`` gets a `Pending` back at once (await it, or leave
it); a callback given to an event loop is `guarded`, so that what it raises reaches the
panel instead of a log nobody reads. Both the room session and the peer sessions use
them (`iavicenne.room`, `iavicenne.peer_session`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Report(Protocol):
    """Where failures go: ``report(what, error)``, shown in a panel's error area."""

    def __call__(self, what: str, error: BaseException | None = None, *, traceback: bool = True) -> None: ...


class Pending(Generic[T]):
    """What a call that works in the background returns (``room.send(...)``): await it
    for the result, or leave it. Its repr says where it stands, so a cell that ends with
    such a call prints something readable instead of a task's internals."""

    def __init__(self, task: asyncio.Task[T], what: str) -> None:
        self.task = task
        self.what = what

    def __await__(self) -> Any:
        return self.task.__await__()

    def done(self) -> bool:
        return self.task.done()

    def result(self) -> T:
        return self.task.result()

    def cancel(self) -> bool:
        return self.task.cancel()

    def __repr__(self) -> str:
        if not self.task.done():
            return f"<{self.what}: pending>"
        if self.task.cancelled():
            return f"<{self.what}: cancelled>"
        error = self.task.exception()
        return f"<{self.what}: failed: {error}>" if error is not None else f"<{self.what}: done>"


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
