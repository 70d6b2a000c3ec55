"""Idle connections (issue 15): what each one holds was cut, not what it does.

Every socket used to carry a PeriodicCallback of Jupyter's for its keep-alive pings, and
a pinging task of tornado's that never pinged (it read Jupyter's milliseconds as
seconds). The server now pings every socket from one timer (`KeepAlive`): an idle client
that answers is pinged at Jupyter's interval and stays, one that stopped answering is
closed after Jupyter's ping timeout, and a closed one is forgotten.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from room_support import RawSocket

from iavicenne_ext.pytest_plugin import WSClient

PING_MS = 200
TIMEOUT_MS = 600


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    jp_server_config["ServerApp"]["tornado_settings"] = {"ws_ping_interval": PING_MS, "ws_ping_timeout": TIMEOUT_MS}
    return jp_server_config


async def test_idle_clients_are_pinged_and_one_that_stops_answering_is_closed(
    jp_ws_fetch: Any, jp_serverapp: Any, jp_http_port: int, jp_base_url: str
) -> None:
    pings: list[int] = []
    ws = await jp_ws_fetch("iavicenne", "ws", "mcp")
    ws.on_ping = lambda data: pings.append(len(data))  # tornado's client calls it for each ping (and pongs)
    answering = WSClient(ws)  # tornado answers every ping with a pong
    await answering.join("idle", "answering")
    loop = asyncio.get_running_loop()
    token = jp_serverapp.identity_provider.token
    # a bare socket: reads nothing and never answers a ping
    silent = await loop.run_in_executor(None, RawSocket, jp_http_port, f"{jp_base_url}iavicenne/ws/mcp", token)
    try:
        silent.send({"type": "join-room", "room": "idle", "payload": {}})
        left = await answering.expect("user-left", timeout=10)  # the silent one, closed for its missing pongs
        assert left["user_id"] != "answering"
        # the answering client is pinged again and again, answers, and stays
        await asyncio.sleep(3 * TIMEOUT_MS / 1000)
        assert len(pings) >= 5
        await answering.send({"type": "message", "room": "idle", "payload": {"still": "here"}})
        assert (await answering.expect("message"))["message"] == {"still": "here"}
    finally:
        silent.close()
    answering.close()
