"""Paged members and the member count of `RedisBroker`, read from its per-room indexes.

The Redis broker answers `members_page` and `member_count` without reading the room's
other entries (lua/members_page.lua): these tests check that what it answers is exactly
what folding every entry gives (`members`), across servers, and that the indexes never
drift from presence, whatever joins, leaves, take-overs and sweeps do to it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from broker_support import REFRESH, TIMEOUT, brokers_on, entry
from room_support import all_pages
from servers import connect as connect_to
from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne_ext.broker.base import JoinOutcome, MembersPage
from iavicenne_ext.broker.redis import RedisBroker
from iavicenne_ext.broker.redis.keys import Keys
from iavicenne_ext.testing import JupyterProcess, start_all, stop_all

# user_ids whose order differs between naive byte-wise and code point comparisons would
# show up here: non-ASCII, a prefix of another, digits, separators
USERS = ["alice", "al", "al.ice", "bob", "Zoe", "zoé", "ærø", "ß", "日本", "u-9", "u_10", "u10", "u2", "Émile", "x y"]


@pytest.fixture
def shared() -> Iterator[tuple[str, str]]:
    url = shared_redis_url()
    prefix = unique_prefix("members")
    yield url, prefix
    drop_prefix(url, prefix)


async def every_page(broker: RedisBroker, room: str, limit: int) -> tuple[list[bytes], list[MembersPage]]:
    listed: list[bytes] = []
    pages: list[MembersPage] = []
    after = ""
    while True:
        page = await broker.members_page(room, after, limit)
        pages.append(page)
        listed += page.members
        if page.next_after is None:
            return listed, pages
        assert len(page.members) == limit  # only the last page is short
        after = page.next_after


def indexes(url: str, prefix: str, room: str) -> tuple[set[bytes], set[bytes], set[bytes], set[bytes]]:
    """(members index, user_ids in presence, member-conns index, user_id NUL conn of presence)."""
    r = redis.Redis.from_url(url)
    try:
        # one MULTI: the four are read at one moment, whatever joins and leaves go on
        pipe = r.pipeline(transaction=True)
        pipe.zrange(Keys(prefix).of("members", room), 0, -1)
        pipe.zrange(Keys(prefix).of("member-conns", room), 0, -1)
        pipe.hgetall(Keys(prefix).of("presence", room))
        pipe.hkeys(Keys(prefix).of("users", room))
        replies = pipe.execute()
        members, conns = set(cast(list[bytes], replies[0])), set(cast(list[bytes], replies[1]))
        presence = cast(dict[bytes, bytes], replies[2])
        users = set(cast(list[bytes], replies[3]))
    finally:
        r.close()
    from_presence = {json.loads(raw)["user_id"].encode() for raw in presence.values()} if presence else set()
    assert from_presence == users
    pairs = {json.loads(raw)["user_id"].encode() + b"\0" + conn for conn, raw in presence.items()}
    return members, from_presence, conns, pairs


def assert_in_step(url: str, prefix: str, room: str) -> None:
    members, users, conns, pairs = indexes(url, prefix, room)
    assert members == users, members ^ users
    assert conns == pairs, conns ^ pairs


async def test_pages_across_two_servers_list_every_member_once_in_user_id_order(shared: tuple[str, str]) -> None:
    url, prefix = shared
    async with brokers_on(url, prefix) as start:
        (a, _), (b, _) = await start(), await start()
        n = 0
        for i, user in enumerate(USERS):
            # some users on a, some on b, some on both, one with three connections
            servers = [a, b, a] if user == "bob" else [a] if i % 3 == 0 else [b] if i % 3 == 1 else [a, b]
            for server in servers:
                n += 1
                assert await server.join("r", entry(f"{server.server_id}:{n}", user, username=user)) is not JoinOutcome.TAKEN
                if i % 4 == 0:
                    await server.set_state("r", f"{server.server_id}:{n}", p.encode({"n": n}), float(n))
        whole = await a.members("r")
        assert [m.user_id for m in whole] == sorted(USERS)
        connections = {m.user_id: m.connections for m in whole}
        assert connections["bob"] == 3 and connections["zoé"] == 2 and connections["alice"] == 1
        expected = [m.encoded() for m in whole]
        for limit in (1, 2, 4, 7, len(USERS), 1000):
            for broker in (a, b):
                listed, pages = await every_page(broker, "r", limit)
                assert listed == expected, limit
                assert {page.count for page in pages} == {len(USERS)}
        assert await a.member_count("r") == await b.member_count("r") == len(USERS)
        # a page of nothing still counts, and says where the list goes on
        first = await b.members_page("r", "", 0)
        assert first == MembersPage([], len(USERS), "")
        last = max(USERS)
        assert await a.members_page("r", last, 5) == MembersPage([], len(USERS), None)
        # `after` need not be a member: the page starts after where it would sort
        page = await a.members_page("r", "am", 2)
        assert [json.loads(m)["user_id"] for m in page.members] == sorted(u for u in USERS if u > "am")[:2]
        assert await a.members_page("gone", "", 10) == MembersPage([], 0, None)
        assert_in_step(url, prefix, "r")


async def test_member_count_follows_joins_leaves_take_overs_and_a_sweep(shared: tuple[str, str]) -> None:
    url, prefix = shared
    async with brokers_on(url, prefix) as start:
        (a, got_a), (b, _) = await start(), await start()
        await a.subscribe("r")
        assert await a.member_count("r") == 0
        await a.join("r", entry(f"{a.server_id}:1", "alice"))
        await b.join("r", entry(f"{b.server_id}:1", "alice"))
        await b.join("r", entry(f"{b.server_id}:2", "bob", username="bob"))
        await b.join("r", entry(f"{b.server_id}:3", "carol", username="carol"))
        assert await a.member_count("r") == 3
        # refused: another identity's user_id; counted nowhere
        assert await b.join("r", entry(f"{b.server_id}:4", "Alice", username="mallory")) is JoinOutcome.TAKEN
        assert await a.member_count("r") == 3
        # the same connection registered again (its entry replaced): still one connection
        await a.join("r", entry(f"{a.server_id}:1", "alice"))
        page = await a.members_page("r", "", 10)
        assert [json.loads(m)["connections"] for m in page.members] == [2, 1, 1]
        # one of alice's two connections leaves: she stays
        assert await a.leave("r", f"{a.server_id}:1", "alice") is False
        assert await b.member_count("r") == 3
        # a connection of another server removed (a signaling take-over does that)
        assert await a.leave("r", f"{b.server_id}:3", "carol") is True
        assert await b.member_count("r") == 2
        assert [json.loads(m)["user_id"] for m in (await a.members_page("r", "", 10)).members] == ["alice", "bob"]
        # b dies: its members are swept, exactly once, and the count and pages follow
        await a.join("r", entry(f"{a.server_id}:5", "dave", username="dave"))
        assert b._liveness.task is not None
        b._liveness.task.cancel()
        await got_a.wait(lambda: len(got_a.of_type(p.USER_LEFT)) >= 2, timeout=TIMEOUT + 4 * REFRESH + 2, what="user-left")
        assert sorted(f["user_id"] for f in got_a.of_type(p.USER_LEFT)) == ["alice", "bob"]
        assert await a.member_count("r") == 1
        page = await a.members_page("r", "", 10)
        assert page.count == 1 and [json.loads(m)["user_id"] for m in page.members] == ["dave"]
        assert_in_step(url, prefix, "r")
        assert await a.leave("r", f"{a.server_id}:5", "dave") is True
        assert await a.member_count("r") == 0
        r = redis.Redis.from_url(url)
        try:
            assert r.exists(Keys(prefix).of("members", "r"), Keys(prefix).of("member-conns", "r")) == 0
        finally:
            r.close()


async def test_the_indexes_do_not_drift_under_a_flood_of_joins_and_leaves(shared: tuple[str, str]) -> None:
    url, prefix = shared
    rng = random.Random(15)
    async with brokers_on(url, prefix) as start:
        (a, _), (b, _) = await start(), await start()
        servers = (a, b)
        names = [f"u{i}" for i in range(12)] + ["U1", "u\u0131", "mallory"]
        live: dict[str, str] = {}  # conn -> user_id it joined with
        n = 0

        async def one() -> None:
            nonlocal n
            server = rng.choice(servers)
            if live and rng.random() < 0.45:
                conn = rng.choice(list(live))
                user = live.pop(conn)
                # twice sometimes, and sometimes from the other server
                await rng.choice(servers).leave("r", conn, user)
                if rng.random() < 0.2:
                    await server.leave("r", conn, user)
                return
            n += 1
            conn = f"{server.server_id}:{n}"
            # the hostile identity: claims others' user_ids (refused as taken), reuses its own
            user = rng.choice(names)
            username = "mallory" if rng.random() < 0.3 else user
            outcome = await server.join("r", entry(conn, user, username=username))
            if outcome is not JoinOutcome.TAKEN:
                live[conn] = user

        for _ in range(30):
            await asyncio.gather(*(one() for _ in range(20)))
            assert_in_step(url, prefix, "r")
        members, users, _, _ = indexes(url, prefix, "r")
        assert await a.member_count("r") == len(users) == len(members) > 0
        listed, _ = await every_page(b, "r", 3)
        assert listed == [m.encoded() for m in await a.members("r")]


async def test_a_room_of_entries_written_before_the_indexes_is_indexed_on_its_first_page(shared: tuple[str, str]) -> None:
    url, prefix = shared
    async with brokers_on(url, prefix) as start:
        (a, _), (b, _) = await start(), await start()
        for i, user in enumerate(USERS):
            await (a, b)[i % 2].join("r", entry(f"{(a, b)[i % 2].server_id}:{i}", user, username=user))
        await b.join("r", entry(f"{b.server_id}:99", "alice"))
        # as a room in use when its servers were upgraded would be
        r = redis.Redis.from_url(url)
        try:
            r.delete(Keys(prefix).of("members", "r"), Keys(prefix).of("member-conns", "r"))
        finally:
            r.close()
        listed, _ = await every_page(a, "r", 4)
        assert listed == [m.encoded() for m in await b.members("r")]
        assert_in_step(url, prefix, "r")


# -- two Jupyter servers sharing one Redis -----------------------------------------------------


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[list[JupyterProcess], str, str]]:
    url = shared_redis_url()
    prefix = unique_prefix("members-jp")
    servers = [jupyter_on_redis(tmp_path, url, prefix, f"server{i}", max_snapshot_members=4) for i in range(2)]
    try:
        yield start_all(servers), url, prefix
    finally:
        stop_all(servers)
        drop_prefix(url, prefix)


async def test_paged_snapshots_across_two_jupyter_servers(two_servers: tuple[list[JupyterProcess], str, str]) -> None:
    servers, url, prefix = two_servers
    clients = []
    users = [f"user{i:02d}" for i in range(11)]
    for i, user in enumerate(users):
        client = await connect_to(servers[i % 2], user)
        await client.join("big", presence="batched")
        clients.append(client)
    # one user on both servers: one member, two connections
    both = await connect_to(servers[1], "user00")
    await both.join("big", presence="batched")
    late = await connect_to(servers[1], "late")
    joined = await late.join("big", members_limit=3)
    assert joined["member_count"] == len(users) + 1 and len(joined["members"]) == 3
    listed: list[dict[str, Any]] = joined["members"] + await all_pages(late, "big", joined["members_next"], limit=2)
    assert [m["user_id"] for m in listed] == sorted([*users, "late"])
    connections = {m["user_id"]: m["connections"] for m in listed}
    assert connections["user00"] == 2 and set(connections.values()) == {1, 2}
    # the user's connection on the other server leaves: still a member, one connection
    clients[0].close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        seen = await all_pages(late, "big", p.members_cursor(""), limit=50)
        if {m["user_id"]: m["connections"] for m in seen}["user00"] == 1:
            break
        assert loop.time() < deadline, seen
        await asyncio.sleep(0.1)
    assert [m["user_id"] for m in seen] == sorted([*users, "late"])
    both.close()
    # user00's last connection gone: the count says so at once (it is kept with presence)
    await late.expect(p.USER_LEFT, timeout=15, where=lambda f: f["user_id"] == "user00")
    fresh = await connect_to(servers[0], "fresh")
    counted = await fresh.join("big", members_limit=0)
    assert counted["member_count"] == len(users) + 1  # user00 gone, late and fresh here
    assert counted["members"] == [] and counted["members_next"] == p.members_cursor("")
    for client in (*clients[1:], late, fresh):
        client.close()
    assert_in_step(url, prefix, "big")
