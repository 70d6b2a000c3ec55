"""Edits, deletions, replies, read positions and exports, as alice, bob and mallory use them.

Each test runs on one real Jupyter server with the memory broker, and on two servers
sharing the Redis at 127.0.0.1:6379 (alice and mallory on the first, bob on the second),
so every live notice and every refusal also crosses servers. mallory is the hostile one:
she edits and deletes what is not hers, pretends to be alice, fakes a reply's quote and
asks for exports of rooms she may not read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from access_support import KINDS, TESTS, Deployment, call, deployed, headers
from tornado.httpclient import AsyncHTTPClient

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient

# GroupAnalysts (alice, bob, carol, erin) and mallory, each with a token of their own
SERVER_CONFIG = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from access_support import KINDS, deployed, GroupAnalysts

class WithMallory(GroupAnalysts):
    analysts = {{**GroupAnalysts.analysts, "mallory-token": "mallory"}}

c.ServerApp.identity_provider_class = WithMallory
"""
HOMES = {"alice": 0, "bob": 1, "carol": 1, "erin": 0, "mallory": 0}


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(
        request.param, tmp_path_factory.mktemp(f"edits-{request.param}"), "edits", homes=HOMES, server_config=SERVER_CONFIG
    )


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    return "e-" + request.node.originalname.removeprefix("test_")[:40]


async def joined(deployment: Deployment, name: str, room: str, **payload: Any) -> WSClient:
    client = await deployment.socket(name)
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": payload, "ref": "j"})
    await client.expect(p.USER_JOINED, where=lambda f: f["identity"]["username"] == name)
    return client


async def say(client: WSClient, room: str, text: str, ref: str, *, extra: dict[str, Any] | None = None, **fields: Any) -> int:
    """Send `text` (with `extra` in the payload, `fields` beside it); its seq, from the ack."""
    payload = {"content": text, **(extra or {})}
    await client.send({"type": p.MESSAGE, "room": room, "payload": payload, "ref": ref, **fields})
    ack = await client.expect(p.ACK, where=lambda f: f.get("ref") == ref)
    return int(ack["seq"])


async def ask(client: WSClient, frame: dict[str, Any]) -> dict[str, Any]:
    """Send `frame` (its ref: "q") and return its ack or its error."""
    await client.send({**frame, "ref": "q"})
    while True:
        frame = await client.recv()
        if frame.get("ref") == "q" and frame.get("type") in (p.ACK, p.ERROR):
            return frame


async def replay(deployment: Deployment, name: str, room: str) -> list[dict[str, Any]]:
    """What a fresh connection of `name` gets replayed of `room` from the start."""
    client = await joined(deployment, name, room, since=0)
    frames = [f for f in client.seen if f.get("type") == p.MESSAGE]
    client.close()
    return frames


async def test_alice_edits_and_deletes_her_message_bob_sees_it_live_and_in_history(deployment: Deployment, room: str) -> None:
    alice = await joined(deployment, "alice", room)
    bob = await joined(deployment, "bob", room)
    seq = await say(alice, room, "the Q3 figures are 12", "m1")
    await bob.expect(p.MESSAGE, where=lambda f: f.get("seq") == seq)

    answer = await ask(alice, {"type": p.EDIT_MESSAGE, "room": room, "seq": seq, "payload": {"content": "the Q3 figures are 13"}})
    assert answer["type"] == p.ACK, answer
    edited = await bob.expect(p.MESSAGE_EDITED)
    assert (edited["seq"], edited["message"], edited["identity"]["username"]) == (
        seq,
        {"content": "the Q3 figures are 13"},
        "alice",
    )
    [kept] = [f for f in await replay(deployment, "bob", room) if f["seq"] == seq]
    assert kept["message"] == {"content": "the Q3 figures are 13"} and "edited_at" in kept
    assert kept["identity"]["username"] == "alice"

    # an edit is a message: within max_message_bytes, or nothing changes
    huge = {"type": p.EDIT_MESSAGE, "room": room, "seq": seq, "payload": {"content": "x" * 70_000}}
    answer = await ask(alice, huge)
    assert (answer["code"], answer["option"]) == (p.ErrorCode.LIMIT_EXCEEDED, "max_message_bytes"), answer

    answer = await ask(alice, {"type": p.DELETE_MESSAGE, "room": room, "seq": seq})
    assert answer["type"] == p.ACK, answer
    deleted = await bob.expect(p.MESSAGE_DELETED)
    assert (deleted["seq"], deleted["deleted"]["by"]) == (seq, "alice")
    history = await replay(deployment, "bob", room)
    [kept] = [f for f in history if f["seq"] == seq]
    assert kept["message"] == {} and kept["deleted"]["by"] == "alice" and kept["identity"]["username"] == "alice"
    assert "Q3" not in json.dumps(history)  # the text is gone, not hidden
    # deleted is deleted: no edit brings it back
    answer = await ask(alice, {"type": p.EDIT_MESSAGE, "room": room, "seq": seq, "payload": {"content": "back"}})
    assert (answer["type"], answer["code"]) == (p.ERROR, p.ErrorCode.UNKNOWN_MESSAGE)
    # a deletion sent again (its ack lost in a reconnect) is done already
    assert (await ask(alice, {"type": p.DELETE_MESSAGE, "room": room, "seq": seq}))["type"] == p.ACK


async def test_mallory_cannot_edit_or_delete_alices_message(deployment: Deployment, room: str) -> None:
    alice = await joined(deployment, "alice", room)
    mallory = await joined(deployment, "mallory", room)
    seq = await say(alice, room, "mine", "m1")
    for frame in (
        {"type": p.EDIT_MESSAGE, "room": room, "seq": seq, "payload": {"content": "pwned"}},
        # a spoofed author changes nothing: the server reads who she is from her login
        {"type": p.EDIT_MESSAGE, "room": room, "seq": seq, "payload": {"content": "pwned"}, "user_id": "alice"},
        {"type": p.DELETE_MESSAGE, "room": room, "seq": seq, "identity": {"username": "alice"}},
    ):
        answer = await ask(mallory, frame)
        assert (answer["type"], answer["code"], answer["room"]) == (p.ERROR, p.ErrorCode.FORBIDDEN, room), answer
    # nor under alice's name: her user_id is alice's to use
    posing = await deployment.socket("mallory")
    await posing.send({"type": p.CONNECT, "payload": {"user_id": "alice"}, "ref": "c"})
    assert (await posing.expect(p.ERROR))["code"] == p.ErrorCode.NAME_TAKEN
    for bad in (0, -1, "1", True, None):
        answer = await ask(mallory, {"type": p.DELETE_MESSAGE, "room": room, "seq": bad})
        assert answer["code"] == p.ErrorCode.INVALID_FIELD, answer
    answer = await ask(mallory, {"type": p.DELETE_MESSAGE, "room": room, "seq": 10_000})
    assert answer["code"] == p.ErrorCode.UNKNOWN_MESSAGE
    [kept] = [f for f in await replay(deployment, "alice", room) if f["seq"] == seq]
    assert kept["message"] == {"content": "mine"} and "edited_at" not in kept and "deleted" not in kept
    assert not [f for f in alice.seen if f.get("type") in (p.MESSAGE_EDITED, p.MESSAGE_DELETED)]


async def test_the_owner_deletes_mallorys_message_and_mallory_cannot_delete_in_a_room_she_does_not_own(
    deployment: Deployment, room: str
) -> None:
    status, _ = await deployment.api("alice", "POST", "rooms", {"room": room, "members": ["mallory", "bob"]})
    assert status == 201
    alice = await joined(deployment, "alice", room)
    mallory = await joined(deployment, "mallory", room)
    bob = await joined(deployment, "bob", room)
    spam = await say(mallory, room, "buy my coin", "s1")
    said = await say(bob, room, "bob's point", "b1")
    answer = await ask(mallory, {"type": p.DELETE_MESSAGE, "room": room, "seq": said})
    assert (answer["type"], answer["code"]) == (p.ERROR, p.ErrorCode.FORBIDDEN)
    answer = await ask(alice, {"type": p.DELETE_MESSAGE, "room": room, "seq": spam})
    assert answer["type"] == p.ACK, answer
    assert (await bob.expect(p.MESSAGE_DELETED))["deleted"]["by"] == "alice"
    # the owner deletes, she does not edit what is not hers
    answer = await ask(alice, {"type": p.EDIT_MESSAGE, "room": room, "seq": said, "payload": {"content": "x"}})
    assert answer["code"] == p.ErrorCode.FORBIDDEN
    history = {f["seq"]: f for f in await replay(deployment, "bob", room)}
    assert history[spam]["message"] == {} and history[said]["message"] == {"content": "bob's point"}


async def test_a_reply_quotes_the_verified_author_and_loses_the_quote_when_that_is_deleted(
    deployment: Deployment, room: str
) -> None:
    alice = await joined(deployment, "alice", room)
    bob = await joined(deployment, "bob", room)
    mallory = await joined(deployment, "mallory", room)
    long_text = "the budget is approved " + "x" * 300
    asked = await say(alice, room, long_text, "a1")
    answered = await say(bob, room, "great", "b1", reply_to=asked)
    reply = (await alice.expect(p.MESSAGE, where=lambda f: f.get("seq") == answered))["reply"]
    assert reply["seq"] == asked and reply["identity"]["username"] == "alice" and reply["user_id"] == "alice"
    assert reply["quote"] == long_text[: p.REPLY_QUOTE_MAX_LENGTH]
    # mallory's made-up quote in her payload is hers to write, but never the server's `reply`
    fake = {"reply": {"seq": asked, "identity": {"username": "bob"}, "quote": "bob agrees to pay"}}
    forged = await say(mallory, room, "agreed", "f1", extra=fake, reply_to=asked, reply={"quote": "x"})
    frame = await alice.expect(p.MESSAGE, where=lambda f: f.get("seq") == forged)
    assert frame["reply"]["identity"]["username"] == "alice" and frame["identity"]["username"] == "mallory"
    assert frame["reply"]["quote"] == long_text[: p.REPLY_QUOTE_MAX_LENGTH]
    answer = await ask(mallory, {"type": p.MESSAGE, "room": room, "payload": {"content": "?"}, p.REPLY_TO: 9999})
    assert answer["code"] == p.ErrorCode.UNKNOWN_MESSAGE

    assert (await ask(alice, {"type": p.DELETE_MESSAGE, "room": room, "seq": asked}))["type"] == p.ACK
    history = {f["seq"]: f for f in await replay(deployment, "bob", room)}
    assert history[answered]["reply"]["quote"] == "" and history[answered]["reply"]["deleted"] is True
    assert "budget" not in json.dumps(list(history.values()))
    answer = await ask(bob, {"type": p.MESSAGE, "room": room, "payload": {"content": "?"}, p.REPLY_TO: asked})
    assert answer["code"] == p.ErrorCode.UNKNOWN_MESSAGE  # no reply to a deleted message


async def test_unread_counts_are_the_same_on_both_of_alices_connections(deployment: Deployment, room: str) -> None:
    laptop = await joined(deployment, "alice", room)
    tablet = await joined(deployment, "alice", room)
    bob = await joined(deployment, "bob", room)
    mallory = await joined(deployment, "mallory", room)
    seqs = [await say(bob, room, f"m{n}", f"b{n}") for n in range(3)]
    await laptop.send({"type": p.READ, "room": room, "seq": seqs[1], "ref": "r1"})
    mine = await laptop.expect(p.UNREAD, where=lambda f: f.get("ref") == "r1")
    assert (mine["read"], mine["seq"], mine["unread"]) == (seqs[1], seqs[2], 1)
    pushed = await tablet.expect(p.UNREAD)
    assert (pushed["read"], pushed["unread"]) == (seqs[1], 1) and "ref" not in pushed
    await tablet.send({"type": p.READ, "room": room, "ref": "r2"})  # no seq: only tell
    assert (await tablet.expect(p.UNREAD, where=lambda f: f.get("ref") == "r2"))["unread"] == 1
    assert not [f for f in bob.seen + mallory.seen if f.get("type") == p.UNREAD]  # alice's alone
    # mallory reading everything moves nobody's position but hers
    await mallory.send({"type": p.READ, "room": room, "seq": seqs[2], "ref": "r3"})
    assert (await mallory.expect(p.UNREAD))["unread"] == 0
    status, body = await deployment.api("alice", "GET", f"rooms/{room}/read")
    assert status == 200 and (body["read"], body["unread"]) == (seqs[1], 1)
    # REST moves it too, and tells both connections
    status, body = await deployment.api("alice", "PUT", f"rooms/{room}/read", {"seq": seqs[2]})
    assert status == 200 and body["unread"] == 0
    for client in (laptop, tablet):
        await client.expect(p.UNREAD, where=lambda f: f["read"] == seqs[2])

    async def bobs() -> dict[str, Any]:
        status, body = await deployment.api("bob", "GET", "rooms?unread=1")
        assert status == 200
        return {r["room"]: r for r in body["rooms"]}

    # what bob said is read for bob (moved right after each ack, not waited for)
    listed = await bobs()
    for _ in range(200):
        if listed.get(room, {}).get("unread") == 0:
            break
        await asyncio.sleep(0.05)
        listed = await bobs()
    assert listed[room]["read"] == seqs[2] and listed[room]["unread"] == 0


async def export(deployment: Deployment, name: str, room: str, kind: str) -> tuple[int, str, str]:
    response = await AsyncHTTPClient().fetch(
        f"{deployment.server(name).url}{p.REST_PATH}rooms/{room}/export?format={kind}",
        headers=headers(name),
        raise_error=False,
    )
    return response.code, response.headers.get("Content-Type", ""), response.body.decode()


async def test_an_export_is_for_those_who_may_read_the_room_and_shows_every_string_as_text(
    deployment: Deployment, room: str
) -> None:
    status, _ = await deployment.api("alice", "POST", "rooms", {"room": room, "members": ["bob"]})
    assert status == 201
    alice = await joined(deployment, "alice", room)
    bob = await joined(deployment, "bob", room)
    hostile = "<script>alert(1)</script> [click](javascript:alert(1)) ![x](http://evil/x.png)\n# not a heading"
    first = await say(bob, room, hostile, "b1")
    gone = await say(alice, room, "to be deleted", "a1")
    await say(alice, room, "ok", "a2", reply_to=first)
    assert (await ask(alice, {"type": p.DELETE_MESSAGE, "room": room, "seq": gone}))["type"] == p.ACK

    status, kind, markdown = await export(deployment, "alice", room, "md")
    assert status == 200 and kind.startswith("text/markdown")
    assert "<script" not in markdown and "](javascript" not in markdown and "![" not in markdown
    assert "\n# not" not in markdown and "@bob" in markdown and "to be deleted" not in markdown
    assert "&lt;script&gt;" in markdown  # shown, as text
    status, kind, chat = await export(deployment, "bob", room, "chat")
    assert status == 200 and kind.startswith("application/json")
    document = json.loads(chat)
    assert set(document) == {"messages", "users", "metadata"}
    bodies = [m for m in document["messages"] if m["sender"] == "bob"]
    assert bodies and "<script" not in bodies[0]["body"] and bodies[0]["type"] == "msg"
    assert {"bob", "alice"} <= set(document["users"]) and document["users"]["bob"]["username"] == "bob"
    assert next(m for m in document["messages"] if m.get("deleted"))["body"] == ""

    # mallory may not read alice's room: as if it did not exist, in both formats
    for fmt in ("md", "chat"):
        status, _, body = await export(deployment, "mallory", room, fmt)
        assert status == 404 and "to be deleted" not in body and "script" not in body
    status, _, _ = await export(deployment, "mallory", "e-nowhere-at-all", "md")
    assert status == 404
    status, _, body = await export(deployment, "alice", room, "html")
    assert status == 400 and json.loads(body)["error"] == p.ErrorCode.INVALID_FIELD
    status, _ = await call(deployment.server("mallory").url, "mallory", "GET", f"rooms/{room}/read")
    assert status == 404
