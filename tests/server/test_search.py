"""Full-text search over REST (``GET iavicenne/api/search``), as alice, bob and mallory use it.

On one real Jupyter server on the default store (its FTS5 index), and on two servers
sharing the Redis at 127.0.0.1:6379 (alice and mallory on the first, bob on the second;
Redis scans each room's replayable history). alice talks in her private room (bob
invited) and in a public one; mallory, never invited, searches for alice's exact words,
names alice's room, and sends FTS5 syntax and bad parameters: she finds only what she may
read, gets 404 for the room as if it did not exist, and clear 400s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from access_support import Deployment
from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix
from store_support import SERVER_CONFIG, store_server

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all

HOMES = {"alice": 0, "bob": 1, "mallory": 0}
MAX_RESULTS = 5  # max_search_results: small, so that the budget is reached


def _configured(server: JupyterProcess) -> JupyterProcess:
    server.config.mkdir(parents=True, exist_ok=True)
    (server.config / "jupyter_server_config.py").write_text(SERVER_CONFIG)
    return server


@pytest.fixture(scope="module", params=["store", "redis"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"search-{request.param}")
    if request.param == "store":
        servers = [store_server(workdir, max_search_results=MAX_RESULTS)]
        try:
            yield Deployment("store", start_all(servers), dict(HOMES))
        finally:
            stop_all(servers)
        return
    url, prefix = shared_redis_url(), unique_prefix("search")
    servers = [
        _configured(jupyter_on_redis(workdir, url, prefix, f"server{i}", max_search_results=MAX_RESULTS)) for i in range(2)
    ]
    try:
        yield Deployment("redis", start_all(servers), dict(HOMES))
    finally:
        stop_all(servers)
        drop_prefix(url, prefix)


async def joined(deployment: Deployment, name: str, room: str) -> WSClient:
    client = await deployment.socket(name)
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": {}, "ref": "j"})
    await client.expect(p.USER_JOINED, where=lambda f: f["identity"]["username"] == name)
    return client


async def say(client: WSClient, room: str, text: str, ref: str) -> int:
    await client.send({"type": p.MESSAGE, "room": room, "payload": {"content": text}, "ref": ref})
    return int((await client.expect(p.ACK, where=lambda f: f.get("ref") == ref))["seq"])


async def ask(client: WSClient, frame: dict[str, Any], ref: str) -> dict[str, Any]:
    await client.send({**frame, "ref": ref})
    while True:
        answer = await client.recv()
        if answer.get("ref") == ref and answer.get("type") in (p.ACK, p.ERROR):
            return answer


async def search(deployment: Deployment, name: str, **query: Any) -> tuple[int, Any]:
    return await deployment.api(name, "GET", "search?" + urlencode(query))


def found(body: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [(hit["room"], hit["seq"], hit["author"], hit["text"]) for hit in body["results"]]


async def test_a_search_finds_what_the_searcher_may_read_and_nothing_else(deployment: Deployment) -> None:
    private, public = f"s-plans-{deployment.broker}", f"s-lobby-{deployment.broker}"
    status, _ = await deployment.api("alice", "POST", "rooms", {"room": private, "members": ["bob"]})
    assert status == 201
    alice, bob = await joined(deployment, "alice", private), await joined(deployment, "bob", private)
    secret = await say(alice, private, "the merger codename is bluefin", "a1")
    typo = await say(alice, private, "budget draft numbrs attached", "a2")
    regret = await say(bob, private, "I think bluefin is a silly name", "b1")
    lobby = await joined(deployment, "alice", public)
    hello = await say(lobby, public, "bluefin tuna for lunch, anyone?", "a3")

    # bob reads both rooms; mallory, who quotes alice's exact words, only the public one
    status, body = await search(deployment, "bob", q="bluefin")
    assert status == 200
    assert sorted(found(body)) == sorted(
        [
            (private, secret, "alice", "the merger codename is bluefin"),
            (private, regret, "bob", "I think bluefin is a silly name"),
            (public, hello, "alice", "bluefin tuna for lunch, anyone?"),
        ]
    )
    assert all(hit["time"] for hit in body["results"])
    for query in ("the merger codename is bluefin", '"merger codename"', "merger OR bluefin", "merg*"):
        status, body = await search(deployment, "mallory", q=query)
        assert status == 200 and all(hit["room"] == public for hit in body["results"]), (query, body)
    status, body = await search(deployment, "mallory", q="bluefin")
    assert found(body) == [(public, hello, "alice", "bluefin tuna for lunch, anyone?")]
    status, body = await search(deployment, "mallory", q="merger", room=private)
    assert status == 404 and body["error"] == p.ErrorCode.UNKNOWN_ROOM and "merger" not in str(body)

    # an edit is found by its new text only, a deletion not at all
    answer = await ask(
        alice, {"type": p.EDIT_MESSAGE, "room": private, "seq": typo, "payload": {"content": "budget draft numbers"}}, "e1"
    )
    assert answer["type"] == p.ACK, answer
    assert (await ask(bob, {"type": p.DELETE_MESSAGE, "room": private, "seq": regret}, "d1"))["type"] == p.ACK
    assert found((await search(deployment, "alice", q="numbrs", room=private))[1]) == []
    assert found((await search(deployment, "alice", q="numbers", room=private))[1]) == [
        (private, typo, "alice", "budget draft numbers")
    ]
    assert found((await search(deployment, "alice", q="silly", room=private))[1]) == []

    # FTS syntax is text; bad parameters get a clear 400, a limit beyond the budget names it
    for query in ('"', "*", "NEAR(a b)", "OR AND NOT", "bluefin*", "col:bluefin", "^bluefin"):
        status, body = await search(deployment, "bob", q=query)
        assert status == 200 and isinstance(body["results"], list), (query, body)
    for bad in ({"q": ""}, {"q": "   "}, {"q": "x" * 501}, {"q": "a", "limit": "0"}, {"q": "a", "limit": "x"}):
        status, body = await search(deployment, "mallory", **bad)
        assert status == 400 and body["error"] == p.ErrorCode.INVALID_FIELD and body["message"], (bad, body)
    status, body = await search(deployment, "bob", q="bluefin", limit=MAX_RESULTS + 1)
    assert status == 403 and body["error"] == p.ErrorCode.LIMIT_EXCEEDED and body["option"] == "max_search_results"
    status, body = await search(deployment, "bob", q="bluefin", limit=1)
    assert status == 200 and len(body["results"]) == 1
    for client in (alice, bob, lobby):
        client.close()
