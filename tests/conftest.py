"""What every test gets from pytest: the plugins, loopback-only peer links, and the room
socket fixture the endpoint tests share (fixtures live here, where pytest finds them, so
a test module asks for one by naming it, without importing it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from room_support import Connect, assert_timestamped

from iavicenne.ice import ADDRESSES_VARIABLE
from iavicenne_ext.testing import WSClient

pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]

# Tests talk to loopback only: a peer link whose code names no addresses (join()'s
# default) gathers 127.0.0.1 alone, in this process and in every process it starts (the
# Jupyter servers, their kernels, the notebooks' kernels inherit this environment).
os.environ[ADDRESSES_VARIABLE] = "127.0.0.1"


@pytest.fixture
def connect(iav_connect: Connect) -> Iterator[Connect]:
    """`iav_connect`, and at the end: every frame any client read carried a UTC timestamp."""
    clients: list[WSClient] = []

    async def open_client(*args: Any, **kwargs: Any) -> WSClient:
        client = await iav_connect(*args, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        assert_timestamped(client.seen)
