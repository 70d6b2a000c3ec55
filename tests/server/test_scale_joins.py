"""Rooms of thousands (docs/protocol.md, "Large rooms"): paged snapshots, list-members and
batched presence, on a real server with two real users (alice and bob, `TwoAnalysts`).

The server lists at most PAGE members per page (``max_snapshot_members``), so a room of a
dozen users is a room "bigger than one page". A seed-style client (no new field) must see
exactly what it saw before; a client that asks for ``presence: "batched"`` must end with the
same view of the room from fewer frames.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from room_support import ALICE, BOB, Connect, all_pages, eventually, of_type, with_analysts
from servers import connect as connect_to
from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne import RoomClient
from iavicenne.discovery import ServerInfo
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all

PAGE = 5
BATCHED: dict[str, Any] = {"presence": "batched"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    return {"max_snapshot_members": PAGE, "presence_batch_interval": 0.05}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


class View:
    """A member view built from what one connection read, as a client application would."""

    def __init__(self, joined: dict[str, Any]) -> None:
        self.members: dict[str, Any] = {m["user_id"]: m.get("state") for m in joined["members"]}

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == p.USER_JOINED or kind == p.PRESENCE:
            self.members[frame["user_id"]] = frame.get("state")
        elif kind == p.USER_LEFT:
            self.members.pop(frame["user_id"], None)
        elif kind == p.PRESENCE_BATCH:
            for user_id in frame["left"]:
                self.members.pop(user_id, None)
            for entry in frame["joined"] + frame["updated"]:
                self.members[entry["user_id"]] = entry.get("state")


async def member(connect: Connect, user_id: str, room: str = "big", headers: dict[str, str] = ALICE, **payload: Any) -> WSClient:
    client = await connect(headers=headers)
    await client.join(room, user_id, **payload)
    return client


async def read_all(client: WSClient, quiet: float = 0.4) -> list[dict[str, Any]]:
    """Everything that arrives until the connection has been quiet for `quiet` seconds."""
    return await client.silent(quiet)


# -- seed clients: unchanged ---------------------------------------------------------------


async def test_a_seed_client_gets_one_user_joined_per_user_and_a_capped_snapshot(connect: Connect) -> None:
    watcher = await connect(headers=BOB)
    first = await watcher.join("big", "watcher")
    assert first["members"][0]["user_id"] == "watcher" and first["member_count"] == 1
    assert "members_more" not in first and "members_next" not in first

    others = [await member(connect, f"user{i:02}") for i in range(8)]
    second_socket = await member(connect, "user03")  # a second connection of one user: no new member
    frames = await read_all(watcher)
    joined = [f["user_id"] for f in of_type(frames, p.USER_JOINED)]
    assert joined == ["watcher", *(f"user{i:02}" for i in range(8))]  # one each, in order, user03 once
    assert not of_type(frames, p.PRESENCE_BATCH)  # never asked for

    late = await connect(headers=BOB)
    snapshot = await late.join("big", "late")
    assert snapshot["member_count"] == 10
    assert len(snapshot["members"]) == PAGE and snapshot["members_more"] is True
    listed = [m["user_id"] for m in snapshot["members"]]
    assert listed == sorted(listed)
    rest = await all_pages(late, "big", snapshot["members_next"])
    everyone = listed + [m["user_id"] for m in rest]
    assert everyone == sorted(["late", "watcher", *(f"user{i:02}" for i in range(8))])
    assert {m["user_id"]: m["connections"] for m in snapshot["members"] + rest}["user03"] == 2

    second_socket.close()
    others[5].close()
    frames = await read_all(watcher)
    assert [f["user_id"] for f in of_type(frames, p.USER_LEFT)] == ["user05"]  # user03 is still there


# -- batched presence ----------------------------------------------------------------------


async def test_a_batched_client_ends_with_the_seed_clients_view_from_fewer_frames(connect: Connect) -> None:
    seed = await connect(headers=BOB)
    seed_view = View(await seed.join("big", "seed"))
    batched = await connect(headers=BOB)
    batched_joined = await batched.join("big", "batched", **BATCHED)
    batched_view = View(batched_joined)
    assert (await batched.expect(p.USER_JOINED))["user_id"] == "batched"  # its own, as the seed sends it

    clients = [await member(connect, f"u{i}") for i in range(7)]
    await clients[0].send({"type": p.PRESENCE, "room": "big", "payload": {"state": {"busy": True}}})
    clients[1].close()
    clients[2].close()
    blink = await member(connect, "blink")  # joins and leaves within a batch: or in both lists, never one
    blink.close()
    again = await member(connect, "u1")  # left, and back
    await again.send({"type": p.PRESENCE, "room": "big", "payload": {"state": {"back": 1}}})

    seed_frames = await read_all(seed, quiet=0.6)
    batched_frames = await read_all(batched, quiet=0.6)
    for frame in seed_frames:
        seed_view.apply(frame)
    for frame in batched_frames:
        batched_view.apply(frame)

    expected = {"seed": {}, "batched": {}, "u0": {"busy": True}, "u1": {"back": 1}}
    expected.update({f"u{i}": {} for i in range(3, 7)})
    assert seed_view.members == expected
    assert batched_view.members == expected
    # the batched connection got no frame per change of another user, and fewer frames
    assert not [f for f in batched_frames if f["type"] in (p.USER_JOINED, p.USER_LEFT, p.PRESENCE)]
    batches = of_type(batched_frames, p.PRESENCE_BATCH)
    assert 0 < len(batches) < len(of_type(seed_frames, p.USER_JOINED)) + len(of_type(seed_frames, p.USER_LEFT))
    assert batches[-1]["member_count"] == len(expected)
    # in order: nobody is said to have left before a batch said it joined (or it was in the snapshot)
    present = {m["user_id"] for m in batched_joined["members"]}
    for batch in batches:
        for user_id in batch["left"]:
            assert user_id in present, f"{user_id} left before it joined: {batches}"
            present.discard(user_id)
        present.update(e["user_id"] for e in batch["joined"])
        assert not {e["user_id"] for e in batch["joined"]} & set(batch["left"])


async def test_a_user_with_two_connections_is_one_member_in_the_batches(connect: Connect) -> None:
    batched = await connect(headers=BOB)
    View(await batched.join("big", "batched", **BATCHED))
    await batched.expect(p.USER_JOINED)
    first = await member(connect, "twice")
    second = await member(connect, "twice")
    first.close()
    frames = await read_all(batched)
    batches = of_type(frames, p.PRESENCE_BATCH)
    # a batch is the same frame for every batched member, so it may list the reader itself
    assert [e["user_id"] for b in batches for e in b["joined"] if e["user_id"] != "batched"] == ["twice"]
    assert not [u for b in batches for u in b["left"]]  # its second connection is still in
    second.close()
    frames = await read_all(batched)
    assert [u for b in of_type(frames, p.PRESENCE_BATCH) for u in b["left"]] == ["twice"]


# -- pages -----------------------------------------------------------------------------------


async def test_paged_snapshot_and_list_members_cover_every_member_exactly_once(connect: Connect) -> None:
    names = [f"m{i:02}" for i in range(12)]
    for name in names:
        await member(connect, name, headers=BOB if len(name) % 2 else ALICE)
    reader = await connect(headers=ALICE)
    joined = await reader.join("big", "reader", members_limit=3, **BATCHED)
    assert len(joined["members"]) == 3 and joined["member_count"] == 13
    pages = await all_pages(reader, "big", joined["members_next"], limit=4)
    listed = [m["user_id"] for m in joined["members"] + pages]
    assert sorted(listed) == sorted([*names, "reader"])
    assert len(listed) == len(set(listed)) == 13
    assert all(m["identity"]["username"] in ("alice", "bob") for m in pages)

    counted = await connect(headers=BOB)
    nothing = await counted.join("big", "counter", members_limit=0)
    assert nothing["members"] == [] and nothing["member_count"] == 14
    everyone = await all_pages(counted, "big", nothing["members_next"])  # max_snapshot_members each
    assert [m["user_id"] for m in everyone] == sorted([*names, "reader", "counter"])

    # more than the server lists at once: max_snapshot_members, and the cursor for the rest
    greedy = await connect(headers=ALICE)
    most = await greedy.join("big", "greedy", members_limit=p.MAX_MEMBERS_PAGE)
    assert len(most["members"]) == PAGE and most["members_more"] is True and most["member_count"] == 15
    await greedy.send({"type": p.LIST_MEMBERS, "room": "big", "ref": "big", "payload": {"limit": 1000}})
    page = await greedy.expect(p.MEMBERS, where=lambda f: f.get("ref") == "big")
    assert len(page["members"]) == PAGE and page["members"][0]["user_id"] == "counter"


async def test_list_members_refuses_what_it_cannot_answer(connect: Connect) -> None:
    alice = await member(connect, "alice", room="big", **BATCHED)
    bob = await connect(headers=BOB)
    await bob.join("elsewhere", "bob")

    async def refused(payload: dict[str, Any], room: str = "big", client: WSClient = bob) -> dict[str, Any]:
        await client.send({"type": p.LIST_MEMBERS, "room": room, "ref": "bad", "payload": payload})
        return await client.expect(p.ERROR, where=lambda f: f.get("ref") == "bad")

    error = await refused({})  # bob is not in "big"
    assert error["code"] == p.ErrorCode.NOT_IN_ROOM
    await bob.join("big", "bob")
    for cursor in ("zzz", 5, "m:bad\x07name", ["m:"], "m:" + "x" * 100):
        error = await refused({"after": cursor})
        assert error["code"] == p.ErrorCode.INVALID_FIELD and "members_next" in error["message"], error
    for limit in (10**12, -1, "3", 2.5, True):
        error = await refused({"limit": limit})
        assert error["code"] == p.ErrorCode.INVALID_FIELD and "limit" in error["message"], error

    for payload in ({"members_limit": -1}, {"members_limit": "all"}, {"presence": "sometimes"}, {"presence": 1}):
        await bob.send({"type": p.JOIN_ROOM, "room": "other", "ref": "join", "payload": payload})
        error = await bob.expect(p.ERROR, where=lambda f: f.get("ref") == "join")
        assert error["code"] == p.ErrorCode.INVALID_FIELD, error

    # alice's room is as it was: her page lists both of them
    await alice.send({"type": p.LIST_MEMBERS, "room": "big", "ref": "fine", "payload": {}})
    page = await alice.expect(p.MEMBERS, where=lambda f: f.get("ref") == "fine")
    assert [m["user_id"] for m in page["members"]] == ["alice", "bob"] and "members_next" not in page


async def test_a_flood_of_joins_and_leaves_loses_no_message_of_another_user(connect: Connect) -> None:
    batched = await member(connect, "reader-b", headers=ALICE, **BATCHED)
    seed = await member(connect, "reader-s", headers=ALICE)
    writer = await member(connect, "writer", headers=ALICE)
    flooders = [await connect(headers=BOB) for _ in range(4)]
    total = 40

    async def flood(client: WSClient, k: int) -> None:
        for i in range(15):
            await client.send({"type": p.CONNECT, "payload": {"user_id": f"flood{k}-{i}"}})
            await client.send({"type": p.JOIN_ROOM, "room": "big", "payload": {"presence": "batched", "members_limit": 0}})
            await client.send({"type": p.LEAVE_ROOM, "room": "big"})

    async def write() -> None:
        for i in range(total):
            await writer.send({"type": p.MESSAGE, "room": "big", "ref": f"w{i}", "payload": {"n": i}})
            await asyncio.sleep(0.005)

    await asyncio.gather(write(), *(flood(c, k) for k, c in enumerate(flooders)))
    for reader in (batched, seed):
        got: list[int] = []
        while len(got) < total:
            frame = await reader.expect(p.MESSAGE, timeout=10)
            got.append(frame["message"]["n"])
        assert got == list(range(total))  # every one, once, in order
    # and once the flood is over, nobody of it is left in either view
    frames = await read_all(batched, quiet=0.6)
    assert not of_type(frames, p.MESSAGE)
    await batched.send({"type": p.LIST_MEMBERS, "room": "big", "ref": "end", "payload": {}})
    page = await batched.expect(p.MEMBERS, where=lambda f: f.get("ref") == "end")
    assert [m["user_id"] for m in page["members"]] == ["reader-b", "reader-s", "writer"]


# -- the Python client -----------------------------------------------------------------------


@pytest.fixture
def server(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> ServerInfo:
    return ServerInfo(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token)


async def test_the_python_clients_members_are_right_in_a_room_bigger_than_a_page(connect: Connect, server: ServerInfo) -> None:
    raw = {f"r{i:02}": await member(connect, f"r{i:02}", headers=BOB) for i in range(12)}
    client = RoomClient(server, user_id="py")
    await client.start()
    try:
        events: list[tuple[str, str | None]] = []
        room = await asyncio.wait_for(client.join("big"), 10)
        room.on("presence", lambda e: events.append((e.kind, e.user_id)))
        assert sorted(room.members) == sorted([*raw, "py"])
        assert room.members["r03"]["identity"]["username"] == "bob"

        for name in ("r01", "r07"):
            raw.pop(name).close()
        raw["zz"] = await member(connect, "zz", headers=BOB)
        await raw["r02"].send({"type": p.PRESENCE, "room": "big", "payload": {"state": {"typing": True}}})
        await eventually(lambda: "zz" in room.members and "r07" not in room.members, what="the batch")
        await eventually(lambda: room.members["r02"].get("state") == {"typing": True}, what="the state")
        assert sorted(room.members) == sorted([*raw, "py"])
        assert sorted(e for e in events if e[0] != "state") == [("joined", "zz"), ("left", "r01"), ("left", "r07")]
        assert ("state", "r02") in events
    finally:
        await client.close()


# -- on Redis: two servers, one room ----------------------------------------------------------


@pytest.fixture(scope="module")
def on_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[JupyterProcess]]:
    url = shared_redis_url()
    prefix = unique_prefix("scale-joins")
    workdir = tmp_path_factory.mktemp("scale-joins")
    servers = [jupyter_on_redis(workdir, url, prefix, f"server{i}", max_snapshot_members=PAGE) for i in range(2)]
    try:
        yield start_all(servers)
    finally:
        stop_all(servers)
        drop_prefix(url, prefix)


async def test_pages_and_batches_are_right_across_two_servers_on_redis(on_redis: list[JupyterProcess]) -> None:
    first, second = on_redis
    seed = await connect_to(first, "seed")
    seed_view = View(await seed.join("big"))
    seed_start = len(seed.seen)
    batched = await connect_to(second, "batched")
    batched_view = View(await batched.join("big", **BATCHED))
    batched_start = len(batched.seen)
    others = []
    for i in range(8):
        client = await connect_to(on_redis[i % 2], f"u{i}")
        await client.join("big")
        others.append(client)
    others[2].close()
    others[5].close()
    await others[0].send({"type": p.PRESENCE, "room": "big", "payload": {"state": {"n": 0}}})
    await seed.expect(p.USER_LEFT, timeout=15, where=lambda f: f["user_id"] == "u5")
    await read_all(seed, quiet=1.0)
    await read_all(batched, quiet=1.0)
    for frame in seed.seen[seed_start:]:
        seed_view.apply(frame)
    for frame in batched.seen[batched_start:]:
        batched_view.apply(frame)
    expected = {"seed": None, "batched": None, **{f"u{i}": None for i in (0, 1, 3, 4, 6, 7)}}
    assert set(seed_view.members) == set(batched_view.members) == set(expected)
    assert seed_view.members["u0"] == batched_view.members["u0"] == {"n": 0}
    assert not [f for f in batched.seen if f.get("type") == p.USER_JOINED and f["user_id"] != "batched"]

    late = await connect_to(second, "late")
    joined = await late.join("big", members_limit=2)
    assert joined["member_count"] == 9 and len(joined["members"]) == 2
    rest = await all_pages(late, "big", joined["members_next"])
    listed = [m["user_id"] for m in joined["members"] + rest]
    assert listed == sorted([*expected, "late"])
    for client in (seed, batched, late, *others):
        client.close()


# -- the benchmark runs ------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_the_joins_benchmark_runs_quick() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "joins.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ratio seed/batched" in run.stdout
    assert "(b) joins into a room of 300 members" in run.stdout
