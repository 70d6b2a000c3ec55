"""The demo page shows edits, deletions and replies, in Chromium (Playwright, Debian's browser).

A real ``jupyter server`` process with alice and bob (`room_support.TwoAnalysts`). alice's
tab is in the room; bob, from a socket, says something hostile, replies to it quoting it,
edits it and deletes it. alice's log shows each change where the message is, the reply's
quote with bob's verified name, and every string as text: the markup runs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS
from servers import connect

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess

HOSTILE = '<img src=x onerror="window.iavPwned=1"> [x](javascript:alert(1))'
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("edits-page"), options={"broker": "memory"})
    process.config.mkdir(parents=True)
    (process.config / "jupyter_server_config.py").write_text(_CONFIG.format(tests=str(Path(__file__).resolve().parents[1])))
    process.launch().wait_serving()
    yield process
    process.stop()


async def bob_says(server: JupyterProcess, *frames: dict[str, Any]) -> list[int]:
    """bob joins `edits` from a socket and sends `frames` one after another (each acked)."""
    bob = await connect(server, token="bob-token")
    await bob.send({"type": p.JOIN_ROOM, "room": "edits", "payload": {}})
    await bob.expect(p.ROOM_JOINED)
    seqs: list[int] = []
    for n, frame in enumerate(frames):
        ref = f"b{n}"
        resolved = {k: (seqs[v] if isinstance(v, Seq) else v) for k, v in frame.items()}
        await bob.send({**resolved, "room": "edits", "ref": ref})
        ack = await bob.expect(p.ACK, where=lambda f, ref=ref: f.get("ref") == ref)  # type: ignore[misc]
        seqs.append(int(ack.get("seq") or 0))
    bob.close()
    return seqs


class Seq(int):
    """The seq of the frame at this position in `bob_says` (filled in as they are acked)."""


def as_bob(server: JupyterProcess, *frames: dict[str, Any]) -> list[int]:
    """`bob_says` on a loop of its own (Playwright's sync API holds this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bob_says(server, *frames)).result(timeout=30)


def test_the_log_shows_edits_deletions_and_replies_as_text(server: JupyterProcess, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        viewport={"width": 1100, "height": 700}, extra_http_headers={"Authorization": "token alice-token"}
    )
    errors: list[str] = []
    try:
        alice = context.new_page()
        alice.set_default_timeout(TIMEOUT_MS)
        alice.on("pageerror", lambda error: errors.append(str(error)))
        alice.goto(f"{server.origin}/iavicenne/")
        alice.fill("#room", "edits")
        alice.click("#join")
        expect(alice.locator("#connection")).to_have_text("online")

        as_bob(
            server,
            {"type": p.MESSAGE, "payload": {"content": HOSTILE}},
            {"type": p.MESSAGE, "payload": {"content": "keep this one"}},
            {"type": p.MESSAGE, p.REPLY_TO: Seq(0), "payload": {"content": "quoting it"}},
            {"type": p.EDIT_MESSAGE, "seq": Seq(1), "payload": {"content": "kept, edited"}},
        )
        log = alice.locator("#log")
        expect(log).to_contain_text("kept, edited (edited)")
        reply = log.locator(".reply")
        expect(reply).to_contain_text("(re @bob: <img src=x")  # the quote, as text
        first = log.locator("li.message").filter(has_text="onerror").first
        expect(first).to_contain_text(HOSTILE)

        as_bob(server, {"type": p.DELETE_MESSAGE, "seq": 1})
        expect(log.locator(".text.deleted")).to_have_count(1)
        expect(log.locator(".text.deleted")).to_have_text("(deleted)")
        expect(reply).to_have_text("(re @bob, deleted) ")  # its quote goes too
        expect(log).not_to_contain_text("onerror")
        assert log.locator("img").count() == 0 and log.locator("a").count() == 0
        assert alice.evaluate("window.iavPwned") is None
    finally:
        context.close()
    assert errors == [], f"errors in the page: {errors}"
