"""AI agents in rooms over the Model Context Protocol: the SDK's own client against a real
Jupyter server with the extension (pytest-jupyter's, in this process), alice and bob with
their own tokens (room_support.TwoAnalysts), and people on the room socket beside them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_support import agent_of
from room_support import ALICE, BOB, Connect, with_analysts

import iavicenne_protocol as p
from iavicenne_ext.testing import WSClient

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def person(connect: Connect, headers: dict[str, str], room: str) -> WSClient:
    client = await connect(headers=headers)
    await client.send({"type": p.JOIN_ROOM, "room": room, "payload": {}})
    await client.expect(p.ROOM_JOINED)
    return client


async def say(client: WSClient, room: str, text: str) -> int:
    """Post `text` as a person; its seq."""
    await client.send({"type": p.MESSAGE, "room": room, "payload": {"content": text}, "ref": text[:100]})
    return int((await client.expect(p.ACK))["seq"])


async def test_the_tools_are_listed(base: str) -> None:
    async with agent_of(base, "alice-token", "claude") as agent:
        tools = {tool.name for tool in (await agent.session.list_tools()).tools}
        assert {"whoami", "list_rooms", "join_room", "leave_room", "members", "read_messages", "wait_for_mention"} <= tools
        assert {"send_message", "send_direct", "set_status", "open_floor"} <= tools
        me = await agent.ok("whoami")
        assert me["user_id"] == "alice#claude"
        assert me["identity"]["username"] == "alice"
        assert me["identity"]["display_name"] == "claude (for alice)"
        assert me["identity"]["kind"] == p.MemberKind.AGENT


async def test_an_agent_joins_and_reads_and_people_see_it_as_an_agent(base: str, connect: Connect) -> None:
    alice = await person(connect, ALICE, "lab")
    first = await say(alice, "lab", "the cohort is ready")
    async with agent_of(base, "alice-token", "claude") as agent:
        joined = await agent.ok("join_room", room="lab")
        assert joined["seq"] >= first
        seen = await alice.expect(p.USER_JOINED)
        assert seen["user_id"] == "alice#claude"
        assert seen["identity"]["kind"] == p.MemberKind.AGENT and seen["identity"]["username"] == "alice"
        read = await agent.ok("read_messages", room="lab", since=0, limit=10)
        assert [m["message"]["content"] for m in read["messages"]] == ["the cohort is ready"]
        assert read["messages"][0]["kind"] == p.MemberKind.PERSON and read["next"] == first and read["gap"] is False
        members = (await agent.ok("members", room="lab"))["members"]
        assert {(m["user_id"], m["kind"]) for m in members} == {("alice", "person"), ("alice#claude", "agent")}
        rooms = (await agent.ok("list_rooms"))["rooms"]
        assert any(r["room"] == "lab" and r["joined"] for r in rooms)
        await agent.ok("set_status", status="reading the cohort")
        assert (await alice.expect(p.PRESENCE))["state"] == {"status": "reading the cohort"}
    # the MCP session ended: the agent left
    assert (await alice.expect(p.USER_LEFT))["user_id"] == "alice#claude"


async def test_an_agent_speaks_only_to_answer_a_mention(base: str, connect: Connect) -> None:
    bob = await person(connect, BOB, "ward")
    async with agent_of(base, "alice-token", "claude") as agent:
        await agent.ok("join_room", room="ward")
        refused = await agent.refused("send_message", room="ward", text="unsolicited advice")
        assert refused.startswith(p.ErrorCode.FORBIDDEN) and "mention" in refused
        await say(bob, "ward", "hello everyone")  # not a mention
        assert (await agent.ok("wait_for_mention", room="ward", timeout_s=0))["timed_out"] is True
        asked = await say(bob, "ward", "@claude what did alice share?")
        mention = (await agent.ok("wait_for_mention", room="ward", timeout_s=10))["mention"]
        assert (mention["seq"], mention["from"], mention["text"]) == (asked, "bob", "@claude what did alice share?")
        wrong = await agent.refused("send_message", room="ward", text="an answer to nothing", reply_to=asked - 1)
        assert wrong.startswith(p.ErrorCode.FORBIDDEN)
        answer = await agent.ok("send_message", room="ward", text="the cohort table", reply_to=asked)
        frame = await bob.expect(p.MESSAGE)
        assert frame["seq"] == answer["seq"] and frame["message"] == {"content": "the cohort table", "reply_to": asked}
        assert frame["identity"]["kind"] == p.MemberKind.AGENT and frame["identity"]["display_name"] == "claude (for alice)"
        # one answer a mention
        again = await agent.refused("send_message", room="ward", text="and another thing", reply_to=asked)
        assert again.startswith(p.ErrorCode.FORBIDDEN)
        # a direct message to it is answered directly, once
        await bob.send({"type": p.DIRECT_MESSAGE, "room": "ward", "to": "alice#claude", "payload": {"content": "psst"}})
        direct = (await agent.ok("wait_for_mention", timeout_s=10))["mention"]
        assert direct["direct"] is True and direct["from"] == "bob"
        await agent.ok("send_direct", user="bob", text="psst back")
        got = await bob.expect(p.DIRECT_MESSAGE)
        assert got["message"] == {"content": "psst back"} and got["identity"]["kind"] == p.MemberKind.AGENT
        assert (await agent.refused("send_direct", user="bob", text="more")).startswith(p.ErrorCode.FORBIDDEN)


@pytest.mark.parametrize("iavicenne_config", [{"agent_max_consecutive_turns": 3}])
async def test_two_agents_are_stopped_by_the_loop_breaker(base: str, connect: Connect) -> None:
    alice = await person(connect, ALICE, "relay")
    async with agent_of(base, "alice-token", "ping") as ping, agent_of(base, "bob-token", "pong") as pong:
        for agent in (ping, pong):
            await agent.ok("join_room", room="relay")
        asked = await say(alice, "relay", "@ping start the relay")
        turns = 0
        speaker, other, names = ping, pong, ("ping", "pong")
        while True:
            mention = (await speaker.ok("wait_for_mention", room="relay", timeout_s=10))["mention"]
            answer = await speaker.call("send_message", room="relay", text=f"@{names[1]} your turn", reply_to=mention["seq"])
            if answer.error:
                break
            turns += 1
            speaker, other, names = other, speaker, (names[1], names[0])
        assert turns == 3
        assert answer.text.startswith(p.ErrorCode.LIMIT_EXCEEDED) and "IAvicenne.agent_max_consecutive_turns = 3" in answer.text
        # a person speaks: agents may take turns again (the mention is still waiting for its answer)
        await say(alice, "relay", "carry on")
        assert not (await speaker.call("send_message", room="relay", text="done", reply_to=mention["seq"])).error
        assert asked < mention["seq"]


async def test_another_users_private_room_is_invisible_and_unenterable(
    base: str, http_server_client: Any, jp_base_url: str
) -> None:
    created = await http_server_client.fetch(
        f"{jp_base_url}{p.REST_PATH}rooms",
        method="POST",
        headers=ALICE,
        body='{"room": "alices-notes", "access": "private"}',
        raise_error=False,
    )
    assert created.code == 201, created.body
    async with agent_of(base, "bob-token", "snoop") as snoop, agent_of(base, "alice-token", "claude") as claude:
        assert "alices-notes" not in {r["room"] for r in (await snoop.ok("list_rooms"))["rooms"]}
        refused = await snoop.refused("join_room", room="alices-notes")
        assert refused.startswith(p.ErrorCode.FORBIDDEN)
        assert (await snoop.refused("members", room="alices-notes")).startswith(p.ErrorCode.FORBIDDEN)
        assert (await snoop.refused("read_messages", room="alices-notes")).startswith(p.ErrorCode.NOT_IN_ROOM)
        # alice's own agent may
        assert "alices-notes" in {r["room"] for r in (await claude.ok("list_rooms"))["rooms"]}
        await claude.ok("join_room", room="alices-notes")
        # the owner opens the floor; bob's agent may not
        assert (await snoop.refused("open_floor", room="alices-notes")).startswith(p.ErrorCode.FORBIDDEN)
        await claude.ok("open_floor", room="alices-notes", agent="alice#claude")
        await claude.ok("send_message", room="alices-notes", text="a note of my own")


@pytest.mark.parametrize("iavicenne_config", [{"agent_messages_per_minute": 2, "agent_bytes_per_minute": 100}])
async def test_budgets_are_reached_with_a_clear_error(base: str, server_token: str) -> None:
    async with agent_of(base, server_token, "chatty") as agent:  # the server's owner: the public rooms' owner
        await agent.ok("join_room", room="open")
        await agent.ok("open_floor", room="open")
        too_big = await agent.refused("send_message", room="open", text="x" * 150)
        assert too_big.startswith(p.ErrorCode.LIMIT_EXCEEDED) and "IAvicenne.agent_bytes_per_minute = 100" in too_big
        for n in range(2):
            await agent.ok("send_message", room="open", text=f"message {n}")
        refused = await agent.refused("send_message", room="open", text="one more")
        assert refused.startswith(p.ErrorCode.LIMIT_EXCEEDED) and "IAvicenne.agent_messages_per_minute = 2" in refused


async def test_bad_input_gets_mcp_errors_and_the_server_stays_up(base: str) -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("join_room", {"room": 5}),
        ("join_room", {}),
        ("join_room", {"room": "no/slashes"}),
        ("join_room", {"room": "x" * 500}),
        ("read_messages", {"room": "never-joined"}),
        ("read_messages", {"room": "never-joined", "limit": "many"}),
        ("send_message", {"room": "never-joined", "text": "hi"}),
        ("send_message", {"room": "never-joined", "text": ["not", "text"]}),
        ("wait_for_mention", {"timeout_s": 1e9}),
        ("send_direct", {"user": "", "text": "hi"}),
        ("set_status", {"status": "s" * 1000}),
        ("no_such_tool", {}),
    ]
    async with agent_of(base, "alice-token", "fuzz") as agent:
        for tool, arguments in bad:
            answer = await agent.call(tool, **arguments)
            assert answer.error, (tool, arguments, answer)
            assert "Traceback" not in answer.text and answer.text, (tool, answer.text)
        await agent.ok("join_room", room="still-up")
        huge = await agent.call("send_message", room="still-up", text="x" * 2_000_000)
        assert huge.error
        assert (await agent.ok("whoami"))["rooms"] == ["still-up"]


async def test_no_token_no_agent(base: str, http_server_client: Any, jp_base_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await http_server_client.fetch(
            f"{jp_base_url}{p.MCP_PATH}",
            method="POST",
            headers={**headers, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
            body='{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}',
            raise_error=False,
        )
        assert response.code in (401, 403), response.code
        assert b"Traceback" not in response.body
    with pytest.raises(Exception):  # noqa: B017, PT011  # the SDK's client gives up on a 401
        async with agent_of(base, None) as _:
            pass
    # Jupyter's "token" scheme works too
    async with agent_of(base, "bob-token", "plain", scheme="token") as agent:
        assert (await agent.ok("whoami"))["identity"]["username"] == "bob"


async def test_the_demo_agent_answers_what_alice_shared(base: str, connect: Connect) -> None:
    alice = await person(connect, ALICE, "demo")
    await say(alice, "demo", "the cohort table is in /shared/cohort.parquet")
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "notebooks" / "agent_demo.py"),
        "--url",
        base,
        "--token",
        "bob-token",
        "--room",
        "demo",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert demo.stdout is not None
        ready = await asyncio.wait_for(demo.stdout.readline(), 60)
        assert b"helper (for bob) is in room 'demo'" in ready, ready
        asked = await say(alice, "demo", "@helper what did alice share?")
        while True:
            frame = await alice.expect(p.MESSAGE)
            if frame["message"].get("reply_to") == asked:
                break
        assert (
            frame["message"]["content"]
            == "alice shared: the cohort table is in /shared/cohort.parquet | @helper what did alice share?"
        )
        assert frame["identity"]["kind"] == p.MemberKind.AGENT and frame["user_id"] == "bob#helper"
        assert await asyncio.wait_for(demo.wait(), 60) == 0
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()


async def rest(http_server_client: Any, jp_base_url: str, method: str, path: str, headers: dict[str, str], body: str = "") -> int:
    response = await http_server_client.fetch(
        f"{jp_base_url}{p.REST_PATH}{path}",
        method=method,
        headers=headers,
        body=body if method in ("POST", "PUT") else None,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    return int(response.code)


async def test_the_owner_mutes_an_agent_and_removing_its_person_removes_it(
    base: str, connect: Connect, http_server_client: Any, jp_base_url: str
) -> None:
    assert await rest(http_server_client, jp_base_url, "POST", "rooms", ALICE, '{"room": "clinic", "access": "private"}') == 201
    assert await rest(http_server_client, jp_base_url, "PUT", "rooms/clinic/members/bob", ALICE) in (200, 201, 204)
    alice = await person(connect, ALICE, "clinic")
    async with agent_of(base, "alice-token", "claude") as claude, agent_of(base, "bob-token", "helper") as helper:
        await claude.ok("join_room", room="clinic")
        await helper.ok("join_room", room="clinic")
        asked = await say(alice, "clinic", "@helper summarise please")
        assert (await helper.ok("wait_for_mention", room="clinic", timeout_s=10))["mention"]["seq"] == asked
        # bob's agent may not mute anyone in alice's room; alice's may
        assert (await helper.refused("mute_agent", room="clinic", agent="alice#claude")).startswith(p.ErrorCode.FORBIDDEN)
        await claude.ok("mute_agent", room="clinic", agent="bob#helper")
        muted = await helper.refused("send_message", room="clinic", text="a summary", reply_to=asked)
        assert muted.startswith(p.ErrorCode.FORBIDDEN) and "muted" in muted
        await claude.ok("mute_agent", room="clinic", agent="bob#helper", muted=False)
        await helper.ok("send_message", room="clinic", text="a summary", reply_to=asked)
        # alice removes bob: his agent goes with him
        assert await rest(http_server_client, jp_base_url, "DELETE", "rooms/clinic/members/bob", ALICE) in (200, 204)
        while (frame := await alice.expect(p.USER_LEFT))["user_id"] != "bob#helper":
            pass
        assert frame["identity"]["kind"] == p.MemberKind.AGENT
        assert (await helper.ok("whoami"))["rooms"] == []
        assert (await helper.refused("read_messages", room="clinic")).startswith(p.ErrorCode.NOT_IN_ROOM)
        assert (await helper.refused("join_room", room="clinic")).startswith(p.ErrorCode.FORBIDDEN)


async def test_an_mcp_session_is_its_identitys_alone(http_server_client: Any, jp_base_url: str) -> None:
    url = f"{jp_base_url}{p.MCP_PATH}"
    common = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    opened = await http_server_client.fetch(url, method="POST", headers={**common, **ALICE}, body=json.dumps(hello))
    session = opened.headers["Mcp-Session-Id"]
    listing = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    as_bob = await http_server_client.fetch(
        url, method="POST", headers={**common, **BOB, "Mcp-Session-Id": session}, body=listing, raise_error=False
    )
    assert as_bob.code == 404, as_bob.body  # as if it did not exist
    as_alice = await http_server_client.fetch(
        url, method="POST", headers={**common, **ALICE, "Mcp-Session-Id": session}, body=listing, raise_error=False
    )
    assert as_alice.code != 404, as_alice.body


async def test_an_agent_reads_and_sets_the_shared_document(base: str, connect: Connect, server_token: str) -> None:
    alice = await person(connect, ALICE, "board")
    async with agent_of(base, server_token, "scribe") as scribe, agent_of(base, "bob-token", "intruder") as intruder:
        me = (await scribe.ok("whoami"))["user_id"]
        for agent in (scribe, intruder):
            await agent.ok("join_room", room="board")
        refused = await scribe.refused("set_shared", room="board", key="summary", value="unasked")
        assert refused.startswith(p.ErrorCode.FORBIDDEN)
        await scribe.ok("open_floor", room="board", agent=me)  # the server's owner owns the public rooms
        changed = await scribe.ok("set_shared", room="board", key="summary", value={"rows": 3, "cols": ["a", "b"]})
        assert changed["changed"] is True
        frame = await alice.expect(p.SHARED)
        assert frame["user_id"] == me and frame["identity"]["kind"] == p.MemberKind.AGENT
        assert (await intruder.ok("get_shared", room="board"))["shared"] == {"summary": {"rows": 3, "cols": ["a", "b"]}}
        # the floor is the scribe's alone
        assert (await intruder.refused("set_shared", room="board", key="x", value=1)).startswith(p.ErrorCode.FORBIDDEN)
        deep: Any = 1
        for _ in range(100):
            deep = [deep]
        too_deep = await scribe.refused("set_shared", room="board", key="deep", value=deep)
        assert too_deep.startswith(p.ErrorCode.LIMIT_EXCEEDED) and "max_shared_depth" in too_deep


@pytest.mark.parametrize("iavicenne_config", [{"agents": False}])
async def test_a_server_may_serve_no_agents(http_server_client: Any, jp_base_url: str) -> None:
    response = await http_server_client.fetch(
        f"{jp_base_url}{p.MCP_PATH}", method="POST", headers=ALICE, body="{}", raise_error=False
    )
    assert response.code == 404


async def test_the_owner_decides_over_rest_for_an_agent(base: str, http_server_client: Any, jp_base_url: str) -> None:
    assert await rest(http_server_client, jp_base_url, "POST", "rooms", ALICE, '{"room": "desk", "access": "private"}') == 201
    assert await rest(http_server_client, jp_base_url, "PUT", "rooms/desk/members/bob", ALICE) in (200, 201, 204)
    path = "rooms/desk/agents/bob%23helper"
    async with agent_of(base, "bob-token", "helper") as helper:
        await helper.ok("join_room", room="desk")
        assert (await helper.refused("send_message", room="desk", text="unasked")).startswith(p.ErrorCode.FORBIDDEN)
        # bob is a member, not the owner
        assert await rest(http_server_client, jp_base_url, "PUT", path, BOB, '{"floor": true}') == 403
        for bad in ('{"floor": "yes"}', "{}", "[]", "not json"):
            assert await rest(http_server_client, jp_base_url, "PUT", path, ALICE, bad) == 400
        assert await rest(http_server_client, jp_base_url, "PUT", path, ALICE, '{"floor": true}') == 200
        await helper.ok("send_message", room="desk", text="now I may")
        assert await rest(http_server_client, jp_base_url, "PUT", path, ALICE, '{"muted": true}') == 200
        assert "muted" in await helper.refused("send_message", room="desk", text="and now?")
    # a public room's owner is the server's; a private room bob may not enter is not there for him
    assert await rest(http_server_client, jp_base_url, "PUT", "rooms/anyones/agents/x", BOB, '{"floor": true}') == 403
    assert await rest(http_server_client, jp_base_url, "POST", "rooms", ALICE, '{"room": "desk-2", "access": "private"}') == 201
    assert await rest(http_server_client, jp_base_url, "PUT", "rooms/desk-2/agents/x", BOB, '{"floor": true}') == 404


async def test_tools_called_at_once_join_once(base: str, connect: Connect) -> None:
    alice = await person(connect, ALICE, "busy")
    async with agent_of(base, "alice-token", "eager") as agent:
        answers = await asyncio.gather(*(agent.call("join_room", room="busy") for _ in range(5)))
        assert not any(answer.error for answer in answers), answers
        members = (await agent.ok("members", room="busy"))["members"]
        assert [m["connections"] for m in members if m["user_id"] == "alice#eager"] == [1]
        await agent.ok("leave_room", room="busy")
    assert (await alice.expect(p.USER_LEFT))["user_id"] == "alice#eager"
