"""The demo page with rooms that have members, in Chromium (Playwright, Debian's browser).

A real ``jupyter server`` process with two identities of its own (alice-token,
bob-token: `room_support.TwoAnalysts`), one tab for each. alice makes a private room from
the page; bob's tab is refused with the server's sentence and does not see it listed;
alice's invitations show (a hostile "username" among them, as text, running nothing),
then bob gets in, and is taken out again when she removes him.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import TIMEOUT_MS

from iavicenne_ext.testing import JupyterProcess

HOSTILE = '<img src=x onerror="window.iavPwned=1">'
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("private-page"), options={"broker": "memory"})
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
        # every request of the tab carries the identity's token (the page, its modules, the
        # REST calls, the sockets): TwoAnalysts' tokens log in no cookie
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


def test_a_private_room_from_the_page_invite_refuse_remove(server: JupyterProcess, tabs: Any) -> None:
    from playwright.sync_api import expect

    alice, bob = tabs("alice-token"), tabs("bob-token")
    alice.goto(f"{server.origin}/iavicenne/")
    alice.fill("#room", "q3")
    alice.check("#private")
    alice.click("#join")  # no name: the server's name for alice's identity
    expect(alice.locator("#connection")).to_have_text("online")
    expect(alice.locator("#log")).to_contain_text("joined q3 as alice")
    expect(alice.locator("#access")).to_have_text("private room of alice: only its members see it")
    expect(alice.locator("#invite-form")).to_be_visible()
    expect(alice.locator("#rooms li[data-room='q3']")).to_have_attribute("data-access", "private")

    # bob: refused, told whom to ask; the room is not in his list
    bob.goto(f"{server.origin}/iavicenne/")
    expect(bob.locator("#rooms")).to_contain_text("none with members now")
    bob.fill("#room", "q3")
    bob.click("#join")
    expect(bob.locator("#join-error")).to_have_text("room 'q3' is private: ask its owner (alice) to invite you (code forbidden)")
    expect(bob.locator("#room-view")).to_be_hidden()

    # alice invites: whatever is typed shows as text in her list of members
    for username in (HOSTILE, "bob"):
        alice.fill("#invitee", username)
        alice.click("#invite")
    members = alice.locator("#access-members li")
    expect(members).to_have_count(2)
    expect(alice.locator(f"#access-members li[data-username='{HOSTILE}']")).to_contain_text(HOSTILE)
    assert alice.locator("#access-members img").count() == 0
    assert alice.evaluate("window.iavPwned") is None

    # invited, bob gets in; alice sees him under his own name, nothing beside it
    bob.click("#join")
    expect(bob.locator("#connection")).to_have_text("online")
    expect(bob.locator("#access")).to_contain_text("private room of alice")
    expect(bob.locator("#invite-form")).to_be_hidden()  # only its owner invites
    bob_row = alice.locator("#members li[data-member='bob']")
    expect(bob_row).to_be_visible()
    assert bob_row.locator(".member-identity").count() == 0

    # removed: bob's page says so, and he is gone from alice's
    alice.locator("#access-members li[data-username='bob'] .remove-member").click()
    expect(bob.locator("#log")).to_contain_text("you are no longer in q3: its owner removed you")
    expect(bob_row).to_have_count(0)
    expect(members).to_have_count(1)
