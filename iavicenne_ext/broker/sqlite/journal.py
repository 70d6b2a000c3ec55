"""The store's writer: every change, in order, written by one thread in grouped transactions.

The event loop never waits on the disk. A change is a statement and its parameters,
appended to the journal where it is made (`write`, a list append); the writer thread takes
everything appended since its last commit and writes it in one transaction, so a burst of
messages costs one commit, not one each. Whoever must not answer before the change is
kept (a message's ack, an invitation's reply) awaits `committed()`: the commit of
everything appended so far.

A transaction that fails (a full disk, an I/O error) is not dropped: its changes go back
to the head of the journal and are written again every `retry_interval` seconds, with
those that followed, until one commit takes them. Meanwhile `failing` says why, the
waiters of the failed commit get `BrokerUnavailable` (their sender is told: not kept, send
again), and the broker refuses new changes that must be kept (sqlite/broker.py). So the
store never holds a later change without an earlier one, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..base import BrokerUnavailable

#: one change: a statement and its parameters
Change = tuple[str, tuple[Any, ...]]
T = TypeVar("T")


class Journal:
    """Changes for the store at `path`, written by one thread on its connection `db`."""

    def __init__(self, db: sqlite3.Connection, path: str, log: logging.Logger, *, retry_interval: float = 1.0) -> None:
        self.db = db
        self.path = path
        self.log = log
        self.retry_interval = retry_interval
        #: why the last commit failed (a full disk...), while it does; None when writing works
        self.failing: str | None = None
        self._changes: list[Change] = []
        self._queries: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # who waits for the commit of `_changes`, and of the changes being written: a future
        # each (never one shared: the room socket runs a handler's first step itself and hands
        # the future it waits on to a task, which must find it as that handler left it)
        self._waiters: list[asyncio.Future[None]] = []
        self._writing: list[asyncio.Future[None]] | None = None
        self._stopping = False
        self._kick_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions written (for the benchmarks)

    # -- the event loop's side ------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is not None:
            return
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="iavicenne-store", daemon=True)
        self._thread.start()
        self._wake.set()  # what was written while loading

    def _started(self) -> None:
        # a server whose extensions are never started (pytest-jupyter's in-process one) still
        # writes: the thread starts with the first change made on the event loop
        if self._thread is None:
            self.start(asyncio.get_running_loop())

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Append a change; it is written with the next commit."""
        with self._lock:
            self._changes.append((sql, params))
        if self._thread is None:
            try:
                self._started()
            except RuntimeError:  # no event loop (loading, at start): written once it starts
                return
        if not self._kick_pending and self._loop is not None:
            # the writer is woken after what this turn of the loop sends (the fan-out of the
            # message being kept goes first: the socket writes are queued with call_soon too)
            self._kick_pending = True
            self._loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_pending = False
        self._wake.set()

    def committed(self) -> asyncio.Future[None]:
        """The commit of every change written so far (done at once when there is none);
        it raises `BrokerUnavailable` when that commit fails."""
        self._started()
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._changes:
                self._waiters.append(future)
                return future
            if self._writing is not None:
                self._writing.append(future)
                return future
        future.set_result(None)
        return future

    async def query(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on the writer's connection (between two commits), off the event loop."""
        self._started()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queries.append((read, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Write what is left (one attempt when failing), stop the thread, close the file."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self.db.close()

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                changes, self._changes = self._changes, []
                queries, self._queries = self._queries, []
                waiters, self._waiters = self._waiters, []
                self._writing = waiters
                stopping = self._stopping
            error = self._commit(changes) if changes else None
            with self._lock:
                if error is not None:
                    self._changes[:0] = changes  # written again, before what followed
                waiters = self._writing
                self._writing = None
            for read, future in queries:
                self._answer(future, read)
            self._settle(waiters, error, bool(changes))
            if stopping:
                return
            if error is not None:
                with self._lock:
                    if self._stopping:
                        return  # a failing disk on the way out: what was not acked is dropped
                self._wake.wait(self.retry_interval)  # a new change or a close wakes it earlier
                self._wake.set()

    def _commit(self, changes: list[Change]) -> str | None:
        """Write `changes` in one transaction; why it failed, or None."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            start = 0
            while start < len(changes):  # runs of one statement go as one executemany
                sql = changes[start][0]
                end = start + 1
                while end < len(changes) and changes[end][0] is sql:
                    end += 1
                if end - start == 1:
                    db.execute(sql, changes[start][1])
                else:
                    db.executemany(sql, [params for _, params in changes[start:end]])
                start = end
            db.execute("COMMIT")
        except Exception as error:  # sqlite3.Error; anything else must not end the thread either
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return str(error) or type(error).__name__
        self.commits += 1
        return None

    def _answer(self, future: asyncio.Future[Any], read: Callable[[sqlite3.Connection], Any]) -> None:
        try:
            value, error = read(self.db), None
        except Exception as failure:
            value, error = None, BrokerUnavailable(f"the store could not be read: {failure}")
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, future, value, error)

    def _settle(self, waiters: list[asyncio.Future[None]], error: str | None, wrote: bool) -> None:
        assert self._loop is not None
        if wrote or error is not None:
            self._loop.call_soon_threadsafe(self._failing, error)
        if waiters:
            self._loop.call_soon_threadsafe(self._resolve_all, waiters, error)

    def _resolve_all(self, waiters: list[asyncio.Future[None]], error: str | None) -> None:
        for waiter in waiters:
            failure = None if error is None else BrokerUnavailable(f"the store could not keep it ({error}); send it again later")
            _resolve(waiter, None, failure)

    def _failing(self, error: str | None) -> None:
        """On the event loop: log when writing stops working and when it works again."""
        if error is not None and self.failing is None:
            self.log.error("iavicenne: cannot write the store %s (IAvicenne.store_path): %s", self.path, error)
        elif error is None and self.failing is not None:
            self.log.warning("iavicenne: the store %s is written again", self.path)
        self.failing = error


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: a commit nobody awaited any more is not an "unhandled" error
    else:
        future.set_result(value)
