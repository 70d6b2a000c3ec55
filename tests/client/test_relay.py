"""Peer links through the server when no direct path exists (`iavicenne.relay`): relay
frames over the signaling socket.

The first test blocks UDP: it runs again in a network namespace of its own
(`network_namespace`) where a routing rule drops every UDP datagram (``ip rule ...
ipproto udp blackhole``; TCP, and so the Jupyter server, still works), so ICE really
fails, and a DataFrame still reaches the other kernel, identical, through the server.
The others make ICE fail by giving the two peers local addresses that cannot reach each
other (alice's link tries loopback candidates only, bob offers none), which takes no
namespace: the figures (relay against direct MB/s), a server that rate-limits the relay
(back-pressure, not failure), and a hostile member (mallory) who forges relay frames.

Two identities (alice and bob, with tokens of their own: `room_support.TwoAnalysts`) and
mallory with the server's own token.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from typing import Any

import network_namespace
import pytest
from room_support import with_analysts

from iavicenne import Backoff, join
from iavicenne.client import CONTROL
from iavicenne.room import RoomSession

FAST = Backoff(initial=0.05, maximum=0.2)
TOKENS = {"alice": "alice-token", "bob": "bob-token"}
UNREACHABLE = ["192.0.2.77"]  # TEST-NET-1, not an address of this machine: nothing to gather
MB = 1e6


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


def session(opened: list[Any], base: str, room: str, who: str, *, token: str | None = None, **kwargs: Any) -> RoomSession:
    made = join(room, user_id=who, url=base, token=token or TOKENS[who], display=False, backoff=FAST, **kwargs)
    opened.append(made)
    return made


def frame_of(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(rows)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": rng.random(rows),
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], rows)),
            "day": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D"),
        }
    )


async def share(alice: RoomSession, bob: RoomSession, rows: int) -> tuple[Any, Any, float, int]:
    """alice shares a DataFrame of `rows` rows with bob: (sent, received, seconds, bytes)."""
    from iavicenne import share as sharing

    frame = frame_of(rows)
    size = len(sharing.pack_dataframe(frame, "measurements"))
    to_bob = alice.peer("bob")
    at_bob = bob.peer("alice")
    await to_bob.ready(60)
    started = time.monotonic()
    sending = to_bob.send_dataframe(frame, "measurements")
    received = await at_bob.receive_dataframe(120)
    await sending
    return frame, received, time.monotonic() - started, size


def block_udp() -> None:
    """Drop every UDP datagram in this network namespace, loopback's included (policy
    routing: a blackhole rule ahead of the local table); TCP goes on as before."""
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    assert ip is not None
    for args in (["rule", "add", "pref", "100", "lookup", "local"], ["rule", "del", "pref", "0"]):
        subprocess.run([ip, *args], check=True, capture_output=True)
    subprocess.run([ip, "rule", "add", "pref", "10", "ipproto", "udp", "blackhole"], check=True, capture_output=True)


def udp_blocked() -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.3)
        try:
            sender.sendto(b"x", receiver.getsockname())
            receiver.recv(1)
        except OSError:
            return True
        return False


@pytest.mark.timeout(170)
def test_with_udp_blocked_a_dataframe_goes_through_the_relay_identical(request: pytest.FixtureRequest) -> None:
    if not network_namespace.inside():
        network_namespace.run_inside(request, timeout=160)
        return
    import pandas as pd

    block_udp()
    assert udp_blocked() and network_namespace.interfaces() == {"lo"}
    base, opened, io_loop = (request.getfixturevalue(name) for name in ("base", "opened", "io_loop"))

    async def scenario() -> None:
        # join()'s defaults: both links offer every local address (loopback here) and try
        # directly first; no datagram arrives, ICE does not succeed within relay_after
        # (10 s; aioice itself would give up after about 40 s), and the link goes through
        # the server
        alice = await session(opened, base, "no-udp", "alice")
        bob = await session(opened, base, "no-udp", "bob")
        await alice.wait_for_member("bob")
        await bob.peer_network()
        started = time.monotonic()
        # both open the link at once, as the demos do: one direct attempt, then one relay
        link, back = await asyncio.gather(alice.peer("bob").ready(60), bob.peer("alice").ready(60))
        opened_after = time.monotonic() - started
        assert link.path == back.path == "relay", (link.link, back.link)
        assert link.link is not None and back.link is not None and link.link.link_id == back.link.link_id  # one link
        assert opened_after < 20, opened_after
        frame, received, seconds, size = await share(alice, bob, 300_000)
        pd.testing.assert_frame_equal(received, frame)  # identical: values, dtypes, index
        at_bob = bob.peers["alice"]
        assert at_bob.path == "relay"
        assert (
            "relayed through the server" in link.panel.header.value and "relayed through the server" in at_bob.panel.header.value
        )
        (out_row,) = link.panel.transfers.children
        (in_row,) = at_bob.panel.transfers.children
        assert out_row.bar.value == in_row.bar.value == 1.0 and in_row.status.value == "received"
        assert alice.errors == bob.errors == []
        print(
            f"FIGURE relay with UDP blocked: open after {opened_after:.1f} s, {size / MB:.1f} MB in {seconds:.2f} s = {size / MB / seconds:.2f} MB/s"
        )

    io_loop.run_sync(scenario, timeout=150)


@pytest.mark.timeout(120)
async def test_relay_and_direct_move_the_same_dataframe(base: str, opened: list[Any]) -> None:
    """The figures: a DataFrame over a direct link and over the relay (ICE made to fail:
    alice tries loopback candidates only, bob offers none). 12 MB through the relay is
    past the pacer's 4 MiB burst: what it measures is the sustained rate."""
    import pandas as pd

    rows = 500_000
    alice = await session(opened, base, "direct", "alice", loopback=True)
    bob = await session(opened, base, "direct", "bob", loopback=True)
    await alice.wait_for_member("bob")
    sent, received, direct_seconds, size = await share(alice, bob, rows)
    pd.testing.assert_frame_equal(received, sent)
    assert alice.peers["bob"].path == "direct"

    carol = await session(opened, base, "relayed", "alice", loopback=True, relay_after=5)
    dave = await session(opened, base, "relayed", "bob", host_addresses=UNREACHABLE, relay_after=5)
    await carol.wait_for_member("bob")
    sent, received, relay_seconds, size = await share(carol, dave, rows)
    pd.testing.assert_frame_equal(received, sent)
    assert carol.peers["bob"].path == dave.peers["alice"].path == "relay"
    direct, relayed = size / MB / direct_seconds, size / MB / relay_seconds
    print(f"FIGURE {size / MB:.1f} MB DataFrame: direct {direct:.1f} MB/s, relay {relayed:.2f} MB/s")
    # the relay keeps under the server's byte budget (1 MiB/s per identity by default)
    assert relayed < 1.6 * (1 << 20) / MB + 4 * (1 << 20) / MB / relay_seconds


class TestAServerThatRateLimits:
    @pytest.fixture
    def iavicenne_config(self) -> dict[str, Any]:
        # frames per second: 100 by default; here low enough that the relay runs into it
        return {"messages_per_second": 8, "burst": 8}

    @pytest.mark.timeout(120)
    async def test_slows_the_relay_down_without_failing_it(self, base: str, opened: list[Any]) -> None:
        import pandas as pd

        alice = await session(opened, base, "paced", "alice", loopback=True, relay_after=3)
        bob = await session(opened, base, "paced", "bob", host_addresses=UNREACHABLE, relay_after=3)
        await alice.wait_for_member("bob")
        link = await alice.peer("bob").ready(60)
        assert link.path == "relay" and link.link is not None
        link.link.max_message_size = 16 * 1024  # many small frames: past 8 a second
        sent, received, _seconds, _size = await share(alice, bob, 20_000)
        pd.testing.assert_frame_equal(received, sent)
        for text in ("one", "two", "three"):
            await link.send(text)
        assert [await bob.peers["alice"].receive(30) for _ in range(3)] == ["one", "two", "three"]
        relay = alice._links.relay
        assert relay is not None and relay.pacer.slowdowns >= 1  # the server said "not now", and it waited
        assert alice.errors == [] and bob.errors == []


@pytest.mark.timeout(120)
async def test_a_member_cannot_forge_relay_frames(base: str, opened: list[Any], server_token: str) -> None:
    """mallory writes relay frames as if from alice's kernel, and opens a relay of her own
    to send what bob's bounds refuse: bob drops the forgeries and refuses the rest; the
    link with alice goes on."""
    from iavicenne import TransferRefused

    alice = await session(opened, base, "forged", "alice", loopback=True, relay_after=3)
    bob = await session(opened, base, "forged", "bob", host_addresses=UNREACHABLE, relay_after=3, max_transfer_bytes=1 << 20)
    mallory = await session(opened, base, "forged", "mallory", token=server_token, loopback=True, relay_after=3)
    await alice.wait_for_member("bob")
    link = await alice.peer("bob").ready(60)
    assert link.link is not None and link.path == "relay"
    alice_peer = (await alice.peer_network()).peer_id
    bob_peer = (await bob.peer_network()).peer_id
    link_id = link.link.link_id  # say she learnt it: it still does not make her alice
    # relay frames go over the signaling socket: the server names her as their source
    mallory_signaling = (await mallory.peer_network()).signaling
    forged = {"link": link_id, "from": alice_peer, "to": bob_peer}
    await mallory_signaling.send_relay(bob_peer, {CONTROL: "relay-data", **forged, "n": 1, "t": "forged text"})
    await mallory_signaling.send_relay(bob_peer, {CONTROL: "relay-close", **forged, "reason": "forged close"})
    await mallory_signaling.send_relay(
        bob_peer, {CONTROL: "relay-open", "link": "x" * 65, "from": "mallory#000001", "to": bob_peer}
    )
    await link.send("the real one")
    at_bob = bob.peers["alice"]
    assert await at_bob.receive(20) == "the real one"
    assert at_bob.link is not None and at_bob.link.open

    # her own relay: garbage base64 closes her link only; a transfer over the bound is refused
    to_bob = await mallory.peer("bob").ready(60)
    assert to_bob.path == "relay"
    with pytest.raises(TransferRefused, match="max_transfer_bytes"):
        await to_bob.send(b"\x00" * (2 << 20))
    assert to_bob.link is not None
    mine = to_bob.link
    await mallory_signaling.send_relay(
        bob_peer,
        {
            CONTROL: "relay-data",
            "link": mine.link_id,
            "from": mine.network.peer_id,
            "to": bob_peer,
            "n": 999,
            "b": base64.b64encode(b"x").decode(),
        },
    )
    await asyncio.sleep(0.5)
    await link.send("still here")
    assert await at_bob.receive(20) == "still here"
    assert alice.errors == []


@pytest.mark.timeout(60)
async def test_a_kernel_that_takes_no_relay_is_said_so_in_one_sentence(
    base: str, opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from iavicenne import PeerUnreachable, peer

    monkeypatch.setattr(peer, "RELAY_ANSWER", 2.0)
    alice = await session(opened, base, "no-relay", "alice", loopback=True, relay_after=2)
    bob = await session(opened, base, "no-relay", "bob", host_addresses=UNREACHABLE, relay=False)
    await alice.wait_for_member("bob")
    await bob.peer_network()
    started = time.monotonic()
    with pytest.raises(PeerUnreachable, match=r"did not answer the relay within 2 s .*TURN server") as failed:
        await alice.peer("bob").ready(60)
    assert time.monotonic() - started < 15
    assert "\n" not in str(failed.value) and "failed" in alice.peers["bob"].panel.header.value


@pytest.mark.timeout(90)
async def test_a_relayed_sender_is_told_when_the_target_leaves(base: str, server_token: str, opened: list[Any]) -> None:
    """Two networks with ``relay=True`` (the relay over their own signaling sockets) and no
    path between them: bob leaves signaling in the middle of a transfer, and alice's send
    fails saying so (`PeerLeft`), never a hang."""
    from iavicenne import PeerLeft, ServerInfo, SignalingClient
    from iavicenne.peer import PeerNetwork

    server = ServerInfo(base, server_token)

    async def network(peer_id: str, **options: Any) -> PeerNetwork:
        signaling = SignalingClient(server, "leaving", peer_id, backoff=FAST)
        made = PeerNetwork(signaling, owns_signaling=True, relay=True, relay_after=2, **options)
        opened.append(made)
        await signaling.start()
        return made

    alice = await network("alice#a11ce0", loopback=True)
    bob = await network("bob#b0b001", host_addresses=UNREACHABLE)
    to_bob = await alice.connect("bob#b0b001", timeout=30)
    from_alice = await bob.accept(timeout=30)
    assert to_bob.path == from_alice.path == "relay"
    started = asyncio.Event()
    from_alice.on("progress", lambda progress: started.set() if progress.done > 500_000 else None)
    sending = asyncio.ensure_future(to_bob.send(b"\x01" * (8 << 20)))
    await asyncio.wait_for(started.wait(), 30)
    await bob.signaling.close()  # bob leaves the room; its link is still up on its side
    with pytest.raises(PeerLeft, match="left the room") as left:
        await asyncio.wait_for(sending, 15)
    assert "in the middle of a transfer" in str(left.value)
