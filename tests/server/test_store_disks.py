"""Bad disks under the default store: a damaged, locked or read-only file stops the server
at start with one line naming the file and the option (no traceback); a full disk gets
the sender ``unavailable`` error frames, and nothing acknowledged before is lost.

The read-only folder and the full disk (a small tmpfs) are mounted by the test itself, in
a mount namespace of its own (tests/mount_namespace.py): nothing outside sees them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import mount_namespace
import pytest
from store_support import acks, join, read_room, socket, store_file, store_server

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess


def assert_refused(server: JupyterProcess, path: Path, why: str) -> None:
    """The server stops by itself, with one line naming the file, the option and `why`."""
    server.launch()
    assert server.proc is not None
    code = server.proc.wait(90)
    log = server.log_text()
    assert code != 0, log[-3000:]
    lines = [line for line in log.splitlines() if "IAvicenne.store_path" in line]
    assert len(lines) == 1, log[-3000:]
    assert f"cannot use the store {path} " in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in log, log[-3000:]


def fill_store(server: JupyterProcess, messages: int = 3) -> None:
    """Start the server, keep a few messages, stop it: a sound store file."""

    async def say() -> None:
        client = await socket(server, "alice")
        await join(client, "notes")
        for n in range(messages):
            await client.send({"type": p.MESSAGE, "room": "notes", "ref": f"m{n}", "payload": {"content": n}})
            await client.expect(p.ACK, where=lambda f, n=n: f["ref"] == f"m{n}")  # type: ignore[misc]
        client.close()

    server.start()
    try:
        asyncio.run(say())
    finally:
        server.stop()


def test_a_file_that_is_not_a_database_stops_the_server(tmp_path: Path) -> None:
    server = store_server(tmp_path)
    path = store_file(server)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"these are not the rooms you are looking for\n" * 200)
    assert_refused(server, path, "damaged")


@pytest.mark.timeout(400)  # servers started twice: tens of seconds each on a busy machine
def test_a_damaged_database_stops_the_server(tmp_path: Path) -> None:
    server = store_server(tmp_path, history_size=5000)
    fill_store(server, messages=300)
    path = store_file(server)
    with sqlite3.connect(path) as db:  # the pages of the messages' table: overwritten
        pages = [row[0] for row in db.execute("SELECT pageno FROM dbstat WHERE name = 'messages' AND pagetype = 'leaf'")]
    page_size = 4096
    with open(path, "r+b") as file:
        for page in pages[1:3]:
            file.seek((page - 1) * page_size + 100)
            file.write(os.urandom(2000))
    assert_refused(server, path, "damaged")


@pytest.mark.timeout(400)  # servers started twice: tens of seconds each on a busy machine
def test_a_store_another_server_holds_stops_the_second(tmp_path: Path) -> None:
    first = store_server(tmp_path).start()
    try:
        path = store_file(first)
        second = store_server(tmp_path, name="second", store_path=str(path))
        assert_refused(second, path, "another Jupyter server")
        assert first.running() and first.get(p.REST_PATH + "rooms")[0] == 200  # the first goes on
    finally:
        first.stop()


@pytest.mark.timeout(400)  # servers started twice: tens of seconds each on a busy machine
def test_a_read_only_store_stops_the_server(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not mount_namespace.inside():
        mount_namespace.run_inside(request)
        return
    server = store_server(tmp_path)
    fill_store(server)
    path = store_file(server)
    mount_namespace.make_read_only(path.parent)
    assert_refused(server, path, "read-only")


@pytest.mark.timeout(400)  # servers started twice: tens of seconds each on a busy machine
def test_a_full_disk_answers_unavailable_and_loses_nothing_acknowledged(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not mount_namespace.inside():
        mount_namespace.run_inside(request)
        return
    disk = tmp_path / "disk"
    mount_namespace.mount_tmpfs(disk, size="1m")
    path = disk / "rooms.sqlite3"
    server = store_server(tmp_path, store_path=str(path), history_size=5000).start()
    try:
        asyncio.run(fill_the_disk(server, disk))
    finally:
        server.stop()


async def fill_the_disk(server: JupyterProcess, disk: Path) -> None:
    bob = await socket(server, "bob")
    await join(bob, "notes")
    alice = await socket(server, "alice")
    epoch = (await join(alice, "notes"))["epoch"]
    answers: dict[str, dict[str, Any]] = {}
    reader = asyncio.create_task(acks(alice, answers))
    filler = disk / "filler"
    free = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, free.f_bavail * free.f_frsize - 96 * 1024))

    async def say(ref: str) -> dict[str, Any]:
        answers.pop(ref, None)
        await alice.send({"type": p.MESSAGE, "room": "notes", "ref": ref, "payload": {"content": ref + "." * 2000}})
        for _ in range(1000):
            if ref in answers:
                return answers[ref]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to {ref}")

    sent = 0
    while True:  # until the disk is full
        answer = await say(f"m{sent}")
        sent += 1
        if answer["type"] == p.ERROR:
            break
        assert sent < 500, "the disk never filled up"
    assert answer["code"] == p.ErrorCode.UNAVAILABLE and "full" in answer["message"], answer
    acked = {ref for ref, a in answers.items() if a["type"] == p.ACK}
    assert acked, "the disk was full before the first message"
    # while it is full: refused at once, and nobody else sees what its sender is told was not kept
    refused = await say("refused")
    assert refused["code"] == p.ErrorCode.UNAVAILABLE, refused
    assert not [f for f in await bob.silent(0.3) if f.get("type") == p.MESSAGE and f.get("ref") == "refused"]

    filler.unlink()  # room again: the store writes what it could not, and takes new messages
    unkept = [ref for ref, a in answers.items() if a["type"] == p.ERROR]
    for _ in range(100):
        answered = [(await say(ref))["type"] for ref in unkept]
        if answered == [p.ACK] * len(unkept):
            break
        await asyncio.sleep(0.2)
    assert (await say("after"))["type"] == p.ACK
    alice.close()
    await asyncio.gather(reader, return_exceptions=True)

    server.kill()
    await asyncio.to_thread(server.start)
    joined, replayed = await read_room(server, "bob", "notes", epoch=epoch)
    assert joined["epoch"] == epoch and joined["recovered"] is True
    refs = [frame["ref"] for frame in replayed]
    assert [frame["seq"] for frame in replayed] == list(range(1, len(replayed) + 1))
    assert len(refs) == len(set(refs)) and acked | set(unkept) | {"after"} <= set(refs)
