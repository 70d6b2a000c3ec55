"""The signaling endpoint on a real Jupyter server: every row of SEED-PROTOCOL.md's
signaling table, then what this project adds, then bad input.

The server runs with `room_support.TwoAnalysts`: `alice-token` and `bob-token` are two
different Jupyter users (as on a JupyterHub); the server's own token is a third one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest
from room_support import ALICE, BOB, Connect, assert_timestamped, closed, of_type, with_analysts

import iavicenne_protocol as p
from iavicenne_ext.ice import turn_credentials
from iavicenne_ext.testing import WSClient

PATH = "iavicenne/ws/signaling"
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\n"}
CANDIDATE = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
TURN_SECRET = "shared-with-coturn"


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    return {
        "ice_servers": [
            {"urls": ["stun:stun.example.org:3478"]},
            {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]},
            {"urls": "turn:fixed.example.org", "username": "u", "credential": "c"},
        ],
        "turn_secret": TURN_SECRET,
        "turn_ttl": 600,
    }


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def peer(connect: Connect, peer_id: str, room: str = "r1", **kwargs: Any) -> tuple[WSClient, dict[str, Any]]:
    """A signaling connection that joined `room` as `peer_id`: the client and its `joined`."""
    client = await connect(PATH, **kwargs)
    await client.send({"type": "join", "payload": {"peer_id": peer_id}, "room": room})
    joined = await client.expect("joined")
    return client, joined


def relay(kind: str, target: str | None, room: str | None = "r1", **extra: Any) -> dict[str, Any]:
    body = {"offer": ("offer", OFFER), "answer": ("answer", ANSWER), "ice-candidate": ("candidate", CANDIDATE)}[kind]
    payload: dict[str, Any] = {body[0]: body[1]}
    if target is not None:
        payload["target_peer_id"] = target
    frame: dict[str, Any] = {"type": kind, "payload": payload, **extra}
    if room is not None:
        frame["room"] = room
    return frame


# -- the seed's table, row by row ---------------------------------------------------------


async def test_join_answers_joined_and_tells_every_other_peer(connect: Connect) -> None:
    p2, _ = await peer(connect, "p2")
    p3, _ = await peer(connect, "p3")
    await p2.expect("peer-joined")
    p1 = await connect(PATH)
    await p1.send({"type": "join", "payload": {"peer_id": "p1"}, "room": "r1"})
    joined = await p1.recv()
    assert joined["type"] == "joined"
    assert joined["room"] == "r1"
    assert joined["peer_id"] == "p1"
    for other in (p2, p3):
        seen = await other.expect("peer-joined")
        assert seen["peer_id"] == "p1"
    # a peer does not receive its own peer-joined
    assert of_type(await p1.silent(), "peer-joined") == []
    for client in (p1, p2, p3):
        assert_timestamped(client.seen)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "join", "payload": {"peer_id": "p1"}}, "Room ID is required"),
        ({"type": "join", "payload": {}, "room": "r1"}, "peer_id is required"),
        ({"type": "join", "room": "r1"}, "peer_id is required"),
        ({"type": "join", "payload": {"peer_id": ""}, "room": "r1"}, "peer_id is required"),
    ],
    ids=["no-room", "no-peer_id", "no-payload", "empty-peer_id"],
)
async def test_join_without_room_or_peer_id_is_an_error(connect: Connect, frame: dict[str, Any], message: str) -> None:
    other, _ = await peer(connect, "p2")
    client = await connect(PATH)
    await client.send(frame)
    error = await client.recv()
    assert error["type"] == "error"
    assert error["message"] == message
    assert await other.silent() == []


async def test_leave_answers_nothing_and_tells_the_others(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.expect("peer-joined")
    await p2.send({"type": "leave"})
    left = await p1.expect("peer-left")
    assert left["peer_id"] == "p2"
    assert await p2.silent() == []


@pytest.mark.parametrize(("kind", "field"), [("offer", "offer"), ("answer", "answer"), ("ice-candidate", "candidate")])
async def test_relays_go_only_to_the_target(connect: Connect, kind: str, field: str) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    p3, _ = await peer(connect, "p3")
    await p1.send(relay(kind, "p2"))
    got = await p2.expect(kind)
    assert got[field] == relay(kind, "p2")["payload"][field]
    assert got["source_peer_id"] == "p1"
    assert of_type(await p3.silent(), kind) == []
    assert of_type(await p1.silent(0.1), kind) == []
    assert of_type(p1.seen, "error") == []


@pytest.mark.parametrize("kind", ["offer", "answer", "ice-candidate"])
async def test_relays_before_join_are_an_error(connect: Connect, kind: str) -> None:
    client = await connect(PATH)
    await client.send(relay(kind, "p2"))
    error = await client.recv()
    assert error["type"] == "error"
    assert error["message"] == "Not connected to any room"
    assert error["code"] == p.ErrorCode.NOT_IN_ROOM


@pytest.mark.parametrize(("kind", "label"), [("offer", "offer"), ("answer", "answer"), ("ice-candidate", "ICE candidate")])
async def test_relays_without_target_are_an_error(connect: Connect, kind: str, label: str) -> None:
    p1, _ = await peer(connect, "p1")
    await p1.send(relay(kind, None))
    error = await p1.expect("error")
    assert error["message"] == f"target_peer_id is required for {label}"
    assert error["code"] == p.ErrorCode.TARGET_REQUIRED


async def test_closing_the_socket_tells_the_others(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.expect("peer-joined")
    p2.close()
    left = await p1.expect("peer-left")
    assert left["peer_id"] == "p2"


async def test_a_peer_does_not_receive_its_own_peer_left(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.send({"type": "leave"})
    await p2.expect("peer-left")
    assert of_type(await p1.silent(), "peer-left") == []


# -- additions ---------------------------------------------------------------------------


async def test_joined_lists_the_peers_already_there(connect: Connect) -> None:
    _, first = await peer(connect, "p2")
    assert first["peers"] == []
    await peer(connect, "p3")
    _, joined = await peer(connect, "p1")
    assert joined["peers"] == ["p2", "p3"]


async def test_a_relay_to_an_absent_peer_is_an_error(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    await p1.send(relay("offer", "ghost", ref="o-1"))
    error = await p1.expect("error")
    assert error["code"] == p.ErrorCode.UNKNOWN_PEER
    assert error["ref"] == "o-1"
    assert "ghost" in error["message"]


async def test_a_relay_with_ref_is_acknowledged(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.send(relay("answer", "p2", ref="a-1"))
    ack = await p1.expect("ack")
    assert ack["ref"] == "a-1"
    await p2.expect("answer")


async def test_a_peer_that_left_cannot_be_reached(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p2.send({"type": "leave"})
    await p1.expect("peer-left")
    await p1.send(relay("offer", "p2"))
    assert (await p1.expect("error"))["code"] == p.ErrorCode.UNKNOWN_PEER


async def test_a_peer_id_held_by_another_user_is_refused(connect: Connect) -> None:
    alice, _ = await peer(connect, "analyst", headers=ALICE)
    bob = await connect(PATH, headers=BOB)
    await bob.send({"type": "join", "payload": {"peer_id": "analyst"}, "room": "r1", "ref": "j"})
    error = await bob.expect("error")
    assert error["code"] == p.ErrorCode.NAME_TAKEN
    assert error["ref"] == "j"
    assert of_type(await alice.silent(), "peer-joined") == []
    # bob is in no room: a relay is refused, and another peer_id works
    await bob.send(relay("offer", "analyst"))
    assert (await bob.expect("error"))["code"] == p.ErrorCode.NOT_IN_ROOM
    _, joined = await peer(connect, "bob", headers=BOB)
    assert joined["peers"] == ["analyst"]
    # the same peer_id in another room is free
    await peer(connect, "analyst", room="r2", headers=BOB)


async def test_the_same_user_reconnecting_takes_its_peer_id_over(connect: Connect) -> None:
    other, _ = await peer(connect, "p2", headers=BOB)
    old, _ = await peer(connect, "p1", headers=ALICE)
    await other.expect("peer-joined")
    new, joined = await peer(connect, "p1", headers=ALICE)
    assert joined["peers"] == ["p2"]

    notice = await old.expect("error")
    assert notice["code"] == p.ErrorCode.SUPERSEDED
    assert await closed(old) == (p.CLOSE_SUPERSEDED, "superseded by a newer connection of the same peer")
    again = await other.expect("peer-joined")
    assert again["peer_id"] == "p1" and again["rejoined"] is True

    # relays reach the new connection only; the old one's close said nothing to the room
    await other.send(relay("offer", "p1"))
    assert (await new.expect("offer"))["source_peer_id"] == "p2"
    assert of_type(new.seen, "error") == []  # the notice went to the old connection only
    assert of_type(await other.silent(), "peer-left") == []
    # and when the new one leaves, p1 is gone
    await new.send({"type": "leave"})
    assert (await other.expect("peer-left"))["peer_id"] == "p1"


async def test_joining_another_room_leaves_the_first(connect: Connect) -> None:
    watcher, _ = await peer(connect, "w")
    p1, _ = await peer(connect, "p1")
    await watcher.expect("peer-joined")
    await p1.send({"type": "join", "payload": {"peer_id": "p1"}, "room": "r2"})
    assert (await p1.expect("joined"))["room"] == "r2"
    assert (await watcher.expect("peer-left"))["peer_id"] == "p1"


async def test_joining_again_gives_a_fresh_snapshot_without_churn(connect: Connect) -> None:
    watcher, _ = await peer(connect, "w")
    p1, _ = await peer(connect, "p1")
    await watcher.expect("peer-joined")
    await p1.send({"type": "join", "payload": {"peer_id": "p1"}, "room": "r1"})
    assert (await p1.expect("joined"))["peers"] == ["w"]
    assert await watcher.silent() == []


async def test_ice_servers_with_time_limited_turn_credentials(connect: Connect) -> None:
    before = int(time.time())
    _, joined = await peer(connect, "p1")
    stun, turn, fixed = joined["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert fixed == {"urls": "turn:fixed.example.org", "username": "u", "credential": "c"}
    expiry, name = turn["username"].split(":", 1)
    assert name == "p1"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    # what coturn's use-auth-secret computes from the same secret
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected


def test_turn_credentials_follow_the_turn_rest_scheme() -> None:
    # the example of the TURN REST draft's section 2.2, with the secret it would use
    username, credential = turn_credentials("secret", "alice", ttl=0, now=1735689600)
    assert username == "1735689600:alice"
    assert credential == base64.b64encode(hmac.new(b"secret", b"1735689600:alice", hashlib.sha1).digest()).decode()


async def test_the_path_with_a_trailing_slash(connect: Connect) -> None:
    await peer(connect, "p1")
    client = await connect(PATH + "/")
    await client.send({"type": "join", "payload": {"peer_id": "p2"}, "room": "r1"})
    assert (await client.expect("joined"))["peers"] == ["p1"]


async def test_signaling_rooms_do_not_meet_chat_rooms(connect: Connect, jp_fetch: Any) -> None:
    chat = await connect()
    await chat.join("r1", "p1")
    _, joined = await peer(connect, "p1")
    assert joined["peers"] == []
    sig2, _ = await peer(connect, "p2")
    await sig2.send(relay("offer", "p1"))
    assert of_type(await chat.silent(), "offer") == []
    assert of_type(chat.seen, "user-joined") == [f for f in chat.seen if f["type"] == "user-joined" and f["user_id"] == "p1"]
    rooms = (await jp_fetch("iavicenne", "api", "rooms")).body.decode()
    assert "signaling" not in rooms


async def test_a_wrong_token_is_refused(jp_ws_fetch: Any) -> None:
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch(*PATH.split("/"), headers={"Authorization": "token wrong"})
    assert refused.value.code == 403


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{not json", p.ErrorCode.INVALID_JSON, "Invalid JSON format"),
        ({"payload": {}}, p.ErrorCode.TYPE_REQUIRED, "Message type is required"),
        ({"type": "join-room"}, p.ErrorCode.UNKNOWN_TYPE, "Unknown message type: join-room"),
        ({"type": "offer", "payload": "sdp"}, p.ErrorCode.INVALID_FIELD, None),
        ({"type": "join", "payload": {"peer_id": "a/b"}, "room": "r1"}, p.ErrorCode.INVALID_FIELD, None),
        ({"type": "join", "payload": {"peer_id": 7}, "room": "r1"}, p.ErrorCode.INVALID_FIELD, None),
        ({"type": "join", "payload": {"peer_id": "p1"}, "room": "x" * 65}, p.ErrorCode.INVALID_FIELD, None),
        ({"type": "join", "payload": {"peer_id": "p1"}, "room": "../r1"}, p.ErrorCode.INVALID_FIELD, None),
        (
            {"type": "offer", "payload": {"target_peer_id": "p2"}, "room": "r1"},
            p.ErrorCode.INVALID_FIELD,
            "offer needs payload.offer",
        ),
        ({"type": "offer", "payload": {"target_peer_id": "p2", "offer": "sdp"}, "room": "r1"}, p.ErrorCode.INVALID_FIELD, None),
        ({"type": "answer", "payload": {"target_peer_id": "p2", "answer": None}, "room": "r1"}, p.ErrorCode.INVALID_FIELD, None),
        (
            {"type": "ice-candidate", "payload": {"target_peer_id": ["p2"], "candidate": {}}, "room": "r1"},
            p.ErrorCode.INVALID_FIELD,
            None,
        ),
        (
            {"type": "offer", "payload": {"target_peer_id": "p2", "offer": OFFER}, "room": "elsewhere"},
            p.ErrorCode.NOT_IN_ROOM,
            None,
        ),
        (b"\x00\x01", p.ErrorCode.BINARY_FRAME, None),
    ],
    ids=[
        "not-json",
        "no-type",
        "room-endpoint-type",
        "payload-not-object",
        "peer_id-with-slash",
        "peer_id-not-string",
        "room-too-long",
        "room-path",
        "offer-missing",
        "offer-not-object",
        "answer-null",
        "target-not-string",
        "other-room",
        "binary",
    ],
)
async def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(
    connect: Connect, frame: Any, code: str, message: str | None
) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.send(frame)
    error = await p1.expect("error")
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    await p1.send(relay("offer", "p2"))
    assert (await p2.expect("offer"))["source_peer_id"] == "p1"


async def test_a_null_candidate_is_relayed_as_end_of_candidates(connect: Connect) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.send({"type": "ice-candidate", "payload": {"target_peer_id": "p2", "candidate": None}, "room": "r1"})
    assert (await p2.expect("ice-candidate"))["candidate"] is None


# -- relay frames: a peer link's frames when no direct path opens ---------------------------

CHUNK = {"iavicenne": "relay-data", "link": "0123456789abcdef", "n": 1, "b": base64.b64encode(b"a chunk").decode()}


def relay_frame(target: str | None, data: Any = CHUNK, room: str | None = "r1", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": data}
    if target is not None:
        payload["target_peer_id"] = target
    frame: dict[str, Any] = {"type": p.RELAY, "payload": payload, **extra}
    if room is not None:
        frame["room"] = room
    return frame


async def test_a_relay_frame_reaches_only_the_target_peers_signaling_connection(connect: Connect) -> None:
    alice, _ = await peer(connect, "alice#a11ce0", headers=ALICE)
    bob, _ = await peer(connect, "bob#b0b001", headers=BOB)
    bobs_other_kernel, _ = await peer(connect, "bob#b0b002", headers=BOB)
    bobs_chat = await connect(headers=BOB)  # bob in the chat room of the same name
    await bobs_chat.join("r1", "bob")
    third_user, _ = await peer(connect, "carol#c0ffee")  # the server's own identity
    await alice.send(relay_frame("bob#b0b001", ref="r-1"))
    assert (await alice.expect("ack"))["ref"] == "r-1"
    got = await bob.expect(p.RELAY)
    assert got["data"] == CHUNK and got["room"] == "r1" and got["ref"] == "r-1"
    assert got["source_peer_id"] == "alice#a11ce0" and got["source_identity"]["username"] == "alice"
    for other in (bobs_other_kernel, third_user, alice):
        assert of_type(await other.silent(0.1), p.RELAY) == []
    chat = await bobs_chat.silent()
    assert of_type(chat, p.RELAY) == [] and of_type(chat, p.DIRECT_MESSAGE) == []
    # no claim per frame: the same chunk again (a resend after a lost ack) is forwarded
    # again, and the target drops it by its ref
    await alice.send(relay_frame("bob#b0b001", ref="r-1"))
    assert (await bob.expect(p.RELAY))["ref"] == "r-1"


async def test_a_relay_frame_cannot_spoof_its_source_nor_reach_into_another_room(connect: Connect) -> None:
    alice, _ = await peer(connect, "alice#a11ce0", headers=ALICE)
    bob, _ = await peer(connect, "bob#b0b001", headers=BOB)
    forged = relay_frame("bob#b0b001", {**CHUNK, "from": "alice#a11ce0"}, source_peer_id="alice#a11ce0")
    forged["source_identity"] = forged["payload"]["source_identity"] = {"username": "alice"}
    forged["payload"]["source_peer_id"] = "alice#a11ce0"

    # mallory (the server's identity), in another room: she reaches no peer of r1
    mallory, _ = await peer(connect, "mallory", room="elsewhere")
    await mallory.send({**forged, "ref": "m-1"})
    error = await mallory.expect("error")
    assert error["code"] == p.ErrorCode.NOT_IN_ROOM and error["ref"] == "m-1"
    await mallory.send({**relay_frame("bob#b0b001", room=None), "ref": "m-2"})  # her own room: no bob there
    error = await mallory.expect("error")
    assert error["code"] == p.ErrorCode.UNKNOWN_PEER and error["ref"] == "m-2"
    assert of_type(await bob.silent(), p.RELAY) == []

    # in r1 she reaches bob, but as herself, whatever the frame says
    inside, _ = await peer(connect, "mallory#000001")
    announced = await bob.expect("peer-joined", where=lambda f: f["peer_id"] == "mallory#000001")
    await inside.send(forged)
    got = await bob.expect(p.RELAY)
    assert got["source_peer_id"] == "mallory#000001"
    assert got["source_identity"] == announced["identity"] and got["source_identity"]["username"] != "alice"
    assert of_type(await alice.silent(), p.RELAY) == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"target_peer_id": "p2"}, p.ErrorCode.INVALID_FIELD),
        ({"target_peer_id": "p2", "data": "a chunk"}, p.ErrorCode.INVALID_FIELD),
        ({"target_peer_id": "p2", "data": None}, p.ErrorCode.INVALID_FIELD),
        ({"data": CHUNK}, p.ErrorCode.TARGET_REQUIRED),
        ({"target_peer_id": "p2", "data": {**CHUNK, "b": "A" * p.RELAY_MAX_BYTES}}, p.ErrorCode.LIMIT_EXCEEDED),
    ],
    ids=["data-missing", "data-not-object", "data-null", "no-target", "oversize"],
)
async def test_a_malformed_or_oversize_relay_gets_an_error_frame_and_the_socket_stays_usable(
    connect: Connect, payload: dict[str, Any], code: str
) -> None:
    p1, _ = await peer(connect, "p1")
    p2, _ = await peer(connect, "p2")
    await p1.send({"type": p.RELAY, "payload": payload, "room": "r1", "ref": "bad"})
    error = await p1.expect("error")
    assert error["code"] == code and error["ref"] == "bad"
    if code == p.ErrorCode.LIMIT_EXCEEDED:
        assert error["limit"] == p.RELAY_MAX_BYTES and "smaller pieces" in error["message"]
    assert of_type(await p2.silent(), p.RELAY) == []
    await p1.send(relay_frame("p2", ref="good"))
    assert (await p1.expect("ack"))["ref"] == "good"
    assert (await p2.expect(p.RELAY))["source_peer_id"] == "p1"


class TestTheRelayWithinTheIdentitysByteBudget:
    @pytest.fixture
    def iavicenne_config(self) -> dict[str, Any]:
        return {"bytes_per_second": 100_000, "burst_bytes": 200_000}

    async def test_relay_frames_over_it_are_rate_limited(self, connect: Connect) -> None:
        p1, _ = await peer(connect, "p1", headers=ALICE)
        p2, _ = await peer(connect, "p2", headers=BOB)
        chunk = {**CHUNK, "b": "A" * 150_000}
        for n in range(3):
            await p1.send(relay_frame("p2", chunk, ref=f"r-{n}"))
        limited = await p1.expect("error")
        assert limited["code"] == p.ErrorCode.RATE_LIMITED and limited["option"] == "bytes_per_second"
        assert len(of_type(await p2.silent(1.0), p.RELAY)) < 3


# -- across servers (Redis broker) ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from servers import drop_prefix, jupyter_on_redis, shared_redis_url, unique_prefix

    from iavicenne_ext.testing import start_all, stop_all

    url, prefix = shared_redis_url(), unique_prefix("signaling")
    workdir = tmp_path_factory.mktemp("signaling-cluster")
    cluster = [jupyter_on_redis(workdir, url, prefix, f"s{i}") for i in range(2)]
    try:
        yield start_all(cluster)
    finally:
        stop_all(cluster)
        drop_prefix(url, prefix)


async def test_across_servers_relays_reach_only_the_target_and_takeover_closes_the_old(two_servers: Any) -> None:
    from servers import connect as connect_to

    first, second = two_servers

    async def join(server: Any, peer_id: str) -> tuple[WSClient, dict[str, Any]]:
        client = await connect_to(server, endpoint="signaling")
        await client.send({"type": "join", "payload": {"peer_id": peer_id}, "room": "x"})
        return client, await client.expect("joined")

    p1, _ = await join(first, "p1")
    p3, _ = await join(first, "p3")
    old_p2, joined = await join(second, "p2")
    assert joined["peers"] == ["p1", "p3"]
    await p1.send(relay("offer", "p2", room="x"))
    assert (await old_p2.expect("offer"))["source_peer_id"] == "p1"
    assert of_type(await p3.silent(), "offer") == []  # not the whole room: the target only

    # p2 comes back through the first server: the old socket, on the second, is closed
    new_p2, _ = await join(first, "p2")
    assert (await old_p2.expect("error"))["code"] == p.ErrorCode.SUPERSEDED
    assert (await closed(old_p2))[0] == p.CLOSE_SUPERSEDED
    await p1.send(relay("ice-candidate", "p2", room="x"))
    assert (await new_p2.expect("ice-candidate"))["source_peer_id"] == "p1"
    await p3.send(relay("answer", "ghost", room="x"))
    assert (await p3.expect("error"))["code"] == p.ErrorCode.UNKNOWN_PEER
    new_p2.close()
    assert (await p1.expect("peer-left"))["peer_id"] == "p2"
    for client in (p1, p3):
        client.close()
