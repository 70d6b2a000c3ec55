"""An AI agent in a room, over the Model Context Protocol: it joins, waits to be mentioned,
and answers "@helper what did alice share?" with what alice said in the room.

No model here: the "thinking" is a few lines of Python, so the demo shows what the room
gives an agent and what it lets it do (docs/agents.md). A real agent (Claude Code, Jupyter
AI) calls the same tools. Run it beside a Jupyter server with iAvicenne:

    python notebooks/agent_demo.py --url http://127.0.0.1:8888/ --token <your token> --room lab

then, in the room (the demo page at /iavicenne/, or a notebook), write "@helper what did
alice share?". It answers each mention once and stops after --answers of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        raise RuntimeError(text)
    data = result.structured_content
    return data if isinstance(data, dict) else json.loads(text)


def answer(question: str, messages: list[dict[str, Any]]) -> str:
    """What the agent says: who is asked about, and what they posted (a model would do more)."""
    asked = re.search(r"what did @?([\w.-]+) (?:share|say)", question, re.IGNORECASE)
    if asked is None:
        return "ask me what someone shared: '@helper what did alice share?'"
    who = asked.group(1)
    said = [m["message"].get("content") for m in messages if m["username"] == who and m["kind"] == "person"]
    said = [text for text in said if isinstance(text, str)]
    if not said:
        return f"{who} has shared nothing here yet"
    return f"{who} shared: " + " | ".join(said[-5:])


async def run(url: str, token: str, room: str, answers: int, name: str = "helper") -> None:
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    endpoint = f"{url.rstrip('/')}/iavicenne/mcp?agent={name}"
    async with (
        client,
        streamable_http_client(endpoint, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        me = await call(session, "whoami")
        await call(session, "join_room", room=room)
        await call(session, "set_status", status="ready: mention me")
        print(f"{me['identity']['display_name']} is in room {room!r} as {me['user_id']}", flush=True)
        done = 0
        while done < answers:
            waited = await call(session, "wait_for_mention", room=room, timeout_s=30)
            mention = waited["mention"]
            if mention is None:
                continue
            history = await call(session, "read_messages", room=room, since=0, limit=200)
            await call(
                session, "send_message", room=room, text=answer(mention["text"], history["messages"]), reply_to=mention["seq"]
            )
            done += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8888/", help="the Jupyter server's address with its base_url")
    parser.add_argument("--token", default=os.environ.get("JUPYTER_TOKEN", ""), help="your Jupyter token ($JUPYTER_TOKEN)")
    parser.add_argument("--room", default="lab")
    parser.add_argument("--answers", type=int, default=1, help="mentions to answer before stopping")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.token, args.room, args.answers))


if __name__ == "__main__":
    main()
