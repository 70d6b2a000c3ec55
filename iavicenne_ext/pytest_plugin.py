"""Pytest fixtures: a Jupyter server with iAvicenne, and WebSocket clients for it.

Use with ``pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]``.
Override `iavicenne_config` to set ``IAvicenne`` options for a test module. The tools these
fixtures hand out (`WSClient`) and a server in a process of its own (`JupyterProcess`)
are in `iavicenne_ext.testing`, which a test imports without this module being a plugin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from iavicenne_protocol import ROOMS_PATH

from .testing import WSClient


@pytest.fixture
def iavicenne_config() -> dict[str, Any]:
    """``IAvicenne`` options for the test server; override in a module to change them."""
    return {}


@pytest.fixture
def jp_server_config(iavicenne_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"iavicenne_ext": True}},
        "IAvicenne": iavicenne_config,
    }


@pytest.fixture
def iav_connect(jp_ws_fetch: Any) -> Iterator[Callable[..., Awaitable[WSClient]]]:
    """Open a room socket (``iavicenne/ws/mcp``) authenticated with the server's token."""
    clients: list[WSClient] = []

    async def connect(path: str = ROOMS_PATH, **kwargs: Any) -> WSClient:
        ws = await jp_ws_fetch(*path.split("/"), **kwargs)
        client = WSClient(ws)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
