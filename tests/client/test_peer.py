"""Peer links (`iavicenne.peer`): real aiortc peers, ICE over loopback only.

First in one process against pytest-jupyter's server (both peers and the server on one
event loop): payload kinds, chunking, flow control, progress, glare, closing, leaving
mid-transfer. Then as the issue asks: two separate Python processes, each with its own
aiortc, find each other through a real `jupyter server` process and exchange text,
objects and 20 MB intact; and a peer that dies in the middle of a transfer gives the
other side a clear error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from peer_worker import MemoryWatch, ice_addresses, loopback_only, zlib_bomb

import iavicenne_protocol as p
from iavicenne import Backoff, PeerLeft, PeerLinkClosed, PeerUnreachable, ServerInfo, SignalingClient, TransferRefused, wire
from iavicenne.peer import PeerLink, PeerNetwork, Progress
from iavicenne.wire import FLAG_ZLIB, Kind, Tag

WORKER = Path(__file__).parent.parent / "peer_worker.py"  # tests/: shared by the layers


@pytest.fixture
def server(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> ServerInfo:
    return ServerInfo(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token)


@pytest.fixture
def networks(io_loop: Any) -> Any:
    opened: list[PeerNetwork] = []
    yield opened

    async def close_all() -> None:
        for network in opened:
            await network.close()

    io_loop.run_sync(close_all)


async def network(
    networks: list[PeerNetwork], server: ServerInfo, peer_id: str, room: str = "lab", **options: Any
) -> PeerNetwork:
    signaling = SignalingClient(server, room, peer_id, backoff=Backoff(initial=0.05, maximum=0.2))
    options.setdefault("loopback", True)
    net = PeerNetwork(signaling, owns_signaling=True, **options)  # listening before it joins
    networks.append(net)
    await signaling.start()
    return net


async def pair(networks: list[PeerNetwork], server: ServerInfo, **options: Any) -> tuple[PeerLink, PeerLink]:
    alice = await network(networks, server, "alice", **options)
    bob = await network(networks, server, "bob", **options)
    to_bob = await alice.connect("bob", timeout=10)
    from_alice = await bob.accept(timeout=10)
    assert isinstance(to_bob, PeerLink) and isinstance(from_alice, PeerLink)  # no relay here: direct links
    return to_bob, from_alice


def assert_loopback_only(link: PeerLink) -> None:
    addresses = ice_addresses(link)
    assert loopback_only(addresses), addresses


async def test_text_objects_and_bytes_both_ways(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, from_alice = await pair(networks, server)
    assert to_bob.offerer and not from_alice.offerer
    # aiortc hands the answering side its channel already open: no `open` event follows,
    # and the link must not wait for one (it would hang here)
    assert from_alice.open and from_alice.channel is not None and from_alice.channel.readyState == "open"
    assert_loopback_only(to_bob)
    assert_loopback_only(from_alice)

    payloads: list[Any] = [
        "hello",
        "",
        "é" * 40_000,  # text longer than one message: a transfer
        {"rows": [1, 2.5, None, True], "name": "ünïcode"},
        [1, "two", {"three": 3}],
        42,
        None,
        b"",
        b"\x00\x01\xff" * 10,
        bytes(range(256)) * 3000,  # 768 KB: chunked
    ]
    for payload in payloads:
        await to_bob.send(payload)
    got = [await from_alice.recv(timeout=10) for _ in payloads]
    assert got == payloads
    await from_alice.send({"ack": True})
    assert await to_bob.recv(timeout=5) == {"ack": True}


async def test_objects_travel_as_json_never_pickle(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, _ = await pair(networks, server)
    with pytest.raises(TypeError, match="never pickle"):
        await to_bob.send({1, 2})
    with pytest.raises(TypeError):
        await to_bob.send(object())
    with pytest.raises(TypeError):
        await to_bob.send(float("nan"))  # not valid JSON: a browser could not read it


async def test_large_payload_progress_and_flow_control(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, from_alice = await pair(networks, server, chunk_size=16 * 1024, high_water=128 * 1024, low_water=32 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 7)
    sent: list[Progress] = []
    buffered: list[int] = []

    def on_progress(progress: Progress) -> None:
        sent.append(progress)
        assert to_bob.channel is not None
        buffered.append(to_bob.channel.bufferedAmount)

    received: list[Progress] = []
    from_alice.on("progress", received.append)
    sending = asyncio.ensure_future(to_bob.send(data, progress=on_progress))
    got = await from_alice.recv(timeout=60)
    await asyncio.wait_for(sending, 10)  # returns once bob confirmed it
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert sent[-1].done == sent[-1].total == len(data)
    assert [s.done for s in sent] == sorted(s.done for s in sent)
    # flow control: never much more than high_water waits in the channel
    assert max(buffered) <= 128 * 1024 + 16 * 1024
    assert received[-1].done == len(data) and received[-1].direction == "receive"


async def test_compression_for_compressible_data(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, from_alice = await pair(networks, server)
    text_like = b"timestamp,value\n" + b"".join(b"2024-01-01T00:00:%02d,%d\n" % (i % 60, i) for i in range(100_000))
    await to_bob.send(text_like, compress=True)
    assert await from_alice.recv(timeout=30) == text_like
    incompressible = os.urandom(500_000)
    await to_bob.send(incompressible, compress="auto")  # a sample does not shrink: sent as is
    assert await from_alice.recv(timeout=30) == incompressible
    await to_bob.send({"small": "object"}, compress=True)
    assert await from_alice.recv(timeout=5) == {"small": "object"}


async def test_glare_both_offer_at_once_gives_one_link(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    alice = await network(networks, server, "alice")
    bob = await network(networks, server, "bob")
    await alice.signaling.wait_for_peer("bob", 5)
    await bob.signaling.wait_for_peer("alice", 5)
    offers: list[str] = []
    for net in (alice, bob):
        net.signaling.on("signal", lambda s: offers.append(s.source) if s.kind == "offer" else None)
    to_bob, to_alice = await asyncio.gather(alice.connect("bob", timeout=15), bob.connect("alice", timeout=15))
    assert sorted(offers) == ["alice", "bob"]  # both offered: real glare
    # the lower peer_id's offer won: alice offered, bob answered; one connection each
    assert to_bob.offerer and not to_alice.offerer
    assert alice.links == {"bob": to_bob} and bob.links == {"alice": to_alice}
    await to_bob.send("over the winning link")
    assert await to_alice.recv(timeout=5) == "over the winning link"
    await to_alice.send(b"and back")
    assert await to_bob.recv(timeout=5) == b"and back"


async def test_connect_waits_for_the_peer_to_join(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    alice = await network(networks, server, "alice")
    connecting = asyncio.ensure_future(alice.connect("bob", timeout=15))
    await asyncio.sleep(0.3)
    assert not connecting.done()
    bob = await network(networks, server, "bob")
    link = await connecting
    await link.send("late but fine")
    assert await (await bob.accept(timeout=5)).recv(timeout=5) == "late but fine"
    with pytest.raises(PeerUnreachable, match="not in the room"):
        await alice.connect("nobody", timeout=0.3)


async def test_closing_a_link_closes_both_ends(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, from_alice = await pair(networks, server)
    await to_bob.send("last words")
    await to_bob.close()
    assert to_bob.pc.connectionState == "closed"
    assert await from_alice.recv(timeout=5) == "last words"
    with pytest.raises(PeerLinkClosed):
        await from_alice.recv(timeout=10)
    assert [m async for m in from_alice] == []  # iteration ends quietly on a clean close
    with pytest.raises(PeerLinkClosed):
        await to_bob.send("too late")


async def test_a_peer_leaving_mid_transfer_is_a_clear_error_on_both_sides(
    server: ServerInfo, networks: list[PeerNetwork]
) -> None:
    alice = await network(networks, server, "alice", high_water=256 * 1024, low_water=64 * 1024)
    bob = await network(networks, server, "bob")
    to_bob = await alice.connect("bob", timeout=10)
    from_alice = await bob.accept(timeout=10)
    assert isinstance(to_bob, PeerLink)
    closed_events: list[Any] = []
    to_bob.on("close", closed_events.append)
    started = asyncio.Event()
    from_alice.on("progress", lambda pr: started.set() if pr.done > 1_000_000 else None)
    sending = asyncio.ensure_future(to_bob.send(os.urandom(20 * 1024 * 1024)))
    receiving = asyncio.ensure_future(from_alice.recv())
    await asyncio.wait_for(started.wait(), 30)
    await bob.close()  # bob leaves the room in the middle of it

    with pytest.raises(PeerLinkClosed, match="in the middle of a transfer") as sender_error:
        await asyncio.wait_for(sending, 10)
    assert "MB" in str(sender_error.value)
    with pytest.raises(PeerLinkClosed, match=r"received") as receiver_error:
        await asyncio.wait_for(receiving, 10)
    assert "of 21.0 MB received" in str(receiver_error.value)
    assert closed_events and isinstance(closed_events[0], PeerLinkClosed)
    await asyncio.sleep(0.2)
    assert to_bob.pc.connectionState == "closed" and "bob" not in alice.links


async def test_peer_left_closes_the_link(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, _ = await pair(networks, server)
    bob = networks[1]
    await bob.signaling.close()  # leaves signaling; the data channel itself is still up
    with pytest.raises(PeerLeft, match="left the room"):
        await to_bob.recv(timeout=10)
    await asyncio.sleep(0.2)
    assert to_bob.pc.connectionState == "closed"


async def test_an_offer_on_an_existing_link_means_the_peer_started_again(server: ServerInfo, networks: list[PeerNetwork]) -> None:
    to_bob, _ = await pair(networks, server)
    alice = networks[0]
    old_bob = networks[1]
    # bob's kernel restarts: a new process (here: a new network) with the same peer_id
    await old_bob.close()
    with pytest.raises(PeerLinkClosed):
        await to_bob.recv(timeout=10)
    new_bob = await network(networks, server, "bob")
    to_alice = await new_bob.connect("alice", timeout=10)
    fresh = await alice.accept(timeout=10)
    await to_alice.send("I am back")
    assert await fresh.recv(timeout=5) == "I am back"


# -- a hostile peer: what it sends costs the receiver what it declared, at most ---------------

MiB = 1 << 20


def test_the_wire_format_round_trips_every_kind_and_compression() -> None:
    for data in ["é" * 70_000, b"\x00\xff" * 50_000, {"rows": list(range(20_000))}]:
        kind, payload = wire.encode_payload(data)
        for compress in (False, True):
            reader = wire.Reassembler()
            got = [reader.receive(message) for message, _ in wire.transfer_messages(9, kind, payload, 16 * 1024, compress)]
            assert got[-1] == wire.Payload(data, 9), compress
            assert got[0] == wire.Piece(0, len(payload)) and got[-2] == wire.Piece(len(payload), len(payload))
    reader = wire.Reassembler()
    assert reader.receive(wire.single_message(*wire.encode_payload({"a": 1}))) == wire.Payload({"a": 1})
    assert reader.receive(wire.id_message(Tag.DONE, 4)) == wire.Confirmed(4)
    assert reader.receive(wire.refusal_message(4, "too big")) == wire.Refused(4, "too big")


def test_the_reassembler_refuses_what_grows_past_its_declared_size() -> None:
    reader = wire.Reassembler(max_transfer_bytes=1000)
    # a zlib bomb declaring 10 bytes: refused at its first piece, which inflated to 11 bytes at most
    reader.receive(wire.start_message(1, Kind.BYTES, FLAG_ZLIB, 10))
    with pytest.raises(TransferRefused, match="more than the 10 bytes it declared") as refused:
        reader.receive(b"\x03" + zlib_bomb(4)[:60_000])
    assert refused.value.transfer == 1 and reader.incoming is None
    assert reader.receive(b"\x03" + b"rest of the bomb") is None  # pieces still on their way: dropped
    assert reader.receive(wire.id_message(Tag.END, 1)) is None
    # plain bytes beyond the declared size
    reader.receive(wire.start_message(2, Kind.BYTES, 0, 5))
    with pytest.raises(TransferRefused, match="more than the 5 bytes"):
        reader.receive(b"\x03" + b"123456")
    # a declared size over the receiver's limit: refused before any piece, naming the option
    with pytest.raises(
        TransferRefused, match=r"declares 1,001 bytes, over this side's limit of 1,000 bytes \(max_transfer_bytes"
    ):
        reader.receive(wire.start_message(3, Kind.BYTES, 0, 1001))
    # data after the end of a compressed stream, an incomplete one, fewer bytes than declared
    reader.receive(wire.start_message(4, Kind.BYTES, FLAG_ZLIB, 3))
    with pytest.raises(TransferRefused, match="after the end of its compressed stream"):
        reader.receive(b"\x03" + zlib.compress(b"abc") + b"more")
    reader.receive(wire.start_message(5, Kind.BYTES, FLAG_ZLIB, 3))
    reader.receive(b"\x03" + zlib.compress(b"abc")[:4])
    with pytest.raises(TransferRefused, match="incomplete"):
        reader.receive(wire.id_message(Tag.END, 5))
    reader.receive(wire.start_message(6, Kind.JSON, 0, 3))
    reader.receive(b"\x03" + b"[1")
    with pytest.raises(TransferRefused, match="2 bytes arrived instead of the 3"):
        reader.receive(wire.id_message(Tag.END, 6))
    reader.receive(wire.start_message(7, Kind.JSON, 0, 3))
    reader.receive(b"\x03" + b"[1,")
    with pytest.raises(TransferRefused, match="not the JSON it declared"):
        reader.receive(wire.id_message(Tag.END, 7))
    # a sender that gives up (ABORT without a reason): its pieces are dropped
    reader.receive(wire.start_message(8, Kind.BYTES, 0, 4))
    assert reader.receive(wire.id_message(Tag.ABORT, 8)) is None and reader.incoming is None


async def test_a_hostile_peer_sending_a_zlib_bomb_declared_as_10_bytes_is_refused(
    server: ServerInfo, networks: list[PeerNetwork]
) -> None:
    """The issue's figure: 10 bytes declared with compression delivered 768 MiB."""
    to_bob, from_mallory = await pair(networks, server)  # alice plays mallory: she writes raw messages
    channel = to_bob.channel
    assert channel is not None
    answers: list[bytes] = []
    channel.on("message", lambda m: answers.append(m) if isinstance(m, bytes) and m[:1] == bytes((Tag.ABORT,)) else None)
    bomb = zlib_bomb(768)
    with MemoryWatch() as memory:
        channel.send(wire.start_message(41, Kind.BYTES, FLAG_ZLIB, 10))
        for start in range(0, len(bomb), 60_000):
            channel.send(b"\x03" + bomb[start : start + 60_000])
        channel.send(wire.id_message(Tag.END, 41))
        channel.send("still here")
        with pytest.raises(TransferRefused, match="more than the 10 bytes it declared") as refused:
            await from_mallory.recv(timeout=30)
        assert await from_mallory.recv(timeout=30) == "still here"  # the link goes on
    assert memory.growth < 64 * MiB, f"the receiver grew by {memory.growth / MiB:.0f} MiB"
    assert "'alice'" in str(refused.value)  # who sent it
    await eventually(lambda: answers)
    (abort,) = answers
    assert wire.ID.unpack_from(abort, 1) == (41,) and b"more than the 10 bytes" in abort[5:]


async def test_a_transfer_over_the_receivers_limit_fails_on_both_sides_naming_the_option(
    server: ServerInfo, networks: list[PeerNetwork]
) -> None:
    alice = await network(networks, server, "alice")
    bob = await network(networks, server, "bob", max_transfer_bytes=MiB)
    to_bob = await alice.connect("bob", timeout=10)
    from_alice = await bob.accept(timeout=10)
    assert from_alice.max_transfer_bytes == MiB
    sent: list[int] = []
    with pytest.raises(
        TransferRefused, match=r"'bob' answered: .*over this side's limit of 1 MiB \(max_transfer_bytes"
    ) as refused:
        await to_bob.send(os.urandom(20 * MiB), progress=lambda pr: sent.append(pr.done))
    assert "declares 20 MiB" in str(refused.value)
    assert not sent or sent[-1] < 20 * MiB  # it stopped sending once refused
    with pytest.raises(TransferRefused, match="max_transfer_bytes"):
        await from_alice.recv(timeout=10)
    await to_bob.send(b"x" * (MiB // 2))  # under the limit: fine, on the same link
    assert await from_alice.recv(timeout=10) == b"x" * (MiB // 2)


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


# -- separate processes, a real Jupyter server ----------------------------------------------


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from iavicenne_ext.testing import JupyterProcess

    server = JupyterProcess(tmp_path_factory.mktemp("peer"), options={"broker": "memory"}, name="peers")
    server.launch().wait_serving()
    yield server
    server.stop()


def spawn(jupyter: Any, scenario: str, peer_id: str, other: str, room: str) -> subprocess.Popen[str]:
    env = {**os.environ, "IAVICENNE_URL": jupyter.url, "IAVICENNE_TOKEN": jupyter.token, "PEER_ROOM": room}
    return subprocess.Popen(
        [sys.executable, str(WORKER), scenario, peer_id, other],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def results(proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"worker hung:\n{out}\n{err[-3000:]}") from None
    found: dict[str, Any] = {"returncode": proc.returncode}
    for line in out.splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    assert "error" in found or "result" in found or found["returncode"] != 0, f"no result:\n{out}\n{err[-3000:]}"
    found["stderr"] = err
    return found


def test_two_processes_exchange_text_objects_and_20_mb(jupyter: Any) -> None:
    # both call connect() as soon as they see each other: a glare-prone start
    alice = spawn(jupyter, "exchange", "alice", "bob", "exchange")
    bob = spawn(jupyter, "exchange", "bob", "alice", "exchange")
    a, b = results(alice), results(bob)
    assert a["returncode"] == 0 and b["returncode"] == 0, f"alice: {a.get('error')}\nbob: {b.get('error')}"
    sent, got = a["result"], b["result"]
    assert got["text"] == sent["text"] and got["object"] == sent["object"]
    assert got["bytes_len"] == 20 * 1024 * 1024 == sent["bytes_len"]
    assert got["sha256"] == sent["sha256"]
    assert a["result"]["reply"] == "thanks, 20971520 bytes"
    assert sent["offerer"] != got["offerer"]  # exactly one side offered
    assert loopback_only(sent["ice"]) and loopback_only(got["ice"]), (sent["ice"], got["ice"])
    assert sent["progress_calls"] > 10


@pytest.mark.parametrize("dying", ["receiver", "sender"])
def test_a_process_dying_mid_transfer_is_a_clear_error_for_the_other(jupyter: Any, dying: str) -> None:
    room = f"dying-{dying}"
    if dying == "receiver":
        survivor = spawn(jupyter, "send-big", "alice", "bob", room)
        victim = spawn(jupyter, "recv-then-die", "bob", "alice", room)
    else:
        survivor = spawn(jupyter, "recv-big", "bob", "alice", room)
        victim = spawn(jupyter, "send-then-die", "alice", "bob", room)
    gone, left = results(victim), results(survivor, timeout=60)
    story = f"victim: {gone}\nsurvivor: {left}"
    assert gone["returncode"] == 3, story
    assert left["returncode"] == 0, story
    error = left["error"]
    assert error["type"] in ("PeerLeft", "PeerLinkClosed"), story
    assert "in the middle of a transfer" in error["message"], story
    assert error["seconds"] < 15, story  # a clear error soon, not a hang


async def test_a_peer_joined_read_with_the_joined_snapshot_is_kept() -> None:
    """`joined` and a `peer-joined` sent right after it arrive in one read: the peer must
    stay in `peers` (the snapshot was applied after the wait, and undid the peer-joined:
    each side then waited for the other, "not in the room", while their link was open)."""
    bob = SignalingClient(ServerInfo("http://127.0.0.1:9/", "t"), "glare", "bob")
    written: list[str] = []
    bob._write = lambda ws, data: written.append(data)  # type: ignore[method-assign]
    seen: list[tuple[str, str]] = []
    bob.on("peer", lambda event: seen.append((event.kind, event.peer_id)))
    restoring = asyncio.ensure_future(bob._restore(None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    ref = json.loads(written[0])["ref"]
    # what the server wrote, in this order, handled in one go as the reader does
    bob._dispatch({"type": p.JOINED, "ref": ref, "room": "glare", "peer_id": "bob", "peers": [], "peer_identities": {}})
    bob._dispatch({"type": p.PEER_JOINED, "room": "glare", "peer_id": "alice", "identity": {"username": "alice"}})
    await restoring
    assert bob.peers == {"alice"}
    assert bob.identities == {"alice": {"username": "alice"}}
    assert seen == [("joined", "alice")]
    await bob.wait_for_peer("alice", timeout=1)
