"""Edits, deletions, replies, read positions and exports from the Python client (`Room.edit`,
``delete``, ``reply``, ``mark_read``, ``unread``; ``change`` events; `RoomClient.export_room`).

pytest-jupyter's server with alice and bob (their own tokens: `room_support.TwoAnalysts`)
and mallory holding the server's own token, another identity: she can neither edit nor
delete alice's messages, and her reading moves nobody's position but hers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from room_support import eventually, session, with_analysts

import iavicenne_protocol as p
from iavicenne import Backoff, Forbidden, RequestFailed, RoomClient, ServerInfo
from iavicenne.events import MessageChange

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def client(opened: list[Any], base: str, token: str) -> RoomClient:
    made = RoomClient(ServerInfo(base, token), backoff=FAST)
    opened.append(made)
    await made.start()
    return made


@pytest.mark.timeout(60)
async def test_alice_edits_deletes_and_bob_replies_from_python(base: str, opened: list[Any], server_token: str) -> None:
    alice_client = await client(opened, base, "alice-token")
    bob_client = await client(opened, base, "bob-token")
    mallory_client = await client(opened, base, server_token)
    alice = await alice_client.join("notes")
    bob = await bob_client.join("notes")
    mallory = await mallory_client.join("notes")
    changes: list[MessageChange] = []
    bob.on("change", changes.append)
    replies = bob.messages()

    seq = (await alice.send("lunch at noon"))["seq"]
    answer = await bob.reply(seq, "I'll be there")
    reply = await replies.get(5)
    while reply.seq != answer["seq"]:
        reply = await replies.get(5)
    assert reply.reply is not None and reply.reply["identity"]["username"] == "alice"
    assert reply.reply["quote"] == "lunch at noon"

    with pytest.raises(Forbidden):
        await mallory.edit(seq, "lunch cancelled")
    with pytest.raises(Forbidden):
        await mallory.delete(seq)
    await alice.edit(seq, "lunch at one")
    await eventually(lambda: len(changes) == 1, what="bob's edited event")
    assert (changes[0].kind, changes[0].seq, changes[0].content) == ("edited", seq, {"content": "lunch at one"})
    assert changes[0].identity["username"] == "alice"
    await alice.delete(seq)
    await eventually(lambda: len(changes) == 2, what="bob's deleted event")
    assert (changes[1].kind, changes[1].content) == ("deleted", {})
    with pytest.raises(RequestFailed) as gone:
        await bob.reply(seq, "too late")
    assert gone.value.code == p.ErrorCode.UNKNOWN_MESSAGE

    kept = await bob.recent(10)
    by_seq = {m.seq: m for m in kept}
    assert by_seq[seq].deleted and by_seq[seq].text is None
    replied = by_seq[answer["seq"]].reply
    assert replied is not None and replied["quote"] == "" and replied["deleted"] is True

    markdown = await bob_client.export_room("notes", "md")
    assert "@bob" in markdown and "lunch" not in markdown
    document = json.loads(await alice_client.export_room("notes", "chat"))
    assert set(document) == {"messages", "users", "metadata"}


@pytest.mark.timeout(60)
async def test_unread_is_the_same_on_two_of_alices_clients(base: str, opened: list[Any], server_token: str) -> None:
    laptop_client = await client(opened, base, "alice-token")
    tablet_client = await client(opened, base, "alice-token")
    bob_client = await client(opened, base, "bob-token")
    mallory_client = await client(opened, base, server_token)
    laptop = await laptop_client.join("standup")
    tablet = await tablet_client.join("standup")
    bob = await bob_client.join("standup")
    mallory = await mallory_client.join("standup")
    pushed: list[dict[str, Any]] = []
    tablet.on("unread", pushed.append)
    for n in range(3):
        await bob.send(f"update {n}")
    await eventually(lambda: laptop.seq == bob.seq, what="the laptop has every message")
    assert await laptop.unread() == 3 and await tablet.unread() == 3
    state = await laptop.mark_read()  # up to the last message it saw
    assert (state["read"], state["unread"]) == (bob.seq, 0)
    await eventually(lambda: bool(pushed) and pushed[-1]["unread"] == 0, what="the tablet's unread")
    assert await tablet.unread() == 0
    assert await mallory.unread() == 3  # alice's reading is hers
    await mallory.mark_read()
    assert await laptop.unread() == 0 and await bob.unread() == 0  # bob wrote them: read for him
    rooms = {r["room"]: r for r in await tablet_client.unread()}
    assert rooms["standup"]["unread"] == 0
    await asyncio.sleep(0)


@pytest.mark.timeout(60)
async def test_the_notebook_room_edits_replies_deletes_and_counts_unread(base: str, opened: list[Any], server_token: str) -> None:
    alice = session(opened, base, "desk", "alice")
    bob = session(opened, base, "desk", "bob")
    mallory = session(opened, base, "desk", "mallory", token=server_token)
    for room in (alice, bob, mallory):
        await room.ready()
    changes: list[MessageChange] = []
    bob.on("change", changes.append)
    seq = (await alice.send("draft"))["seq"]
    await alice.edit(seq, "final <b>")
    await eventually(lambda: len(changes) == 1, what="bob's change event")
    await eventually(lambda: "edited message" in bob.panel.conversation.value, what="the note in bob's panel")
    shown = bob.panel.conversation.value
    assert "@alice edited message" in shown and "final &lt;b&gt;" in shown and "final <b>" not in shown
    answer = await bob.reply(seq, "looks good")
    with pytest.raises(Forbidden):
        await mallory.delete(seq)
    await eventually(lambda: bob.room is not None and bob.room.seq == answer["seq"], what="bob's view")
    assert await alice.unread() == 1 and await bob.unread() == 0
    assert (await alice.mark_read())["unread"] == 0
    markdown = await bob.export("md")
    assert "final" in markdown and "draft" not in markdown and "@alice" in markdown
    assert [hit["seq"] for hit in await bob.search("final")] == [seq] and await bob.search("draft") == []
    await alice.delete(seq)
    assert "final" not in await bob.export("md")
    assert await bob.search("final") == []


@pytest.mark.timeout(60)
async def test_search_from_python_finds_what_we_may_read(base: str, opened: list[Any], server_token: str) -> None:
    """alice's private room is not searched for mallory, whatever her query says."""
    alice_client = await client(opened, base, "alice-token")
    mallory_client = await client(opened, base, server_token)
    await alice_client.create_room("hideout", members=[])
    hideout = await alice_client.join("hideout")
    lobby = await alice_client.join("lobby")
    await hideout.send("the key is under the mat")
    await lobby.send("the key to success is rest")
    hits = await alice_client.search("key")
    assert sorted((hit["room"], hit["author"], hit["text"]) for hit in hits) == [
        ("hideout", "alice", "the key is under the mat"),
        ("lobby", "alice", "the key to success is rest"),
    ]
    assert [hit["room"] for hit in await alice_client.search("KEY", room="hideout", limit=1)] == ["hideout"]
    for query in ("the key is under the mat", '"under" OR mat*', "NEAR(key mat)"):
        assert all(hit["room"] == "lobby" for hit in await mallory_client.search(query)), query
    with pytest.raises(RequestFailed):  # as if it did not exist
        await mallory_client.search("key", room="hideout")
    with pytest.raises(ValueError, match="q is the text"):
        await mallory_client.search("  ")
