"""What an AI agent costs: the MCP tool round trip, and the server's CPU per message of an
agent (an MCP ``send_message``) against a person's (a ``message`` frame on the room socket).

    python benchmarks/agents.py            # 300 of each
    python benchmarks/agents.py --quick    # 30 of each

One Jupyter server (memory broker) in a process of its own; the agent is the official MCP
SDK's client (streamable HTTP), the person a WebSocket client, both in one room, each
message waited for (the tool's answer, the ack) before the next: what an agent and a person
do. The server's CPU is read from /proc (psutil) around each run. The agents' budgets are
raised so that they do not stop the run (docs/agents.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess, start_all, stop_all

UNLIMITED = {"agent_messages_per_minute": 1e9, "agent_bytes_per_minute": 1 << 40, "agent_max_consecutive_turns": 1 << 30}


async def tool(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content or {}


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(server: JupyterProcess, count: int) -> dict[str, float]:
    process = psutil.Process(server.pid)
    request = HTTPRequest(server.ws_url(), headers={"Authorization": f"token {server.token}"})
    person = await websocket_connect(request)
    await person.write_message(json.dumps({"type": p.JOIN_ROOM, "room": "bench", "payload": {}}))
    while json.loads(await person.read_message() or "{}").get("type") != p.ROOM_JOINED:
        pass
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {server.token}"})
    url = f"{server.url}{p.MCP_PATH}?agent=bench"
    async with client, streamable_http_client(url, http_client=client) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await tool(session, "join_room", room="bench")
        await tool(session, "open_floor", room="bench")  # the server's token: the public rooms' owner
        trips = []
        for _ in range(count):
            start = time.perf_counter()
            await tool(session, "whoami")
            trips.append(time.perf_counter() - start)
        before = cpu(process)
        for n in range(count):
            await tool(session, "send_message", room="bench", text=f"agent message {n}")
        agent_cpu = cpu(process) - before
        before = cpu(process)
        for n in range(count):
            await person.write_message(
                json.dumps({"type": p.MESSAGE, "room": "bench", "payload": {"content": f"person {n}"}, "ref": f"r{n}"})
            )
            while json.loads(await person.read_message() or "{}").get("type") != p.ACK:
                pass
        person_cpu = cpu(process) - before
    person.close()
    trips.sort()
    return {
        "tool round trip, median (ms)": statistics.median(trips) * 1000,
        "tool round trip, p90 (ms)": trips[int(len(trips) * 0.9)] * 1000,
        "server CPU per agent message (ms)": agent_cpu / count * 1000,
        "server CPU per person message (ms)": person_cpu / count * 1000,
        "ratio agent / person": agent_cpu / person_cpu if person_cpu else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="30 of each")
    args = parser.parse_args()
    count = 30 if args.quick else args.count
    with tempfile.TemporaryDirectory() as workdir:
        server = JupyterProcess(Path(workdir), name="agents", options=UNLIMITED)
        start_all([server])
        try:
            figures = asyncio.run(measure(server, count))
        finally:
            stop_all([server])
    for name, value in figures.items():
        print(f"{name:40s} {value:8.2f}")


if __name__ == "__main__":
    main()
