"""The store's writer: every change, in order, committed in grouped transactions.

A change is a statement and its parameters, appended to the journal where it is made
(`write`, a list append). Once per turn of the event loop, after that turn's socket
writes (the fan-out of a message goes out before its commit), the journal writes
everything appended since its last commit in one transaction: a burst of messages costs one
commit, not one each. Whoever must not answer before the change is kept (a message's ack,
an invitation's reply) awaits `committed()`: the commit of everything appended so far.

Why on the event loop, not on a writer thread of its own (measured; the first version had
one): a commit in WAL mode without fsync (``synchronous=NORMAL``) costs tens of
microseconds, but a thread that needs the GIL for each of its statements convoys with a
busy event loop. Under a flood of 2,000 bad frames (tests/server/test_bad_input.py) the
thread made the flood take 4.1 s instead of 1.3 s and a bystander's acks 28.8 ms (p99
106 ms) instead of 1.1 ms (p99 7.4 ms); and each lone message waited ~0.4 ms for two
thread hand-offs. On the loop, a commit blocks it for its own duration only. What does
sync the disk, a checkpoint (the WAL copied into the file), runs in a thread every
`CHECKPOINT_EVERY` commits, one call that releases the GIL; commits wait meanwhile (the
fan-out does not): done on the loop, SQLite's own checkpoints put the p99 of a room's
messages at 94 ms instead of 13 ms (benchmarks/store.py).

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
from collections.abc import Callable
from typing import Any, TypeVar

from ..base import BrokerUnavailable

#: commits between two checkpoints (a few MB of WAL)
CHECKPOINT_EVERY = 256
#: one change: a statement and its parameters
Change = tuple[str, tuple[Any, ...]]
T = TypeVar("T")


class Journal:
    """Changes for the store at `path`, committed on its connection `db`."""

    def __init__(self, db: sqlite3.Connection, path: str, log: logging.Logger, *, retry_interval: float = 1.0) -> None:
        self.db = db
        self.path = path
        self.log = log
        self.retry_interval = retry_interval
        #: why the last commit failed (a full disk...), while it does; None when writing works
        self.failing: str | None = None
        self._changes: list[Change] = []
        # who waits for the commit of `_changes`: a future each (never one shared: the room
        # socket runs a handler's first step itself and hands the future it waits on to a
        # task, which must find it as that handler left it)
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_pending = False
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        # the connection in use in a thread (a checkpoint, a search): no commit meanwhile
        self._checkpointing: asyncio.Future[Any] | None = None
        self._since_checkpoint = 0
        self.commits = 0  # transactions written (for the benchmarks)

    # -- appending, and waiting for the commit ----------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
            if self._changes:  # what was written while loading
                self._schedule()

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Append a change; it is written with the next commit."""
        self._changes.append((sql, params))
        if self._loop is None:
            try:  # a server whose extensions are never started (pytest-jupyter's in-process one)
                self.start(asyncio.get_running_loop())
            except RuntimeError:  # no event loop (loading, at start): written once it starts
                return
        self._schedule()

    def committed(self) -> asyncio.Future[None]:
        """The commit of every change written so far (done at once when there is none);
        it raises `BrokerUnavailable` when that commit fails."""
        loop = asyncio.get_running_loop()
        self.start(loop)
        future = loop.create_future()
        if self._changes:
            self._waiters.append(future)
            self._schedule()
        else:
            future.set_result(None)
        return future

    async def query(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on the store (after what is appended is committed, when it can be)."""
        while self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)
        self._flush()
        try:
            return read(self.db)
        except sqlite3.Error as error:
            raise BrokerUnavailable(f"the store could not be read: {error}") from None

    async def query_in_thread(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on the store in a thread (a search: it may take longer than a commit
        should block the loop), after what is appended is committed. The connection is one:
        commits wait meanwhile, as for a checkpoint (the fan-out does not)."""
        while self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)
        self._flush()
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, read, self.db)
        self._checkpointing = reading
        reading.add_done_callback(self._checkpointed)
        try:
            return await asyncio.shield(reading)
        except sqlite3.Error as error:
            raise BrokerUnavailable(f"the store could not be read: {error}") from None

    async def close(self) -> None:
        """Write what is left (one attempt when failing), close the file."""
        if self._retry is not None:
            self._retry.cancel()
        while self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)
        self._flush()
        self._closed = True
        self.db.close()

    # -- committing -----------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._flush_pending or self._retry is not None or self._checkpointing is not None:
            return
        if self._loop is not None and not self._closed:
            # after this turn's socket writes, which are queued with call_soon too
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self._retry = None
        if self._closed or not self._changes or self._checkpointing is not None:
            return
        changes, self._changes = self._changes, []
        waiters, self._waiters = self._waiters, []
        error = self._commit(changes)
        if error is None:
            if self.failing is not None:
                self.log.warning("iavicenne: the store %s is written again", self.path)
                self.failing = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY and self._loop is not None:
                self._since_checkpoint = 0
                self._checkpointing = self._loop.run_in_executor(None, self._checkpoint)
                self._checkpointing.add_done_callback(self._checkpointed)
            return
        self._changes[:0] = changes  # written again, before what followed
        if self.failing is None:
            self.log.error("iavicenne: cannot write the store %s (IAvicenne.store_path): %s", self.path, error)
        self.failing = error
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable(f"the store could not keep it ({error}); send it again later"))
                waiter.exception()  # retrieved: a commit nobody awaits any more is no "unhandled" error
        if self._loop is not None:
            self._retry = self._loop.call_later(self.retry_interval, self._flush)

    def _checkpoint(self) -> None:
        """In a thread: the WAL into the file (synced); no commit runs meanwhile."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:  # the next one tries again; the WAL keeps everything
            self.log.warning("iavicenne: the store %s could not be checkpointed: %s", self.path, error)

    def _checkpointed(self, done: asyncio.Future[Any]) -> None:
        self._checkpointing = None
        if self._changes:
            self._schedule()

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
        except Exception as error:  # sqlite3.Error; anything else must not lose the changes either
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return str(error) or type(error).__name__
        self.commits += 1
        return None
