"""The demo page's continuity (issue 21, item 5), in Chromium: a tab opened later (another
device, as far as the server can tell) lists the rooms its person is in under *Your rooms*,
rejoins one with a click, and shows the direct messages of that person's conversations
there (each once); *Leave* forgets the room. The third, hostile identity that may not read
them is in tests/server/test_continuity.py.

A real ``jupyter server`` process with two identities of its own (alice-token, bob-token:
`room_support.TwoAnalysts`), one browser context each, and a second one of alice's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS

from iavicenne_ext.testing import JupyterProcess

_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("demo-continuity"), options={"broker": "memory"})
    process.config.mkdir(parents=True)
    (process.config / "jupyter_server_config.py").write_text(_CONFIG.format(tests=str(Path(__file__).resolve().parents[1])))
    process.launch().wait_serving()
    yield process
    process.stop()


@pytest.fixture
def tabs(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []
    errors: list[str] = []

    def open_tab(token: str) -> Any:
        context = browser.new_context(
            viewport={"width": 1100, "height": 700}, extra_http_headers={"Authorization": f"token {token}"}
        )
        contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("pageerror", lambda error: errors.append(str(error)))
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the pages: {errors}"


def test_another_tab_lists_the_rooms_and_brings_the_direct_messages_back(server: JupyterProcess, tabs: Any) -> None:
    from playwright.sync_api import expect

    alice, bob = tabs("alice-token"), tabs("bob-token")
    for tab in (alice, bob):
        tab.goto(f"{server.origin}/iavicenne/")
        tab.fill("#room", "desk")
        tab.click("#join")
        expect(tab.locator("#connection")).to_have_text("online")
    expect(alice.locator('#members li[data-member="bob"]')).to_be_visible()
    alice.select_option("#send-to", "direct:bob")
    alice.fill("#message", "between us: the desk moved")
    alice.press("#message", "Enter")
    expect(bob.locator("#log li.message").filter(has_text="between us: the desk moved")).to_be_visible()

    # alice, on another device: her room is listed (and fills the form), one click rejoins it
    later = tabs("alice-token")
    later.goto(f"{server.origin}/iavicenne/")
    expect(later.locator("#my-rooms li[data-room='desk']")).to_be_visible()
    expect(later.locator("#room")).to_have_value("desk")
    later.locator("#my-rooms li[data-room='desk'] button").click()
    expect(later.locator("#connection")).to_have_text("online")
    kept = later.locator("#log li.message").filter(has_text="between us: the desk moved")
    expect(kept).to_have_count(1)
    expect(kept.locator(".via")).to_have_text("direct")

    # leaving here forgets the room for alice: her list no longer has it
    later.click("#leave")
    expect(later.locator("#my-rooms li[data-room='desk']")).to_have_count(0)
