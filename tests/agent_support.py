"""What the agent tests share: an MCP client (the official SDK's own) for one identity's
agent on a real Jupyter server, and the reading of its tools' answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

import iavicenne_protocol as p


@dataclass
class Answer:
    """A tool's answer: its structured result, or its error text."""

    error: bool
    text: str
    data: dict[str, Any]


@dataclass
class Agent:
    session: ClientSession

    async def call(self, tool: str, **arguments: Any) -> Answer:
        result = await self.session.call_tool(tool, arguments)
        text = "".join(getattr(block, "text", "") for block in result.content)
        # the SDK puts what failed before the server's refusal, which starts with its code
        text = text.removeprefix(f"Error executing tool {tool}: ")
        data = result.structured_content if isinstance(result.structured_content, dict) else {}
        if not data and not result.is_error:
            data = json.loads(text)
        return Answer(bool(result.is_error), text, data)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        answer = await self.call(tool, **arguments)
        assert not answer.error, (tool, answer.text)
        return answer.data

    async def refused(self, tool: str, **arguments: Any) -> str:
        answer = await self.call(tool, **arguments)
        assert answer.error, (tool, answer.data)
        return answer.text


def mcp_url(base: str, agent: str | None = None) -> str:
    return f"{base}{p.MCP_PATH}" + (f"?agent={agent}" if agent else "")


@asynccontextmanager
async def agent_of(base: str, token: str | None, agent: str | None = None, scheme: str = "Bearer") -> AsyncIterator[Agent]:
    """An initialized MCP session of `agent` with `token` (None: no Authorization header)."""
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else None
    client: httpx2.AsyncClient = create_mcp_http_client(headers=headers)
    async with (
        client,
        streamable_http_client(mcp_url(base, agent), http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield Agent(session)
