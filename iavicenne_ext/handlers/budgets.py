"""What clients may cost: per connection, per identity (`Account`) and per server (`Quotas`).

docs/protocol.md, "Limits":

- per connection: frame size (close 1009), frames per second (a `TokenBucket`; error
  ``rate-limited``, excess dropped), bytes waiting to be read (a consumer too slow to read
  is closed, 1008);
- per identity (`Account`, over all its sockets): open sockets, rooms, bytes per second,
  the last counted before the frame is parsed, so a flood costs no JSON parsing; room and
  direct messages per second (`Account.chat`: a message is written to every member); room joins
  per second (a join is news to every member of the room, see `Account.join`), and the
  frames its joins and leaves write to members (`Account.paced`);
- per server (`Quotas`): bytes waiting to be read by all clients; beyond it the sockets
  with the most bytes waiting are closed first.

Every refusal names the ``IAvicenne`` option that raises the limit (`protocol.limit_exceeded`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import iavicenne_protocol as p

from .coalescing import TurnWrites
from .heap_trim import HeapTrimmer
from .keep_alive import KeepAlive


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection, one identity and all clients may cost: the app's traitlets."""

    max_frame_bytes: int
    messages_per_second: float
    burst: int
    max_rooms: int  # per connection
    max_outbound_bytes: int
    max_connections_per_identity: int
    max_rooms_per_identity: int
    bytes_per_second: float
    burst_bytes: int
    max_outbound_bytes_total: int
    max_replay_bytes: int
    max_state_bytes: int
    max_state_depth: int
    max_state_keys: int
    joins_per_second: float = 5.0
    join_burst: int = 128
    join_fanout_per_second: float = 1_000.0
    chat_messages_per_second: float = 20.0
    chat_messages_burst: int = 200


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # a full bucket lets one request larger than the burst through, which it then owes
        if self.tokens >= amount or self.tokens >= self.burst:
            self.tokens -= amount
            return True
        return False

    @property
    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.stamp) * self.rate >= self.burst

    def wait(self, amount: float) -> float:
        """Seconds until `take(amount)` would succeed."""
        missing = min(amount, self.burst) - self.tokens - (time.monotonic() - self.stamp) * self.rate
        return max(0.0, missing / self.rate) if self.rate > 0 else 1.0


class Account:
    """What one identity holds on this server, over all its room and signaling sockets."""

    __slots__ = ("bytes", "chat_messages", "connections", "fanout", "joins", "rooms", "username")

    def __init__(self, username: str, limits: Limits) -> None:
        self.username = username
        self.connections = 0
        self.rooms: dict[str, int] = {}  # hub room -> this identity's sockets in it
        self.bytes = TokenBucket(limits.bytes_per_second, limits.burst_bytes)
        self.joins = TokenBucket(limits.joins_per_second, limits.join_burst)
        self.chat_messages = TokenBucket(limits.chat_messages_per_second, limits.chat_messages_burst)
        # a quarter of a second's worth at once: a burst of joins into a room of thousands
        # is spread over turns of the loop instead of written in one
        self.fanout = TokenBucket(limits.join_fanout_per_second, max(1, round(limits.join_fanout_per_second / 4)))

    def join(self, room: str, limits: Limits) -> None:
        """Count one join-room, or refuse it with `rate-limited` (joins_per_second).

        A join (and the leave it allows) is a frame to every member of the room: in a room
        of a thousand seed clients, one join-room a few bytes long costs the server a
        thousand writes. Leaves are not counted: each one undoes a join that was.
        """
        if self.joins.take():
            return
        wait = self.joins.wait(1.0)
        error = p.limit_exceeded(
            "joins_per_second",
            limits.joins_per_second,
            f"rate limited: {self.username} joined rooms more than {limits.joins_per_second:g} times a second "
            f"(burst {limits.join_burst}) over all its connections; {room!r} not joined, join again in "
            f"{wait:.1f} s",
            code=p.ErrorCode.RATE_LIMITED,
        )
        error.fields["retry_after"] = round(wait, 3)
        raise error

    def chat(self, room: str, limits: Limits) -> None:
        """Count one room or direct message, or refuse it with `limit-exceeded`
        (chat_messages_per_second): each is written to every member of the room (and kept in
        its history), so one identity's flood would cost every reader's page its main thread."""
        if self.chat_messages.take():
            return
        wait = self.chat_messages.wait(1.0)
        error = p.limit_exceeded(
            "chat_messages_per_second",
            limits.chat_messages_per_second,
            f"message not sent: {self.username} sent more than {limits.chat_messages_per_second:g} messages a second "
            f"(burst {limits.chat_messages_burst}) over all its connections; send it again in {wait:.1f} s",
        )
        error.fields["room"] = room
        error.fields["retry_after"] = round(wait, 3)
        raise error

    async def paced(self, audience: int) -> None:
        """Wait until a join or leave of this identity may be told to `audience` connections
        (join_fanout_per_second): never refused, only spread out. The socket is not read
        meanwhile, so the identity's sockets (max_connections_per_identity) wait at most one
        each; a room of a few members costs next to nothing."""
        while not self.fanout.take(audience):
            await asyncio.sleep(self.fanout.wait(audience))

    def enter(self, room: str, limit: int) -> None:
        """Count one more socket in hub room `room`, or `too-many-rooms` when it is one room too many."""
        count = self.rooms.get(room, 0)
        if not count and len(self.rooms) >= limit:
            raise p.limit_exceeded(
                "max_rooms_per_identity",
                limit,
                f"too many rooms: {self.username} is in {len(self.rooms)} rooms on this server, over all "
                "its connections; leave one first",
                code=p.ErrorCode.TOO_MANY_ROOMS,
            )
        self.rooms[room] = count + 1

    def exit(self, room: str) -> None:
        """One socket of this identity has left `room` (the leave is done: only then may another be entered)."""
        count = self.rooms.get(room, 0) - 1
        if count > 0:
            self.rooms[room] = count
        else:
            self.rooms.pop(room, None)


class WaitingSocket(Protocol):
    """A socket with bytes queued for its client, not yet written (`OutboundSocket`)."""

    @property
    def bytes_waiting(self) -> int: ...

    def drop_slow_consumer(self, reason: str) -> None: ...


class Quotas:
    """This server's accounts (one per identity) and the bytes queued to all its clients.

    One per server, made by the app and shared by every socket, with what the sockets
    share besides: one keep-alive timer (keep_alive.py), one write per socket per turn
    (coalescing.py), the heap given back after bursts (heap_trim.py). An account is kept
    while it has sockets, rooms, or a bucket not yet full again: closing and reopening
    sockets does not refill a burst (of bytes or of joins).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.accounts: dict[str, Account] = {}
        self.outbound = 0  # bytes queued to every open socket, not yet written to it
        self.waiting: set[WaitingSocket] = set()  # the sockets with bytes queued
        self.keep_alive = KeepAlive()
        self.turn_writes = TurnWrites()
        self.heap = HeapTrimmer()

    def open(self, username: str) -> Account | None:
        """Count a new socket of `username`; None when it has max_connections_per_identity already."""
        account = self.accounts.get(username)
        if account is None:
            account = self.accounts[username] = Account(username, self.limits)
        if account.connections >= self.limits.max_connections_per_identity:
            return None
        account.connections += 1
        return account

    def close(self, account: Account) -> None:
        account.connections -= 1
        self.forget_idle(account)

    def forget_idle(self, account: Account) -> None:
        if (
            not account.connections
            and not account.rooms
            and account.bytes.full
            and account.joins.full
            and account.fanout.full
            and account.chat_messages.full
        ):
            self.accounts.pop(account.username, None)

    def shed(self) -> None:
        """Close the sockets with the most bytes waiting until the total is within its budget."""
        while self.outbound > self.limits.max_outbound_bytes_total and self.waiting:
            slowest = max(self.waiting, key=_bytes_waiting)
            slowest.drop_slow_consumer(
                f"slow consumer: the server's clients have more than {self.limits.max_outbound_bytes_total} bytes "
                "waiting (IAvicenne.max_outbound_bytes_total)"
            )


def _bytes_waiting(socket: WaitingSocket) -> int:
    return socket.bytes_waiting
