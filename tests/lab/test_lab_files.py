"""Send to… never loses a file, and Follow (issue 21, items 6 and 7), in JupyterLab in
Chromium: alice and bob, each in a browser context of their own, on one JupyterLab server
(the server, fixtures and helpers of test_lab_panel.py). bob is the hostile one.

- bob sends a file named like alice's 24 KB ``report.csv``: *Save as…* with the suggested
  name asks Replace / Keep both / Cancel; Keep both saves his 18 bytes beside hers, and bob
  is told where; Cancel goes back to the name, where ``received/x.csv`` makes the folder
  first; ``../outside.csv`` and a folder that is a file are refused before any byte flows
  (bob's offer still waits); Replace replaces, only when chosen; bob's pile of offers shows
  three at a time.
- Follow on one server keeps opening what bob looks at (his notebook, then another, at his
  cell) until alice stops; a path in bob's presence that leads out, or to nothing, is not
  opened.
- Follow across servers (bob's presence names another server): alice asks for a copy, bob's
  window asks him, he sends it, and it opens at his cell in alice's window under the name she
  chose (beside her own file of that name). bob's requests to alice, hostile: a path she is
  not looking at is answered without a word shown, a pile of requests shows one, after her
  decline his next is not shown, and an offer naming a request she never made is dropped.

The real two-server case (two users' servers under JupyterHub) is the Hub test's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from browser_support import TIMEOUT_MS
from lab.test_lab_panel import lab, member, open_lab, people, select_cell, write_notebook

from iavicenne_ext.testing import JupyterProcess

__all__ = ["lab", "people"]  # the fixtures, imported from test_lab_panel

pytestmark = pytest.mark.timeout(300)

CONTROL = "iavicenne"
OFFER = "(args) => window.iavicenneLab.collaboration.offerFile('analysis', args.to, args.name, new TextEncoder().encode(args.text)).then((t) => t.id)"
DIRECT = "(args) => window.iavicenneLab.collaboration.rooms.get('analysis').room.direct(args.to, args.payload)"


def two_windows(lab: JupyterProcess, people: Any, tag: str) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    alice, bob = people("alice-token"), people("bob-token")
    for page in (alice, bob):
        # Chromium offers its loopback address as a candidate only to a page that may use the camera
        page.context.grant_permissions(["camera", "microphone"], origin=lab.origin)
    open_lab(alice, lab, "alice.ipynb", f"alice-{tag}")
    open_lab(bob, lab, "bob.ipynb", f"bob-{tag}")
    for page in (alice, bob):
        expect(page.locator("#iavicenne-panel .iav-lab-state")).to_have_attribute("data-state", "online")
    expect(member(alice, "bob")).to_be_visible()
    expect(member(bob, "alice")).to_be_visible()
    return alice, bob


def offer(bob: Any, name: str, text: str) -> str:
    """bob offers alice `name` (the bytes of `text`); the transfer's id."""
    return str(bob.evaluate(OFFER, {"to": "alice", "name": name, "text": text}))


def dialog_button(page: Any, label: str) -> Any:
    return page.locator(".jp-Dialog .jp-Dialog-button").filter(has_text=label)


def save_as(alice: Any, name: str, typed: str | None) -> None:
    """alice clicks Save as… on bob's offer of `name` and types `typed` (None: the suggestion)."""
    toast = alice.locator(".Toastify__toast").filter(has_text=f"sends you {name}").last
    toast.get_by_text("Save as…").click()
    box = alice.locator(".jp-Dialog input")
    if typed is not None:
        box.fill(typed)
    alice.locator(".jp-Dialog .jp-mod-accept").click()


def transfer(page: Any, transfer_id: str) -> Any:
    return page.locator(f"#iavicenne-panel .iav-lab-transfer[data-transfer='{transfer_id}']")


def test_save_as_never_loses_a_file(lab: JupyterProcess, people: Any) -> None:
    from playwright.sync_api import expect

    mine = bytes(range(256)) * 96  # alice's 24 KB
    (lab.root / "report.csv").write_bytes(mine)
    (lab.root / "afile.csv").write_text("a file, not a folder")
    alice, bob = two_windows(lab, people, "save")

    # the suggested name is hers: asked, and Keep both keeps both
    sent = offer(bob, "report.csv", "bob's 18 bytes!!!!")
    save_as(alice, "report.csv", None)
    expect(alice.locator(".jp-Dialog-header")).to_contain_text("report.csv exists")
    expect(alice.locator(".jp-Dialog-body")).to_contain_text("report (1).csv")
    dialog_button(alice, "Keep both").click()
    expect(transfer(bob, sent)).to_have_attribute("data-state", "done", timeout=60_000)
    expect(transfer(bob, sent)).to_contain_text("→ report (1).csv")  # the sender sees where
    expect(bob.locator(".Toastify__toast").filter(has_text="saved report.csv as report (1).csv")).to_be_visible()
    assert (lab.root / "report.csv").read_bytes() == mine
    assert (lab.root / "report (1).csv").read_bytes() == b"bob's 18 bytes!!!!"

    # Cancel goes back to the name; a missing folder is made, before bob sends a byte
    sent = offer(bob, "report.csv", "second try")
    save_as(alice, "report.csv", None)
    dialog_button(alice, "Cancel").click()
    expect(alice.locator(".jp-Dialog input")).to_have_value("report.csv")
    alice.locator(".jp-Dialog input").fill("received/x.csv")
    alice.locator(".jp-Dialog .jp-mod-accept").click()
    expect(transfer(bob, sent)).to_have_attribute("data-state", "done", timeout=60_000)
    expect(transfer(bob, sent)).to_contain_text("→ received/x.csv")
    assert (lab.root / "received" / "x.csv").read_bytes() == b"second try"

    # a path that leads out, and a folder that is a file: refused while bob's offer waits
    sent = offer(bob, "../../etc/passwd", "root::0:0")
    toast = alice.locator(".Toastify__toast").filter(has_text="sends you passwd")  # only its last segment, shown
    toast.get_by_text("Save as…").click()
    expect(alice.locator(".jp-Dialog input")).to_have_value("passwd")  # the suggestion: the last segment
    for typed, why in (
        ("../outside.csv", "'.' and '..' are not allowed"),
        ("afile.csv/x.csv", "cannot create the folder afile.csv: a file has that name"),
    ):
        alice.locator(".jp-Dialog input").fill(typed)
        alice.locator(".jp-Dialog .jp-mod-accept").click()
        expect(alice.locator(".jp-Dialog-header")).to_contain_text("Cannot save there")
        expect(alice.locator(".jp-Dialog-body")).to_contain_text(why)
        expect(transfer(bob, sent)).to_have_attribute("data-state", "offered")  # no byte flowed
        alice.locator(".jp-Dialog .jp-mod-accept").click()
    alice.locator(".jp-Dialog .jp-mod-reject").click()  # gives up: declined
    expect(transfer(bob, sent)).to_have_attribute("data-state", "declined")
    assert not (lab.root.parent / "outside.csv").exists() and (lab.root / "afile.csv").is_file()

    # Replace replaces, when it is what alice chose
    sent = offer(bob, "report.csv", "replacement")
    save_as(alice, "report.csv", None)
    dialog_button(alice, "Replace").click()
    expect(transfer(bob, sent)).to_have_attribute("data-state", "done", timeout=60_000)
    assert (lab.root / "report.csv").read_bytes() == b"replacement"

    # a pile of offers: three of bob's wait at a time, the rest are not shown
    for number in range(10):
        offer(bob, f"spam{number}.txt", "spam")
    expect(alice.locator(".Toastify__toast").filter(has_text="sends you spam")).to_have_count(3)
    alice.wait_for_timeout(500)
    expect(alice.locator(".Toastify__toast").filter(has_text="sends you spam")).to_have_count(3)


def current(page: Any) -> Any:
    return page.evaluate(
        "() => { const w = window.jupyterapp.shell.currentWidget; return w && w.context ? [w.context.path, w.content.activeCellIndex] : null; }"
    )


def test_follow_keeps_opening_what_they_look_at_until_stopped(lab: JupyterProcess, people: Any) -> None:
    from playwright.sync_api import expect

    write_notebook(lab.root, "notes.ipynb", ["# Notes", "## One", "## Two"])
    alice, bob = two_windows(lab, people, "follow")
    select_cell(bob, 2)
    expect(member(alice, "bob")).to_contain_text("bob.ipynb · cell 3")
    member(alice, "bob").locator(".iav-lab-follow").click()
    alice.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; return w && w.context && w.context.path === 'bob.ipynb' && w.content.activeCellIndex === 2; }"
    )
    bar = alice.locator(".iav-lab-following")
    expect(bar).to_contain_text("Following @bob (Bob)")

    # bob moves: alice's window goes with him, to his other notebook and cell
    bob.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', { path: 'notes.ipynb' })")
    bob.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.context?.path === 'notes.ipynb' && window.jupyterapp.shell.currentWidget.content.widgets.length > 0"
    )
    select_cell(bob, 1)
    alice.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; return w && w.context && w.context.path === 'notes.ipynb' && w.content.activeCellIndex === 1; }"
    )

    # what bob's presence says is his to write: a path out, or to nothing, is not opened
    for path, why in (("../../etc/passwd", "not allowed"), ("missing.ipynb", "missing.ipynb is not a file here")):
        bob.evaluate(
            "(path) => window.iavicenneLab.collaboration.setPresence({ ...window.iavicenneLab.collaboration.currentPresence, document: path })",
            path,
        )
        expect(bar).to_contain_text(why)
        assert current(alice) == ["notes.ipynb", 1]

    # until alice stops
    bar.locator(".iav-lab-follow-stop").click()
    expect(bar).to_be_hidden()
    bob.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', { path: 'bob.ipynb' })")
    select_cell(bob, 3)
    expect(member(alice, "bob")).to_contain_text("bob.ipynb · cell 4")
    alice.wait_for_timeout(500)
    assert current(alice) == ["notes.ipynb", 1]


ELSEWHERE = "http://elsewhere.example/user/bob/"


def test_ask_for_a_copy_across_servers_and_a_hostile_asker(lab: JupyterProcess, people: Any) -> None:
    from playwright.sync_api import expect

    alice, bob = two_windows(lab, people, "copy")
    select_cell(bob, 3)
    # bob's window says it is on another server (as under JupyterHub, one server per person)
    bob.evaluate(
        "(server) => window.iavicenneLab.collaboration.setPresence({ ...window.iavicenneLab.collaboration.currentPresence, server })",
        ELSEWHERE,
    )
    expect(member(alice, "bob")).to_contain_text("bob.ipynb · cell 4")
    member(alice, "bob").locator(".iav-lab-follow").click()
    expect(alice.locator(".jp-Dialog-body")).to_contain_text(f"it is on another server ({ELSEWHERE})")
    dialog_button(alice, "Ask for a copy").click()
    # a bob.ipynb exists here too (the same server in this test): asked, both kept
    expect(alice.locator(".jp-Dialog input")).to_have_value("bob.ipynb")
    alice.locator(".jp-Dialog .jp-mod-accept").click()
    dialog_button(alice, "Keep both").click()
    request = bob.locator(".Toastify__toast").filter(has_text="@alice (Alice) asks for a copy of bob.ipynb")
    request.get_by_text("Send a copy").click()
    alice.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; return w && w.context && w.context.path === 'bob (1).ipynb' && w.content.activeCellIndex === 3; }",
        timeout=TIMEOUT_MS * 3,
    )
    assert (lab.root / "bob (1).ipynb").read_bytes() == (lab.root / "bob.ipynb").read_bytes()

    # bob asks alice, hostile. A path she does not show: declined at once, nothing on her screen
    answers = "window.iavAnswers"
    bob.evaluate(
        "() => { window.iavAnswers = []; window.iavicenneLab.collaboration.control.connect((_, e) => window.iavAnswers.push(e.content)); }"
    )
    alice.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', { path: 'alice.ipynb' })")
    expect(member(bob, "alice")).to_contain_text("alice.ipynb")
    bob.evaluate(
        DIRECT, {"to": "alice", "payload": {CONTROL: "copy-request", "id": "h0", "path": "../../.ssh/id_rsa", "peer_id": "bob"}}
    )
    bob.wait_for_function(f"() => {answers}.some((a) => a.id === 'h0')")
    assert bob.evaluate(f"() => {answers}.find((a) => a.id === 'h0')") == {
        CONTROL: "copy-decline",
        "id": "h0",
        "reason": "not looking at that document now",
    }
    # a minute of silence after a decline: even a request for what she shows is not shown
    bob.evaluate(
        DIRECT, {"to": "alice", "payload": {CONTROL: "copy-request", "id": "h1", "path": "alice.ipynb", "peer_id": "bob"}}
    )
    alice.wait_for_timeout(1000)
    expect(alice.locator(".Toastify__toast").filter(has_text="asks for a copy")).to_have_count(0)
    # after it (the gate's clock moved on in alice's window): a pile of requests shows one
    alice.evaluate("() => { const real = Date.now; Date.now = () => real() + 61_000; }")
    for number in range(20):
        bob.evaluate(
            DIRECT,
            {"to": "alice", "payload": {CONTROL: "copy-request", "id": f"s{number}", "path": "alice.ipynb", "peer_id": "bob"}},
        )
    asks = alice.locator(".Toastify__toast").filter(has_text="@bob (Bob) asks for a copy of alice.ipynb")
    expect(asks).to_have_count(1)
    asks.get_by_text("Decline").click()
    bob.wait_for_function(f"() => {answers}.some((a) => a.id === 's0')")
    assert bob.evaluate(f"() => {answers}.find((a) => a.id === 's0')")["reason"] == "alice declined"
    assert bob.evaluate(f"() => {answers}.filter((a) => a.iavicenne === 'copy-decline').length") == 2  # h0 and s0 only
    # an offer answering a request alice never made: dropped, nothing shown, nothing saved
    before = sorted(p.name for p in lab.root.iterdir())
    bob.evaluate(
        "() => window.iavicenneLab.collaboration.offerFile('analysis', 'alice', 'alice.ipynb', new TextEncoder().encode('{}'), { request: 'c-never', cell: 0 })"
    )
    alice.wait_for_timeout(1000)
    expect(alice.locator(".Toastify__toast").filter(has_text="sends you alice.ipynb")).to_have_count(0)
    assert sorted(p.name for p in lab.root.iterdir()) == before
    assert json.loads((lab.root / "alice.ipynb").read_text())["cells"]
