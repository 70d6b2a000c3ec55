"""Faults with real processes: a Jupyter server SIGKILLed, Redis stopped and restarted under
load, Redis unreachable when a Jupyter server starts.

The servers use short presence timing (`servers.PRESENCE_REFRESH`, `PRESENCE_TIMEOUT`) and
retry Redis every `servers.RETRY_INTERVAL` s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import (
    PRESENCE_REFRESH,
    PRESENCE_TIMEOUT,
    RedisProcess,
    connect,
    drop_prefix,
    jupyter_on_redis,
    shared_redis_url,
    unique_prefix,
)

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient, free_port, start_all, stop_all

# a loaded 2-core CI machine delays a sweep by scheduling, not by design
SLACK = 1.5


@pytest.fixture
def three_servers(tmp_path: Path) -> Iterator[list[JupyterProcess]]:
    url = shared_redis_url()
    prefix = unique_prefix("kill")
    servers = [jupyter_on_redis(tmp_path, url, prefix, f"server{i}") for i in range(3)]
    try:
        yield start_all(servers)
    finally:
        stop_all(servers)
        drop_prefix(url, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def two_servers_on_private_redis(tmp_path: Path, private_redis: RedisProcess) -> Iterator[list[JupyterProcess]]:
    prefix = unique_prefix("outage")
    servers = [jupyter_on_redis(tmp_path, private_redis.url, prefix, f"server{i}") for i in range(2)]
    try:
        yield start_all(servers)
    finally:
        stop_all(servers)


def of_type(client: WSClient, kind: str, **fields: Any) -> list[dict[str, Any]]:
    return [f for f in client.seen if f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())]


async def test_sigkill_of_a_server_removes_its_members_everywhere(three_servers: list[JupyterProcess]) -> None:
    room = "killed"
    s0, s1, s2 = three_servers
    alice, bob = await connect(s0, "alice"), await connect(s1, "bob")
    carol = await connect(s2, "carol")  # only on the server that dies
    dave_there, dave_here = await connect(s2, "dave"), await connect(s0, "dave")  # on both
    for client in (alice, bob, carol, dave_there, dave_here):
        await client.join(room)

    loop = asyncio.get_running_loop()
    s2.kill()
    killed = loop.time()
    limit = PRESENCE_TIMEOUT + PRESENCE_REFRESH + SLACK
    for client in (alice, bob):
        await client.expect(p.USER_LEFT, timeout=limit, where=lambda f: f["user_id"] == "carol")
    assert loop.time() - killed <= limit
    # dave still has a connection (on server 0): he did not leave; carol left once
    quiet = await alice.silent(PRESENCE_REFRESH * 2)
    assert not [f for f in quiet if f.get("type") == p.USER_LEFT]
    assert len(of_type(bob, p.USER_LEFT, user_id="carol")) == 1 and not of_type(bob, p.USER_LEFT, user_id="dave")
    # no ghost: every server's view is the live members only
    for server in (s0, s1):
        status, body = await asyncio.to_thread(server.get, f"/iavicenne/api/rooms/{room}")
        assert status == 200
        assert {m["user_id"]: m["connections"] for m in body["members"]} == {"alice": 1, "bob": 1, "dave": 1}
    # and the survivors still talk
    await alice.send({"type": p.MESSAGE, "room": room, "payload": {"text": "still here"}})
    assert (await bob.expect(p.MESSAGE))["message"] == {"text": "still here"}
    for client in (alice, bob, dave_here):
        client.close()


async def test_redis_stopped_and_restarted_while_clients_send(
    two_servers_on_private_redis: list[JupyterProcess], private_redis: RedisProcess
) -> None:
    room = "outage"
    s0, s1 = two_servers_on_private_redis
    alice, bob = await connect(s0, "alice"), await connect(s1, "bob")
    await alice.join(room)
    await bob.join(room)
    refs = [f"m{n}" for n in range(60)]

    async def settle(client: WSClient, done: Any, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            await client.recv(deadline - loop.time())

    async def send() -> None:
        for n, ref in enumerate(refs):
            if n == 15:
                await asyncio.to_thread(private_redis.stop)
            if n == 35:
                await asyncio.to_thread(private_redis.start)  # same port, empty
            await alice.send({"type": p.MESSAGE, "room": room, "ref": ref, "payload": {"n": n}})
            await asyncio.sleep(0.03)

    def answered() -> set[str]:
        return {f["ref"] for f in alice.seen if f.get("type") in (p.ACK, p.ERROR) and f.get("ref")}

    await asyncio.gather(send(), settle(alice, lambda: answered() >= set(refs)))
    acked = [f["ref"] for f in of_type(alice, p.ACK)]
    errors = [f for f in of_type(alice, p.ERROR) if f.get("ref")]
    failed = [f["ref"] for f in errors]
    # every message was either acknowledged or refused, plainly, and never both
    assert sorted(acked + failed, key=refs.index) == refs
    assert failed and all(f["code"] == p.ErrorCode.UNAVAILABLE for f in errors), errors
    assert acked[:15] == refs[:15], "before the outage everything is delivered"
    assert refs[-1] in acked, "after Redis came back, messages are delivered again"

    # everything acknowledged reached bob on the other server, once
    def contents() -> list[str]:
        return [f"m{f['message']['n']}" for f in of_type(bob, p.MESSAGE)]

    await settle(bob, lambda: set(acked) <= set(contents()))
    await bob.silent(0.3)
    assert sorted(contents(), key=refs.index) == sorted(acked, key=refs.index)

    # the refused ones are sent again and delivered: nothing was lost for good
    for ref in failed:
        await alice.send({"type": p.MESSAGE, "room": room, "ref": ref, "payload": {"n": refs.index(ref)}})
    await settle(alice, lambda: set(failed) <= {f["ref"] for f in of_type(alice, p.ACK)})
    await settle(bob, lambda: set(refs) <= set(contents()))

    # presence was registered again by the servers themselves: a newcomer sees both
    carol = await connect(s1, "carol")
    joined = await carol.join(room)
    assert {m["user_id"] for m in joined["members"]} == {"alice", "bob", "carol"}
    log = s0.log_text()
    assert log.count("lost Redis") == 1 and "is back" in log and "Traceback" not in log
    for client in (alice, bob, carol):
        client.close()


async def test_unreachable_redis_at_start_up(tmp_path: Path) -> None:
    port = free_port()
    password = "s3cret-pw"
    server = jupyter_on_redis(tmp_path, f"redis://:{password}@127.0.0.1:{port}/0", unique_prefix("early"), "early")
    redis_server = RedisProcess(tmp_path / "redis", port=port, password=password)
    try:
        await asyncio.to_thread(lambda: server.launch().wait_serving(rooms=False))  # Jupyter runs
        client = await connect(server, "alice")
        await client.send({"type": p.JOIN_ROOM, "room": "early", "ref": "j1", "payload": {}})
        error = await client.expect(p.ERROR)
        assert (error["code"], error["ref"]) == (p.ErrorCode.UNAVAILABLE, "j1") and "Redis" in error["message"]
        status, _ = await asyncio.to_thread(server.get, "/iavicenne/api/rooms")
        assert status == 503  # said plainly, not a 500 with a traceback
        await asyncio.sleep(1.0)  # several retries
        log = server.log_text()
        assert log.count("cannot reach Redis") == 1, log
        assert "Traceback" not in log and password not in log

        await asyncio.to_thread(redis_server.start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:  # the server connects by itself; the client just tries again
            await client.send({"type": p.JOIN_ROOM, "room": "early", "payload": {}})
            got = await client.recv()
            while got.get("type") not in (p.ROOM_JOINED, p.ERROR):
                got = await client.recv()
            if got["type"] == p.ROOM_JOINED:
                break
            assert loop.time() < deadline, f"rooms still unavailable: {got}"
            await asyncio.sleep(0.2)
        assert [m["user_id"] for m in got["members"]] == ["alice"]
        client.close()
    finally:
        server.stop()
        redis_server.stop()
