"""Jupyter servers on a real Redis Cluster (three primaries on loopback): rooms on every
primary, the key layout of docs/redis-cluster.md, recovery across servers, a
primary SIGKILLed and restarted under load, a Jupyter server SIGKILLed, hostile room names.

The cluster is started once for the module (`redis_cluster.RedisClusterProcess`); two
Jupyter servers on it are started once too (each test uses rooms of its own), and the
tests that kill something start their own pair, with a key prefix of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis_cluster import RedisClusterProcess, room_slot, room_tag, tag_of
from servers import PRESENCE_REFRESH, PRESENCE_TIMEOUT, connect, jupyter_on_redis, unique_prefix

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all

# a Jupyter server starts in a few seconds, 20 on a loaded 2-core machine; a broker that
# refuses the cluster never serves, and the module should say so in well under 90 s
START_TIMEOUT = 40.0
# a loaded 2-core CI machine delays a sweep by scheduling, not by design (test_redis_faults)
SLACK = 1.5


# -- the fixture itself -------------------------------------------------------------------------
def test_the_cluster_serves_every_slot_and_keeps_writes_across_a_primary_restart(redis_cluster: RedisClusterProcess) -> None:
    """Three primaries, each serving a share of the slots; a key written before one of them
    is SIGKILLed is there after its restart (appendfsync always), and while it is down its
    slots answer nothing."""
    owners = redis_cluster.slot_map(redis_cluster.ports[0])
    assert len(owners) == REDIS_CLUSTER_HASH_SLOTS
    assert set(owners.values()) == set(redis_cluster.ports)
    rooms = redis_cluster.rooms_on_each_primary("fixture")
    assert [redis_cluster.port_of_room(room) for room in rooms] == redis_cluster.ports
    # the escaping of docs/redis-cluster.md, and Redis's own reading of a tag
    assert room_tag("a{b}c%7B") == "a%7Bb%7Dc%257B" and room_tag("signaling/x}") == "x%7D"
    assert tag_of(b"p:{x%7D}:meta:x}") == b"x%7D" and tag_of(b"p:{}:meta") is None and tag_of(b"p:servers") is None

    client = redis_cluster.client()
    try:
        for room in rooms:
            client.set(f"fixture:{{{room_tag(room)}}}:kept", room)
        victim = redis_cluster.port_of_room(rooms[1])
        redis_cluster.kill(victim)
        direct = redis_cluster.node(victim, timeout=0.5)
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            direct.get(f"fixture:{{{room_tag(rooms[1])}}}:kept")
        direct.close()
        redis_cluster.restart(victim)
        assert redis_cluster.port_of_room(rooms[1]) == victim, "the restarted node serves its slots again"
        for room in rooms:
            assert client.get(f"fixture:{{{room_tag(room)}}}:kept") == room.encode()
        # each key is on the primary of its slot, found there by a plain SCAN
        on_nodes = redis_cluster.keys("fixture")
        for port, keys in on_nodes.items():
            for key in keys:
                assert owners[key_slot(key)] == port
        assert sorted(len(keys) for keys in on_nodes.values()) == [1, 1, 1]
        assert all(room_slot(room) == key_slot(f"fixture:{{{room_tag(room)}}}:kept".encode()) for room in rooms)
    finally:
        client.close()
        redis_cluster.drop("fixture")


# -- Jupyter servers on the cluster -----------------------------------------------------------
@pytest.fixture(scope="module")
def servers(redis_cluster: RedisClusterProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[JupyterProcess]]:
    """Two Jupyter servers on the cluster for the module's tests that kill nothing. Each
    names a different node in IAvicenne.redis_url: any node is a way into the cluster."""
    prefix = unique_prefix("cluster")
    workdir = tmp_path_factory.mktemp("servers")
    pair = [
        jupyter_on_redis(workdir, redis_cluster.node_url(port), prefix, f"server{i}")
        for i, port in enumerate(redis_cluster.ports[:2])
    ]
    try:
        yield start_all(pair, START_TIMEOUT)
    finally:
        stop_all(pair)
        redis_cluster.drop(prefix)


@pytest.fixture
def fresh_pair(redis_cluster: RedisClusterProcess, tmp_path: Path) -> Iterator[list[JupyterProcess]]:
    """Two Jupyter servers of the test's own (a test that kills one, or a Redis primary,
    and reads their logs), both on the cluster's first node, with a prefix of their own."""
    prefix = unique_prefix("cluster-fault")
    pair = [jupyter_on_redis(tmp_path, redis_cluster.url, prefix, f"server{i}") for i in range(2)]
    try:
        yield start_all(pair, START_TIMEOUT)
    finally:
        stop_all(pair)
        redis_cluster.drop(prefix)


def of_type(client: WSClient, kind: str, **fields: Any) -> list[dict[str, Any]]:
    return [f for f in client.seen if f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())]


def messages(client: WSClient, room: str) -> list[dict[str, Any]]:
    return of_type(client, p.MESSAGE, room=room)


def has_messages(client: WSClient, room: str, count: int) -> Callable[[], bool]:
    """A condition for `read_until`: `client` has seen `count` messages of `room`."""
    return lambda: len(messages(client, room)) >= count


def left_everywhere(client: WSClient, user_id: str, rooms: Iterable[str]) -> Callable[[], bool]:
    """A condition for `read_until`: `client` was told `user_id` left each of `rooms`."""
    rooms = tuple(rooms)
    return lambda: all(of_type(client, p.USER_LEFT, room=room, user_id=user_id) for room in rooms)


async def read_until(client: WSClient, done: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Read `client`'s frames (into ``client.seen``) until `done()`; fail naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            await client.recv(left)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"{what}: not within {timeout} s; last frames: {client.seen[-5:]}") from None


async def answer(client: WSClient, ref: str, timeout: float = 20.0, kinds: tuple[str, ...] = (p.ACK, p.ERROR)) -> dict[str, Any]:
    """The ack or the error (or another of `kinds`) that answers the request `ref` (other
    frames go to ``seen``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            frame = await client.recv(left)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"request {ref!r} not answered within {timeout} s; last frames: {client.seen[-5:]}") from None
        if frame.get("type") in kinds and frame.get("ref") == ref:
            return frame


async def members_of(server: JupyterProcess, room: str) -> dict[str, int]:
    """What the REST API of `server` says of a room: user_id -> connections."""
    status, body = await asyncio.to_thread(server.get, f"/iavicenne/api/rooms/{urllib.parse.quote(room, safe='')}")
    assert status == 200, (status, body)
    return {m["user_id"]: m["connections"] for m in body["members"]}


def room_key(prefix: str, kind: str, room: str) -> bytes:
    """A room's key as docs/redis-cluster.md names it: ``<prefix>:{<tag>}:<kind>:<room>``."""
    return f"{prefix}:{{{room_tag(room)}}}:{kind}:{room}".encode()


def room_channel(prefix: str, room: str) -> bytes:
    return room_key(prefix, "room", room)


# -- a. rooms on every primary ------------------------------------------------------------------
async def test_rooms_on_every_primary_carry_presence_and_messages_between_two_servers(
    servers: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """alice on server 0 and bob on server 1 in three rooms, one per primary: each sees the
    other join and leave in every room, and both send at once without waiting: every
    message reaches both once, in seq order (1, 2, ... per room), the same order on both
    servers, each sender's in the order sent, and the acks carry those seqs."""
    s0, s1 = servers
    rooms = redis_cluster.rooms_on_each_primary("shard")
    assert sorted(redis_cluster.port_of_room(room) for room in rooms) == sorted(redis_cluster.ports)
    alice = await connect(s0, "alice")
    for room in rooms:
        joined = await alice.join(room)
        assert [m["user_id"] for m in joined["members"]] == ["alice"], room
    bob = await connect(s1, "bob")
    for room in rooms:
        joined = await bob.join(room)
        assert sorted(m["user_id"] for m in joined["members"]) == ["alice", "bob"], room
    # alice, on the other server, is told bob joined, in each room
    await read_until(alice, lambda: all(of_type(alice, p.USER_JOINED, room=room, user_id="bob") for room in rooms), "bob joined")

    per_sender = 10

    async def send_all(client: WSClient, name: str) -> None:
        for n in range(per_sender):
            for room in rooms:
                await client.send(
                    {"type": p.MESSAGE, "room": room, "ref": f"{name}-{room}-{n}", "payload": {"n": n, "from": name}}
                )

    def complete(client: WSClient) -> bool:
        return all(len(messages(client, room)) >= 2 * per_sender for room in rooms) and len(
            of_type(client, p.ACK)
        ) >= per_sender * len(rooms)

    await asyncio.gather(
        send_all(alice, "alice"),
        send_all(bob, "bob"),
        read_until(alice, lambda: complete(alice), "alice's messages and acks"),
        read_until(bob, lambda: complete(bob), "bob's messages and acks"),
    )
    await alice.silent(0.3)
    await bob.silent(0.3)
    for room in rooms:
        orders = []
        for client in (alice, bob):
            got = messages(client, room)
            assert [f["seq"] for f in got] == list(range(1, 2 * per_sender + 1)), f"{room}: not each seq once and in order"
            order = [(f["message"]["from"], f["message"]["n"]) for f in got]
            for sender in ("alice", "bob"):  # each from the other server once, in the order sent
                assert [n for who, n in order if who == sender] == list(range(per_sender)), (room, sender)
            orders.append(order)
        assert orders[0] == orders[1], f"{room}: the two servers delivered different orders"
        refs = {f"{name}-{room}-{n}" for name in ("alice", "bob") for n in range(per_sender)}
        acks = sorted(f["seq"] for c in (alice, bob) for f in of_type(c, p.ACK) if f["ref"] in refs)
        assert acks == list(range(1, 2 * per_sender + 1)), f"{room}: acks {acks}"

    # bob leaves every room: alice, on the other server, sees him go from each
    for room in rooms:
        await bob.send({"type": p.LEAVE_ROOM, "room": room})
        assert (await bob.expect(p.ROOM_LEFT))["room"] == room
    await read_until(alice, lambda: all(of_type(alice, p.USER_LEFT, room=room, user_id="bob") for room in rooms), "bob left")
    for room in rooms:
        assert await members_of(s1, room) == {"alice": 1}
    alice.close()
    bob.close()


# -- b. the key layout --------------------------------------------------------------------------
async def test_every_key_carries_a_tag_and_each_room_lives_on_the_primary_of_its_tag(
    servers: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """After traffic in rooms on the three primaries: SCAN every node. Each key under the
    prefix has a hash tag right after the prefix, is on the node serving its slot (as
    CLUSTER KEYSLOT says), a room's keys all carry the room's tag (so one script can touch
    them all), the three rooms' keys are on three nodes, and the deployment's keys carry
    ``{-}``. A room's channel is a shard channel on its primary."""
    s0, s1 = servers
    prefix = str(s0.options["redis_prefix"])
    rooms = redis_cluster.rooms_on_each_primary("layout")
    alice, bob = await connect(s0, "alice"), await connect(s1, "bob")
    for room in rooms:
        await alice.join(room, state={"cell": 1})
        await bob.join(room)
        await alice.send({"type": p.MESSAGE, "room": room, "ref": f"l-{room}", "payload": {"text": room}})
        assert (await answer(alice, f"l-{room}"))["type"] == p.ACK
    await read_until(bob, lambda: all(messages(bob, room) for room in rooms), "bob got one message per room")

    owners = redis_cluster.slot_map(redis_cluster.ports[0])
    found = redis_cluster.keys(prefix)
    everything = [key for keys in found.values() for key in keys]
    assert everything, f"no key under {prefix}: on any node"
    untagged = [key for key in everything if not key.startswith(f"{prefix}:{{".encode()) or tag_of(key) is None]
    assert not untagged, f"keys without a hash tag after the prefix: {untagged[:10]}"
    for port, keys in found.items():
        node = redis_cluster.node(port)
        try:
            for key in keys:
                tag = tag_of(key)
                assert tag is not None
                slot = int(node.execute_command("CLUSTER", "KEYSLOT", key))
                assert slot == key_slot(b"{" + tag + b"}"), f"{key!r}: Redis hashes it to {slot}, not to its tag {tag!r}"
                assert owners[slot] == port, f"{key!r} on {port}, its slot {slot} is served by {owners[slot]}"
        finally:
            node.close()

    for room in rooms:
        tag, port = room_tag(room).encode(), redis_cluster.port_of_room(room)
        of_room = [key for key in everything if key.endswith(b":" + room.encode())]
        assert {key for key in of_room if tag_of(key) != tag} == set(), f"{room}: keys outside its tag"
        assert set(of_room) <= set(found[port]), f"{room}: keys on nodes other than its primary {port}"
        kinds = {key[len(prefix) + len(tag) + 4 : -len(room) - 1] for key in of_room}  # <prefix>:{<tag>}:<kind>:<room>
        assert {b"meta", b"history", b"presence"} <= kinds, f"{room}: kinds {sorted(kinds)}"
        assert room_key(prefix, "meta", room) in found[port]
        node = redis_cluster.node(port)
        try:  # frames of the room travel on its own shard: sharded pub/sub (SSUBSCRIBE)
            shard_channels = node.execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}:*")
        finally:
            node.close()
        assert room_channel(prefix, room) in shard_channels, f"{room}: shard channels on {port}: {shard_channels}"
    # rooms on different primaries: their keys are spread over the three nodes
    assert {port for port, keys in found.items() for room in rooms if room_key(prefix, "meta", room) in keys} == set(
        redis_cluster.ports
    )
    # the deployment's keys (servers, ...) carry {-}
    assert f"{prefix}:{{-}}:servers".encode() in everything
    alice.close()
    bob.close()


# -- c. since, across servers -------------------------------------------------------------------
async def test_since_recovers_exactly_what_was_missed_from_the_other_server(
    servers: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """In a room on each primary: a reader on server 1 reads 3 messages and drops; 5 more
    are sent; it comes back on server 0 with its last seq and the room's epoch and gets
    exactly the 5 it missed, recovered=true, nothing more."""
    s0, s1 = servers
    for room in redis_cluster.rooms_on_each_primary("recovery"):
        writer = await connect(s0, "writer")
        await writer.join(room)
        reader = await connect(s1, "reader")
        epoch = (await reader.join(room))["epoch"]
        for n in range(3):
            await writer.send({"type": p.MESSAGE, "room": room, "ref": f"w{n}", "payload": {"n": n}})
            assert (await answer(writer, f"w{n}"))["type"] == p.ACK
        await read_until(reader, has_messages(reader, room, 3), f"{room}: 3 messages")
        last = messages(reader, room)[-1]["seq"]
        assert last == 3
        reader.close()
        for n in range(3, 8):
            await writer.send({"type": p.MESSAGE, "room": room, "ref": f"w{n}", "payload": {"n": n}})
            assert (await answer(writer, f"w{n}"))["type"] == p.ACK

        # the reader comes back through the other server, saying where it was
        back = await connect(s0, "reader")
        await back.send({"type": p.JOIN_ROOM, "room": room, "payload": {"since": last, "epoch": epoch}})
        joined = await back.expect(p.ROOM_JOINED)
        assert (joined["recovered"], joined["seq"], joined["epoch"]) == (True, 8, epoch), joined
        await read_until(back, has_messages(back, room, 5), f"{room}: the replay")
        await back.silent(0.3)
        assert [(f["seq"], f["message"]["n"]) for f in messages(back, room)] == [(s, s - 1) for s in range(4, 9)], room
        writer.close()
        back.close()


# -- f. hostile room names ----------------------------------------------------------------------
# `{` and `}` would end a hash tag early (`{a{b}c}` hashes as "a{b"), and a room named "x}"
# unescaped would share "x"'s tag; `%` is the escape character itself ("x}" -> "x%7D", and
# "x%7D" -> "x%257D"). docs/redis-cluster.md escapes all three; the protocol's name rule
# (docs/protocol.md, protocol.check_name) refuses them in names today.
BRACE_NAMES = ("a{b}c%7B", "x}", "x%7D")


async def test_room_names_with_braces_and_percent_are_refused_plainly_or_kept_apart(
    servers: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """Either the name rule refuses such names (``invalid-field`` quoting the rule, on both
    servers, nothing written), or, if it lets them in, each is a room of its own: it works
    across the servers, all its keys are in the slot of its escaped tag, and ``x}`` and
    ``x%7D`` share nothing (members, messages, seqs)."""
    s0, s1 = servers
    prefix = str(s0.options["redis_prefix"])
    alice, bob, carol = await connect(s0, "alice"), await connect(s1, "bob"), await connect(s1, "carol")
    await alice.send({"type": p.JOIN_ROOM, "room": BRACE_NAMES[0], "ref": "probe", "payload": {}})
    probe = await answer(alice, "probe", kinds=(p.ROOM_JOINED, p.ERROR))
    if probe["type"] == p.ERROR:
        # refused: plainly, by the name rule, on either server, for each name; nothing stored
        for client in (alice, bob):
            for n, room in enumerate(BRACE_NAMES):
                await client.send({"type": p.JOIN_ROOM, "room": room, "ref": f"j{n}", "payload": {}})
                error = await answer(client, f"j{n}", kinds=(p.ROOM_JOINED, p.ERROR))
                assert (error["type"], error["code"]) == (p.ERROR, p.ErrorCode.INVALID_FIELD), error
                assert p.NAME_RULE in error["message"], error
            for n, room in enumerate(BRACE_NAMES):
                await client.send({"type": p.MESSAGE, "room": room, "ref": f"m{n}", "payload": {"text": "sneak"}})
                assert (await answer(client, f"m{n}"))["code"] == p.ErrorCode.INVALID_FIELD
        for room in BRACE_NAMES:
            status, _ = await asyncio.to_thread(s1.get, f"/iavicenne/api/rooms/{urllib.parse.quote(room, safe='')}")
            assert status in (400, 404), (room, status)
        stored = [key for keys in redis_cluster.keys(prefix).values() for key in keys]
        assert not [key for key in stored if any(room.encode() in key for room in BRACE_NAMES)], stored
        for client in (alice, bob, carol):
            client.close()
        return

    # accepted: a room like any other, across the two servers
    room = BRACE_NAMES[0]
    assert probe["room"] == room
    await bob.join(room)
    await alice.send({"type": p.MESSAGE, "room": room, "ref": "h1", "payload": {"text": "braces"}})
    assert (await answer(alice, "h1"))["type"] == p.ACK
    await read_until(bob, has_messages(bob, room, 1), f"{room}: the message on the other server")
    assert messages(bob, room)[0]["message"] == {"text": "braces"}
    # "x}" and "x%7D": two rooms, whatever their escaped tags look like
    await alice.join("x}")
    await bob.join("x%7D")
    await carol.join("x}")
    await carol.join("x%7D")
    await alice.send({"type": p.MESSAGE, "room": "x}", "ref": "x1", "payload": {"text": "in x}"}})
    assert (await answer(alice, "x1"))["seq"] == 1
    await bob.send({"type": p.MESSAGE, "room": "x%7D", "ref": "x2", "payload": {"text": "in x%7D"}})
    assert (await answer(bob, "x2"))["seq"] == 1, "x%7D has a seq of its own"
    await read_until(carol, lambda: len(of_type(carol, p.MESSAGE)) >= 2, "carol: one message per room")
    await carol.silent(0.3)
    assert sorted((f["room"], f["message"]["text"]) for f in of_type(carol, p.MESSAGE)) == [("x%7D", "in x%7D"), ("x}", "in x}")]
    assert not [f for f in of_type(bob, p.MESSAGE) if f["room"] == "x}" or f["message"]["text"] == "in x}"]
    assert await members_of(s0, "x}") == {"alice": 1, "carol": 1}
    assert await members_of(s0, "x%7D") == {"bob": 1, "carol": 1}
    # each room's keys are in the slot of its escaped tag, and nowhere else
    stored = [key for keys in redis_cluster.keys(prefix).values() for key in keys]
    for name in BRACE_NAMES:
        of_room = [key for key in stored if key.endswith(b":" + name.encode())]
        assert room_key(prefix, "meta", name) in of_room, (name, of_room)
        assert {key_slot(key) for key in of_room} == {room_slot(name)}, (name, of_room)
    for client in (alice, bob, carol):
        client.close()


async def test_room_names_shaped_like_keys_stay_rooms_of_their_own(
    servers: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """Names the rule allows that look like the layout: ``-`` (whose tag is the
    deployment's, ``{-}``), ``k:meta:k`` beside ``k``. Each is a room of its own, and the
    deployment keeps working beside the room named ``-``."""
    s0, s1 = servers
    prefix = str(s0.options["redis_prefix"])
    rooms = ("k", "k:meta:k", "-")
    alice, bob = await connect(s0, "alice"), await connect(s1, "bob")
    await alice.join("k")
    for room in rooms[1:]:
        await bob.join(room)
    for n, room in enumerate(rooms):
        sender = alice if room == "k" else bob
        await sender.send({"type": p.MESSAGE, "room": room, "ref": f"s{n}", "payload": {"text": room}})
        assert (await answer(sender, f"s{n}"))["seq"] == 1, f"{room}: a seq of its own"
    await alice.silent(0.3)
    await bob.silent(0.3)
    assert [(f["room"], f["message"]["text"]) for f in of_type(alice, p.MESSAGE)] == [("k", "k")]
    assert sorted((f["room"], f["message"]["text"]) for f in of_type(bob, p.MESSAGE)) == [("-", "-"), ("k:meta:k", "k:meta:k")]
    joined = await alice.join("-")
    assert sorted(m["user_id"] for m in joined["members"]) == ["alice", "bob"]
    # the room "-" lives in {-}'s slot, beside the deployment's keys, and the deployment is fine
    stored = [key for keys in redis_cluster.keys(prefix).values() for key in keys]
    assert room_key(prefix, "meta", "-") in stored and room_key(prefix, "meta", "k:meta:k") in stored
    status, body = await asyncio.to_thread(s1.get, "/iavicenne/api/rooms")
    assert status == 200
    listed = {r["room"]: r["members"] for r in body["rooms"]}
    assert (listed.get("k"), listed.get("k:meta:k"), listed.get("-")) == (1, 1, 2), listed
    alice.close()
    bob.close()


# -- e. a Jupyter server SIGKILLed --------------------------------------------------------------
async def test_a_jupyter_server_sigkilled_on_the_cluster_leaves_no_member_behind(
    fresh_pair: list[JupyterProcess], redis_cluster: RedisClusterProcess
) -> None:
    """Server 1 SIGKILLed (no goodbye): within the presence timeout, alice on server 0 is
    told carol (only on server 1) left each room, once; dave, also connected to server 0,
    stays; the REST view has no ghost; the survivors still talk in every room."""
    s0, s1 = fresh_pair
    rooms = redis_cluster.rooms_on_each_primary("killed")
    alice = await connect(s0, "alice")
    carol = await connect(s1, "carol")  # only on the server that dies
    dave_there, dave_here = await connect(s1, "dave"), await connect(s0, "dave")  # on both
    for client in (alice, carol, dave_there, dave_here):
        for room in rooms:
            await client.join(room)

    loop = asyncio.get_running_loop()
    s1.kill()
    killed = loop.time()
    limit = PRESENCE_TIMEOUT + PRESENCE_REFRESH + SLACK
    for client in (alice, dave_here):
        await read_until(client, left_everywhere(client, "carol", rooms), "carol left every room", timeout=limit)
    assert loop.time() - killed <= limit
    # dave still has a connection (on server 0): he did not leave; carol left each room once
    await alice.silent(PRESENCE_REFRESH * 2)
    assert not of_type(alice, p.USER_LEFT, user_id="dave")
    for room in rooms:
        assert len(of_type(alice, p.USER_LEFT, room=room, user_id="carol")) == 1, room
        assert await members_of(s0, room) == {"alice": 1, "dave": 1}, room
    # and the survivors still talk, in every room
    for n, room in enumerate(rooms):
        await alice.send({"type": p.MESSAGE, "room": room, "ref": f"a{n}", "payload": {"text": "still here"}})
        assert (await answer(alice, f"a{n}"))["type"] == p.ACK
    await read_until(dave_here, lambda: all(messages(dave_here, room) for room in rooms), "dave got the messages")
    for client in (alice, dave_here):
        client.close()


# -- d. a primary SIGKILLed and restarted under load ---------------------------------------------
OUTAGE = 2.0  # how long the primary stays down
AFTER_RESTART = 10  # messages each sender sends once the cluster is ok again
LOAD_DEADLINE = 45.0


def ack_gaps(acked: list[tuple[int, int, float]]) -> list[float]:
    """The time between each two acks in a row (0 for fewer than two)."""
    return [b[2] - a[2] for a, b in itertools.pairwise(acked)] or [0.0]


# which primary dies: one the servers only learnt of from the cluster, or the very node their
# IAvicenne.redis_url names (the way back in must then wait for that node)
VICTIMS = {"another-primary": 1, "the-url-primary": 0}


@pytest.mark.parametrize("victim_kind", list(VICTIMS))
async def test_a_primary_sigkilled_and_restarted_under_load_loses_and_duplicates_nothing(
    fresh_pair: list[JupyterProcess], redis_cluster: RedisClusterProcess, victim_kind: str
) -> None:
    """Senders on server 0 publish numbered messages (each with a `ref`) into rooms on the
    three shards, one after another, resending after a short pause what is answered
    ``unavailable``; the primary of one room is SIGKILLed, down 2 s, restarted. The
    receivers on server 1 end up with every message once, in order, seqs contiguous from 1,
    and presence is whole again. What the rooms on the other shards did meanwhile is
    measured and printed (docs/redis-cluster.md: every room is unavailable meanwhile)."""
    s0, s1 = fresh_pair
    # two rooms per shard: after the restart, a server resubscribes several rooms of one shard
    # (in slots of their own) at once
    rooms = redis_cluster.rooms_on_each_primary("load", count=2)
    victim = redis_cluster.ports[VICTIMS[victim_kind]]  # both servers name ports[0]
    victim_room = next(room for room in rooms if redis_cluster.port_of_room(room) == victim)
    senders = {room: await connect(s0, f"sender{i}") for i, room in enumerate(rooms)}
    receivers = {room: await connect(s1, "bob") for room in rooms}
    for room in rooms:  # one connection each: every client reads only its own room's frames
        await senders[room].join(room)
        await receivers[room].join(room)

    loop = asyncio.get_running_loop()
    # a run takes about 10 s (20 on a loaded machine); rooms that never come back fail here
    deadline = loop.time() + LOAD_DEADLINE
    acked: dict[str, list[tuple[int, int, float]]] = {room: [] for room in rooms}  # n, seq, when
    refused: dict[str, list[float]] = {room: [] for room in rooms}
    slowest: dict[str, float] = dict.fromkeys(rooms, 0.0)
    timeline: dict[str, float] = {}
    survivors: dict[int, str] = {}
    restarted = asyncio.Event()
    receiving = True

    async def send(room: str) -> None:
        client, n, last = senders[room], 0, None
        while last is None or n < last:
            if last is None and restarted.is_set():
                last = n + AFTER_RESTART
            ref = f"{room}/{n}"
            while True:
                assert loop.time() < deadline, (
                    f"{room}: still sending after {LOAD_DEADLINE} s ({len(acked[room])} acked, {len(refused[room])} refused)"
                )
                asked = loop.time()
                await client.send({"type": p.MESSAGE, "room": room, "ref": ref, "payload": {"n": n}})
                got = await answer(client, ref, timeout=30)
                slowest[room] = max(slowest[room], loop.time() - asked)
                if got["type"] == p.ACK:
                    acked[room].append((n, got["seq"], loop.time()))
                    break
                assert got.get("code") == p.ErrorCode.UNAVAILABLE, f"{room}: {got}"
                refused[room].append(loop.time())
                await asyncio.sleep(0.2)  # a client waits a little before it sends again (same ref)
            n += 1
            await asyncio.sleep(0.03)

    async def receive(client: WSClient) -> None:
        while receiving:  # keep reading, so the server never holds frames for a slow reader
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await client.recv(0.2)

    async def fault() -> None:
        while min(len(acked[room]) for room in rooms) < 10:  # traffic in every room first
            if any(task.done() for task in sending):
                return  # a sender failed already: it says why
            assert loop.time() < deadline, f"no traffic before the fault: {[len(a) for a in acked.values()]}"
            await asyncio.sleep(0.05)
        timeline["kill"] = loop.time()
        await asyncio.to_thread(redis_cluster.kill, victim)
        try:
            await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for something
            for port in redis_cluster.ports:  # what the surviving primaries say of the cluster meanwhile
                if port != victim:
                    survivors[port] = (await asyncio.to_thread(redis_cluster.info, port)).get("cluster_state", "?")
        finally:
            timeline["restart"] = loop.time()
            await asyncio.to_thread(redis_cluster.restart, victim)  # back when cluster_state:ok everywhere
        timeline["ok"] = loop.time()
        restarted.set()

    readers = [asyncio.ensure_future(receive(receivers[room])) for room in rooms]
    sending = [asyncio.ensure_future(send(room)) for room in rooms]
    faulting = asyncio.ensure_future(fault())
    try:
        await asyncio.gather(faulting, *sending)
    finally:
        # a failed sender stops the others, but never the restart: the primary is always back
        # for the tests that follow
        for task in sending:
            task.cancel()
        await asyncio.gather(faulting, *sending, return_exceptions=True)
        receiving = False
        await asyncio.gather(*readers)

    report = [
        f"primary {victim} ({', '.join(room for room in rooms if redis_cluster.port_of_room(room) == victim)}) SIGKILLed, restarted after {OUTAGE} s, cluster ok again "
        f"{timeline['ok'] - timeline['kill']:.1f} s after the kill; just before the restart the other primaries said "
        + ", ".join(f"{port}: cluster_state:{state}" for port, state in survivors.items())
    ]
    for room in rooms:
        during = [when for _, _, when in acked[room] if timeline["kill"] <= when <= timeline["ok"]]
        refused_during = [when for when in refused[room] if timeline["kill"] <= when <= timeline["ok"]]
        resumed = min((when for _, _, when in acked[room] if when > timeline["kill"]), default=float("nan"))
        report.append(
            f"{room} on {redis_cluster.port_of_room(room)}{' (victim)' if redis_cluster.port_of_room(room) == victim else ''}: "
            f"{len(acked[room])} acked, {len(during)} of them during the outage, {len(refused[room])} refused "
            f"({len(refused_during)} during it), first ack after the kill {resumed - timeline['kill']:.2f} s after it "
            f"({resumed - timeline['ok']:+.2f} s from cluster ok), longest gap between acks {max(ack_gaps(acked[room])):.2f} s, "
            f"slowest answer {slowest[room]:.2f} s"
        )
    print("\n".join(report))
    assert refused[victim_room] or max(ack_gaps(acked[victim_room])) >= OUTAGE, (
        "the victim's room noticed no outage: was the right primary killed?"
    )

    # every acknowledged message reaches server 1 once, in order, seqs contiguous from 1
    for room in rooms:
        count = len(acked[room])
        assert [n for n, _, _ in acked[room]] == list(range(count))
        assert [seq for _, seq, _ in acked[room]] == list(range(1, count + 1)), f"{room}: acked seqs"
        receiver = receivers[room]
        await read_until(receiver, has_messages(receiver, room, count), f"{room}: {count} messages on server 1", timeout=30)
        await receiver.silent(0.5)
        got = messages(receiver, room)
        assert [f["message"]["n"] for f in got] == list(range(count)), f"{room}: not each message once and in order"
        assert [f["seq"] for f in got] == list(range(1, count + 1)), f"{room}: seqs {[f['seq'] for f in got]}"

    # presence is whole again: a newcomer on server 1 sees sender and receiver in each room
    carol = await connect(s1, "carol")
    for i, room in enumerate(rooms):
        joined = await carol.join(room)
        assert sorted(m["user_id"] for m in joined["members"]) == ["bob", "carol", f"sender{i}"], room
    for server in (s0, s1):
        if "Traceback" in server.log_text():
            print(f"{server.name} logged a traceback:\n{server.log_text()[-3000:]}")
    for client in (*senders.values(), *receivers.values(), carol):
        client.close()


# -- a prefix that would break the layout ------------------------------------------------------
@pytest.mark.parametrize("prefix", ["team{a}", "team}"])
async def test_a_redis_prefix_with_a_brace_is_refused_at_start_naming_the_option(
    redis_cluster: RedisClusterProcess, tmp_path: Path, prefix: str
) -> None:
    """A brace in redis_prefix would make Redis hash every key by the prefix (one slot for
    the whole deployment) or end a room's tag early: docs/redis-cluster.md says the server refuses
    to start, naming IAvicenne.redis_prefix."""
    server = jupyter_on_redis(tmp_path, redis_cluster.url, prefix, "braced")
    try:
        await asyncio.to_thread(server.launch)
        # it has read its configuration once the log names the option (a few seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while "IAvicenne.redis_prefix" not in server.log_text() and server.running():
            assert loop.time() < deadline, f"nothing said of the prefix:\n{server.log_text()[-3000:]}"
            await asyncio.sleep(0.1)
        assert "IAvicenne.redis_prefix" in server.log_text(), server.log_text()[-3000:]
        # ... and it does not go on serving without its rooms: it exits, failed
        deadline = loop.time() + 10
        while server.running() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        status = await asyncio.to_thread(server.get, "/iavicenne/api/rooms") if server.running() else None
        assert not server.running(), f"still serving (GET /iavicenne/api/rooms: {status}):\n{server.log_text()[-3000:]}"
        assert server.proc is not None and server.proc.returncode != 0
    finally:
        server.kill()  # nothing to stop cleanly: a server half up, without its rooms
    assert not [key for keys in redis_cluster.keys("team").values() for key in keys], "it wrote under the prefix"
