"""Where clients find the rooms: ``{base_url}iavicenne/api/config`` on a plain Jupyter server
(the rooms are there), and what the Python client does with it (`discover_room_service`).

The same under a real JupyterHub, where the answer is the room service: test_jupyterhub.py.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from iavicenne import ServerNotFound
from iavicenne.discovery import discover_room_service, discover_server
from iavicenne_ext.testing import free_port


async def test_a_plain_server_says_the_rooms_are_here(jp_fetch: Any, jp_base_url: str, jp_http_port: int) -> None:
    response = await jp_fetch("iavicenne", "api", "config")
    config = json.loads(response.body)
    assert config["page_url"] == f"{jp_base_url}iavicenne/"
    assert config["service"] == ""
    rooms = urllib.parse.urlsplit(config["rooms_url"])
    assert rooms.port == jp_http_port and rooms.path == jp_base_url, config


async def test_the_config_needs_a_login(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("iavicenne", "api", "config", headers={"Authorization": ""})
    assert refused.value.code == 403


def test_kernels_outside_a_hub_look_for_no_room_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL", "IAVICENNE_ROOMS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert discover_room_service() is None


def test_the_admins_rooms_url_comes_first_with_the_kernels_own_hub_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IAVICENNE_URL", "JUPYTER_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alices-server-token")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:8888/user/alice/")
    monkeypatch.setenv("IAVICENNE_ROOMS_URL", "http://proxy-public/services/iavicenne")
    server = discover_server()
    assert (server.url, server.token, server.source) == (
        "http://proxy-public/services/iavicenne/",
        "alices-server-token",
        "IAVICENNE_ROOMS_URL",
    )


def test_an_unreachable_own_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.delenv("IAVICENNE_ROOMS_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", f"http://0.0.0.0:{port}/user/alice/")
    with pytest.raises(
        ServerNotFound, match=rf"this kernel's Jupyter server \(http://127.0.0.1:{port}/user/alice/\) is unreachable"
    ):
        discover_room_service(timeout=2)
