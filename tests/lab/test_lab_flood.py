"""Floods in JupyterLab (issue 21): bob's 1,500 messages in 15 s while alice's Lab is open,
and the mutes that stop him: alice's own (his messages hidden for her only: carol, a
Python client, still gets them) and, as the room's owner, hers for the room (the server
refuses his messages for everyone, and a reconnect does not lift it).

The flood is measured with Chromium's long tasks (tests/lab_flood_support.py). What is
asserted does not depend on the machine's speed: the messages the panel keeps in the DOM
are bounded (1,500 before), and the longest task is under a bound far above what the panel
costs (on this 2-core machine: no task over 50 ms at load average 8, 93-510 ms at 12-20;
benchmarks/lab_flood.py prints the figure, median of 3) and below what the panel rendering
every message, with a notification for each mention, did (3.2 s median here, 3.4 s in
issue 21: it fails on that code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.request import Request, urlopen

import pytest
from browser_support import Agent
from lab_flood_support import ROOM, bob, flood, lab_server, open_lab, open_window
from notebook_support import chromium_path

import iavicenne_protocol as p
from iavicenne_ext.testing import JupyterProcess

pytestmark = pytest.mark.timeout(400)

BUILD = Path(__file__).resolve().parents[2] / "iavicenne_ext" / "labextension"
#: the longest main-thread task allowed while the flood comes (see the module docstring)
STALL_BOUND_MS = 1500
#: the panel's window of messages when following the end (chatlog.ts WINDOW), and its most
MAX_MESSAGES_SHOWN = 3 * 150


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    chromium_path()  # fail (CI) or skip before starting anything
    process = lab_server(tmp_path_factory.mktemp("lab-flood"), BUILD)
    process.wait_serving()
    yield process
    process.stop()


@pytest.fixture
def pages(browser: Any) -> Iterator[Any]:
    opened: list[Any] = []
    errors: list[str] = []

    def open_page(token: str) -> Any:
        page = open_window(browser, token)
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.context.close()
    assert errors == [], f"errors in the pages: {errors}"


def member(page: Any, user: str) -> Any:
    return page.locator(f"#iavicenne-panel .iav-lab-member[data-user='{user}']")


def shown(page: Any, text: str) -> Any:
    return page.locator("#iavicenne-panel .iav-lab-message .iav-lab-body").filter(has_text=text)


def test_a_flood_never_stalls_alices_lab(lab: JupyterProcess, pages: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    alice = pages("alice-token")
    open_lab(alice, lab, "alice")
    flooder = bob(lab, tmp_path / "bob.log")
    try:
        # each one mentions her: the old panel also raised a notification for each
        cost = flood(alice, flooder, count=1500, seconds=15, text="@alice flood")
        print(f"\nflood into alice's Lab: {cost.summary()}")
        assert cost.accepted == 1500, cost  # the options of the test server let them all through
        expect(shown(alice, "@alice flood 1499")).to_be_visible()
        # a few notifications for them all (3 at once, then one every 10 s per sender), not 1,500
        assert alice.locator(".Toastify__toast").count() <= 5
        assert cost.messages_in_dom <= MAX_MESSAGES_SHOWN, cost
        assert cost.longest_task_ms < STALL_BOUND_MS, cost

        # older messages come back on scrolling up, the newest stay bounded
        alice.locator("#iavicenne-panel .iav-lab-log").evaluate("(log) => { log.scrollTop = 0; }")
        expect(shown(alice, f"flood {1500 - 151}")).to_be_attached()
        assert alice.locator("#iavicenne-panel .iav-lab-message").count() <= MAX_MESSAGES_SHOWN
        alice.locator("#iavicenne-panel .iav-lab-log").evaluate("(log) => { log.scrollTop = log.scrollHeight; }")
    finally:
        flooder.stop()


def test_alice_mutes_bob_for_herself_and_as_the_rooms_owner(lab: JupyterProcess, pages: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    room = ROOM + "-owned"
    created = urlopen(
        Request(
            f"{lab.url}{p.REST_PATH}rooms",
            data=json.dumps({"room": room, "access": "public"}).encode(),
            headers={"Authorization": "token alice-token", "Content-Type": "application/json"},
            method="POST",
        ),
        timeout=30,
    )
    assert created.status == 201 and json.load(created)["owner"] == "alice"
    alice = pages("alice-token")
    open_lab(alice, lab, "alice-2")
    alice.evaluate("(room) => window.iavicenneLab.panel.joinAndShow(room)", room)
    sender = Agent(_as(lab, "bob-token"), room, "bob", log=tmp_path / "bob.log")
    carol = Agent(lab, room, "carol", log=tmp_path / "carol.log")  # the server's token: a third identity
    try:
        sender.expect("ready")
        carol.expect("ready")
        sender.command(cmd="send", text="first, before any mute")
        sender.expect("sent")
        expect(shown(alice, "first, before any mute")).to_be_visible()

        # her own mute: bob's messages are hidden for her, carol still gets them
        member(alice, "bob").locator(".iav-lab-mute").click()
        expect(member(alice, "bob").locator(".iav-lab-mute")).to_have_text("Unmute")
        expect(shown(alice, "first, before any mute")).to_have_count(0)
        sender.command(cmd="send", text="only carol reads this")
        sender.expect("sent")
        carol.expect("message", text="only carol reads this", user_id="bob")
        carol.command(cmd="send", text="carol's line")
        expect(shown(alice, "carol's line")).to_be_visible()
        assert shown(alice, "only carol reads this").count() == 0
        assert "bob" in alice.evaluate("() => window.iavicenneLab.collaboration.settings.muted")
        member(alice, "bob").locator(".iav-lab-mute").click()  # and back
        expect(member(alice, "bob").locator(".iav-lab-mute")).to_have_text("Mute")

        # as the room's owner: muted for the room, enforced by the server
        member(alice, "bob").locator(".iav-lab-room-mute").click()
        expect(member(alice, "bob").locator(".iav-lab-muted-label")).to_have_text("muted by the owner")
        sender.command(cmd="send", text="refused by the server")
        with pytest.raises(AssertionError, match=rf"muted you there \(code {p.ErrorCode.MUTED}\)"):
            sender.expect("sent")
        # his reconnect (a new client) is muted all the same
        again = Agent(_as(lab, "bob-token"), room, "bob#2", log=tmp_path / "bob2.log")
        try:
            again.expect("ready")
            again.command(cmd="send", text="refused again")
            with pytest.raises(AssertionError, match=rf"\(code {p.ErrorCode.MUTED}\)"):
                again.expect("sent")
        finally:
            again.stop()
        carol.command(cmd="send", text="carol after the mute")
        expect(shown(alice, "carol after the mute")).to_be_visible()
        assert not [e for e in carol.seen if e.get("event") == "message" and "refused" in str(e.get("text"))]
    finally:
        sender.stop()
        carol.stop()


def _as(lab: JupyterProcess, token: str) -> Any:
    return SimpleNamespace(origin=lab.origin, token=token)
