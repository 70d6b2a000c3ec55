"""Three real `jupyter server` processes sharing one Redis: one set of rooms, whichever
server a client is connected to.

The tests of `cluster` run twice: on the Redis at 127.0.0.1:6379 (``single``) and on a
Redis Cluster of three primaries started for the module (``redis-cluster``, see
`redis_cluster.RedisClusterProcess`; ``-k redis-cluster`` selects them). The servers are
started once per kind (each test uses rooms of its own), with a key prefix of their own,
and clients talk to them over real WebSockets with the server token.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis_cluster import RedisClusterProcess
from servers import RedisProcess, connect, drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix

import iavicenne_protocol as p
from iavicenne_ext.broker.redis.keys import Keys
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all


@pytest.fixture(scope="module", params=["single", "redis-cluster"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[JupyterProcess]]:
    """Three Jupyter servers on one Redis: the shared one, or the module's Redis Cluster
    (its url names one node, as a user would set it)."""
    store: RedisClusterProcess | None = request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    url = store.url if store is not None else shared_redis_url()
    prefix = unique_prefix("servers")
    workdir = tmp_path_factory.mktemp("cluster")
    servers = [jupyter_on_redis(workdir, url, prefix, f"server{i}") for i in range(3)]
    try:
        yield start_all(servers)
    finally:
        stop_all(servers)
        if store is not None:
            store.drop(prefix)
        else:
            drop_prefix(url, prefix)


@functools.cache
def _cluster_enabled(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return str(client.info("cluster").get("cluster_enabled", "0")) == "1"
    finally:
        client.close()


def on_cluster(server: JupyterProcess) -> bool:
    """Whether the servers of this run are on a Redis Cluster (the ``redis-cluster`` run), as
    the broker itself tells: INFO cluster says cluster_enabled:1."""
    return _cluster_enabled(str(server.options["redis_url"]))


def key_store(server: JupyterProcess) -> redis.Redis | redis.cluster.RedisCluster:
    """A client of the servers' Redis that reads any key: on the cluster, one that follows
    each key to the primary of its slot."""
    url = str(server.options["redis_url"])
    if on_cluster(server):
        return redis.cluster.RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


def messages(client: WSClient, room: str) -> list[dict[str, Any]]:
    return [f for f in client.seen if f.get("type") == p.MESSAGE and f.get("room") == room]


async def test_messages_reach_every_server_once_in_seq_order(cluster: list[JupyterProcess]) -> None:
    room = "cross-messages"
    clients = [await connect(server, f"user{i}") for i, server in enumerate(cluster)]
    for client in clients:
        await client.join(room)
    per_client = 25

    async def send_all(i: int, client: WSClient) -> None:
        for n in range(per_client):
            await client.send({"type": p.MESSAGE, "room": room, "ref": f"{i}-{n}", "payload": {"n": n, "from": i}})

    async def read_all(client: WSClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (
            len(messages(client, room)) < per_client * len(clients)
            or len([f for f in client.seen if f.get("type") == p.ACK]) < per_client
        ):
            await client.recv(deadline - loop.time())

    await asyncio.gather(*(send_all(i, c) for i, c in enumerate(clients)), *(read_all(c) for c in clients))
    total = per_client * len(clients)
    orders = []
    for client in clients:
        got = messages(client, room)
        seqs = [f["seq"] for f in got]
        assert seqs == list(range(1, total + 1)), f"not each seq once and in order: {seqs}"
        orders.append([(f["message"]["from"], f["message"]["n"]) for f in got])
        # each sender's own messages in the order it sent them
        for i in range(len(clients)):
            assert [n for sender, n in orders[-1] if sender == i] == list(range(per_client))
    assert orders[0] == orders[1] == orders[2], "servers delivered different orders"
    # nothing arrives twice later
    extra = await clients[0].silent(0.3)
    assert not [f for f in extra if f.get("type") == p.MESSAGE]
    # every ack carries the seq every member saw for that message
    acks = {f["ref"]: f["seq"] for c in clients for f in c.seen if f.get("type") == p.ACK}
    assert sorted(acks.values()) == list(range(1, total + 1))
    for client in clients:
        client.close()


async def test_presence_snapshot_and_diffs_across_servers(cluster: list[JupyterProcess]) -> None:
    room = "cross-presence"
    alice = await connect(cluster[0], "alice")
    await alice.join(room, state={"notebook": "a.ipynb"})
    bob = await connect(cluster[1], "bob")
    joined = await bob.join(room)
    assert [(m["user_id"], m["state"]) for m in joined["members"]] == [("alice", {"notebook": "a.ipynb"}), ("bob", {})]
    seen = await alice.expect(p.USER_JOINED, where=lambda f: f["user_id"] == "bob")
    assert seen["room"] == room

    # alice opens a second connection on another server: one user, no second user-joined
    alice2 = await connect(cluster[2], "alice")
    joined = await alice2.join(room)
    assert {m["user_id"]: m["connections"] for m in joined["members"]} == {"alice": 2, "bob": 1}
    assert not [f for f in await bob.silent(0.4) if f.get("type") == p.USER_JOINED and f["user_id"] == "alice"]

    # a presence state set on one server is seen on the others
    await alice2.send({"type": p.PRESENCE, "room": room, "payload": {"state": {"cell": 7}}})
    update = await bob.expect(p.PRESENCE)
    assert (update["user_id"], update["state"]) == ("alice", {"cell": 7})
    status, body = await asyncio.to_thread(cluster[1].get, f"/iavicenne/api/rooms/{room}")
    assert status == 200
    assert {m["user_id"]: m["state"] for m in body["members"]} == {"alice": {"cell": 7}, "bob": {}}

    # alice leaves on server 0: still present through server 2, so nobody is told she left
    await alice.send({"type": p.LEAVE_ROOM, "room": room})
    await alice.expect(p.ROOM_LEFT)
    assert not [f for f in await bob.silent(0.4) if f.get("type") == p.USER_LEFT]
    # her last connection closes: everyone, on every server, gets one user-left
    alice2.close()
    left = await bob.expect(p.USER_LEFT, where=lambda f: f["user_id"] == "alice")
    assert left["room"] == room
    assert not [f for f in await bob.silent(0.4) if f.get("type") == p.USER_LEFT]
    status, body = await asyncio.to_thread(cluster[0].get, "/iavicenne/api/rooms")
    assert {"room": room, "members": 1, "connections": 1, "access": "public"} in body["rooms"]
    alice.close()
    bob.close()


async def test_since_recovers_from_another_server(cluster: list[JupyterProcess]) -> None:
    room = "cross-recovery"
    writer = await connect(cluster[0], "writer")
    await writer.join(room)
    reader = await connect(cluster[1], "reader")
    joined = await reader.join(room)
    epoch = joined["epoch"]
    for n in range(3):
        await writer.send({"type": p.MESSAGE, "room": room, "payload": {"n": n}})
    last = None
    for _ in range(3):
        last = await reader.expect(p.MESSAGE)
    assert last is not None and last["seq"] == 3
    reader.close()
    for n in range(3, 8):
        await writer.send({"type": p.MESSAGE, "room": room, "ref": f"w{n}", "payload": {"n": n}})
        acked = await answer(writer, f"w{n}")
        assert acked["type"] == p.ACK, acked

    # it comes back through a third server, saying where it was
    back = await connect(cluster[2], "reader")
    await back.send({"type": p.JOIN_ROOM, "room": room, "payload": {"since": 3, "epoch": epoch}})
    joined = await back.expect(p.ROOM_JOINED)
    assert joined["recovered"] is True and joined["seq"] == 8 and joined["epoch"] == epoch
    replay = [await back.expect(p.MESSAGE) for _ in range(5)]
    assert [(f["seq"], f["message"]["n"]) for f in replay] == [(s, s - 1) for s in range(4, 9)]
    # a client of another room life cannot recover, and is told so
    other = await connect(cluster[0], "stranger")
    await other.send({"type": p.JOIN_ROOM, "room": room, "payload": {"since": 3, "epoch": "not-this-room"}})
    assert (await other.expect(p.ROOM_JOINED))["recovered"] is False
    for client in (writer, back, other):
        client.close()


async def test_direct_messages_reach_a_user_on_other_servers(cluster: list[JupyterProcess]) -> None:
    room = "cross-direct"
    alice = await connect(cluster[0], "alice")
    await alice.join(room)
    bob_here = await connect(cluster[1], "bob")
    await bob_here.join(room)
    bob_there = await connect(cluster[2], "bob")
    await bob_there.join(room)
    carol = await connect(cluster[1], "carol")
    await carol.join(room)
    await alice.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "bob", "ref": "d1", "payload": {"text": "psst"}})
    await alice.expect(p.ACK, where=lambda f: f.get("ref") == "d1")
    for bob in (bob_here, bob_there):
        direct = await bob.expect(p.DIRECT_MESSAGE)
        assert (direct["user_id"], direct["to"], direct["message"]) == ("alice", "bob", {"text": "psst"})
    assert not [f for f in await carol.silent(0.4) if f.get("type") == p.DIRECT_MESSAGE]
    await alice.send({"type": p.DIRECT_MESSAGE, "room": room, "to": "nobody", "ref": "d2", "payload": {}})
    error = await alice.expect(p.ERROR)
    assert (error["code"], error["ref"]) == (p.ErrorCode.UNKNOWN_USER, "d2")
    for client in (alice, bob_here, bob_there, carol):
        client.close()


async def test_signaling_relays_and_takes_over_across_servers(cluster: list[JupyterProcess]) -> None:
    room = "cross-signaling"
    p1 = await connect(cluster[0], endpoint="signaling")
    await p1.send({"type": p.JOIN, "room": room, "payload": {"peer_id": "p1"}})
    await p1.expect(p.JOINED)
    p2 = await connect(cluster[1], endpoint="signaling")
    await p2.send({"type": p.JOIN, "room": room, "payload": {"peer_id": "p2"}})
    assert (await p2.expect(p.JOINED))["peers"] == ["p1"]
    assert (await p1.expect(p.PEER_JOINED))["peer_id"] == "p2"

    offer = {"type": "offer", "sdp": "v=0"}
    await p1.send({"type": p.OFFER, "room": room, "payload": {"target_peer_id": "p2", "offer": offer}})
    relayed = await p2.expect(p.OFFER)
    assert (relayed["offer"], relayed["source_peer_id"]) == (offer, "p1")
    answer = {"type": "answer", "sdp": "v=0"}
    await p2.send({"type": p.ANSWER, "room": room, "payload": {"target_peer_id": "p1", "answer": answer}})
    assert (await p1.expect(p.ANSWER))["answer"] == answer

    # p2 reconnects through a third server: the newer connection takes the peer_id over,
    # the older one (on server 1) is told, and its presence is gone from Redis
    p2_new = await connect(cluster[2], endpoint="signaling")
    await p2_new.send({"type": p.JOIN, "room": room, "payload": {"peer_id": "p2"}})
    assert (await p2_new.expect(p.JOINED))["peers"] == ["p1"]
    assert (await p2.expect(p.ERROR))["code"] == "superseded"
    rejoined = await p1.expect(p.PEER_JOINED)
    assert (rejoined["peer_id"], rejoined.get("rejoined")) == ("p2", True)
    prefix, signaling_room = cluster[0].options["redis_prefix"], f"{p.SIGNALING_ROOM_PREFIX}{room}"
    store = key_store(cluster[0])
    try:
        entries = store.hvals(Keys(prefix).of("presence", signaling_room))
    finally:
        store.close()
    assert sorted(json.loads(e)["user_id"] for e in entries) == ["p1", "p2"]  # the old p2 is gone
    candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
    await p1.send({"type": p.ICE_CANDIDATE, "room": room, "payload": {"target_peer_id": "p2", "candidate": candidate}})
    assert (await p2_new.expect(p.ICE_CANDIDATE))["candidate"] == candidate
    for client in (p1, p2, p2_new):
        client.close()


async def answer(client: WSClient, ref: str) -> dict[str, Any]:
    """The ack or the error that answers the request `ref`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        frame = await client.recv(deadline - loop.time())
        if frame.get("type") in (p.ACK, p.ERROR) and frame.get("ref") == ref:
            return frame


def unavailable(client: WSClient) -> list[dict[str, Any]]:
    return [f for f in client.seen if f.get("type") == p.ERROR and f.get("code") == p.ErrorCode.UNAVAILABLE]


async def test_garbage_published_on_a_room_channel_is_dropped(cluster: list[JupyterProcess]) -> None:
    """Someone else's PUBLISH on a room's channel: dropped with a log line; the link and the rooms carry on."""
    room, other = "cross-garbage", "cross-garbage-other"
    s0, s1, s2 = cluster
    alice, bob = await connect(s0, "alice"), await connect(s1, "bob")
    carol, dave = await connect(s1, "carol"), await connect(s2, "dave")
    joined = await alice.join(room)
    await bob.join(room)
    await carol.join(other)
    await dave.join(other)
    await alice.send({"type": p.MESSAGE, "room": room, "ref": "a1", "payload": {"text": "before"}})
    assert (await answer(alice, "a1"))["type"] == p.ACK
    await bob.expect(p.MESSAGE)

    hostile = key_store(s0)
    channel = Keys(s0.options["redis_prefix"]).channel(room)
    # on the cluster, frames travel over sharded pub/sub, on the room's shard
    publish = hostile.spublish if isinstance(hostile, redis.cluster.RedisCluster) else hostile.publish
    try:
        for data in (
            b"\x00\xff garbage",
            b"{not json\n{}",
            b'{"seq":"2","epoch":1}\n{"type":"message"}',
            b'{"seq":0,"skip":[]}\n{"type":"message"}',
            b'{"seq":0}\n{"type":"message","message":{"text":"cut',
            b'{"seq":2,"epoch":"forged"}\n{"type":"message","message":{"text":"forged"}}',
            b'{"seq":40,"epoch":"%s"}\n{"type":"message","message":{"text":"forged"}}' % joined["epoch"].encode(),
        ):
            await asyncio.to_thread(publish, channel, data)
    finally:
        hostile.close()

    await alice.send({"type": p.MESSAGE, "room": room, "ref": "a2", "payload": {"text": "after"}})
    assert (await answer(alice, "a2"))["seq"] == 2
    got = await bob.expect(p.MESSAGE)
    assert (got["seq"], got["message"]) == (2, {"text": "after"})
    await dave.send({"type": p.MESSAGE, "room": other, "ref": "d1", "payload": {"text": "elsewhere"}})
    assert (await carol.expect(p.MESSAGE))["message"] == {"text": "elsewhere"}
    for client in (alice, bob, carol, dave):
        await client.silent(0.3)
        assert not unavailable(client), f"told of an outage that did not happen: {unavailable(client)}"
        assert not [f for f in client.seen if f.get("type") == p.MESSAGE and f["message"].get("text") == "forged"]
    for server in (s0, s1):  # both had a member in the room
        log = server.log_text()
        assert "did not publish" in log and "lost Redis" not in log and "Traceback" not in log
    for client in (alice, bob, carol, dave):
        client.close()


# -- budgets: one Redis shared by two servers, a hostile user flooding it ----------------------
BUDGETS = {
    "history_bytes_per_room": 256 * 1024,
    "history_bytes_total": 4 * 1024 * 1024,
    "max_replay_bytes": 128 * 1024,
    # what is measured here is the history: the byte rate is not what stops this flood
    "bytes_per_second": 1 << 30,
    "burst_bytes": 1 << 30,
}


@pytest.fixture
def budget_cluster(tmp_path: Path) -> Iterator[tuple[RedisProcess, list[JupyterProcess]]]:
    redis_server = RedisProcess(tmp_path / "redis").start()  # its used_memory is ours alone
    prefix = unique_prefix("budget")
    servers = [jupyter_on_redis(tmp_path, redis_server.url, prefix, f"server{i}", **BUDGETS) for i in range(2)]
    try:
        yield redis_server, start_all(servers)
    finally:
        stop_all(servers)
        redis_server.stop()


async def test_a_flood_of_large_messages_into_many_rooms_keeps_redis_bounded(
    budget_cluster: tuple[RedisProcess, list[JupyterProcess]],
) -> None:
    redis_server, (s0, s1) = budget_cluster
    store = redis.Redis.from_url(redis_server.url)
    alice, bob = await connect(s1, "alice"), await connect(s0, "bob")
    await alice.join("work")
    await bob.join("work")
    for n in range(3):
        await alice.send({"type": p.MESSAGE, "room": "work", "ref": f"w{n}", "payload": {"text": f"w{n}"}})
        assert (await answer(alice, f"w{n}"))["type"] == p.ACK
    used_before = store.info("memory")["used_memory"]

    mallory = await connect(s0, "mallory")
    blob = "x" * 60_000  # under max_message_bytes
    rooms, per_room = 48, 6  # 17 MB written; 240 KB kept per room would be 11 MB
    refused: list[dict[str, Any]] = []
    for r in range(rooms):
        await mallory.join(f"flood-{r}")
        for n in range(per_room):
            ref = f"{r}-{n}"
            await mallory.send({"type": p.MESSAGE, "room": f"flood-{r}", "ref": ref, "payload": {"blob": blob}})
            got = await answer(mallory, ref)
            if got["type"] == p.ERROR:
                refused.append(got)
        await mallory.send({"type": p.LEAVE_ROOM, "room": f"flood-{r}"})
        await mallory.expect(p.ROOM_LEFT)
        mallory.seen.clear()
    grown = store.info("memory")["used_memory"] - used_before
    total = int(store.get(Keys(s0.options["redis_prefix"]).history_total) or 0)
    assert total <= BUDGETS["history_bytes_total"]
    assert grown < BUDGETS["history_bytes_total"] + 4 * 1024 * 1024, f"Redis grew by {grown / 2**20:.1f} MiB"
    # beyond the total, messages into rooms that have nothing to give up are refused, plainly
    assert refused and {f["code"] for f in refused} == {p.ErrorCode.LIMIT_EXCEEDED}
    assert all("IAvicenne.history_bytes_total" in f["message"] for f in refused)
    # per room: the oldest went, the newest are kept
    kept = store.xlen(Keys(s0.options["redis_prefix"]).of("history", "flood-0"))
    assert 0 < kept * 60_000 <= BUDGETS["history_bytes_per_room"]

    # the others still talk, across the two servers, and were told of no outage
    await alice.send({"type": p.MESSAGE, "room": "work", "ref": "w-after", "payload": {"text": "still here"}})
    assert (await answer(alice, "w-after"))["type"] == p.ACK
    assert (await bob.expect(p.MESSAGE, where=lambda f: f["message"] == {"text": "still here"}))["seq"] == 4
    assert not unavailable(alice) and not unavailable(bob)
    for server in (s0, s1):
        assert "lost Redis" not in server.log_text()

    # a replay larger than max_replay_bytes: what fits, up to the last seq, and recovered=false
    reader = await connect(s1, "reader")
    await reader.send({"type": p.JOIN_ROOM, "room": "flood-0", "payload": {"since": 0}})
    joined = await reader.expect(p.ROOM_JOINED)
    replay = [f for f in await reader.silent(0.5) if f.get("type") == p.MESSAGE]
    assert joined["recovered"] is False and 0 < len(replay) < kept
    assert [f["seq"] for f in replay] == list(range(joined["seq"] - len(replay) + 1, joined["seq"] + 1))
    assert len(replay) * 60_000 <= BUDGETS["max_replay_bytes"]
    store.close()
    for client in (alice, bob, mallory, reader):
        client.close()


async def test_a_burst_of_messages_without_waiting_keeps_its_order_and_what_follows_it(
    cluster: list[JupyterProcess],
) -> None:
    """alice sends 300 messages without waiting for any ack (the server has up to 32
    publishes of hers in flight on Redis at once), then leaves the room; mallory, on the
    same server, does the same with a join-room whose payload looks like a message. Every
    member sees each message once and in order, the acks come in the order sent, and the
    leave is carried out after the last message, not before."""
    room = "burst-in-flight"
    alice = await connect(cluster[0], "alice")
    mallory = await connect(cluster[0], "mallory")
    bob = await connect(cluster[1], "bob")
    for client in (alice, mallory, bob):
        await client.join(room)
    count = 300
    frames = [json.dumps({"type": p.MESSAGE, "room": room, "ref": f"a{n}", "payload": {"n": n}}) for n in range(count)]
    # one write holding every frame: they arrive together and are read one after another
    for frame in frames:
        alice.ws.write_message(frame)
    await alice.send({"type": p.LEAVE_ROOM, "room": room, "ref": "leave"})
    # mallory's join of another room, shaped to look like a message before it is parsed
    await mallory.send({"type": p.MESSAGE, "room": room, "ref": "m0", "payload": {"n": 0}})
    await mallory.send({"payload": {"type": "message"}, "type": p.JOIN_ROOM, "room": "elsewhere", "ref": "m1"})

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30

    async def until(client: WSClient, done: Any) -> None:
        while not done():
            await client.recv(deadline - loop.time())

    def from_alice() -> list[int]:
        return [f["message"]["n"] for f in messages(bob, room) if f.get("user_id") == "alice"]

    def acks() -> list[dict[str, Any]]:
        return [f for f in alice.seen if f.get("type") == p.ACK and str(f.get("ref", "")).startswith("a")]

    await until(alice, lambda: len(acks()) == count and any(f.get("ref") == "leave" for f in alice.seen))
    assert [f["ref"] for f in acks()] == [f"a{n}" for n in range(count)], "acks out of order"
    assert [f["seq"] for f in acks()] == sorted(f["seq"] for f in acks())
    # the leave came after every message of hers: bob's user-left follows her last message
    await until(bob, lambda: any(f.get("type") == p.USER_LEFT and f.get("user_id") == "alice" for f in bob.seen))
    assert from_alice() == list(range(count)), "bob: not each message once and in order"
    kinds = [(f.get("type"), f.get("user_id")) for f in bob.seen if f.get("room") == room]
    last_message = max(i for i, kind in enumerate(kinds) if kind == (p.MESSAGE, "alice"))
    assert kinds.index((p.USER_LEFT, "alice")) > last_message
    # mallory's frames were both carried out, in her order
    await until(mallory, lambda: any(f.get("type") == p.ROOM_JOINED and f.get("room") == "elsewhere" for f in mallory.seen))
    answers = [f.get("ref") for f in mallory.seen if f.get("ref") in ("m0", "m1") and f.get("type") != p.MESSAGE]
    assert answers == ["m0", "m1"], answers
    for client in (alice, mallory, bob):
        client.close()
