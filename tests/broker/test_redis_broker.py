"""`RedisBroker` on its own, against real Redis servers: the broker interface's semantics
(the ones `MemoryBroker` defines), several brokers sharing one Redis as several servers
would, liveness, and Redis going away and coming back.

Every test uses its own key prefix on the Redis at 127.0.0.1:6379, or a private
`redis-server` when it must stop it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
import redis.asyncio
from broker_support import REFRESH, RETRY, TIMEOUT, Lines, brokers_on, dedup, entry, message
from servers import (
    RedisProcess,
    drop_prefix,
    free_port,
    ping,
    redis_binary,
    shared_redis_url,
    unique_prefix,
    wait_until,
)

import iavicenne_protocol as p
from iavicenne_ext.broker.base import BrokerUnavailable, JoinOutcome
from iavicenne_ext.broker.events import DirectFrame, RoomFrame, Supersede
from iavicenne_ext.broker.redis import redact
from iavicenne_ext.broker.redis.keys import Keys


@pytest.fixture
def shared() -> Iterator[tuple[str, str]]:
    url = shared_redis_url()
    prefix = unique_prefix("broker")
    yield url, prefix
    drop_prefix(url, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


# -- seq, history, dedup ----------------------------------------------------------------
async def test_a_burst_of_requests_waits_for_connections_instead_of_failing(shared: tuple[str, str]) -> None:
    """Hundreds of clients joining or closing at once must not read as "Redis is down"."""
    async with brokers_on(*shared) as start:
        broker, _ = await start()
        users = [entry(f"c{i}", f"user{i}") for i in range(400)]
        outcomes = await asyncio.gather(*(broker.join("burst", e) for e in users))
        assert set(outcomes) == {JoinOutcome.FIRST}
        gone = await asyncio.gather(*(broker.leave("burst", e.conn, e.user_id) for e in users))
        assert all(gone)
        assert await broker.entries("burst") == []


async def test_a_claim_holds_across_servers_until_released(shared: tuple[str, str]) -> None:
    """Direct messages dedup by claiming their ref; another server sees the claim."""
    async with brokers_on(*shared) as start:
        one, _ = await start()
        two, _ = await start()
        assert await one.claim(dedup("direct", "owner", "u", "ref-9")) is True
        assert await two.claim(dedup("direct", "owner", "u", "ref-9")) is False
        await one.release(dedup("direct", "owner", "u", "ref-9"))
        assert await two.claim(dedup("direct", "owner", "u", "ref-9")) is True


async def test_publish_numbers_stores_and_dedups(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared) as start:
        broker, delivered = await start()
        await broker.subscribe("r")
        seqs = [(await broker.publish("r", message(f"m{i}"))).seq for i in range(1, 6)]
        assert seqs == [1, 2, 3, 4, 5]
        first = await broker.publish("r", message("once"), dedup=dedup("r", "owner", "u", "ref-1"))
        again = await broker.publish("r", message("once"), dedup=dedup("r", "owner", "u", "ref-1"))
        assert (first.seq, first.duplicate) == (6, False)
        assert (again.seq, again.duplicate) == (6, True)
        # publish returns once the frame was delivered here, like the memory broker
        assert [seq for _, _, seq, _, _ in delivered.frames] == [1, 2, 3, 4, 5, 6]
        assert [f["seq"] for _, f, _, _, _ in delivered.frames] == [1, 2, 3, 4, 5, 6]
        assert delivered.frames[0][1]["message"] == {"content": "m1"}

        missed = await broker.history("r", 2, None)
        assert [json.loads(m)["seq"] for m in missed.messages] == [3, 4, 5, 6]
        assert missed.recovered and missed.seq == 6
        none = await broker.history("r", None, None)
        assert none.messages == [] and none.recovered and none.epoch == missed.epoch
        ahead = await broker.history("r", 7, missed.epoch)
        assert ahead.messages == [] and not ahead.recovered
        foreign = await broker.history("r", 3, "another-life")
        assert not foreign.recovered and len(foreign.messages) == 6
        assert await broker.room_exists("r") and not await broker.room_exists("never")


async def test_history_is_bounded_and_recovered_stays_exact(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared, history_size=3) as start:
        broker, _ = await start()
        for i in range(6):
            await broker.publish("r", message(f"m{i}"))
        kept = await broker.history("r", 3, None)
        assert [json.loads(m)["seq"] for m in kept.messages] == [4, 5, 6] and kept.recovered
        lost = await broker.history("r", 2, None)
        assert [json.loads(m)["seq"] for m in lost.messages] == [4, 5, 6] and not lost.recovered
        assert (await broker.history("r", 6, None)).recovered
        # an absurd since is refused plainly, not a Redis error
        assert not (await broker.history("r", 2**70, None)).recovered


# -- several servers on one Redis ---------------------------------------------------------
async def test_frames_reach_every_server_once_in_seq_order(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared) as start:
        (a, got_a), (b, got_b), (c, got_c) = [await start() for _ in range(3)]
        await a.subscribe("r")
        await b.subscribe("r")  # c has no member in r: it must receive nothing
        results = await asyncio.gather(
            *(broker.publish("r", message(f"{n}-{i}")) for i in range(40) for n, broker in (("a", a), ("b", b), ("c", c)))
        )
        assert sorted(r.seq for r in results) == list(range(1, 121))
        await got_a.wait(lambda: len(got_a.frames) == 120)
        await got_b.wait(lambda: len(got_b.frames) == 120)
        for got in (got_a, got_b):
            assert [seq for _, _, seq, _, _ in got.frames] == list(range(1, 121))
        await a.emit(DirectFrame("r", p.encode({"type": "x", "timestamp": p.now_iso()}), to="bob", skip="k"))
        await got_b.wait(lambda: len(got_b.frames) == 121)
        assert got_b.frames[-1][2:] == (0, "bob", "k")
        assert got_b.superseding == []
        # a take-over notice carries supersede to the hub of the server holding the old connection
        await a.emit(Supersede("r", p.encoded(p.ERROR, code=p.ErrorCode.SUPERSEDED, message="taken over"), to="bob"))
        await got_b.wait(lambda: len(got_b.frames) == 122)
        assert [f["code"] for f in got_b.superseding] == [p.ErrorCode.SUPERSEDED]
        assert got_c.frames == []
        await b.unsubscribe("r")
        await a.publish("r", message("after"))
        await got_a.wait(lambda: len(got_a.frames) == 123)
        await asyncio.sleep(0.2)
        assert len(got_b.frames) == 122


async def test_presence_first_again_taken_across_servers(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared) as start:
        (a, _), (b, _) = await start(), await start()
        assert await a.join("r", entry(f"{a.server_id}:1", "alice")) is JoinOutcome.FIRST
        assert await b.join("r", entry(f"{b.server_id}:1", "alice")) is JoinOutcome.AGAIN
        assert await b.join("r", entry(f"{b.server_id}:2", "alice", username="mallory")) is JoinOutcome.TAKEN
        assert await b.join("r", entry(f"{b.server_id}:3", "bob", username="bob")) is JoinOutcome.FIRST
        await b.set_state("r", f"{b.server_id}:3", b'{"cell":4}', 5.0)  # states are kept encoded
        members = {m.user_id: m for m in await a.members("r")}
        assert members["alice"].connections == 2 and members["bob"].to_json()["state"] == {"cell": 4}
        assert await a.is_present("r", "bob") and not await a.is_present("r", "mallory")
        assert {name: len(ms) for name, ms in (await a.rooms()).items()} == {"r": 2}
        assert await a.leave("r", f"{a.server_id}:1", "alice") is False
        assert await b.leave("r", f"{b.server_id}:1", "alice") is True
        assert await b.leave("r", f"{b.server_id}:1", "alice") is False  # twice: nothing
        # a connection of another server can be removed too (a signaling take-over does)
        assert await a.leave("r", f"{b.server_id}:3", "bob") is True
        assert await a.rooms() == {} and await a.entries("r") == []


async def test_a_silent_server_is_swept_and_comes_back(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared) as start:
        (a, got_a), (b, _) = await start(), await start()
        await a.subscribe("r")
        await a.join("r", entry(f"{a.server_id}:1", "alice"))
        await b.join("r", entry(f"{b.server_id}:1", "bob", username="bob"))
        await b.join("r", entry(f"{b.server_id}:2", "alice"))  # alice is also on a
        # b stops refreshing (a stalled process looks like a dead one from outside)
        assert b._liveness.task is not None
        b._liveness.task.cancel()
        loop = asyncio.get_running_loop()
        stalled = loop.time()
        await got_a.wait(lambda: bool(got_a.of_type(p.USER_LEFT)), timeout=TIMEOUT + 3 * REFRESH + 1, what="user-left")
        assert loop.time() - stalled <= TIMEOUT + 2 * REFRESH + 0.5
        left = got_a.of_type(p.USER_LEFT)
        assert [f["user_id"] for f in left] == ["bob"]  # alice still has her connection on a
        assert left[0]["identity"]["username"] == "bob" and left[0]["room"] == "r"
        assert [m.user_id for m in await a.members("r")] == ["alice"]
        # b refreshes again: told it was swept, it registers its members and announces them
        b._liveness.start()
        await got_a.wait(lambda: bool(got_a.of_type(p.USER_JOINED)), what="user-joined")
        assert [f["user_id"] for f in got_a.of_type(p.USER_JOINED)] == ["bob"]
        members = {m.user_id: m.connections for m in await a.members("r")}
        assert members == {"alice": 2, "bob": 1}
        await asyncio.sleep(TIMEOUT + REFRESH)
        assert len(got_a.of_type(p.USER_LEFT)) == 1  # nobody is swept twice


async def test_a_closing_server_leaves_at_once(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared) as start:
        (a, got_a), (b, _) = await start(), await start()
        await a.subscribe("r")
        await b.join("r", entry(f"{b.server_id}:1", "bob", username="bob"))
        await b.close()
        await got_a.wait(lambda: bool(got_a.of_type(p.USER_LEFT)), timeout=1.0, what="user-left")
        assert await a.members("r") == []


# -- Redis going away ----------------------------------------------------------------------
async def test_unreachable_at_start_is_one_line_then_retried(tmp_path: Path) -> None:
    port = free_port()
    lines = Lines()
    log = logging.getLogger(f"iavicenne.test.{port}")
    log.addHandler(lines)
    log.setLevel(logging.DEBUG)
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    async with brokers_on(url, unique_prefix("start"), log=log) as start:
        broker, _ = await start()  # returns: the server starts without Redis
        assert not broker.available
        with pytest.raises(BrokerUnavailable, match="unreachable"):
            await broker.publish("r", message("lost?"))
        with pytest.raises(BrokerUnavailable):
            await broker.join("r", entry(f"{broker.server_id}:1", "alice"))
        await asyncio.sleep(4 * RETRY)  # several failed attempts
        warnings = lines.at(logging.WARNING)
        assert len(warnings) == 1, warnings
        assert "cannot reach Redis" in warnings[0] and f"127.0.0.1:{port}" in warnings[0]
        assert "s3cret" not in warnings[0]
        assert not any(r.exc_info for r in lines.records)
        # Redis starts, with that password
        redis_server = RedisProcess(tmp_path / "redis", port=port, password="s3cret").start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not broker.available:
                assert loop.time() < deadline, "did not reconnect"
                await asyncio.sleep(0.05)
            assert await broker.join("r", entry(f"{broker.server_id}:1", "alice")) is JoinOutcome.FIRST
        finally:
            await broker.close()
            redis_server.stop()


async def test_a_malformed_url_is_one_clear_error() -> None:
    lines = Lines()
    log = logging.getLogger("iavicenne.test.malformed")
    log.addHandler(lines)
    async with brokers_on("http://127.0.0.1:6379", unique_prefix("bad"), log=log) as start:
        broker, _ = await start()
        with pytest.raises(BrokerUnavailable, match="Redis URL is invalid"):
            await broker.publish("r", message("x"))
        assert await broker.leave("r", f"{broker.server_id}:1", "u") is False
    errors = lines.at(logging.ERROR)
    assert len(errors) == 1 and "IAvicenne.redis_url" in errors[0] and "rediss://" in errors[0]


async def test_a_cluster_node_without_slots_says_why_and_works_once_it_serves_them(tmp_path: Path) -> None:
    """A Redis Cluster still forming (a node that serves no hash slot): rooms are unavailable,
    the error says the cluster's state is why, one warning is logged; once the node serves
    every slot (a one-node cluster), the broker connects by itself and rooms work."""
    port = free_port()
    while port > 55_535:  # a cluster node also listens on port + 10000
        port = free_port()
    folder = tmp_path / "cluster-node"
    folder.mkdir()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)]
    args += ["--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf")]
    with open(folder / "redis.log", "wb") as output:  # the child keeps its own descriptor
        node = subprocess.Popen([redis_binary(), *args], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: ping(url), 10, f"the cluster-enabled redis-server on port {port} (see {folder / 'redis.log'})")
        lines = Lines()
        log = logging.getLogger(f"iavicenne.test.cluster.{port}")
        log.addHandler(lines)
        async with brokers_on(url, unique_prefix("cluster"), log=log) as start:
            broker, _ = await start()
            await asyncio.sleep(4 * RETRY)
            assert not broker.available
            with pytest.raises(BrokerUnavailable, match="Redis Cluster's state is not ok at"):
                await broker.publish("r", message("x"))
            assert len(lines.at(logging.WARNING)) == 1 and not lines.at(logging.ERROR)
            redis.Redis.from_url(url).execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(200):  # the broker retries every RETRY s, in this event loop
                if broker.available:
                    break
                await asyncio.sleep(0.05)
            assert broker.available, "the broker did not connect to the one-node cluster"
            published = await broker.publish("r{x}", message("on the cluster"))
            assert published.seq == 1 and not published.duplicate
    finally:
        node.terminate()
        node.wait(10)


async def test_redis_restart_resubscribes_and_reregisters(private_redis: RedisProcess) -> None:
    async with brokers_on(private_redis.url, unique_prefix("restart")) as start:
        (a, got_a), (b, got_b) = await start(), await start()
        for broker, user in ((a, "alice"), (b, "bob")):
            await broker.subscribe("r")
            await broker.join("r", entry(f"{broker.server_id}:1", user, username=user))
        await b.join("r", entry(f"{b.server_id}:2", "carol", username="carol"))
        before = await a.publish("r", message("before"))
        epoch = (await a.history("r", None, None)).epoch
        await got_b.wait(lambda: len(got_b.frames) == 1)

        private_redis.stop()
        with pytest.raises(BrokerUnavailable):
            await a.publish("r", message("during"))
        assert not a.available
        with pytest.raises(BrokerUnavailable):
            await b.emit(RoomFrame("r", message("during")))
        # a leave during the outage is kept, and applied once Redis is back
        assert await b.leave("r", f"{b.server_id}:2", "carol") is False

        private_redis.start()  # same port, empty: no persistence
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not (a.available and b.available):
            assert loop.time() < deadline, "did not reconnect"
            await asyncio.sleep(0.05)
        assert {m.user_id for m in await a.members("r")} == {"alice", "bob"}
        await got_a.wait(lambda: bool(got_a.of_type(p.USER_LEFT)), what="carol's user-left")
        assert [f["user_id"] for f in got_a.of_type(p.USER_LEFT)] == ["carol"]
        after = await a.publish("r", message("after"))
        await got_b.wait(lambda: any(f.get("message") == {"content": "after"} for f in got_b.of_type(p.MESSAGE)))
        history = await a.history("r", before.seq, epoch)
        # Redis lost the room's past: a new life, and the client is told it cannot recover
        assert history.epoch != epoch and not history.recovered and after.seq == 1
        assert all(f.get("message", {}).get("content") != "during" for f in got_b.of_type(p.MESSAGE))


async def test_redis_restart_with_its_data_changes_nothing_for_members(tmp_path: Path) -> None:
    redis_server = RedisProcess(tmp_path / "aof", appendonly=True).start()
    timeout = 1.5
    try:
        async with brokers_on(redis_server.url, unique_prefix("aof"), presence_timeout=timeout) as start:
            # b comes back about 1 s after a: a must not take it for dead meanwhile
            (a, got_a), (b, _) = await start(retry_interval=0.1), await start(retry_interval=1.5)
            await a.subscribe("r")
            await a.join("r", entry(f"{a.server_id}:1", "alice"))
            await b.join("r", entry(f"{b.server_id}:1", "bob", username="bob"))
            sent = await a.publish("r", message("kept"))
            epoch = (await a.history("r", None, None)).epoch
            redis_server.stop()  # SIGTERM: the append-only file is complete
            await asyncio.sleep(timeout + 0.3)  # every heartbeat in Redis is now too old
            redis_server.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not (a.available and b.available):
                assert loop.time() < deadline, "did not reconnect"
                await asyncio.sleep(0.05)
            # nobody is swept for the outage, nobody is announced again
            await asyncio.sleep(timeout + 2 * REFRESH)
            assert not got_a.of_type(p.USER_LEFT) and not got_a.of_type(p.USER_JOINED)
            assert {m.user_id for m in await a.members("r")} == {"alice", "bob"}
            # the room's life goes on: same epoch, since recovery across the restart
            after = await b.publish("r", message("after"))
            history = await b.history("r", sent.seq - 1, epoch)
            assert history.recovered and after.seq == sent.seq + 1
            assert [json.loads(m)["message"]["content"] for m in history.messages] == ["kept", "after"]
    finally:
        redis_server.stop()


async def test_tls_and_password_url(tmp_path: Path) -> None:
    redis_server = RedisProcess(tmp_path / "tls", password="tls-pw", tls=True)
    try:
        redis_server.start()
    except RuntimeError as error:
        if "tls" in str(error).lower():
            pytest.skip(f"this redis-server was built without TLS: {error}")
        raise
    try:
        assert redis_server.url.startswith("rediss://:tls-pw@")
        async with brokers_on(redis_server.url, unique_prefix("tls")) as start:
            (a, _), (b, got_b) = await start(), await start()
            assert a.available and b.available
            await b.subscribe("r")
            assert await a.join("r", entry(f"{a.server_id}:1", "alice")) is JoinOutcome.FIRST
            await a.publish("r", message("over TLS"))
            await got_b.wait(lambda: len(got_b.frames) == 1)
            assert [m.user_id for m in await b.members("r")] == ["alice"]
    finally:
        redis_server.stop()


async def test_redis_url_is_redacted_in_logs() -> None:
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert redact("redis://host:6379") == "redis://host:6379"


# -- budgets (issue 10): history in bytes, replay, dedup per identity ------------------------
def sized(text: str, size: int) -> bytes:
    """A message frame of exactly `size` bytes (as kept, without its seq)."""
    frame = message(text)
    filler = size - len(frame) - len(',"pad":""')
    assert filler >= 0
    return frame[:-1] + b',"pad":"' + b"x" * filler + b'"}'


async def settled(url: str, prefix: str) -> tuple[dict[str, int], dict[str, int], int]:
    """`stored` once history-total holds what the rooms count: a publish changes the sum in
    the deployment's slot after its room's script (docs/redis-cluster.md), not waited for;
    a sum that never comes right is returned as it is, for the test to show."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        actual, counted, total = stored(url, prefix)
        if total == sum(counted.values()) or loop.time() > deadline:
            return actual, counted, total
        await asyncio.sleep(0.02)


def stored(url: str, prefix: str) -> tuple[dict[str, int], dict[str, int], int]:
    """What Redis holds: bytes of each room's history stream, the broker's count of them, and its total."""
    client = redis.Redis.from_url(url)
    try:
        actual: dict[str, int] = {}
        counted: dict[str, int] = {}
        keys = Keys(prefix)
        for key in client.scan_iter(match=f"{prefix}:{{*}}:history:*"):
            room = key.decode().partition("}:history:")[2]
            # redis-py types the answers of its sync and asyncio clients as one: what this
            # (sync, bytes) client returns is a list of (id, {field: value}) of bytes
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(key))
            actual[room] = sum(len(fields[b"f"]) for _, fields in entries)
        for key in client.scan_iter(match=f"{prefix}:{{*}}:history-bytes"):
            sizes = cast(dict[bytes, bytes], client.hgetall(key))
            counted.update({k.decode(): int(v) for k, v in sizes.items()})
        return actual, counted, int(client.get(keys.history_total) or 0)
    finally:
        client.close()


def seqs(frames: list[bytes]) -> list[int]:
    return [json.loads(f)["seq"] for f in frames]


async def test_history_is_bounded_in_bytes_per_room_and_recovered_stays_exact(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared, history_bytes_per_room=10_000) as start:
        broker, _ = await start()
        for i in range(30):
            await broker.publish("r", sized(f"m{i}", 1000))
        kept = await broker.history("r", 0, None)
        # the 10 newest fit in 10,000 bytes; the ones before are gone, and the client is told so
        assert seqs(kept.messages) == list(range(21, 31)) and not kept.recovered
        assert (await broker.history("r", 20, None)).recovered
        assert not (await broker.history("r", 19, None)).recovered
        # one message larger than the whole budget is still kept (alone)
        await broker.publish("r", sized("big", 15_000))
        assert seqs((await broker.history("r", 30, None)).messages) == [31]
        actual, counted, total = await settled(*shared)
        assert actual == counted == {"r": 15_000} and total == 15_000


async def test_a_replay_is_cut_at_max_replay_bytes_keeping_the_newest(shared: tuple[str, str]) -> None:
    async with brokers_on(*shared, max_replay_bytes=5_500) as start:
        broker, _ = await start()
        for i in range(200):
            await broker.publish("r", sized(f"m{i}", 1000))
        cut = await broker.history("r", 0, None)
        # what fits, contiguous up to the last seq (live frames follow it), and recovered=false
        assert seqs(cut.messages) == [196, 197, 198, 199, 200] and not cut.recovered and cut.seq == 200
        fits = await broker.history("r", 195, cut.epoch)
        assert seqs(fits.messages) == [196, 197, 198, 199, 200] and fits.recovered
        other_life = await broker.history("r", 3, "another-life")
        assert seqs(other_life.messages) == [196, 197, 198, 199, 200] and not other_life.recovered


async def test_history_total_drops_the_writers_oldest_then_refuses(shared: tuple[str, str]) -> None:
    """A flood of rooms fills the deployment's history; the room written makes space from its own."""
    url, prefix = shared
    async with brokers_on(url, prefix, history_bytes_total=20_000, history_bytes_per_room=8_000, history_ttl=1.0) as start:
        broker, _ = await start()
        await broker.join("work", entry(f"{broker.server_id}:1", "alice", username="alice"))
        for i in range(4):
            await broker.publish("work", sized(f"alice {i}", 1000))
        # mallory fills the rest with rooms nobody is in
        refused = None
        for n in range(20):
            try:
                await broker.publish(f"flood-{n}", sized("junk", 2000))
            except p.ProtocolError as error:
                refused = error
                break
        assert refused is not None and n == 8, f"refused only after {n} rooms"
        assert refused.code == p.ErrorCode.LIMIT_EXCEEDED and "IAvicenne.history_bytes_total = 20000" in refused.message
        actual, counted, total = await settled(url, prefix)
        assert actual == counted and total == sum(actual.values()) == 20_000
        # alice's room is full too: her next message drops her own oldest, not mallory's
        sent = await broker.publish("work", sized("alice 4", 1000))
        assert sent.seq == 5 and seqs((await broker.history("work", 0, None)).messages) == [2, 3, 4, 5]
        actual_after, _, _ = await settled(url, prefix)
        assert {k: v for k, v in actual_after.items() if k != "work"} == {k: v for k, v in actual.items() if k != "work"}
        # the empty rooms expire (history_ttl): their bytes leave the total, and rooms are written again
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                await broker.publish("flood-new", sized("later", 2000))
                break
            except p.ProtocolError:
                assert loop.time() < deadline, "the expired histories were never taken off the total"
                await asyncio.sleep(0.1)
        actual, counted, total = await settled(url, prefix)
        assert set(actual) == {"work", "flood-new"} and actual == counted and total == sum(actual.values())


async def test_dedup_records_of_one_identity_never_evict_another(shared: tuple[str, str]) -> None:
    url, prefix = shared
    async with brokers_on(url, prefix, max_dedup_per_identity=20) as start:
        one, _ = await start()
        two, _ = await start()
        first = await one.publish("r", message("hi"), dedup=dedup("r", "alice", "alice", "a-1"))
        assert await one.claim(dedup("r", "alice", "alice", "d-1", direct=True))
        # mallory sends far more refs than her share, from another server
        for n in range(200):
            await two.publish("r", message(f"m{n}"), dedup=dedup("r", "mallory", "m", f"m-{n}"))
        for n in range(100):
            await two.claim(dedup("r", "mallory", "m", f"d-{n}", direct=True))
        # alice's resends are still recognised
        again = await two.publish("r", message("hi"), dedup=dedup("r", "alice", "alice", "a-1"))
        assert (again.seq, again.duplicate) == (first.seq, True)
        assert not await two.claim(dedup("r", "alice", "alice", "d-1", direct=True))
        # mallory's own oldest are forgotten; what Redis holds for her stays within her share
        assert not (await one.publish("r", message("m0"), dedup=dedup("r", "mallory", "m", "m-0"))).duplicate
        client = redis.Redis.from_url(url)
        try:
            # both kinds of key are room r's (the dedup records take their room's hash tag)
            tagged = Keys(prefix).tagged("r")
            records = list(client.scan_iter(match=f"{tagged}:dedup:*mallory*", count=1000))
            assert len(records) == 20 and client.zcard(f"{tagged}:dedup-of:mallory") == 20
        finally:
            client.close()
        # a released claim can be claimed again (a direct message that could not be sent)
        await one.release(dedup("r", "alice", "alice", "d-1", direct=True))
        assert await two.claim(dedup("r", "alice", "alice", "d-1", direct=True))


# -- a hostile PUBLISH on a room's channel ------------------------------------------------------
async def test_garbage_on_a_room_channel_is_dropped_and_the_link_stays_up(shared: tuple[str, str]) -> None:
    url, prefix = shared
    lines = Lines()
    log = logging.getLogger(f"iavicenne.test.garbage.{prefix}")
    log.addHandler(lines)
    async with brokers_on(url, prefix, log=log) as start:
        broker, delivered = await start()
        for room in ("r", "other"):
            await broker.subscribe(room)
        epoch = (await broker.history("r", None, None)).epoch
        await broker.publish("r", message("before"))
        hostile = redis.asyncio.Redis.from_url(url)
        garbage = [
            b"\xff\xfe\x00 no header",
            b"not json\n{}",
            b"[1]\n{}",
            b'{"seq":"1"}\n{"type":"message"}',
            b'{"seq":true}\n{"type":"message"}',
            b'{"seq":0,"to":5}\n{"type":"message"}',
            b'{"seq":0,"supersede":"yes"}\n{"type":"message"}',
            b'{"seq":0}\n[1,2]',
            b'{"seq":0}\n{"type":"message","n":NaN}',
            b'{"seq":0}\n{"type":"message","text":"\xff"}',
            b'{"seq":0}\n{"type":"message"',
            b'{"seq":7}\n{"type":"message"}',
            # well formed, but not the room's: another epoch, and a seq the history does not hold
            b'{"seq":2,"epoch":"forged"}\n{"type":"message","message":{"content":"forged"}}',
            b'{"seq":50,"epoch":"%s"}\n{"type":"message","message":{"content":"forged"}}' % epoch.encode(),
        ]
        try:
            for data in garbage:
                await hostile.publish(Keys(prefix).channel("r"), data)
        finally:
            await hostile.aclose()
        after = await broker.publish("r", message("after"))
        await broker.publish("other", message("elsewhere"))
        await delivered.wait(lambda: len(delivered.of_type(p.MESSAGE)) == 3)
        assert broker.available
        assert [(r, f["message"]["content"], f["seq"]) for r, f, *_ in delivered.frames] == [
            ("r", "before", 1),
            ("r", "after", after.seq),
            ("other", "elsewhere", 1),
        ]
        assert not delivered.of_type(p.ERROR), "members were told of an outage that did not happen"
    warnings = lines.at(logging.WARNING)
    assert warnings and all("did not publish" in w for w in warnings), warnings
    assert len(warnings) <= len(garbage) and not any(r.exc_info for r in lines.records)


# -- the publish lane and the pub/sub parser (issue 15: Redis speed) ------------------------
async def test_concurrent_publishes_each_get_their_answer_in_call_order(shared: tuple[str, str]) -> None:
    """Publishes made at once leave together on the lane (lane.py); each gets its own answer, in call order."""
    async with brokers_on(*shared) as start:
        one, got_one = await start()
        two, got_two = await start()
        for broker in (one, two):
            await broker.subscribe("busy")
        await one.publish("busy", message("before"), dedup=dedup("busy", "owner", "u", "ref-0"))
        calls = [one.publish("busy", message(f"m{i}")) for i in range(200)]
        # a duplicate among them is answered as one, without failing its neighbours
        calls.insert(100, one.publish("busy", message("again"), dedup=dedup("busy", "owner", "u", "ref-0")))
        published = await asyncio.gather(*calls)
        assert [(p.seq, p.duplicate) for p in published[:100]] == [(i, False) for i in range(2, 102)]
        assert (published[100].seq, published[100].duplicate) == (1, True)
        assert [p.seq for p in published[101:]] == list(range(102, 202))
        # every server delivers each frame once, in seq order
        await got_two.wait(lambda: len(got_two.frames) == 201, what="201 frames on the second server")
        for delivered in (got_one, got_two):
            assert [seq for _, _, seq, _, _ in delivered.frames] == list(range(1, 202))
            assert [f["message"]["content"] for _, f, _, _, _ in delivered.frames[1:]] == [f"m{i}" for i in range(200)]


async def test_a_flushed_script_is_loaded_again(private_redis: RedisProcess) -> None:
    """SCRIPT FLUSH (an operator, a failover to a fresh replica): the next publish still goes out, once."""
    async with brokers_on(private_redis.url, "flush") as start:
        broker, delivered = await start()
        await broker.subscribe("r")
        assert (await broker.publish("r", message("one"))).seq == 1
        redis.Redis.from_url(private_redis.url).script_flush()
        assert (await broker.publish("r", message("two"))).seq == 2
        assert (await broker.publish("r", message("three"))).seq == 3
        assert [f["message"]["content"] for _, f, _, _, _ in delivered.frames] == ["one", "two", "three"]


def test_the_pubsub_parser_takes_messages_however_the_bytes_are_cut() -> None:
    from iavicenne_ext.broker.redis.pushes import ProtocolMismatch, PushParser

    stream = (
        b">3\r\n$9\r\nsubscribe\r\n$6\r\nroom:a\r\n:1\r\n"  # RESP3 push
        b"*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$12\r\nline\r\nbreak!\r\n"  # RESP2 array, CRLF inside the data
        b">3\r\n$7\r\nmessage\r\n$6\r\nroom:b\r\n$0\r\n\r\n"
    )
    expected = [[b"subscribe", b"room:a", b"1"], [b"message", b"room:a", b"line\r\nbreak!"], [b"message", b"room:b", b""]]
    assert PushParser().feed(stream) == expected
    for cut in range(1, len(stream)):
        parser = PushParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == expected, f"cut at byte {cut}"
    bytewise = PushParser()
    assert [m for i in range(len(stream)) for m in bytewise.feed(stream[i : i + 1])] == expected
    with pytest.raises(ProtocolMismatch, match="NOPERM"):
        PushParser().feed(b"-NOPERM no permissions\r\n")
    with pytest.raises(ProtocolMismatch):
        PushParser().feed(b"%1\r\n+a\r\n+b\r\n")  # a map: never sent to a subscribed connection


def shared_stored(url: str, prefix: str) -> tuple[int, int]:
    """The bytes of every room's shared document in Redis, and shared-total (what the brokers count)."""
    client = redis.Redis.from_url(url)
    try:
        actual = 0
        for key in client.scan_iter(match=f"{prefix}:{{*}}:shared-meta:*"):
            actual += int(client.hget(key, "bytes") or 0)
        return actual, int(client.get(Keys(prefix).shared_total) or 0)
    finally:
        client.close()


async def test_shared_documents_fill_the_deployments_total_from_two_servers_and_expiry_gives_it_back(
    shared: tuple[str, str],
) -> None:
    """mallory fills documents from two servers and leaves them; the deployment's total
    holds, alice's document is untouched, and once the rooms expire their bytes come back."""
    url, prefix = shared
    async with brokers_on(url, prefix, shared_bytes_total=10_000, history_ttl=1.0) as start:
        one, _ = await start()
        two, _ = await start()
        await one.join("notes", entry(f"{one.server_id}:1", "alice", username="alice"))
        assert (await one.shared_append("notes", b"a" * 2_000, max_bytes=5_000)).seq == 1
        refused = None
        for n in range(10):
            broker = (one, two)[n % 2]
            conn = f"{broker.server_id}:m{n}"
            await broker.join(f"fill-{n}", entry(conn, "mallory", username="mallory"))
            appended = await broker.shared_append(f"fill-{n}", b"m" * 3_000, max_bytes=5_000)
            await broker.leave(f"fill-{n}", conn, "mallory")
            if appended.refused is not None:
                refused = (n, appended.refused)
                break
        assert refused == (2, "max_shared_bytes_total"), refused
        actual, total = shared_stored(url, prefix)
        assert actual == total == 8_000
        assert (await two.shared_load("notes")).updates == [b"a" * 2_000]
        # the rooms expire (history_ttl) with their documents; the sweepers' audit gives their bytes back
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while (await two.shared_append("later", b"l" * 3_000, max_bytes=5_000)).refused is not None:
            assert loop.time() < deadline, f"the expired documents never left the total: {shared_stored(url, prefix)}"
            await asyncio.sleep(0.2)
        assert (await one.shared_load("notes")).updates == [b"a" * 2_000]  # alice is still in her room
        # once every room nobody is in has expired and been audited, the total is what is kept
        while shared_stored(url, prefix) != (2_000, 2_000):
            assert loop.time() < deadline + 10, f"the total never came right: {shared_stored(url, prefix)}"
            await asyncio.sleep(0.2)
