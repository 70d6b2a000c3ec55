"""An AI agent seen by a person on the demo page: in the member list and in the log, its
name carries an "agent" badge (identity.kind "agent", which the server sets). The agent is
notebooks/agent_demo.py, the MCP SDK's client, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS

from iavicenne_ext.testing import JupyterProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("agent-badge"), options={"broker": "memory"})
    process.launch().wait_serving()
    yield process
    process.stop()


def test_a_person_sees_the_agent_badged_in_the_members_and_the_log(browser: Any, server: JupyterProcess) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 640})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    demo = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "notebooks" / "agent_demo.py"),
            "--url",
            server.url,
            "--token",
            server.token,
            "--room",
            "lab",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        ready = demo.stdout.readline()
        assert "helper (for " in ready, ready
        user_id = ready.rsplit(" as ", 1)[1].strip()
        page.goto(f"{server.origin}/iavicenne/?token={server.token}")
        page.fill("#name", "ada")
        page.fill("#room", "lab")
        page.click("#join")
        expect(page.locator("#connection")).to_have_text("online")
        badged = page.locator(f'#members li[data-member="{user_id}"] .agent-badge')
        expect(badged).to_have_text("agent")
        page.fill("#message", "@helper what did ada share?")
        page.click("#send")
        answer = page.locator("#log li.message").filter(has=page.locator(".agent-badge"))
        expect(answer).to_have_count(1)
        expect(answer).to_contain_text("shared")
        # a person's message has no badge
        expect(
            page.locator("#log li.message").filter(has_text="@helper what did ada share?").locator(".agent-badge")
        ).to_have_count(0)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
        context.close()
