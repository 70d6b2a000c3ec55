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
import logging
import random
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from bystander import Bystander
from room_support import ALICE, BOB, Connect, RawSocket, closed, of_type, with_analysts

import iavicenne_protocol as p
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
    # 8 bytes: a JSON string holding a lone surrogate (it once raised a traceback per frame)
    ("lone-surrogate-frame", '"\\ud800"', "invalid-json", "Unicode"),
    ("lone-surrogate-in-a-list", '["\\udc00", 1]', "invalid-json", "Unicode"),
    ("surrogate-pair-not-an-object", '"\\ud83d\\ude00"', "invalid-frame", "must be a JSON object"),
    ("very-deep-nesting", "[" * 60_000 + "]" * 60_000, "invalid-json", "Invalid JSON format"),
    ("huge-integer", '{"type": "message", "room": "r1", "payload": {"x": %s}}' % ("9" * 5000), "invalid-json", "Invalid JSON"),
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


# -- hostile input in bulk: no traceback, no log flood --------------------------------

# values that broke, or might break, a JSON reader or what reads its result
_ATOMS = [
    '"\\ud800"', '"\\udfff x"', '"\\ud83d\\ude00"', "NaN", "-Infinity", "1e400", "-1e999", "1e-400", "9" * 5000,
    "null", "true", "false", "0", "-0", "1.5", '""', '"x"', "[]", "{}", '"\\u0000"', '"a/b"', '"r1"', '"message"',
    '"join-room"', '"shared"', '"connect"', '"presence"', '"direct-message"', '"list-members"', '"leave-room"',
    "[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000, "[" * 990 + "]" * 990, '"' + "é" * 300 + '"',
]  # fmt: skip
_KEYS = ['"type"', '"payload"', '"room"', '"ref"', '"to"', '"\\ud800"', '"since"', '"epoch"', '"state"', '"sync"', '"user_id"']


def hostile_frames(count: int, seed: int = 22) -> Iterator[str]:
    """Frames of random shape made of `_ATOMS`: objects with the envelope's keys (wrong types
    in each), and bare values; the same ones on every run."""
    rng = random.Random(seed)

    def value(depth: int) -> str:
        roll = rng.random()
        if depth > 2 or roll < 0.5:
            return rng.choice(_ATOMS)
        if roll < 0.75:
            return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        return "{" + ",".join(f"{rng.choice(_KEYS)}:{value(depth + 1)}" for _ in range(rng.randint(0, 4))) + "}"

    for _ in range(count):
        if rng.random() < 0.7:
            yield "{" + ",".join(f"{rng.choice(_KEYS)}:{value(1)}" for _ in range(rng.randint(0, 5))) + "}"
        else:
            yield value(0)


class ServerLog(logging.Handler):
    """Every record the server logs while installed (its own logger, tornado's, the root)."""

    def __init__(self, serverapp: Any) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loggers = {serverapp.log, logging.getLogger("tornado"), logging.getLogger()}

    def emit(self, record: logging.LogRecord) -> None:
        if record not in self.records:
            self.records.append(record)

    def __enter__(self) -> ServerLog:
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)

    def lines(self, level: int = logging.INFO) -> list[logging.LogRecord]:
        return [record for record in self.records if record.levelno >= level]

    def tracebacks(self) -> list[str]:
        return [record.getMessage() for record in self.records if record.exc_info or "Traceback" in record.getMessage()]

    def size(self) -> int:
        return sum(len(self.format(record)) for record in self.lines())


# a flood must reach the parser: the rate limits are far above it here
UNLIMITED = {
    "messages_per_second": 1e6,
    "burst": 100_000,
    "bytes_per_second": 1e9,
    "burst_bytes": 10**9,
    "chat_messages_per_second": 1e6,
    "chat_messages_burst": 100_000,
}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def answers(client: WSClient, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return [await client.recv(timeout) for _ in range(count)]


@pytest.mark.parametrize("iavicenne_config", [{**UNLIMITED, "max_frame_bytes": 512 * 1024}])
async def test_thousands_of_hostile_frames_get_errors_and_leave_no_traceback(connect: Connect, jp_serverapp: Any) -> None:
    """Fuzzed envelopes: each one is answered (an error frame, or the answer of a request that
    happens to be valid), the socket stays usable, and the server logs no traceback."""
    bob = await member(connect, "bob")
    mallory = await member(connect, "mallory")
    frames = ["[" * 100_000 + "]" * 100_000, '{"type": "message", "payload": %s}' % ("[" * 100_000), *hostile_frames(3000)]
    with ServerLog(jp_serverapp) as log:
        for start in range(0, len(frames), 200):
            batch = frames[start : start + 200]
            for frame in batch:
                await mallory.send(frame)
            # answered whatever the batch did (it may have left r1, or joined other rooms)
            await mallory.send({"type": "shout", "ref": f"b{start}"})
            await mallory.expect("error", where=lambda frame: frame.get("ref") == f"b{start}", timeout=30)  # noqa: B023
        errors = of_type(mallory.seen, "error")
    assert len(errors) >= 2000, f"only {len(errors)} error frames for {len(frames)} hostile frames"
    assert {e["code"] for e in errors} <= {
        "invalid-json", "invalid-frame", "invalid-field", "type-required", "unknown-type", "room-required",
        "not-in-room", "user-id-required", "already-connected", "too-many-rooms", "limit-exceeded",
    }, {e["code"] for e in errors}  # fmt: skip
    assert p.ErrorCode.INTERNAL not in {e["code"] for e in errors}
    assert log.tracebacks() == []
    await mallory.join("r1")
    await still_works(mallory)
    await bob.silent(0.1)
    assert (of_type(bob.seen, "message")[-1])["user_id"] == "mallory"


@pytest.mark.parametrize("iavicenne_config", [UNLIMITED])
async def test_a_flood_of_surrogate_frames_is_answered_without_a_log_flood(iav_connect: Connect, jp_serverapp: Any) -> None:
    r"""2,000 ``"\ud800"`` frames from mallory: 2,000 error frames, no traceback, no log
    line per frame; bob, beside, keeps his acks fast."""
    mallory = await iav_connect(headers=ALICE)
    await mallory.join("r1", "mallory")
    async with Bystander(await iav_connect(headers=BOB), room="calm") as bob:
        with ServerLog(jp_serverapp) as log:
            started = time.perf_counter()
            for _ in range(2000):
                await mallory.send('"\\ud800"')
            errors = [await mallory.expect("error", timeout=30) for _ in range(2000)]
            took = time.perf_counter() - started
    print(f"\nflood: 2000 frames in {took:.2f} s, {len(log.lines())} log lines, {log.size()} bytes; {bob.summary()}")
    assert len(errors) == 2000 and {e["code"] for e in errors} == {"invalid-json"}
    assert log.tracebacks() == []
    assert len(log.lines()) <= 3, [r.getMessage() for r in log.lines()]
    assert bob.p99_ms < 100, bob.summary()
    await mallory.send({"type": "message", "room": "r1", "payload": {"content": "still here"}})
    assert (await mallory.expect("message"))["message"] == {"content": "still here"}


@pytest.mark.parametrize("iavicenne_config", [UNLIMITED])
async def test_frames_that_fail_in_the_server_log_one_line_per_interval(
    iav_connect: Connect, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that a frame triggers (here: a parser that raises) answers `internal`, and the
    log says so once, with the traceback, not once per frame."""
    real = p.parse_request

    def broken(data: str | bytes, known: frozenset[str]) -> p.Request:
        if "boom" in str(data):
            raise RuntimeError("a bug")
        return real(data, known)

    monkeypatch.setattr(p, "parse_request", broken)
    mallory = await iav_connect(headers=ALICE)
    bob = await iav_connect(headers=BOB)
    with ServerLog(jp_serverapp) as log:
        for _ in range(2000):
            await mallory.send('{"type": "boom"}')
        replies = await answers(mallory, 2000)
        await bob.send('{"type": "boom"}')
        assert (await bob.recv())["code"] == p.ErrorCode.INTERNAL
    assert {r["code"] for r in replies} == {p.ErrorCode.INTERNAL}
    lines = [r for r in log.lines() if "handling a frame" in r.getMessage()]
    # mallory's first (with its traceback), bob's first: his own interval
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert all(r.exc_info for r in lines)
    assert "alice" in lines[0].getMessage() and "bob" in lines[1].getMessage()
