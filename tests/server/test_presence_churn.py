"""Presence churn: one identity joining and leaving a room of a thousand seed clients in a
loop must not freeze the server for the others (``joins_per_second`` / ``join_burst``).

Real Jupyter servers in processes of their own, whose users are a crowd (every token
``<name>-token`` is user ``<name>``: benchmarks/presence_churn.py's `crowd_server`). The
room's members are a thousand different users on benchmarks/loadgen.py's lean client (in a
process of their own, so that reading their fan-out does not delay bob's), with
presence as the seed sends it (one ``user-joined`` / ``user-left`` per change to every
member); dave is one more, on the test client, keeping a member view as a seed client does.
mallory (one identity, four sockets) sends join-room and leave-room 100 times a second on
each; bob, in another room, times his acks (tests/bystander.py). With the defaults bob's
p99 stays under 50 ms and what a member receives is bounded; with the bound lifted the same
churn hurts, so the test can fail.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bystander import Bystander
from servers import connect as connect_to

import iavicenne_protocol as p
from iavicenne_ext.app import IAvicenne
from iavicenne_ext.testing import JupyterProcess, WSClient, start_all, stop_all

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from loadgen import raise_nofile_limit  # noqa: E402
from presence_churn import DEFAULTS, LIFTED, ROOM, CrowdProcess, churn, crowd_server  # noqa: E402

MEMBERS = 1000
SOCKETS, RATE, SECONDS = 4, 100.0, 5.0
# the defaults, which the bounded server keeps
JOINS_PER_SECOND, JOIN_BURST, FANOUT_PER_SECOND = (
    IAvicenne.class_traits()[name].default_value for name in ("joins_per_second", "join_burst", "join_fanout_per_second")
)


def most_changes(seconds: float) -> float:
    """The joins and leaves of mallory the room may hear in `seconds`: join_fanout_per_second
    spread over the room's members, and its burst (a quarter of a second's worth)."""
    return (FANOUT_PER_SECOND * seconds + FANOUT_PER_SECOND / 4) / MEMBERS + 2


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, JupyterProcess]]:
    raise_nofile_limit()  # a thousand sockets here, a thousand there; the servers inherit it
    workdir = tmp_path_factory.mktemp("churn")
    started = start_all([crowd_server(workdir, "bounded", DEFAULTS), crowd_server(workdir, "lifted", LIFTED)])
    try:
        yield {"bounded": started[0], "lifted": started[1]}
    finally:
        stop_all(started)


async def client(server: JupyterProcess, user: str) -> WSClient:
    return await connect_to(server, user, token=f"{user}-token")


class Churned:
    """One churn run: what bob felt, what a member received, what dave saw of mallory."""

    def __init__(self, bystander: Bystander, per_member: float, dave: list[dict[str, Any]], seconds: float) -> None:
        self.bystander = bystander
        self.per_member = per_member  # bytes, during the churn and until mallory was gone
        self.dave = dave
        self.seconds = seconds  # from the churn's start until mallory was gone from dave's view
        # the largest frame dave read, with room for a longer timestamp
        self.largest = max(len(p.encode(f)) for f in dave) + 64


async def play_churn(server: JupyterProcess) -> Churned:
    crowd = await CrowdProcess(server.port, MEMBERS).start()
    dave = await client(server, "dave")
    await dave.join(ROOM, "dave", members_limit=0)
    await dave.silent(0.3)
    seen = len(dave.seen)
    try:
        before = await crowd.received()
        started = time.monotonic()
        async with Bystander(await client(server, "bob"), room="calm", user_id="bob") as bob:
            await churn(server, sockets=SOCKETS, rate=RATE, seconds=SECONDS)
        # the joins and leaves mallory's sockets had sent are carried out at their pace until
        # the server sees them closed; then every one of mallory's users has left
        deadline = started + 60
        while await dave.silent(1.5) or mallory_in_view(dave.seen[seen:]):  # 1.5 s: longer than a turn of the pace
            assert time.monotonic() < deadline, f"mallory still in dave's view: {mallory_in_view(dave.seen[seen:])}"
        seconds = time.monotonic() - started
        per_member = (await crowd.quiet() - before) / MEMBERS
        assert server.running(), server.log_text()[-3000:]
        return Churned(bob, per_member, dave.seen[seen:], seconds)
    finally:
        dave.close()
        await crowd.close()


async def answer_to(socket: WSClient, ref: str) -> dict[str, Any]:
    """The next frame answering `ref` (room-joined or error)."""
    while True:
        frame = await socket.recv()
        if frame.get("ref") == ref and frame.get("type") in (p.ROOM_JOINED, p.ERROR):
            return frame


def mallory_in_view(frames: list[dict[str, Any]]) -> set[str]:
    """The mallory-* users present once dave applied every frame, as a seed client does."""
    present: set[str] = set()
    for frame in frames:
        user = str(frame.get("user_id", ""))
        if frame.get("type") == p.USER_JOINED and user.startswith("mallory"):
            present.add(user)
        elif frame.get("type") == p.USER_LEFT:
            present.discard(user)
    return present


async def test_a_user_who_joins_and_leaves_a_few_rooms_never_meets_the_bound(servers: dict[str, JupyterProcess]) -> None:
    server = servers["bounded"]
    alice = await client(server, "alice")
    bob = await client(server, "bob")
    await bob.join("topic7", "bob")
    # a client reconnecting into as many rooms as one socket may be in, then leaving them
    for k in range(32):
        joined = await alice.join(f"topic{k}", "alice")
        assert joined["type"] == p.ROOM_JOINED, joined
    for k in range(32):
        ref = f"out{k}"
        await alice.send({"type": p.LEAVE_ROOM, "room": f"topic{k}", "ref": ref})
        await alice.expect(p.ROOM_LEFT, where=lambda f: f.get("ref") == ref)  # noqa: B023 - awaited here
    frames = await bob.silent(0.5)
    assert [f["type"] for f in frames if f.get("user_id") == "alice"] == [p.USER_JOINED, p.USER_LEFT]
    assert not [f for f in alice.seen if f.get("type") == p.ERROR]
    alice.close()
    bob.close()


async def test_joining_in_a_loop_is_refused_naming_the_option_and_nothing_joined_is_lost(
    servers: dict[str, JupyterProcess],
) -> None:
    server = servers["bounded"]
    mallory = await client(server, "eve")
    carol = await client(server, "carol")
    await carol.join("lounge", "carol")
    refused: dict[str, Any] | None = None
    joined = 0
    for n in range(JOIN_BURST + 20):
        room = ("lounge", "elsewhere")[n % 2]
        await mallory.send({"type": p.JOIN_ROOM, "room": room, "ref": f"j{n}", "payload": {"members_limit": 0}})
        answer = await answer_to(mallory, f"j{n}")
        if answer["type"] == p.ERROR:
            refused = answer
            break
        joined += 1
    assert refused is not None, "eve joined without end"
    assert joined >= JOIN_BURST  # the burst first: a reconnect rejoins every room
    assert refused["code"] == p.ErrorCode.RATE_LIMITED
    assert refused["option"] == "joins_per_second" and refused["limit"] == JOINS_PER_SECOND
    assert "IAvicenne.joins_per_second" in refused["message"], refused
    # eve is still in both rooms, carol still sees her, and carol's own joins are not held
    await carol.send({"type": p.LIST_MEMBERS, "room": "lounge", "ref": "who", "payload": {}})
    page = await carol.expect(p.MEMBERS, where=lambda f: f.get("ref") == "who")
    assert [m["user_id"] for m in page["members"]] == ["carol", "eve"]
    assert (await carol.join("elsewhere", "carol"))["member_count"] == 2
    # a second later eve may join again
    await asyncio.sleep(1 / JOINS_PER_SECOND + 0.1)
    assert (await mallory.join("third", "eve"))["type"] == p.ROOM_JOINED
    mallory.close()
    carol.close()


@pytest.mark.timeout(120)
async def test_churn_in_a_room_of_a_thousand_seed_clients_is_bounded(servers: dict[str, JupyterProcess]) -> None:
    churned = await play_churn(servers["bounded"])
    bob = churned.bystander
    assert bob.p99_ms < 50, bob.summary()
    assert bob.lost == 0, bob.summary()
    # what a member received: at most the joins the bound lets through, and the leave of each
    joins = [f for f in churned.dave if f.get("type") == p.USER_JOINED and str(f["user_id"]).startswith("mallory")]
    assert joins, "mallory's first joins are news to the room"
    allowed = most_changes(churned.seconds) * churned.largest
    assert churned.per_member <= allowed, (churned.per_member, allowed)


@pytest.mark.timeout(120)
async def test_with_the_bound_lifted_the_churn_hurts(servers: dict[str, JupyterProcess]) -> None:
    churned = await play_churn(servers["lifted"])
    allowed = most_changes(churned.seconds) * churned.largest
    assert churned.per_member > 2 * allowed, (churned.per_member, allowed)
    assert churned.bystander.p99_ms >= 50, churned.bystander.summary()
