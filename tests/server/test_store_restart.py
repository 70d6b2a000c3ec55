"""The default store keeps what it acknowledged: a real Jupyter server killed (SIGKILL) at
random points of a write burst, or stopped cleanly, and started again on the same file.

alice writes (messages in a public and in her private room, shared-document updates, an
invitation, a removal); after each restart bob (invited) reads: every message alice got an
ack for is there, once, seqs contiguous from 1, under the same epoch (a ``since`` from
before the restart is recovered, not a gap); every acked update is in the document; every
acked invitation or removal holds. mallory, never invited, still cannot read the private
room, before or after. The identities are `store_support.StoreAnalysts`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_support import Writer, acks, api, join, read_document, read_room, socket, store_server, sync_frame

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient

ROOMS = ("open", "plans")  # public; alice's private room, bob invited
ROUNDS = 3
BURST = 90  # messages per round, an update every 3rd
# round -> the access change alice makes during its burst
CHANGES = [("PUT", "carol"), ("PUT", "erin"), ("DELETE", "carol")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JupyterProcess]:
    server = store_server(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Alice:
    """What alice sent and what she was told was kept."""

    def __init__(self) -> None:
        self.frames: dict[str, dict[str, Any]] = {}  # every frame she sent with a ref, by ref
        self.answers: dict[str, dict[str, Any]] = {}  # the last ack or error for each ref
        self.writer = Writer()
        self.members: dict[str, bool] = {"bob": True}  # invitations and removals acked (True: invited)

    def message(self, room: str, ref: str) -> dict[str, Any]:
        frame = {"type": p.MESSAGE, "room": room, "ref": ref, "payload": {"content": f"said {ref}"}}
        self.frames[ref] = frame
        return frame

    def update(self, n: int, ref: str) -> dict[str, Any]:
        frame = sync_frame("plans", p.SyncStep.UPDATE, self.writer.update(n), ref=ref)
        self.frames[ref] = frame
        return frame

    def kept(self, ref: str) -> bool:
        answer = self.answers.get(ref)
        return answer is not None and answer["type"] == p.ACK

    def unkept(self) -> list[str]:
        return [ref for ref in self.frames if not self.kept(ref)]


@pytest.mark.timeout(600)  # four starts of a server: tens of seconds each on a busy machine
async def test_what_was_acknowledged_survives_sigkill_at_random_points_of_a_burst(server: JupyterProcess) -> None:
    status, _ = await api(server, "alice", "POST", "rooms", {"room": "plans", "members": ["bob"]})
    assert status == 201
    rng = random.Random()
    alice = Alice()
    epochs: dict[str, str] = {}
    for round_ in range(ROUNDS):
        client = await socket(server, "alice")
        for room in ROOMS:
            joined = await join(client, room)
            assert epochs.setdefault(room, joined["epoch"]) == joined["epoch"], "a restart began a new life of the room"
        reader = asyncio.create_task(acks(client, alice.answers))
        # what was never acked goes again first, with its ref, as a client resends after a reconnect
        frames = [alice.frames[ref] for ref in alice.unkept()]
        for n in range(BURST):
            frames.append(alice.message(ROOMS[n % 2], f"m{round_}-{n}"))
            if n % 3 == 0:
                frames.append(alice.update(round_ * BURST + n, f"s{round_}-{n}"))

        async def send_all(client: WSClient, frames: list[dict[str, Any]]) -> None:
            for frame in frames:
                await client.send(frame)
                await asyncio.sleep(0.001)  # a burst spread over a while, so the kill lands inside it

        async def change_access(method: str, name: str) -> None:
            status, _ = await api(server, "alice", method, f"rooms/plans/members/{name}")
            if status == 200:
                alice.members[name] = method == "PUT"

        sending = asyncio.create_task(send_all(client, frames))
        changing = asyncio.create_task(change_access(*CHANGES[round_]))
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        server.kill()
        await asyncio.gather(sending, changing, reader, return_exceptions=True)
        client.close()
        await asyncio.to_thread(server.start)
        await check(server, alice, epochs)

    # a client that reconnects sends what was not acked again: each is then kept, once
    client = await socket(server, "alice")
    for room in ROOMS:
        await join(client, room)
    reader = asyncio.create_task(acks(client, alice.answers))
    for ref in alice.unkept():
        await client.send(alice.frames[ref])
    for _ in range(500):
        if not alice.unkept():
            break
        await asyncio.sleep(0.02)
    client.close()
    await asyncio.gather(reader, return_exceptions=True)
    assert not alice.unkept(), [(ref, alice.answers.get(ref)) for ref in alice.unkept()][:5]
    await check(server, alice, epochs, complete=True)


async def check(server: JupyterProcess, alice: Alice, epochs: dict[str, str], *, complete: bool = False) -> None:
    """bob reads each room as one who was there before the restart; mallory tries too."""
    for room in ROOMS:
        joined, replayed = await read_room(server, "bob", room, epoch=epochs[room])
        assert joined["type"] == p.ROOM_JOINED, joined
        assert joined["epoch"] == epochs[room] and joined["recovered"] is True, "a restart showed a gap"
        seqs = [frame["seq"] for frame in replayed]
        assert seqs == list(range(1, joined["seq"] + 1)), "seqs not contiguous from 1"
        refs = [frame["ref"] for frame in replayed]
        assert len(refs) == len(set(refs)), "a message was kept twice"
        by_ref = {frame["ref"]: frame for frame in replayed}
        for ref, answer in alice.answers.items():
            if ref.startswith("m") and answer["type"] == p.ACK and answer["room"] == room:
                assert ref in by_ref, f"acked message {ref} lost"
                assert by_ref[ref]["seq"] == answer["seq"] and by_ref[ref]["message"] == {"content": f"said {ref}"}
        if complete:
            assert sorted(refs) == sorted(ref for ref, f in alice.frames.items() if f["type"] == p.MESSAGE and f["room"] == room)
    document = await read_document(server, "bob", "plans")
    for ref in alice.answers:
        if ref.startswith("s") and alice.kept(ref):
            round_, n = (int(part) for part in ref[1:].split("-"))
            assert document.get(f"k{round_ * BURST + n}") == round_ * BURST + n, f"acked update {ref} lost"
    for name, invited in alice.members.items():
        joined, _ = await read_room(server, name, "plans")
        assert (joined["type"] == p.ROOM_JOINED) is invited, (name, joined)
    await mallory_is_refused(server)


async def mallory_is_refused(server: JupyterProcess) -> None:
    joined, replayed = await read_room(server, "mallory", "plans")
    assert (joined["type"], joined.get("code")) == (p.ERROR, p.ErrorCode.FORBIDDEN) and replayed == []
    status, body = await api(server, "mallory", "GET", "rooms")
    assert status == 200 and "plans" not in {room["room"] for room in body["rooms"]}
    status, body = await api(server, "mallory", "GET", "rooms/plans")
    assert status == 404


@pytest.mark.timeout(300)
async def test_a_clean_stop_keeps_every_message_the_document_and_the_invitations(server: JupyterProcess) -> None:
    status, _ = await api(server, "alice", "POST", "rooms", {"room": "plans", "members": ["bob"]})
    assert status == 201
    client = await socket(server, "alice")
    joined = {room: await join(client, room) for room in ROOMS}
    writer, answers = Writer(), dict[str, dict[str, Any]]()
    reader = asyncio.create_task(acks(client, answers))
    for n in range(100):
        await client.send({"type": p.MESSAGE, "room": ROOMS[n % 2], "ref": f"m{n}", "payload": {"content": str(n)}})
    await client.send(sync_frame("plans", p.SyncStep.UPDATE, writer.update(1), ref="s1"))
    for _ in range(500):
        if len(answers) == 101:
            break
        await asyncio.sleep(0.02)
    assert all(answer["type"] == p.ACK for answer in answers.values()) and len(answers) == 101
    client.close()
    with contextlib.suppress(Exception):
        await reader
    server.stop()
    await asyncio.to_thread(server.start)
    for room in ROOMS:
        again, replayed = await read_room(server, "bob", room, epoch=joined[room]["epoch"])
        assert (again["epoch"], again["recovered"], again["seq"]) == (joined[room]["epoch"], True, 50)
        assert [frame["seq"] for frame in replayed] == list(range(1, 51))
    assert await read_document(server, "bob", "plans") == {"k1": 1}
    await mallory_is_refused(server)
