"""Peer links go to who holds the name: the server vouches for who sends each offer, answer
and relayed frame (`source_identity`), and ``room.peer("carol")`` takes a link only from
the identity that holds ``carol`` in the room's presence (`iavicenne.peer`).

Real aiortc peers over loopback, against pytest-jupyter's server with two identities of
their own (alice and bob: `room_support.TwoAnalysts`) and the server's owner (the
server's token, here holding the name ``carol``). bob is the hostile one: he takes
carol's peer id in the room's signaling, offers to alice from it, and tries a look-alike
of alice's name; none of it makes alice's kernel link to him as someone else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from room_support import eventually, with_analysts

from iavicenne import Backoff, NameTaken, PeerIdentityMismatch, PeerUnreachable, ServerInfo, SignalingClient, join
from iavicenne.panels import MemberRow, named
from iavicenne.peer import PeerNetwork
from iavicenne.room import RoomSession

FAST = Backoff(initial=0.05, maximum=0.2)
TOKENS = {"alice": "alice-token", "bob": "bob-token"}
UNREACHABLE = ["192.0.2.77"]  # TEST-NET-1: bob gathers nothing alice can reach, ICE fails


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


def session(opened: list[Any], base: str, room: str, who: str, *, token: str | None = None, **kwargs: Any) -> RoomSession:
    kwargs.setdefault("loopback", True)
    kwargs.setdefault("user_id", who)
    made = join(room, url=base, token=token or TOKENS[who], display=False, backoff=FAST, **kwargs)
    opened.append(made)
    return made


async def signaling_as(opened: list[Any], base: str, room: str, peer_id: str, token: str) -> PeerNetwork:
    """A bare peer in `room`'s signaling as `peer_id`: what a hostile kernel can open."""
    signaling = SignalingClient(ServerInfo(base, token), room, peer_id, backoff=FAST)
    network = PeerNetwork(signaling, owns_signaling=True, loopback=True)
    opened.append(network)
    await signaling.start()
    return network


@pytest.mark.timeout(90)
async def test_a_link_between_two_analysts_shows_each_others_verified_identity(base: str, opened: list[Any]) -> None:
    alice = await session(opened, base, "lab", "alice")
    bob = await session(opened, base, "lab", "bob")
    await alice.wait_for_member("bob")
    to_bob = await alice.peer("bob").ready(60)
    await eventually(lambda: "alice" in bob.peers and bob.peers["alice"].link is not None, what="alice's link at bob's")
    at_bob = bob.peers["alice"]
    assert to_bob.path == at_bob.path == "direct"
    assert to_bob.identity == {"username": "bob", "name": "bob", "display_name": "Bob"}
    assert at_bob.identity == {"username": "alice", "name": "alice", "display_name": "Alice"}
    assert to_bob.link is not None and to_bob.link.identity == to_bob.identity  # PeerLink.identity
    await to_bob.send("hello bob")
    assert await at_bob.receive(20) == "hello bob"
    assert alice.errors == bob.errors == []


@pytest.mark.timeout(90)
async def test_a_relayed_link_carries_the_verified_identity_too(base: str, opened: list[Any]) -> None:
    alice = await session(opened, base, "relayed", "alice", relay_after=3)
    bob = await session(opened, base, "relayed", "bob", host_addresses=UNREACHABLE, relay_after=3)
    await alice.wait_for_member("bob")
    to_bob = await alice.peer("bob").ready(60)
    assert to_bob.path == "relay"
    assert to_bob.identity is not None and to_bob.identity["username"] == "bob"
    await eventually(lambda: "alice" in bob.peers and bob.peers["alice"].link is not None, what="the relay at bob's")
    at_bob = bob.peers["alice"]
    assert at_bob.identity is not None and at_bob.identity["username"] == "alice"
    await to_bob.send({"n": 1})
    assert await at_bob.receive(20) == {"n": 1}


@pytest.mark.timeout(90)
async def test_bob_on_carols_peer_id_cannot_be_linked_as_carol(base: str, opened: list[Any], server_token: str) -> None:
    """carol (the server's owner) is in the room from a script (no peer of her own); bob
    takes ``carol#c0ffee`` in the room's signaling. alice's ``room.peer("carol")`` refuses
    him at once, naming who is who; his offer to alice is never answered."""
    alice = await session(opened, base, "q3", "alice")
    carol = await session(opened, base, "q3", "carol", token=server_token, peers=False)
    await alice.wait_for_member("carol")
    owner = carol.members["carol"]["identity"]["username"]
    assert owner not in ("bob", "carol")
    impostor = await signaling_as(opened, base, "q3", "carol#c0ffee", "bob-token")
    await alice.peer_network()
    await eventually(
        lambda: alice.network is not None and "carol#c0ffee" in alice.network.peers, what="bob's peer in alice's signaling"
    )

    with pytest.raises(PeerIdentityMismatch) as refused:
        await alice.peer("carol").ready(20)
    message = str(refused.value)
    assert "'carol#c0ffee' is held by 'bob'" in message and f"'carol' in room 'q3' is {owner!r}" in message
    assert refused.value.found is not None and refused.value.found["username"] == "bob"
    assert impostor.links == {} and alice.network is not None and alice.network.links == {}

    # had signaling not said who holds it, his answer would: the offer goes, his answer is refused
    alice.network.signaling.identities.pop("carol#c0ffee")
    with pytest.raises(PeerIdentityMismatch, match="'carol#c0ffee' is held by 'bob'"):
        await alice.peer("carol").ready(20)
    alice_peer = alice.peer_id
    assert alice_peer is not None
    assert alice_peer in impostor.links  # he did get the offer, and answered it
    await eventually(lambda: alice.network is not None and alice.network.links == {}, what="alice's attempt closed")
    await impostor.links[alice_peer].close()

    # he offers to alice from carol's peer id: she does not answer, and says why
    with pytest.raises(PeerUnreachable, match=r"did not open|not in the room"):
        await impostor.connect(alice_peer, timeout=4)
    await eventually(lambda: any(isinstance(e, PeerIdentityMismatch) for e in alice.errors), what="the refusal in alice's panel")
    assert (
        "refused a peer link" in alice.panel.errors.text.value and "is held by &#x27;bob&#x27;" in alice.panel.errors.text.value
    )
    assert not any(s.link is not None and s.link.open for s in alice.peers.values())
    # alice's link with the real bob is not disturbed by any of it
    await session(opened, base, "q3", "bob")
    await alice.wait_for_member("bob")
    to_bob = await alice.peer("bob").ready(60)
    assert to_bob.identity is not None and to_bob.identity["username"] == "bob"


@pytest.mark.timeout(90)
async def test_a_peer_id_like_bobs_held_by_someone_else_is_passed_over(base: str, opened: list[Any], server_token: str) -> None:
    """The server's owner tries ``bob#c0ffee`` beside bob's own kernel peer: the server
    refuses it (bob's username is bob's). Had a server let it through (say one still on
    the seed's rules), alice's ``room.peer("bob")`` still goes to bob's own, never offers
    to the other, and her panel lists only bob's connection for him."""
    alice = await session(opened, base, "pair", "alice")
    bob = await session(opened, base, "pair", "bob")
    await alice.wait_for_member("bob")
    bobs_own = (await bob.peer_network()).peer_id
    with pytest.raises(NameTaken, match="looks like 'bob'"):
        await signaling_as(opened, base, "pair", "bob#c0ffee", server_token)

    network = await alice.peer_network()
    await eventually(lambda: bobs_own in network.peers, what="bob's peer")
    owner = {"username": "root-or-whoever", "name": "bob", "display_name": "bob"}
    network.signaling.peers.add("bob#c0ffee")  # what a lax server would have told alice
    network.signaling.identities["bob#c0ffee"] = owner
    assert [c.peer_id for c in alice.connections("bob")] == [bobs_own]
    assert "is held by 'root-or-whoever'" in str(alice.impostors("bob")[0])
    to_bob = await alice.peer("bob").ready(60)
    assert to_bob.peer_id == bobs_own and to_bob.identity is not None and to_bob.identity["username"] == "bob"
    assert "bob#c0ffee" not in network.links  # nothing was ever offered to it
    with pytest.raises(PeerIdentityMismatch, match="is held by 'root-or-whoever'"):
        await alice.peer("bob", connection="bob#c0ffee").ready(20)  # asked for by name: refused all the same


@pytest.mark.timeout(60)
async def test_a_look_alike_of_alices_name_is_refused_to_bob(base: str, opened: list[Any]) -> None:
    """alice's name with a Cyrillic a (U+0430) for the Latin one: the server refuses bob that name in the room and as a
    peer id, so there is nothing for alice's kernel to mistake for herself or link to."""
    alice = await session(opened, base, "mirror", "alice")
    await alice.ready()
    look_alike = "\u0430lice"
    with pytest.raises(NameTaken):
        await session(opened, base, "mirror", "bob", user_id=look_alike, peers=False).ready()
    with pytest.raises(NameTaken):
        await signaling_as(opened, base, "mirror", f"{look_alike}#c0ffee", "bob-token")
    assert sorted(alice.members) == ["alice"]


@pytest.mark.timeout(60)
async def test_the_panel_shows_the_verified_username_beside_a_name_not_its_own(
    base: str, opened: list[Any], server_token: str
) -> None:
    alice = await session(opened, base, "names", "alice", peers=False)
    carol = await session(opened, base, "names", "carol", token=server_token, peers=False)
    await alice.wait_for_member("carol")
    owner = carol.members["carol"]["identity"]["username"]
    await eventually(lambda: "carol" in alice.panel.rows, what="carol's row")
    label = alice.panel.rows["carol"].label.value
    assert f"@{owner}" in label and "iav-identity" in label
    assert "@alice" not in alice.panel.rows["alice"].label.value  # her own name: nothing to add
    await carol.send("hi, I am carol")
    await alice.wait_for_message(lambda m: m.text == "hi, I am carol")
    await eventually(lambda: f"carol (@{owner})" in alice.panel.conversation.value, what="the message's verified sender")

    # whatever an identity provider calls its users, it reaches the page as text
    row = MemberRow("carol", me=False)
    row.show({"user_id": "carol", "identity": {"username": "<img src=x onerror=alert(1)>", "display_name": "<b>x</b>"}})
    assert "<img" not in row.label.value and "&lt;img src=x onerror=alert(1)&gt;" in row.label.value
    assert "<b>x</b>" not in row.label.value
    assert named("carol", {"username": "carol"}) == "carol" and named("carol", {"username": "bob"}) == "carol (@bob)"


async def test_without_a_verified_identity_a_network_takes_none(base: str, opened: list[Any]) -> None:
    """The check itself: who holds a name is the room's presence, compared by username."""
    alice = await session(opened, base, "check", "alice", peers=False)
    bob = await session(opened, base, "check", "bob", peers=False)
    await alice.wait_for_member("bob")
    bob_identity = alice.members["bob"]["identity"]
    alice.verify_peer("bob#c0ffee", bob_identity)  # accepted: no exception
    alice.verify_peer("bob", {**bob_identity, "display_name": "anything"})
    for identity, why in (
        (None, "did not say who holds"),
        ({"username": "alice"}, "is held by 'alice'"),
        ({"username": "b\u043eb"}, "is held by 'b\u043eb'"),
    ):
        with pytest.raises(PeerIdentityMismatch, match=why):
            alice.verify_peer("bob#c0ffee", identity)
    with pytest.raises(PeerIdentityMismatch, match="nobody holds 'dave'"):
        alice.verify_peer("dave#c0ffee", {"username": "dave"})
    await bob.leave()
    await eventually(lambda: "bob" not in alice.members, what="bob gone")
    with pytest.raises(PeerIdentityMismatch, match="nobody holds 'bob'"):
        alice.verify_peer("bob#c0ffee", bob_identity)
    await asyncio.sleep(0)
