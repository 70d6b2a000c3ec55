"""A lane for the small requests of every frame: pipelined on one connection of their own.

Every message is one publish script call, every join and leave a script and a PUBLISH.
Through the client's pool each call pays the pool, the retry wrapper and a send of its own
(about twice the CPU of the round trip itself, measured with redis-py 8.1); on the lane,
the calls made while the previous batch was on its way leave together in one write, and
their replies are read back in the order they were sent (Redis answers a connection's
commands in order). Several sockets publishing at once then cost one round trip per
batch, not one each; and a server's requests reach Redis in the order they were made.

A reply that is an error fails its own call only; a lost connection fails every call in
flight with the connection's error, which the link turns into `BrokerUnavailable` and a
reconnect (a new lane comes with the new connection). A script Redis no longer knows
(``SCRIPT FLUSH``) is reported as `ScriptUnknown`, so the caller runs it the ordinary way
(EVAL): the script did not run, so running it again is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ScriptUnknown(Exception):
    """Redis does not have the lane's script (flushed): run it through the client instead."""


class ScriptLane:
    """Calls of one script on a dedicated connection. See the module docstring."""

    def __init__(self, pool: ConnectionPool, connection: AbstractConnection) -> None:
        self._pool = pool
        self._connection = connection
        self._queued: deque[tuple[tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._in_flight: deque[asyncio.Future[Any]] = deque()  # sent, replies not read yet, in order
        self._wake = asyncio.Event()
        self._broken: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    @classmethod
    async def open(cls, pool: ConnectionPool) -> ScriptLane:
        return cls(pool, await pool.get_connection())

    async def script(self, sha: str, tagged: str, *args: Any) -> Any:
        """Run a loaded script in the slot of `tagged` (KEYS and ARGV[1], scripts.py): its
        reply, or the error it answered."""
        return await self.command("EVALSHA", sha, 1, tagged, tagged, *args)

    async def command(self, *command: Any) -> Any:
        """Send one command: its reply, or the error Redis answered."""
        if self._broken is not None:
            raise self._broken
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((command, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        connection = self._connection
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                # everything queued while the previous batch was on its way: one write
                commands = []
                while self._queued:
                    command, future = self._queued.popleft()
                    commands.append(command)
                    self._in_flight.append(future)
                await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
                while self._in_flight:
                    try:
                        reply: Any = await connection.read_response()
                        error: BaseException | None = None
                    except NoScriptError:
                        reply, error = None, ScriptUnknown()
                    except ResponseError as refused:  # Redis answered this call with an error
                        reply, error = None, refused
                    future = self._in_flight.popleft()
                    if future.done():  # its caller was cancelled
                        continue
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            self._fail(RedisConnectionError("the connection to Redis was given up"))
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError) as error:
            self._fail(error)  # lost: every call in flight or queued fails with it
        except Exception as error:
            # a reply out of step (a bug, a proxy answering oddly): the connection cannot be
            # trusted any more; failing as lost makes the link reconnect with a new lane
            self._fail(RedisConnectionError(f"the request lane failed: {error!r}"))

    def _fail(self, error: BaseException) -> None:
        self._broken = error
        for future in (*self._in_flight, *(future for _, future in self._queued)):
            if not future.done():
                future.set_exception(error)
        self._in_flight.clear()
        self._queued.clear()

    async def close(self) -> None:
        """Stop reading and drop the connection (its replies, if any, are of a given-up link)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self._connection.disconnect()
        with contextlib.suppress(Exception):
            await self._pool.release(self._connection)
