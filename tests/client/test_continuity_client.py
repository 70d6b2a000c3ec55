"""Presence of each connection and continuity from the Python client (issue 21, 4 and 5).

pytest-jupyter's server with alice, bob and carol (carol the hostile one), each with a
token of their own (`access_support.GroupAnalysts`). bob's second connection (a kernel
after his window) reaches alice's view with its state and count; a new client of alice
finds her rooms (`my_rooms`, `rejoin_my_rooms`) and, with ``direct_history``, her direct
messages; carol reads none of them and cannot forget alice's rooms for her.
"""

from __future__ import annotations

from typing import Any

import pytest
from access_support import GroupAnalysts
from room_support import eventually

from iavicenne import Backoff, RoomClient, ServerInfo

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    jp_server_config["ServerApp"]["identity_provider_class"] = GroupAnalysts
    return jp_server_config


async def client(opened: list[Any], base: str, name: str) -> RoomClient:
    made = RoomClient(ServerInfo(base, f"{name}-token"), backoff=FAST)
    opened.append(made)
    await made.start()
    return made


@pytest.mark.timeout(60)
async def test_a_second_connection_of_bob_reaches_alice_with_its_state_and_count(base: str, opened: list[Any]) -> None:
    alice = await client(opened, base, "alice")
    room = await alice.join("lab", state={"status": "here"})
    bob_window = await client(opened, base, "bob")
    await bob_window.join("lab", state={"kind": "lab", "status": "reviewing"})
    await eventually(lambda: room.members.get("bob", {}).get("connections") == 1, what="bob's window")
    bob_kernel = await client(opened, base, "bob")
    await bob_kernel.join("lab", state={"kind": "kernel", "notebook": "eda.ipynb"})
    await eventually(
        lambda: room.members["bob"].get("connections") == 2 and room.members["bob"]["state"].get("kind") == "kernel",
        what="bob's kernel in alice's view",
    )
    await bob_kernel.leave("lab")
    await eventually(
        lambda: room.members["bob"].get("connections") == 1 and room.members["bob"]["state"].get("kind") == "lab",
        what="bob's window alone again",
    )


@pytest.mark.timeout(60)
async def test_a_new_client_finds_the_rooms_and_the_direct_messages_and_carol_nothing(base: str, opened: list[Any]) -> None:
    alice = await client(opened, base, "alice")
    bob = await client(opened, base, "bob")
    carol = await client(opened, base, "carol")
    alice_room = await alice.join("desk")
    await alice.join("desk-2")
    bob_room = await bob.join("desk")
    await carol.join("desk")
    await eventually(lambda: "bob" in alice_room.members and "carol" in alice_room.members, what="everyone in desk")
    ack = await alice_room.direct("bob", "the draft is in /shared/q3.ipynb")
    assert ack["kept"] is True
    await bob_room.direct("alice", "got it")

    # alice's next window: her rooms, newest first, and her conversation with bob
    again = await client(opened, base, "alice")
    assert (await again.my_rooms())[:2] == ["desk-2", "desk"]
    seen: list[tuple[str, str]] = []
    again.on("message", lambda m: seen.append((m.user_id, m.text)) if m.direct and m.room == "desk" else None)
    rooms = await again.rejoin_my_rooms()
    assert [r.name for r in rooms][:2] == ["desk-2", "desk"]
    await eventually(lambda: len(seen) == 2, what="the kept conversation")
    assert seen == [("alice", "the draft is in /shared/q3.ipynb"), ("bob", "got it")]
    await bob_room.direct("alice", "one more")  # live, after the replay: once
    await eventually(lambda: ("bob", "one more") in seen, what="a live direct message")
    assert len(seen) == 3 and again.rooms["desk"].direct_seq == ack["direct_seq"] + 2

    # carol: nothing of theirs, and she cannot forget alice's rooms for her
    nosy = await client(opened, base, "carol")
    leaked: list[Any] = []
    nosy.on("message", lambda m: leaked.append(m) if m.direct else None)
    await nosy.join("desk", direct_history=True)
    assert await nosy.forget("desk-2") is False
    assert "desk-2" in await again.my_rooms()
    assert await again.forget("desk-2") is True
    assert "desk-2" not in await again.my_rooms()
    assert leaked == []


@pytest.mark.timeout(60)
async def test_direct_history_replays_in_order_on_join(base: str, opened: list[Any]) -> None:
    alice = await client(opened, base, "alice")
    bob = await client(opened, base, "bob")
    room = await alice.join("talk")
    await bob.join("talk")
    await eventually(lambda: "bob" in room.members, what="bob in talk")
    for n in range(3):
        await room.direct("bob", f"note {n}")
    later = await client(opened, base, "bob")
    got: list[str] = []
    later.on("message", lambda m: got.append(m.text) if m.direct else None)
    await later.join("talk", direct_history=True)
    await eventually(lambda: len(got) == 3, what="three kept direct messages")
    assert got == ["note 0", "note 1", "note 2"]
