"""One hostile user against a real server with the default options (issue 10).

Each test plays one attack of the issue, as an authenticated but hostile user would, and
asserts what the others and the server's owner would check: the attack is answered with
an error that names the limit and the ``IAvicenne`` option that raises it, another user
(``bob``, another identity) sees nothing of it and keeps working, and the server's
resident memory stays within `MEMORY_BOUND` of where it started and comes back near it
(`MEMORY_SLACK`) once the attacker is gone.

The server is a separate ``jupyter server`` process (tests/servers.py), so that psutil
measures it alone, with the default options: only the identities are added, every
``<name>-token`` being the user ``<name>`` (`IDENTITIES`), so that each attack is made by
an identity of its own. Two tests need what no socket can do quickly at the default rates
(fifty thousand rooms, a full history budget): they run in this process's test server
(pytest_jupyter), one through the hub of the running server, one with a small budget.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from room_support import ALICE, BOB, Connect, of_type, with_analysts
from servers import JupyterProcess
from servers import connect as connect_to
from tornado.websocket import WebSocketClientConnection

from iavicenne_ext.app import IAvicenne
from iavicenne_ext.identity import Identity
from iavicenne_ext.pytest_plugin import WSClient

MiB = 1024 * 1024
MEMORY_BOUND = 150 * MiB  # what one attack may add to the server's resident memory
MEMORY_SLACK = 40 * MiB  # how far above its start the server may stay once the attacker left
ATTACKERS = [f"mallory-{n}" for n in range(1, 9)]
IDENTITIES = ["bob", *ATTACKERS]
DEFAULTS = {name: IAvicenne.class_traits()[name].default_value for name in ("messages_per_second", "burst")}

# an identity provider for the server process: tests/room_support.py's, with more users
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

class Analysts(TwoAnalysts):
    analysts = {{name + "-token": name for name in {names!r}}}

c.ServerApp.identity_provider_class = Analysts
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """A memory-broker server with the default options (JupyterProcess raises the rates: set back)."""
    workdir = tmp_path_factory.mktemp("abuse")
    process = JupyterProcess(workdir, options={"broker": "memory", **DEFAULTS})
    process.config.mkdir(parents=True)
    config = _CONFIG.format(tests=str(Path(__file__).resolve().parents[1]), names=IDENTITIES)
    (process.config / "jupyter_server_config.py").write_text(config)
    process.launch().wait_serving()
    yield process
    process.stop()


def rss(server: JupyterProcess) -> int:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).memory_info().rss


async def socket(server: JupyterProcess, name: str, user_id: str | None = None, endpoint: str = "mcp") -> WSClient:
    """A socket of identity `name` (``<name>-token``), `connect`ed as `user_id` if given."""
    return await connect_to(server, user_id, token=f"{name}-token", endpoint=endpoint)


def assert_limit(frame: dict[str, Any], option: str, code: str = "limit-exceeded") -> None:
    """An error that names the limit: its code, the option and its value, the option in words."""
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert frame["option"] == option, frame
    assert frame["limit"] == IAvicenne.class_traits()[option].default_value, frame
    assert f"IAvicenne.{option}" in frame["message"], frame


async def ack_round_trips(client: WSClient, room: str, count: int, pause: float = 0.0) -> list[float]:
    """Seconds from sending a message with a ref to its ack, `count` times."""
    times = []
    for n in range(count):
        sent = time.perf_counter()
        await client.send({"type": "message", "room": room, "payload": {"ping": n}, "ref": f"ping-{time.time_ns()}"})
        await client.expect("ack", timeout=10)
        times.append(time.perf_counter() - sent)
        if pause:
            await asyncio.sleep(pause)
    return times


async def drained(client: WSClient, timeout: float = 1.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame the socket still has to read (until `timeout` of silence), and its close
    code if the server closed it."""
    frames = []
    try:
        while True:
            frames.append(await client.recv(timeout))
    except ConnectionError:
        return frames, client.ws.close_code
    except (asyncio.TimeoutError, TimeoutError):
        return frames, None


async def back_near(server: JupyterProcess, start: int, timeout: float = 10.0) -> int:
    """The server's resident memory once it is back within MEMORY_SLACK of `start` (or at the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := rss(server)) > start + MEMORY_SLACK and loop.time() < deadline:
        await asyncio.sleep(0.2)
    return now


def message(room: str, size: int, **payload: Any) -> dict[str, Any]:
    return {"type": "message", "room": room, "payload": {**payload, "chunk": "x" * size}}


# -- history ---------------------------------------------------------------------------


async def test_a_room_message_is_bounded_in_size_and_history_in_bytes(server: JupyterProcess) -> None:
    mallory = await socket(server, "mallory-1", "mallory")
    bob = await socket(server, "bob", "bob")
    await mallory.join("notes")
    await bob.join("notes")
    limit = IAvicenne.max_message_bytes.default_value

    await mallory.send({**message("notes", limit), "ref": "big"})
    refused = await mallory.expect("error")
    assert_limit(refused, "max_message_bytes")
    assert refused["ref"] == "big"
    # 64 messages of 60 KiB: more than a room keeps
    for n in range(70):
        await mallory.send(message("notes", 60 * 1024, n=n))
    got = [await bob.expect("message") for _ in range(70)]
    assert [m["message"]["n"] for m in got] == list(range(70)), "the refusal cost nothing that was accepted"
    assert not of_type(bob.seen, "error")

    # a direct message is not kept: it may be larger than a room message
    await mallory.send({"type": "direct-message", "room": "notes", "to": "bob", "payload": {"chunk": "y" * (2 * limit)}})
    assert len((await bob.expect("direct-message"))["message"]["chunk"]) == 2 * limit

    late = await socket(server, "bob")
    await late.send({"type": "join-room", "room": "notes", "payload": {"since": 0}})
    joined = await late.expect("room-joined")
    assert joined["recovered"] is False  # the oldest were dropped: the client is told
    replay: list[dict[str, Any]] = []
    while len(replay) < 70 and (frame := await late.recv()) and frame["type"] == "message":
        replay.append(frame)
    kept = sum(len(json.dumps(f, separators=(",", ":"))) for f in replay)
    assert kept <= IAvicenne.history_bytes_per_room.default_value
    assert 0 < len(replay) < 70
    assert [f["seq"] for f in replay] == list(range(got[-1]["seq"] - len(replay) + 1, got[-1]["seq"] + 1))
    for client in (mallory, bob, late):
        client.close()


async def test_replays_to_sockets_that_never_read_stay_bounded(server: JupyterProcess) -> None:
    """The issue: 12 ``join-room since 0`` per socket that never reads grew the server by 1.1 GiB."""
    mallory = await socket(server, "mallory-2", "mallory")
    bob = await socket(server, "bob", "bob")
    await mallory.join("archive")
    await bob.join("archive")
    for n in range(70):
        await mallory.send(message("archive", 60 * 1024, n=n))
        await mallory.expect("message")
    for _ in range(70):
        await bob.expect("message")

    start = rss(server)
    readers = [await socket(server, "mallory-2") for _ in range(30)]
    for reader in readers:  # and never read
        for _ in range(12):
            await reader.send({"type": "join-room", "room": "archive", "payload": {"since": 0}})
    peak = start
    times = []
    for _ in range(30):  # meanwhile the victim keeps working
        times += await ack_round_trips(bob, "archive", 1)
        peak = max(peak, rss(server))
        await asyncio.sleep(0.05)
    assert peak - start < MEMORY_BOUND, f"the server grew by {(peak - start) / MiB:.0f} MiB"
    assert statistics.median(times) < 0.05

    refused = closed_by_budget = 0
    for reader, (frames, code) in zip(readers, await asyncio.gather(*map(drained, readers)), strict=True):
        replays = of_type(frames, "room-joined")
        errors = of_type(frames, "error")
        for error in errors:
            assert_limit(error, "max_replay_bytes")
        refused += len(errors)
        if code is None:
            assert len(replays) + len(errors) == 12  # each request answered: a replay or a refusal
        else:
            assert code == 1008
            assert "IAvicenne.max_outbound_bytes_total" in (reader.ws.close_reason or "")
            closed_by_budget += 1
    assert refused, "no replay was refused while the last was unread"
    for reader in readers:
        reader.close()
    mallory.close()
    end = await back_near(server, start)
    assert end - start < MEMORY_SLACK, f"still {(end - start) / MiB:.0f} MiB above the start after the attacker left"
    await ack_round_trips(bob, "archive", 1)
    bob.close()


# -- presence ----------------------------------------------------------------------------


async def test_a_presence_state_is_bounded_in_bytes_depth_and_keys(server: JupyterProcess) -> None:
    """The issue: a 1 MB state cost 23 MiB of heap, re-encoded into every room-joined."""
    bob = await socket(server, "bob", "bob")
    mallorys = [await socket(server, "mallory-3", f"mallory{n}") for n in range(3)]
    for n, mallory in enumerate(mallorys):
        await mallory.join("lobby", state={"cell": n})
    await bob.join("lobby")
    start = rss(server)
    huge = {"notes": "x" * 1_000_000}
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    wide = {f"k{n}": n for n in range(IAvicenne.max_state_keys.default_value + 1)}
    for mallory in mallorys:
        for state, option in ((huge, "max_state_bytes"), (deep, "max_state_depth"), (wide, "max_state_keys")):
            await mallory.send({"type": "presence", "room": "lobby", "payload": {"state": state}})
            assert_limit(await mallory.expect("error"), option)
    await mallorys[0].send({"type": "join-room", "room": "other", "payload": {"state": huge}})
    assert_limit(await mallorys[0].expect("error"), "max_state_bytes")
    assert rss(server) - start < MEMORY_BOUND

    assert not of_type(await bob.silent(0.3), "presence"), "refused states reached the room"
    again = await bob.join("lobby")  # a fresh snapshot: the accepted states are kept as they were
    states = {m["user_id"]: m["state"] for m in again["members"]}
    assert states == {"bob": {}, "mallory0": {"cell": 0}, "mallory1": {"cell": 1}, "mallory2": {"cell": 2}}
    assert len(json.dumps(again)) < 2000
    await mallorys[0].send({"type": "presence", "room": "lobby", "payload": {"state": {"cell": 7}}})
    assert (await bob.expect("presence"))["state"] == {"cell": 7}
    for client in (bob, *mallorys):
        client.close()


# -- CPU -------------------------------------------------------------------------------------


async def test_a_parse_flood_does_not_slow_another_user(server: JupyterProcess) -> None:
    """The issue: 1 MB frames of ``[{},{},...]`` from four connections took another user's
    ack round trip from 1.2 ms to 65 ms."""
    bob = await socket(server, "bob", "bob")
    await bob.join("desk")
    quiet = await ack_round_trips(bob, "desk", 30)
    flood = "[" + ",".join(["{}"] * 333_000) + "]"
    assert len(flood) < IAvicenne.max_frame_bytes.default_value
    floods = [await socket(server, "mallory-4") for _ in range(4)]
    stop = asyncio.Event()
    sent = [0] * len(floods)

    async def pour(n: int, ws: WebSocketClientConnection) -> None:
        while not stop.is_set():
            await ws.write_message(flood)
            sent[n] += 1

    pouring = [asyncio.ensure_future(pour(n, f.ws)) for n, f in enumerate(floods)]
    started = time.monotonic()
    try:
        await asyncio.sleep(0.5)  # the flood is under way
        busy = await ack_round_trips(bob, "desk", 60, pause=0.02)
    finally:
        stop.set()
        await asyncio.wait(pouring, timeout=10)
    elapsed = time.monotonic() - started
    assert statistics.median(busy) < 0.010, (
        f"median ack round trip {statistics.median(busy) * 1e3:.1f} ms during the flood "
        f"(quiet: {statistics.median(quiet) * 1e3:.1f} ms)"
    )
    notices, parsed = [], 0
    for frames, code in await asyncio.gather(*(drained(f, timeout=1.5) for f in floods)):
        assert code is None, "a flooder was disconnected, not limited"
        notices += [e for e in of_type(frames, "error") if e["code"] == "rate-limited"]
        parsed += len([e for e in of_type(frames, "error") if e["code"] == "invalid-frame"])
    assert notices, "the flood was not limited"
    for notice in notices:
        assert_limit(notice, "bytes_per_second", code="rate-limited")
    # only what the identity's byte budget let in was parsed, however much was sent
    budget = IAvicenne.burst_bytes.default_value + IAvicenne.bytes_per_second.default_value * (elapsed + 2)
    assert parsed <= budget / len(flood) + 1 < sum(sent)
    for client in (bob, *floods):
        client.close()


# -- outbound ----------------------------------------------------------------------------------


async def test_sockets_that_never_read_are_bounded_per_identity_and_per_server(server: JupyterProcess) -> None:
    """The issue: 60 sockets that never read held 481 MiB of outbound buffers."""
    limit = IAvicenne.max_connections_per_identity.default_value
    sockets = [await socket(server, "mallory-5", f"m{n}") for n in range(limit)]
    extra = await socket(server, "mallory-5")
    refused, code = await drained(extra)
    assert code == 1008
    assert len(refused) == 1
    assert_limit(refused[0], "max_connections_per_identity")
    bob = await socket(server, "bob", "bob")  # another identity is not refused
    await bob.join("stream")

    flooder, readers = sockets[0], sockets[1:]
    for client in sockets:
        await client.join("stream")
    await flooder.silent(0.2)
    await bob.silent(0.2)
    start = rss(server)
    count = 120  # 7 MiB, within the flooder's byte budget, times 31 sockets that never read
    # gather schedules the waits at once (before the sends) and holds them until awaited
    echoes = asyncio.gather(*(flooder.expect("message", timeout=20) for _ in range(count)))
    for n in range(count):
        await flooder.send(message("stream", 60 * 1024, n=n))
    peak = start
    got = []
    for _ in range(count):
        got.append(await bob.expect("message", timeout=20))
        peak = max(peak, rss(server))
    await echoes
    assert [m["message"]["n"] for m in got] == list(range(count)), "a reading user lost messages"
    assert peak - start < MEMORY_BOUND, f"the server grew by {(peak - start) / MiB:.0f} MiB"

    closed_by_total = 0
    for reader, (_, code) in zip(readers, await asyncio.gather(*map(drained, readers)), strict=True):
        if code is not None:
            assert code == 1008
            assert (reader.ws.close_reason or "").startswith("slow consumer")
            closed_by_total += "IAvicenne.max_outbound_bytes_total" in (reader.ws.close_reason or "")
    assert closed_by_total, "the server's outbound budget closed no slow reader"
    for client in sockets:
        client.close()
    end = await back_near(server, start)
    assert end - start < MEMORY_SLACK, f"still {(end - start) / MiB:.0f} MiB above the start after the attacker left"
    await ack_round_trips(bob, "stream", 1)
    bob.close()


# -- identities -------------------------------------------------------------------------------


async def test_rooms_are_counted_per_identity_over_its_connections(server: JupyterProcess) -> None:
    """The issue: leaving and joining again, or another connection, got around max_rooms_per_connection."""
    per_connection = IAvicenne.max_rooms_per_connection.default_value
    per_identity = IAvicenne.max_rooms_per_identity.default_value
    connections = [await socket(server, "mallory-6", "mallory") for _ in range(per_identity // per_connection + 1)]
    for n, client in enumerate(connections[:-1]):
        for r in range(per_connection):
            await client.join(f"room-{n}-{r}")
    last = connections[-1]
    await last.send({"type": "join-room", "room": "one-more", "payload": {}})
    assert_limit(await last.expect("error"), "max_rooms_per_identity", code="too-many-rooms")
    signaling = await socket(server, "mallory-6", endpoint="signaling")
    await signaling.send({"type": "join", "room": "one-more", "payload": {"peer_id": "mallory"}})
    assert_limit(await signaling.expect("error"), "max_rooms_per_identity", code="too-many-rooms")

    bob = await socket(server, "bob", "bob")
    assert (await bob.join("one-more"))["room"] == "one-more"  # another identity: not counted

    await connections[0].send({"type": "leave-room", "room": "room-0-0"})
    await connections[0].expect("room-left")
    assert (await last.join("one-more"))["room"] == "one-more"  # a room left makes room for one
    await last.send({"type": "join-room", "room": "yet-another", "payload": {}})
    assert_limit(await last.expect("error"), "max_rooms_per_identity", code="too-many-rooms")
    for client in (*connections, signaling, bob):
        client.close()


async def test_one_identitys_refs_never_evict_anothers(server: JupyterProcess) -> None:
    """The issue: 102,500 refs from one user evicted another's dedup record; her resend was delivered twice."""
    bob = await socket(server, "bob", "bob")
    await bob.join("desk-7")
    await bob.send({"type": "message", "room": "desk-7", "payload": {"content": "once"}, "ref": "bob-1"})
    first = await bob.expect("ack")

    remembered = IAvicenne.max_dedup_per_identity.default_value
    limit = IAvicenne.max_connections_per_identity.default_value
    sockets = [await socket(server, "mallory-7", f"m{n}") for n in range(limit)]
    for n, client in enumerate(sockets):
        await client.join(f"own-{n}")
    # more refs than one identity's records, sent as fast as the frame rate lets them in
    # (what it drops is not acked, so only acks are counted)
    accepted = sent = 0
    while accepted <= remembered + 100:
        for n, client in enumerate(sockets):
            for m in range(sent, sent + 100):
                await client.send({"type": "message", "room": f"own-{n}", "payload": {}, "ref": f"r-{n}-{m}"})
        sent += 100
        for frames, _ in await asyncio.gather(*(drained(client, timeout=0.3) for client in sockets)):
            accepted += len(of_type(frames, "ack"))

    await bob.send({"type": "message", "room": "desk-7", "payload": {"content": "once"}, "ref": "bob-1"})
    again = await bob.expect("ack")
    assert (again["duplicate"], again["seq"]) == (True, first["seq"])
    assert len(of_type(await bob.silent(0.3), "message")) == 0 and len(of_type(bob.seen, "message")) == 1
    # the attacker's own oldest records are the ones forgotten
    await sockets[0].send({"type": "message", "room": "own-0", "payload": {}, "ref": "r-0-0"})
    assert (await sockets[0].expect("ack", where=lambda f: f["ref"] == "r-0-0"))["duplicate"] is False
    for client in (bob, *sockets):
        client.close()


# -- in this process's test server ------------------------------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


ROOMS_LEFT_BEHIND = 20_000


@dataclass
class Held:
    """A connection as the hub holds it (what a socket is to the hub), for rooms made in bulk."""

    key: str
    user_id: str
    identity: dict[str, Any] = field(default_factory=lambda: {"username": "mallory", "name": "mallory"})
    who: Identity = field(default_factory=lambda: Identity("mallory", "mallory", "mallory"))

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        pass

    def superseded(self, room: str) -> None:
        pass


# the memory broker's rooms, which the store's are too: on the store each of these cycles'
# messages also waits for its commit, one after the other (benchmarks/store.py measures that)
@pytest.mark.parametrize("iavicenne_config", [{"broker": "memory"}])
async def test_rooms_left_behind_do_not_slow_a_join(jp_serverapp: Any) -> None:
    """The issue: after 50,000 join/leave cycles every join scanned all rooms (0.6 ms to 9.6 ms).

    At the default rates one identity makes such cycles (join, message, leave) by the
    thousand a second, each leaving a room with history behind; here they are made through
    the hub of the running server, in seconds.
    """
    (app,) = jp_serverapp.extension_manager.extension_apps["iavicenne_ext"]
    hub = app.hub
    mallory = Held("mallory:1", "mallory")

    async def cycles(prefix: str, count: int) -> float:
        started = time.perf_counter()
        for n in range(count):
            room = f"{prefix}-{n}"
            await hub.join(mallory, room, state=None, since=None, epoch=None)
            await hub.publish(mallory, room, {"n": n}, None)
            await hub.leave(mallory, room)
        return (time.perf_counter() - started) / count

    before = min([await cycles(f"warm{k}", 300) for k in range(3)])
    await cycles("flood", ROOMS_LEFT_BEHIND)
    after = min([await cycles(f"late{k}", 300) for k in range(3)])
    # a scan of every room would cost ~4 ms a join here (the issue: 0.19 µs a room)
    assert after < 3 * before, f"a cycle took {after * 1e6:.0f} µs after {ROOMS_LEFT_BEHIND} rooms, {before * 1e6:.0f} µs before"


@pytest.mark.parametrize("iavicenne_config", [{"history_bytes_total": 3 * MiB // 2, "history_bytes_per_room": 1 * MiB}])
async def test_the_history_budget_forgets_empty_rooms_first(iav_connect: Connect) -> None:
    """A full history budget drops the rooms nobody is in first, then the oldest messages."""
    bob = await iav_connect(headers=BOB)
    alice = await iav_connect(headers=ALICE)
    live = await bob.join("live", "bob")
    for n in range(8):  # 0.5 MiB in a room bob stays in
        await bob.send(message("live", 60 * 1024, n=n))
        await bob.expect("message")
    old = await alice.join("old", "alice")
    for n in range(8):  # 0.5 MiB in a room nobody will be in
        await alice.send(message("old", 60 * 1024, n=n))
        await alice.expect("message")
    await alice.send({"type": "leave-room", "room": "old"})
    await alice.expect("room-left")

    await alice.join("flood")
    for n in range(24):  # 1.4 MiB: the room keeps 1 MiB, and the total would be 2 MiB
        await alice.send(message("flood", 60 * 1024, n=n))
        await alice.expect("message")

    again = await iav_connect(headers=ALICE)
    await again.send({"type": "join-room", "room": "old", "payload": {"since": 0, "epoch": old["epoch"]}})
    forgotten = await again.expect("room-joined")
    assert forgotten["epoch"] != old["epoch"] and forgotten["recovered"] is False and forgotten["seq"] == 0
    watcher = await iav_connect(headers=BOB)
    await watcher.send({"type": "join-room", "room": "live", "payload": {"since": live["seq"], "epoch": live["epoch"]}})
    kept = await watcher.expect("room-joined")
    assert kept["recovered"] is True  # the room in use kept all of its history
    assert [(await watcher.expect("message"))["message"]["n"] for _ in range(8)] == list(range(8))
