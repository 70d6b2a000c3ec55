"""What the broker tests share: Redis brokers started as servers would start them, and what
they delivered to their hub."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import iavicenne_protocol as p
from iavicenne_ext.broker.base import DedupKey, PresenceEntry
from iavicenne_ext.broker.events import BrokerEvent, DirectFrame, Eviction, Moderation, Publication, Supersede
from iavicenne_ext.broker.redis import RedisBroker

REFRESH = 0.2


TIMEOUT = 0.8


RETRY = 0.2


@dataclass
class Delivered:
    """What a broker handed to its hub."""

    frames: list[tuple[str, dict[str, Any], int, str | None, str | None]] = field(default_factory=list)
    superseding: list[dict[str, Any]] = field(default_factory=list)  # the frames delivered with supersede=True

    def __call__(self, event: BrokerEvent) -> None:
        seq = event.seq if isinstance(event, Publication) else 0
        to = event.to if isinstance(event, DirectFrame | Supersede) else None
        skip = None if isinstance(event, Publication | Eviction | Moderation) else event.skip
        self.frames.append((event.room, json.loads(event.frame), seq, to, skip))
        if isinstance(event, Supersede):
            self.superseding.append(json.loads(event.frame))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for _, f, _, _, _ in self.frames if f.get("type") == kind]

    async def wait(self, test: Callable[[], bool], timeout: float = 5.0, what: str = "frames") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not test():
            if loop.time() > deadline:
                raise TimeoutError(f"{what} not delivered within {timeout} s; got {self.frames[-5:]}")
            await asyncio.sleep(0.02)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


def message(text: str) -> bytes:
    return p.encode({"type": p.MESSAGE, "user_id": "u", "message": {"content": text}, "timestamp": p.now_iso()})


def dedup(room: str, identity: str, user_id: str, ref: str, *, direct: bool = False) -> DedupKey:
    """The dedup key of `ref` sent by `identity` as `user_id` (the hub's, `RoomHub._dedup_key`)."""
    return DedupKey(room, identity, user_id, ref, direct)


def entry(conn: str, user_id: str, username: str = "owner") -> PresenceEntry:
    return PresenceEntry(conn, user_id, {"username": username, "name": user_id, "display_name": user_id})


Brokers = Callable[..., Awaitable[tuple[RedisBroker, Delivered]]]


@asynccontextmanager
async def brokers_on(url: str, prefix: str, **options: Any) -> AsyncIterator[Brokers]:
    """Start brokers that share `url` and `prefix` (as servers would); close them at the end."""
    started: list[RedisBroker] = []

    async def start(**more: Any) -> tuple[RedisBroker, Delivered]:
        settings: dict[str, Any] = {
            "history_size": 100,
            "history_ttl": 60.0,
            "dedup_ttl": 60.0,
            "presence_refresh": REFRESH,
            "presence_timeout": TIMEOUT,
            "retry_interval": RETRY,
            "socket_timeout": 2.0,
            **options,
            **more,
        }
        broker = RedisBroker(url=url, prefix=prefix, **settings)
        delivered = Delivered()
        broker.attach(delivered)
        started.append(broker)
        await broker.start()
        return broker, delivered

    try:
        yield start
    finally:
        for broker in started:
            await broker.close()
