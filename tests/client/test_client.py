"""The Python client (`iavicenne.client`): discovery, rooms, events, errors, self-healing.

Most tests run the client against pytest-jupyter's in-process server (same event loop).
The restart tests run a real `jupyter server` process on a fixed loopback port, stop it
and start it again on the same port, and check that nothing sent meanwhile is lost or
delivered twice; one of them runs the client inside a kernel started by that server, to
check that it finds the server by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from room_support import with_analysts

import iavicenne_protocol as p
from iavicenne import (
    AuthenticationError,
    Backoff,
    ClientError,
    Gap,
    Message,
    NameTaken,
    PeerEvent,
    PresenceEvent,
    RoomClient,
    ServerInfo,
    ServerNotFound,
    ServerUnreachable,
    Signal,
    SignalingClient,
    Superseded,
    UnknownPeer,
    discover_server,
)
from iavicenne.delivery import Outbox, SeenSet, SeqTracker

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


@pytest.fixture
def server(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> ServerInfo:
    """The in-process server (`http_server_client` makes it listen), as the client sees it."""
    return ServerInfo(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token)


@pytest.fixture
def clients(io_loop: Any) -> Any:
    """Clients a test opened; closed at the end on the test's loop."""
    opened: list[Any] = []
    yield opened

    async def close_all() -> None:
        for client in opened:
            await client.close()

    io_loop.run_sync(close_all)


async def room_client(clients: list[Any], server: ServerInfo, user_id: str | None = None, **options: Any) -> RoomClient:
    options.setdefault("backoff", FAST)
    client = RoomClient(server, user_id=user_id, **options)
    await client.start()
    clients.append(client)
    return client


async def next_of(stream: Any, timeout: float = 5.0) -> Any:
    return await stream.get(timeout)


# -- connecting, and the errors a user can cause ------------------------------------------


async def test_send_is_acknowledged_with_its_seq_and_delivered(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice")
    bob = await room_client(clients, server, "bob")
    a_room = await alice.join("r1")
    b_room = await bob.join("r1")
    inbox = b_room.messages()
    ack = await a_room.send("hi")
    assert ack["type"] == p.ACK and ack["seq"] >= 1 and ack["duplicate"] is False
    got: Message = await next_of(inbox)
    assert (got.user_id, got.text, got.seq, got.room) == ("alice", "hi", ack["seq"], "r1")
    assert b_room.seq == ack["seq"]
    await a_room.send({"content": "structured", "n": 2})
    assert (await next_of(inbox)).content == {"content": "structured", "n": 2}


async def test_a_wrong_token_raises_authentication_error(server: ServerInfo) -> None:
    with pytest.raises(AuthenticationError, match="403"):
        await RoomClient.connect(server.url, "not-the-token")
    with pytest.raises(AuthenticationError):
        await SignalingClient.connect("r1", "p1", server.url, "not-the-token")


async def test_an_unreachable_server_raises_server_unreachable() -> None:
    from servers import free_port

    with pytest.raises(ServerUnreachable, match="is it running"):
        await RoomClient.connect(f"http://127.0.0.1:{free_port()}/", "t", connect_timeout=2)


async def test_a_refused_name_raises_name_taken(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, ServerInfo(server.url, "alice-token"), "analyst")
    await alice.join("r1")
    bob = await room_client(clients, ServerInfo(server.url, "bob-token"), "analyst")
    with pytest.raises(NameTaken, match="taken"):
        await bob.join("r1")
    assert "r1" not in bob.rooms
    await bob.join("r2")  # the connection stays usable


# -- discovery ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("IAVICENNE_URL", "IAVICENNE_TOKEN", "JUPYTER_SERVER_URL", "JUPYTER_TOKEN", "JPY_PARENT_PID"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_discovery_prefers_arguments_then_iavicenne_then_jupyter_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("JUPYTER_SERVER_URL", "http://127.0.0.1:8890/jupyter/user/ann/")
    clean_env.setenv("JUPYTER_TOKEN", "jt")
    assert discover_server() == ServerInfo("http://127.0.0.1:8890/jupyter/user/ann/", "jt", "JUPYTER_SERVER_URL")
    clean_env.setenv("IAVICENNE_URL", "http://127.0.0.1:8891")
    clean_env.setenv("IAVICENNE_TOKEN", "it")
    assert discover_server() == ServerInfo("http://127.0.0.1:8891/", "it", "IAVICENNE_URL")
    assert discover_server("https://hub.example.org/user/ann/lab?token=qt") == ServerInfo(
        "https://hub.example.org/user/ann/", "it", "argument"
    )
    assert discover_server("https://hub.example.org/user/ann/lab?token=qt", "given").token == "given"
    assert ServerInfo("https://h/u/", "t").ws_url("iavicenne/ws/mcp") == "wss://h/u/iavicenne/ws/mcp"


def test_discovery_takes_the_token_printed_in_the_url(clean_env: pytest.MonkeyPatch) -> None:
    assert discover_server("http://127.0.0.1:8888/lab?token=abc").token == "abc"
    with pytest.raises(ServerNotFound, match="not a server URL"):
        discover_server("127.0.0.1:8888")


def _server_file(runtime: Path, pid: int, port: int, root: str = "/", token: str = "tok") -> None:
    info = {"url": f"http://127.0.0.1:{port}/", "token": token, "pid": pid, "root_dir": root, "base_url": "/"}
    (runtime / f"jpserver-{pid}-{port}.json").write_text(json.dumps(info))


def test_discovery_finds_the_running_server_that_started_this_kernel(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ServerNotFound, match="IAVICENNE_URL"):
        discover_server(runtime_dir=str(tmp_path))
    # `jupyter server list` skips files of dead processes: use live pids
    _server_file(tmp_path, os.getpid(), 9001)
    assert discover_server(runtime_dir=str(tmp_path)) == ServerInfo("http://127.0.0.1:9001/", "tok", "running-servers")
    _server_file(tmp_path, os.getppid(), 9002, root="/nowhere", token="parent")
    clean_env.setenv("JPY_PARENT_PID", str(os.getppid()))
    assert discover_server(runtime_dir=str(tmp_path)).url == "http://127.0.0.1:9002/"
    clean_env.delenv("JPY_PARENT_PID")
    # no parent among them: the one whose root holds the current directory
    clean_env.chdir(tmp_path)
    found = discover_server(runtime_dir=str(tmp_path))
    assert found.url in ("http://127.0.0.1:9001/", "http://127.0.0.1:9002/")


def test_discovery_refuses_to_guess_between_servers(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    _server_file(runtime, os.getpid(), 9001, root=str(tmp_path / "a"))
    _server_file(runtime, 1, 9002, root=str(tmp_path / "b"))  # alive, and not our parent
    clean_env.chdir(tmp_path)
    with pytest.raises(ServerNotFound, match="several Jupyter servers"):
        discover_server(runtime_dir=str(runtime))


def test_backoff_grows_exponentially_with_jitter() -> None:
    backoff = Backoff(initial=0.5, factor=2.0, maximum=4.0, jitter=0.5)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered: a crowd of clients does not come back in step


# -- events --------------------------------------------------------------------------------


# -- the bookkeeping, as small classes (iavicenne.delivery) ----------------------------------


async def test_the_outbox_keeps_frames_in_order_until_acknowledged_or_failed() -> None:
    outbox = Outbox()
    first, second, third = outbox.add("r1", "A", "lab"), outbox.add("r2", "B", "ops"), outbox.add("r3", "C", "lab")
    assert list(outbox.frames()) == ["A", "B", "C"] and len(outbox) == 3 and "r2" in outbox
    assert outbox.ack("r2", {"type": "ack", "ref": "r2", "seq": 7}) and not outbox.ack("r2", {})
    assert (await second)["seq"] == 7
    outbox.drop_room("lab", ClientError("left lab"))
    for dropped in (first, third):
        with pytest.raises(ClientError, match="left lab"):
            await dropped
    assert list(outbox.frames()) == [] and not outbox.fail("r1", ClientError("again"))


def test_the_seen_set_forgets_the_oldest_keys_past_its_limit() -> None:
    seen = SeenSet(limit=2)
    assert seen.add(("alice", "r1")) and not seen.add(("alice", "r1"))
    assert seen.add(("bob", "r1"))  # another sender's ref is another key
    assert seen.add(("alice", "r2")) and len(seen) == 2
    assert seen.add(("alice", "r1"))  # forgotten: the oldest went first
    assert not seen.add(("alice", "r2"))


def test_the_seq_tracker_asks_for_what_it_missed_and_skips_what_it_has() -> None:
    history = SeqTracker()
    assert history.resume() == {}
    assert history.joined({"seq": 5, "epoch": "e1"}) is None
    assert history.resume() == {"since": 5, "epoch": "e1"}
    assert not history.accept(5) and history.accept(6) and not history.accept(6) and history.accept(None)
    gap = history.joined({"seq": 9, "epoch": "e1", "recovered": False, "since": 6})
    assert gap is not None and (gap.since, gap.epoch_changed) == (6, False)
    restarted = history.joined({"seq": 2, "epoch": "e2"})  # a new life of the room: its seqs start again
    assert restarted is not None and restarted.epoch_changed
    assert history.accept(1) and history.resume() == {"since": 1, "epoch": "e2"}


async def test_events_as_callbacks_and_iterators(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice")
    seen: list[Any] = []
    alice.on("presence", seen.append)
    presence = alice.stream("presence")  # before joining: it sees the join itself too
    a_room = await alice.join("r1", state={"notebook": "a.ipynb"})
    snapshot: PresenceEvent = await next_of(presence)
    assert (snapshot.kind, set(snapshot.members)) == ("snapshot", {"alice"})
    own: PresenceEvent = await next_of(presence)  # the seed tells a joiner of its own arrival
    assert (own.kind, own.user_id) == ("joined", "alice")
    bob = await room_client(clients, server, "bob")
    b_room = await bob.join("r1")
    joined: PresenceEvent = await next_of(presence)
    assert (joined.kind, joined.user_id) == ("joined", "bob")
    assert set(a_room.members) == {"alice", "bob"}
    assert b_room.members["alice"]["state"] == {"notebook": "a.ipynb"}

    async def collect(into: list[Message]) -> None:
        async for message in a_room.messages():
            into.append(message)
            if len(into) == 3:
                return

    got: list[Message] = []
    reader = asyncio.ensure_future(collect(got))
    await asyncio.sleep(0)
    for text in ("one", "two", "three"):
        await b_room.send(text)
    await asyncio.wait_for(reader, 5)
    assert [m.text for m in got] == ["one", "two", "three"]

    await b_room.set_state({"cell": 4})
    state = await next_of(presence)
    assert (state.kind, state.state) == ("state", {"cell": 4})
    await bob.leave("r1")
    left = await next_of(presence)
    assert (left.kind, left.user_id) == ("left", "bob")
    assert [e.kind for e in seen][:3] == ["snapshot", "joined", "joined"]


async def test_direct_messages_reach_one_member_once(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice")
    bob = await room_client(clients, server, "bob")
    carol = await room_client(clients, server, "carol")
    a_room, b_room, c_room = [await c.join("r1") for c in (alice, bob, carol)]
    b_inbox, c_inbox = b_room.messages(), c_room.messages()
    await a_room.direct("bob", "psst")
    got = await next_of(b_inbox)
    assert got.direct and got.text == "psst" and got.user_id == "alice"
    with pytest.raises(UnknownPeer):
        await a_room.direct("nobody", "hello?")
    # the ack was lost, the client resends with the same ref: delivered once
    ref = got.ref
    frame = {"type": p.DIRECT_MESSAGE, "room": "r1", "to": "bob", "payload": {"content": "psst"}, "ref": ref}
    await _resend(alice, frame)
    assert await asyncio.wait_for(_quiet(b_inbox), 2) == []
    assert c_inbox.pending() == 0


async def _resend(client: RoomClient, frame: dict[str, Any]) -> dict[str, Any]:
    future = client._outbox.add(frame["ref"], json.dumps(frame), frame["room"])
    client._write(client._ws, json.dumps(frame))
    return await asyncio.wait_for(future, 5)


async def _quiet(stream: Any, window: float = 0.3) -> list[Any]:
    got = []
    try:
        while True:
            got.append(await stream.get(window))
    except asyncio.TimeoutError:
        return got


# -- self-healing --------------------------------------------------------------------------


async def drop(client: Any) -> None:
    """Cut the client's socket as a network failure would (the client did not ask for it)."""
    assert client._ws is not None
    client._ws.stream.close()  # the TCP connection, under the WebSocket


async def test_a_dropped_connection_rejoins_and_recovers_what_was_missed(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice", backoff=Backoff(initial=0.5, maximum=0.5, jitter=0))
    bob = await room_client(clients, server, "bob")
    a_room, b_room = await alice.join("r1"), await bob.join("r1")
    inbox = a_room.messages()
    await b_room.send("before")
    assert (await next_of(inbox)).text == "before"
    reconnected = alice.stream("connected")
    await drop(alice)
    for text in ("missed-1", "missed-2", "missed-3"):
        await b_room.send(text)
    await next_of(reconnected)
    await b_room.send("after")
    texts = [m.text for m in await asyncio.wait_for(_quiet(inbox, 0.5), 5)]
    assert texts == ["missed-1", "missed-2", "missed-3", "after"]
    assert alice.reconnects == 1


async def test_sends_during_an_outage_are_delivered_once_after(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice", backoff=Backoff(initial=0.5, maximum=0.5, jitter=0))
    bob = await room_client(clients, server, "bob")
    a_room, b_room = await alice.join("r1"), await bob.join("r1")
    inbox = b_room.messages()
    await drop(alice)
    await asyncio.sleep(0.05)
    assert not alice.connected
    sent = [a_room.send_nowait(f"offline-{i}") for i in range(5)]
    acks = await asyncio.wait_for(asyncio.gather(*sent), 10)
    assert [a["seq"] for a in acks] == sorted(a["seq"] for a in acks)
    texts = [m.text for m in await _quiet(inbox, 0.5)]
    assert texts == [f"offline-{i}" for i in range(5)]


async def test_a_resend_whose_ack_was_lost_is_not_published_twice(server: ServerInfo, clients: list[Any]) -> None:
    alice = await room_client(clients, server, "alice")
    bob = await room_client(clients, server, "bob")
    a_room, b_room = await alice.join("r1"), await bob.join("r1")
    inbox = b_room.messages()
    ack = await a_room.send("once")
    message = await next_of(inbox)
    again = await _resend(alice, {"type": p.MESSAGE, "room": "r1", "payload": {"content": "once"}, "ref": message.ref})
    assert again["duplicate"] is True and again["seq"] == ack["seq"]
    assert await _quiet(inbox) == []


class TestRateLimited:
    @pytest.fixture
    def iavicenne_config(self) -> dict[str, Any]:
        return {"messages_per_second": 40, "burst": 10}

    async def test_frames_dropped_by_the_rate_limit_are_resent(self, server: ServerInfo, clients: list[Any]) -> None:
        alice = await room_client(clients, server, "alice")
        bob = await room_client(clients, server, "bob")
        a_room, b_room = await alice.join("r1"), await bob.join("r1")
        inbox = b_room.messages()
        acks = await asyncio.wait_for(asyncio.gather(*(a_room.send_nowait(f"m{i}") for i in range(30))), 15)
        assert len({a["seq"] for a in acks}) == 30
        texts = [m.text for m in await _quiet(inbox, 0.5)]
        assert sorted(texts) == sorted(f"m{i}" for i in range(30))  # each once


# -- signaling client ----------------------------------------------------------------------


async def test_signaling_peers_signals_and_unknown_peers(server: ServerInfo, clients: list[Any]) -> None:
    p1 = SignalingClient(server, "lab", "p1", backoff=FAST)
    await p1.start()
    clients.append(p1)
    peers = p1.stream("peer")
    p2 = SignalingClient(server, "lab", "p2", backoff=FAST)
    await p2.start()
    clients.append(p2)
    assert p2.peers == {"p1"}
    event: PeerEvent = await next_of(peers)
    assert (event.kind, event.peer_id) == ("joined", "p2")
    assert p1.peers == {"p2"}
    signals = p2.stream("signal")
    await p1.relay(p.OFFER, "p2", {"type": "offer", "sdp": "v=0"})
    signal: Signal = await next_of(signals)
    assert (signal.kind, signal.source, signal.body) == (p.OFFER, "p1", {"type": "offer", "sdp": "v=0"})
    with pytest.raises(UnknownPeer, match="ghost"):
        await p1.relay(p.ANSWER, "ghost", {"type": "answer", "sdp": "v=0"})
    await p2.close()
    assert (await next_of(peers)).kind == "left"
    assert p1.peers == set()


async def test_signaling_rejoins_and_reports_who_came_and_went(server: ServerInfo, clients: list[Any]) -> None:
    p1 = SignalingClient(server, "lab", "p1", backoff=Backoff(initial=0.5, maximum=0.5, jitter=0))
    await p1.start()
    clients.append(p1)
    p2 = await SignalingClient.connect("lab", "p2", server.url, server.token)
    clients.append(p2)
    await p1.wait_for_peer("p2", 5)
    peers = p1.stream("peer")
    await drop(p1)
    await p2.close()
    p3 = await SignalingClient.connect("lab", "p3", server.url, server.token)
    clients.append(p3)
    events = [await next_of(peers) for _ in range(2)]
    assert {(e.kind, e.peer_id) for e in events} == {("left", "p2"), ("joined", "p3")}
    assert p1.peers == {"p3"}


async def test_a_second_connection_of_the_same_peer_supersedes_the_first(server: ServerInfo, clients: list[Any]) -> None:
    old = await SignalingClient.connect("lab", "p1", server.url, server.token, backoff=FAST)
    clients.append(old)
    closed = old.stream("closed")
    new = await SignalingClient.connect("lab", "p1", server.url, server.token, backoff=FAST)
    clients.append(new)
    assert isinstance(await next_of(closed), Superseded)
    await asyncio.sleep(0.5)  # and it does not come back to take the peer_id again
    assert not old.connected and new.connected
    with pytest.raises(Superseded):
        await old.relay(p.OFFER, "p1", {"type": "offer", "sdp": ""})


async def test_a_refused_signaling_name(server: ServerInfo, clients: list[Any]) -> None:
    clients.append(await SignalingClient.connect("lab", "analyst", server.url, "alice-token"))
    with pytest.raises(NameTaken, match="analyst"):
        await SignalingClient.connect("lab", "analyst", server.url, "bob-token")


# -- a real server, restarted ----------------------------------------------------------------


@pytest.fixture
def jupyter(tmp_path: Path) -> Any:
    from iavicenne_ext.testing import JupyterProcess

    server = JupyterProcess(tmp_path, options={"broker": "memory"}, name="restartable")
    server.launch().wait_serving()
    yield server
    server.stop()


async def test_the_client_survives_a_server_restart(jupyter: Any, clients: list[Any]) -> None:
    info = ServerInfo(jupyter.url, jupyter.token)
    backoff = Backoff(initial=0.2, maximum=1.0)
    alice = await room_client(clients, info, "alice", backoff=backoff)
    bob = await room_client(clients, info, "bob", backoff=backoff)
    a_room, b_room = await alice.join("r1"), await bob.join("r1")
    inbox, gaps = b_room.messages(), b_room.stream("gap")
    await a_room.send("before")
    assert (await next_of(inbox)).text == "before"

    down = alice.stream("disconnected")
    await asyncio.get_running_loop().run_in_executor(None, jupyter.stop)
    await next_of(down)
    sent = [a_room.send_nowait(f"during-{i}") for i in range(3)]
    await asyncio.sleep(0.5)
    assert not any(s.done() for s in sent)
    await asyncio.get_running_loop().run_in_executor(None, lambda: jupyter.launch().wait_serving())

    acks = await asyncio.wait_for(asyncio.gather(*sent), 20)
    assert all(not a["duplicate"] for a in acks)
    gap: Gap = await next_of(gaps, 10)
    assert gap.epoch_changed  # the in-memory history started over; the client says so
    texts = [m.text for m in await _quiet(inbox, 1.0)]
    assert texts == ["during-0", "during-1", "during-2"]
    await a_room.send("after")
    assert (await next_of(inbox)).text == "after"
    assert alice.reconnects >= 1 and bob.reconnects >= 1


KERNEL_CODE = """
import asyncio, os
from iavicenne import RoomClient
client = await RoomClient.connect(user_id="kernel")
room = await client.join("from-kernel")
ack = await room.send("hello from a kernel")
print("SENT", ack["seq"], client.server.source)
await client.close()
"""


async def test_inside_a_kernel_the_client_finds_its_server(jupyter: Any, clients: list[Any]) -> None:
    from jupyter_client.blocking import BlockingKernelClient

    info = ServerInfo(jupyter.url, jupyter.token)
    watcher = await room_client(clients, info, "watcher")
    inbox = (await watcher.join("from-kernel")).messages()
    status, kernel = await asyncio.get_running_loop().run_in_executor(None, lambda: _post(jupyter, "/api/kernels"))
    assert status == 201, kernel
    connection = jupyter.workdir / "runtime" / f"kernel-{kernel['id']}.json"
    kc = BlockingKernelClient()
    kc.load_connection_file(str(connection))
    kc.start_channels()
    try:
        outputs: list[str] = []

        def run() -> None:
            kc.wait_for_ready(timeout=60)
            kc.execute_interactive(KERNEL_CODE, timeout=60, output_hook=lambda m: outputs.append(json.dumps(m["content"])))

        await asyncio.get_running_loop().run_in_executor(None, run)
        got = await next_of(inbox, 10)
        assert (got.user_id, got.text) == ("kernel", "hello from a kernel")
        assert any("running-servers" in o for o in outputs), outputs
    finally:
        kc.stop_channels()


def _post(jupyter: Any, path: str) -> tuple[int, Any]:
    import urllib.request

    request = urllib.request.Request(
        jupyter.origin + path, data=b"{}", method="POST", headers={"Authorization": f"token {jupyter.token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())
