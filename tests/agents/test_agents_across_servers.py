"""Agents on a deployment of two Jupyter servers sharing Redis: alice's agent on the first,
bob on the second. The agent is a member of the rooms through the same room logic as
people, so a mention, its answer and a private room's refusal all cross servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from access_support import Deployment, deployed
from agent_support import agent_of

import iavicenne_protocol as p


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed("redis", tmp_path_factory.mktemp("agents-redis"), "agents")


async def test_an_agent_answers_a_mention_from_another_server(deployment: Deployment) -> None:
    bob = await deployment.socket("bob")
    await bob.send({"type": p.JOIN_ROOM, "room": "across", "payload": {}})
    await bob.expect(p.ROOM_JOINED)
    async with agent_of(deployment.server("alice").url, "alice-token", "claude") as agent:
        await agent.ok("join_room", room="across")
        while (joined := await bob.expect(p.USER_JOINED))["user_id"] == "bob":
            pass  # the seed's own user-joined first
        assert joined["user_id"] == "alice#claude" and joined["identity"]["kind"] == p.MemberKind.AGENT
        await bob.send({"type": p.MESSAGE, "room": "across", "payload": {"content": "@claude which server?"}, "ref": "q"})
        asked = (await bob.expect(p.ACK))["seq"]
        mention = (await agent.ok("wait_for_mention", room="across", timeout_s=30))["mention"]
        assert (mention["seq"], mention["from"]) == (asked, "bob")
        await agent.ok("send_message", room="across", text="the other one", reply_to=asked)
        while (frame := await bob.expect(p.MESSAGE))["seq"] == asked:
            pass
        assert frame["message"] == {"content": "the other one", "reply_to": asked}
        assert frame["identity"] == {
            "username": "alice",
            "name": "alice",
            "display_name": "claude (for alice)",
            "kind": p.MemberKind.AGENT,
            "agent": "claude",
        }
        members = (await agent.ok("members", room="across"))["members"]
        assert {(m["user_id"], m["kind"]) for m in members} == {("bob", "person"), ("alice#claude", "agent")}
    # the session ended on alice's server: bob, on the other, sees the agent leave
    assert (await bob.expect(p.USER_LEFT))["user_id"] == "alice#claude"


async def test_a_private_room_is_closed_to_an_agent_on_another_server(deployment: Deployment) -> None:
    status, _ = await deployment.api("alice", "POST", "rooms", {"room": "alice-only", "access": "private"})
    assert status == 201
    async with agent_of(deployment.server("bob").url, "bob-token", "snoop") as snoop:
        assert "alice-only" not in {r["room"] for r in (await snoop.ok("list_rooms"))["rooms"]}
        assert (await snoop.refused("join_room", room="alice-only")).startswith(p.ErrorCode.FORBIDDEN)
    async with agent_of(deployment.server("alice").url, "alice-token", "claude") as claude:
        await claude.ok("join_room", room="alice-only")
