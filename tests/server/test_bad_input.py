"""What a client can send wrong, and what it cannot break.

Every bad frame gets an error frame that names the problem, and the same connection
keeps working. Limits protect the server and the other users: an over-size frame closes
the socket (1009), a flood is cut down to the rate with a `rate-limited` notice, a client
that does not read is disconnected (1008) before it grows the server's memory.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from typing import Any

import pytest
from room_support import Connect, RawSocket, closed, of_type

from iavicenne_ext.testing import WSClient

MAX_FRAME = 128 * 1024
RATE, BURST = 50, 60
MAX_ROOMS = 3
MAX_OUTBOUND = 256 * 1024


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    return {
        "max_frame_bytes": MAX_FRAME,
        "messages_per_second": RATE,
        "burst": BURST,
        "max_rooms_per_connection": MAX_ROOMS,
        "max_outbound_bytes": MAX_OUTBOUND,
        # room messages as large as a frame: these tests are about frames (the message
        # budget has its tests in test_abuse.py)
        "max_message_bytes": 2 * MAX_FRAME,
    }


async def member(connect: Connect, user_id: str, room: str = "r1") -> WSClient:
    client = await connect()
    await client.join(room, user_id)
    await client.expect("user-joined", where=lambda f: f["user_id"] == user_id)
    return client


async def still_works(client: WSClient, room: str = "r1") -> None:
    """The connection is usable: a message it sends comes back as the room's broadcast."""
    await client.send({"type": "message", "room": room, "payload": {"content": "still here"}})
    got = await client.expect("message")
    assert got["message"] == {"content": "still here"}


# -- malformed frames ----------------------------------------------------------------

TOO_LONG_REF = "x" * 129
BAD_FRAMES: list[tuple[str, str | bytes | dict[str, Any], str, str]] = [
    # (id, what the client sends, expected code, words the message must contain)
    ("not-json", "{'type': 'message'}", "invalid-json", "Invalid JSON format"),
    ("truncated-json", '{"type": "message", "payload": {', "invalid-json", "Invalid JSON format"),
    ("nan-is-not-json", '{"type": "message", "room": "r1", "payload": {"x": NaN}}', "invalid-json", "Invalid JSON format"),
    (
        "infinity-is-not-json",
        '{"type": "message", "room": "r1", "payload": {"x": -Infinity}}',
        "invalid-json",
        "Invalid JSON format",
    ),
    ("overflow-to-infinity", '{"type": "message", "room": "r1", "payload": {"x": 1e400}}', "invalid-json", "Invalid JSON format"),
    (
        "deep-nesting",
        '{"type": "message", "room": "r1", "payload": {"x": %s}}' % ("[" * 5000 + "]" * 5000),
        "invalid-json",
        "Invalid JSON format",
    ),
    ("json-array", "[1, 2]", "invalid-frame", "must be a JSON object"),
    ("json-string", '"message"', "invalid-frame", "must be a JSON object"),
    ("json-number", "42", "invalid-frame", "must be a JSON object"),
    ("json-null", "null", "invalid-frame", "must be a JSON object"),
    ("binary-frame", b'{"type": "message", "room": "r1", "payload": {}}', "binary-frame", "Binary frames are not supported"),
    ("no-type", {"payload": {}}, "type-required", "Message type is required"),
    ("type-number", {"type": 5}, "invalid-field", "type must be a string"),
    ("type-object", {"type": {"name": "message"}}, "invalid-field", "type must be a string"),
    ("unknown-type", {"type": "shout"}, "unknown-type", "Unknown message type: shout"),
    ("payload-list", {"type": "message", "room": "r1", "payload": ["hi"]}, "invalid-field", "payload must be a JSON object"),
    ("payload-string", {"type": "message", "room": "r1", "payload": "hi"}, "invalid-field", "payload must be a JSON object"),
    ("room-number", {"type": "message", "room": 1, "payload": {}}, "invalid-field", "room must be a string"),
    ("room-invalid-name", {"type": "join-room", "room": "a/b", "payload": {}}, "invalid-field", "invalid room 'a/b'"),
    ("room-too-long", {"type": "join-room", "room": "r" * 65, "payload": {}}, "invalid-field", "invalid room"),
    ("room-control-char", {"type": "join-room", "room": "r\n1", "payload": {}}, "invalid-field", "invalid room"),
    ("room-outer-space", {"type": "join-room", "room": " r1", "payload": {}}, "invalid-field", "invalid room"),
    (
        "ref-too-long",
        {"type": "message", "room": "r1", "payload": {}, "ref": TOO_LONG_REF},
        "invalid-field",
        "ref must be a string of 1 to 128",
    ),
    ("ref-number", {"type": "message", "room": "r1", "payload": {}, "ref": 7}, "invalid-field", "ref must be a string"),
    (
        "since-negative",
        {"type": "join-room", "room": "r2", "payload": {"since": -1}},
        "invalid-field",
        "since must be a non-negative integer",
    ),
    (
        "since-string",
        {"type": "join-room", "room": "r2", "payload": {"since": "3"}},
        "invalid-field",
        "since must be a non-negative integer",
    ),
    (
        "since-float",
        {"type": "join-room", "room": "r2", "payload": {"since": 1.5}},
        "invalid-field",
        "since must be a non-negative integer",
    ),
    (
        "since-bool",
        {"type": "join-room", "room": "r2", "payload": {"since": True}},
        "invalid-field",
        "since must be a non-negative integer",
    ),
    (
        "epoch-number",
        {"type": "join-room", "room": "r2", "payload": {"since": 0, "epoch": 3}},
        "invalid-field",
        "epoch must be a string",
    ),
    ("state-list", {"type": "join-room", "room": "r2", "payload": {"state": []}}, "invalid-field", "state must be a JSON object"),
    ("join-no-room", {"type": "join-room", "payload": {}}, "room-required", "Room ID is required"),
    ("connect-no-user_id", {"type": "connect", "payload": {}}, "user-id-required", "user_id is required for connection"),
    ("user_id-number", {"type": "connect", "payload": {"user_id": 7}}, "invalid-field", "user_id must be a string"),
    (
        "user_id-invalid-name",
        {"type": "connect", "payload": {"user_id": "<script>"}},
        "invalid-field",
        "invalid user_id '<script>'",
    ),
    ("user_id-change-in-room", {"type": "connect", "payload": {"user_id": "mallory"}}, "already-connected", "leave-room first"),
    ("presence-no-state", {"type": "presence", "room": "r1", "payload": {}}, "invalid-field", "presence needs payload.state"),
    (
        "presence-state-string",
        {"type": "presence", "room": "r1", "payload": {"state": "busy"}},
        "invalid-field",
        "state must be a JSON object",
    ),
    ("direct-no-to", {"type": "direct-message", "room": "r1", "payload": {}}, "invalid-field", "direct-message needs 'to'"),
    (
        "direct-to-number",
        {"type": "direct-message", "room": "r1", "to": 3, "payload": {}},
        "invalid-field",
        "to must be a string",
    ),
    ("leave-other-room", {"type": "leave-room", "room": "r9"}, "not-in-room", "Not in room 'r9'"),
    ("message-other-room", {"type": "message", "room": "r9", "payload": {}}, "not-in-room", "Not in room 'r9'"),
]


@pytest.mark.parametrize(("frame", "code", "words"), [case[1:] for case in BAD_FRAMES], ids=[case[0] for case in BAD_FRAMES])
async def test_bad_frame_gets_an_error_naming_it_and_the_connection_stays(
    connect: Connect, frame: str | bytes | dict[str, Any], code: str, words: str
) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")

    await alice.send(frame)
    error = await alice.recv()
    assert error["type"] == "error"
    assert error["code"] == code
    assert words in error["message"]
    assert await bob.silent(0.1) == []  # nothing reached the room

    await still_works(alice)
    assert (await bob.expect("message"))["user_id"] == "alice"


async def test_an_error_carries_the_ref_of_the_request(connect: Connect) -> None:
    alice = await member(connect, "alice")
    await alice.send({"type": "presence", "room": "r1", "payload": {"state": 1}, "ref": "p-9"})
    error = await alice.expect("error")
    assert (error["code"], error["ref"]) == ("invalid-field", "p-9")


@pytest.mark.parametrize("where", ["message", "state"])
async def test_lone_surrogates_are_refused_and_harm_no_one(connect: Connect, where: str) -> None:
    r"""``"\ud800"`` is valid JSON text but no Unicode character: it cannot be sent on."""
    alice = await member(connect, "alice")
    kind = "message" if where == "message" else "presence"
    payload = '{"content": "\\ud800"}' if where == "message" else '{"state": {"s": "\\udc00 x"}}'
    await alice.send(f'{{"type": "{kind}", "room": "r1", "payload": {payload}}}')
    error = await alice.expect("error")
    assert error["code"] == "invalid-json"
    assert "Unicode" in error["message"]

    # others still join and talk in the room, and an escaped emoji (a valid pair) is fine
    bob = await member(connect, "bob")
    await bob.send('{"type": "message", "room": "r1", "payload": {"content": "\\ud83d\\ude00"}}')
    assert (await alice.expect("message"))["message"] == {"content": "\N{GRINNING FACE}"}


async def test_unusual_but_valid_json_passes_through(connect: Connect) -> None:
    alice = await member(connect, "alice")
    await alice.send(
        '{"type": "message", "room": "r1", "payload": {"big": 1.5e300, "int": 123456789012345678901234567890, "deep": %s}}'
        % ("[" * 500 + "]" * 500)
    )
    got = await alice.expect("message")
    assert got["message"]["big"] == 1.5e300
    assert got["message"]["int"] == 123456789012345678901234567890


async def test_names_may_use_any_script(connect: Connect) -> None:
    alice = await connect()
    joined = await alice.join("équipe 1", "Zoë")
    assert (joined["room"], joined["user_id"]) == ("équipe 1", "Zoë")
    await still_works(alice, room="équipe 1")


# -- limits ----------------------------------------------------------------------------


async def test_oversize_frame_closes_with_1009_and_a_reason(connect: Connect) -> None:
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    await bob.expect("user-joined")

    near_limit = json.dumps({"type": "message", "room": "r1", "payload": {"content": "x" * (MAX_FRAME - 100)}})
    assert len(near_limit) <= MAX_FRAME
    await alice.send(near_limit)
    assert len((await bob.expect("message"))["message"]["content"]) == MAX_FRAME - 100

    await alice.send(json.dumps({"type": "message", "room": "r1", "payload": {"content": "x" * MAX_FRAME}}))
    code, reason = await closed(alice)
    assert code == 1009
    assert reason  # tornado says "message too big"
    assert (await bob.expect("user-left"))["user_id"] == "alice"
    await still_works(bob)


async def test_flood_is_rate_limited_and_the_connection_stays(connect: Connect) -> None:
    watcher = await member(connect, "watcher")
    bob = await member(connect, "bob")
    flooder = await member(connect, "flooder")
    await watcher.silent(0.1)

    sent = 4 * BURST
    for n in range(sent):
        await flooder.send({"type": "message", "room": "r1", "payload": {"n": n}})
    # another user is not slowed down by the flood
    await bob.send({"type": "message", "room": "r1", "payload": {"content": "unaffected"}})
    await watcher.expect("message", where=lambda f: f["user_id"] == "bob")

    got = await flooder.silent()
    notices = of_type(got, "error")
    assert notices, "no rate-limited notice"
    assert all(n["code"] == "rate-limited" for n in notices)
    # one notice a second, not one per dropped frame
    stamps = [datetime.fromisoformat(n["timestamp"]) for n in notices]
    assert all((later - earlier).total_seconds() >= 1 for earlier, later in itertools.pairwise(stamps))
    assert notices[0]["dropped"] >= 1
    assert "rate limited" in notices[0]["message"]
    await watcher.silent(0.1)
    messages = of_type(watcher.seen, "message")
    delivered = [f["message"]["n"] for f in messages if f["user_id"] == "flooder"]
    assert BURST <= len(delivered) < sent
    assert delivered == sorted(delivered)
    # what was accepted was delivered: no gap in the room's seq
    seqs = [f["seq"] for f in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    await still_works(flooder)


async def test_too_many_rooms_is_refused(connect: Connect) -> None:
    alice = await connect()
    for n in range(MAX_ROOMS):
        await alice.join(f"r{n}", "alice" if n == 0 else None)
    await alice.send({"type": "join-room", "room": "one-more", "payload": {}})
    error = await alice.expect("error")
    assert error["code"] == "too-many-rooms"
    assert f"at most {MAX_ROOMS} rooms" in error["message"]

    await alice.join("r0")  # a room it is already in is not one more
    await alice.send({"type": "leave-room", "room": "r0"})
    await alice.expect("room-left")
    assert (await alice.join("one-more"))["room"] == "one-more"


# -- a consumer that does not read ---------------------------------------------------


@pytest.mark.parametrize(
    "iavicenne_config", [{"max_outbound_bytes": 16 * 1024, "max_frame_bytes": MAX_FRAME, "max_message_bytes": 2 * MAX_FRAME}]
)
async def test_a_reader_gets_a_frame_bigger_than_the_outbound_limit(connect: Connect) -> None:
    """The limit is on what piles up, not on one frame: a client that reads is not slow."""
    bob = await member(connect, "bob")
    alice = await member(connect, "alice")
    big = "x" * (MAX_FRAME // 2)
    for _ in range(3):
        await alice.send({"type": "message", "room": "r1", "payload": {"big": big}})
        assert (await bob.expect("message"))["message"]["big"] == big
    await still_works(bob)


@pytest.mark.parametrize(
    "iavicenne_config", [{"max_outbound_bytes": 64 * 1024, "max_frame_bytes": MAX_FRAME, "max_message_bytes": 2 * MAX_FRAME}]
)
async def test_a_replay_bigger_than_the_outbound_limit_is_delivered(connect: Connect) -> None:
    """What a client asked for with `since` is not a pile-up: it may exceed the limit."""
    alice = await member(connect, "alice")
    joined = await alice.join("r1")
    big = "x" * (30 * 1024)
    for n in range(10):  # 300 KiB of history
        await alice.send({"type": "message", "room": "r1", "payload": {"n": n, "big": big}})
        await alice.expect("message")

    late = await connect()
    await late.send({"type": "join-room", "room": "r1", "payload": {"since": joined["seq"], "epoch": joined["epoch"]}})
    assert (await late.expect("room-joined"))["recovered"] is True
    assert [(await late.expect("message"))["message"]["n"] for _ in range(10)] == list(range(10))
    await still_works(late)


async def test_slow_consumer_is_disconnected_with_1008_and_others_keep_receiving(
    connect: Connect, jp_serverapp: Any, jp_http_port: int, jp_base_url: str
) -> None:
    watcher = await member(connect, "watcher")
    flooder = await member(connect, "flooder")
    token = jp_serverapp.identity_provider.token
    loop = asyncio.get_running_loop()
    # the handshake blocks: off the event loop, which the server needs to answer it
    slow = await loop.run_in_executor(None, RawSocket, jp_http_port, f"{jp_base_url}iavicenne/ws/mcp", token)
    try:
        slow.send({"type": "join-room", "room": "r1", "payload": {}})
        joined = await watcher.expect("user-joined", where=lambda f: f["user_id"] != "flooder")
        slow_user = joined["user_id"]

        # the watcher and the flooder read all the time; the raw socket never does
        received: dict[str, list[dict[str, Any]]] = {"watcher": [], "flooder": []}

        async def drain(name: str, client: WSClient) -> None:
            while True:
                received[name].append(await client.recv(10))

        readers = [asyncio.ensure_future(drain(n, c)) for n, c in (("watcher", watcher), ("flooder", flooder))]
        big = "x" * (MAX_FRAME - 1024)
        # within the burst: 55 frames of 127 KiB (7 MiB), far more than MAX_OUTBOUND and
        # the kernel's socket buffers (a few MiB on loopback)
        count = BURST - 5
        for n in range(count):
            await flooder.send({"type": "message", "room": "r1", "payload": {"n": n, "big": big}})

        deadline = loop.time() + 10
        while not any(f["type"] == "user-left" and f["user_id"] == slow_user for f in received["watcher"]):
            assert loop.time() < deadline, "the slow consumer was not disconnected"
            await asyncio.sleep(0.05)
        while len(of_type(received["watcher"], "message")) < count:
            assert loop.time() < deadline, "the watcher did not get every message"
            await asyncio.sleep(0.05)
        for reader in readers:
            reader.cancel()

        assert [f["message"]["n"] for f in of_type(received["watcher"], "message")] == list(range(count))
        code, reason = await loop.run_in_executor(None, slow.read_until_close)
        assert code == 1008
        assert reason.startswith("slow consumer")
        assert str(MAX_OUTBOUND) in reason
    finally:
        slow.close()
    await still_works(flooder)
    assert (await watcher.expect("message"))["message"] == {"content": "still here"}


async def test_an_envelope_error_names_the_request_by_its_ref(connect: Connect) -> None:
    """A client with several requests in flight learns which one was refused."""
    client = await connect()
    await client.send({"type": "shout", "ref": "r-41"})
    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("unknown-type", "r-41")
    await client.send({"type": "message", "payload": [1], "ref": "r-42"})
    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("invalid-field", "r-42")
