"""`iavicenne-migrate`: copy a server's local store into Redis, when a team moves from one
Jupyter server (broker='sqlite', the default) to several sharing Redis (docs/redis.md).

    iavicenne-migrate --store ~/.local/share/jupyter/iavicenne/rooms.sqlite3 \\
        --redis-url redis://redis:6379/0 [--redis-prefix iavicenne] [--force]

The store is opened read-only and read in one transaction (one consistent snapshot). A
running server holds its store exclusively (sqlite/schema.py): the command then says so
and copies nothing; stop the server first. What Redis gets (broker/redis/importer.py):
each room with its epoch and seqs as they were (a client that was in it recovers, no
``gap``), its history, read positions, access record and invitations, its shared document
(as one merged update), the kept direct messages, the remembered rooms and the names.
A prefix that already holds rooms is refused unless ``--force`` (the rooms would mix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator

from redis.exceptions import RedisError
from tqdm import tqdm

from .access import RoomAccess
from .broker.base import BrokerUnavailable
from .broker.redis.importer import (
    Imported,
    StoredContent,
    StoredConversation,
    StoredRoom,
    import_content,
    prefix_in_use,
    target_broker,
)


class MigrateError(Exception):
    """Why nothing was copied, in one line."""


@contextlib.contextmanager
def _read_only(path: str) -> Iterator[sqlite3.Connection]:
    if not os.path.isfile(path):
        raise MigrateError(
            f"no store at {path} (IAvicenne.store_path; the default is iavicenne/rooms.sqlite3 in jupyter --data-dir)"
        )
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5, isolation_level=None)
    except sqlite3.Error as error:
        raise MigrateError(f"cannot open the store {path}: {error}") from None
    try:
        yield db
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise MigrateError(
                f"the store {path} is locked: a Jupyter server (or another program) has it open; "
                "stop that server, then run iavicenne-migrate again"
            ) from None
        raise MigrateError(f"cannot read the store {path}: {error}") from None
    except sqlite3.DatabaseError as error:
        raise MigrateError(f"cannot read the store {path}: {error} (the file is damaged)") from None
    finally:
        db.close()


def read_store(path: str) -> StoredContent:
    """What the store at `path` holds (the tables of sqlite/schema.py), in one snapshot."""
    content = StoredContent()
    with _read_only(path) as db:
        db.execute("BEGIN")  # one snapshot, whatever happens to the file meanwhile
        rooms = {
            room: StoredRoom(room, epoch, seq)
            for room, epoch, seq in db.execute("SELECT room, epoch, seq FROM rooms ORDER BY room")
        }
        for room, seq, frame in db.execute("SELECT room, seq, frame FROM messages ORDER BY room, seq"):
            kept = rooms.get(room)
            if kept is not None:
                kept.messages.append((seq, bytes(frame)))
                kept.seq = max(kept.seq, seq)  # the rooms table has it only once the messages are cut (as _load reads it)
        for room, username, seq in db.execute("SELECT room, username, seq FROM reads"):
            if room in rooms:
                rooms[room].reads[username] = seq
        content.rooms = list(rooms.values())
        content.access = [
            RoomAccess.from_json(json.loads(record)) for (record,) in db.execute("SELECT record FROM access ORDER BY room")
        ]
        for room, data in db.execute(
            "SELECT u.room, u.data FROM shared_updates u JOIN shared_docs d ON d.room = u.room ORDER BY u.room, u.pos"
        ):
            if room in rooms:  # a document whose room is gone went with it (as the store loads)
                content.documents.setdefault(room, []).append(bytes(data))
        conversations: dict[tuple[str, str, str], StoredConversation] = {}
        for room, seq, first, second, frame in db.execute(
            "SELECT room, seq, first, second, frame FROM direct_messages ORDER BY room, seq"
        ):
            conversation = conversations.setdefault((room, first, second), StoredConversation(room, first, second))
            conversation.frames.append((seq, bytes(frame)))
        content.conversations = list(conversations.values())
        content.direct_seqs = dict(db.execute("SELECT room, seq FROM direct_seqs").fetchall())
        content.remembered = list(db.execute("SELECT username, room, at FROM remembered ORDER BY at"))
        content.identities = dict(db.execute("SELECT skeleton, username FROM identities").fetchall())
        db.execute("COMMIT")
    return content


async def migrate(content: StoredContent, *, url: str, prefix: str, force: bool, quiet: bool = False) -> Imported:
    broker = target_broker(url, prefix)
    await broker.start()
    try:
        if not broker.available:
            raise MigrateError(f"Redis at {url} is unreachable")
        if not force and await prefix_in_use(broker):
            raise MigrateError(
                f"the Redis prefix {prefix!r} already holds rooms: importing would mix two deployments' rooms; "
                "choose another --redis-prefix, or --force to import anyway"
            )
        with tqdm(total=content.message_count, unit="msg", desc="messages", disable=quiet) as bar:
            return await import_content(broker, content, progress=bar.update)
    except (BrokerUnavailable, RedisError, OSError) as error:
        raise MigrateError(f"Redis at {url}: {error} (what was copied so far stays; run again with --force)") from None
    finally:
        await broker.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="iavicenne-migrate",
        description="Copy a Jupyter server's iAvicenne store (broker='sqlite') into Redis (broker='redis').",
    )
    parser.add_argument("--store", required=True, help="the store file (IAvicenne.store_path); its server must be stopped")
    parser.add_argument("--redis-url", required=True, help="the Redis the servers will share (IAvicenne.redis_url)")
    parser.add_argument("--redis-prefix", default="iavicenne", help="their IAvicenne.redis_prefix (default: iavicenne)")
    parser.add_argument("--force", action="store_true", help="import even into a prefix that holds rooms already")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        content = read_store(args.store)
        done = asyncio.run(migrate(content, url=args.redis_url, prefix=args.redis_prefix, force=args.force, quiet=args.quiet))
    except MigrateError as error:
        sys.exit(f"iavicenne-migrate: {error}")
    elapsed = time.perf_counter() - started
    print(
        f"iavicenne-migrate: {done.rooms} rooms, {done.messages} messages, {done.access} access records, "
        f"{done.documents} shared documents, {done.direct_messages} direct messages, {done.reads} read positions, "
        f"{done.remembered} remembered rooms copied into {args.redis_url} prefix {args.redis_prefix!r} "
        f"in {elapsed:.2f} s ({done.messages / elapsed if elapsed > 0 else 0:.0f} messages/s)"
    )


if __name__ == "__main__":
    main()
