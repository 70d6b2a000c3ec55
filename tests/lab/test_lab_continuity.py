"""Continuity in JupyterLab (issue 21, item 5): after a reload the rooms and the direct
messages are back, from the server alone.

alice and bob, each in a Chromium context of their own on one real JupyterLab server
(personal tokens: `room_support.TwoAnalysts`), with no room in the extension's settings:
what their windows rejoin after a reload is what the server remembers for each of them.
alice writes bob a direct message in the panel and bob answers; both reload; each finds the
room joined again and their conversation in it (and alice a room of her own, which bob's
window never gets). alice leaves that room in the panel: after the next reload it stays
left. The hostile reader of another pair's conversation is refused in
tests/server/test_continuity.py and tests/client/test_continuity_client.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_support import TIMEOUT_MS

from iavicenne_ext.testing import JupyterProcess

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "iavicenne_ext" / "labextension"
ROOM = "continuity"
OWN = "alice-notes"
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""


def write_notebook(folder: Path, name: str, sources: list[str]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    notebook.cells = [nbformat.v4.new_markdown_cell(source) for source in sources]
    nbformat.write(notebook, folder / name)


@pytest.fixture
def people(browser: Any) -> Iterator[Any]:
    """A window of the person whose token it is given (every request carries it)."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_window(token: str) -> Any:
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, extra_http_headers={"Authorization": f"token {token}"}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        return page

    yield open_window
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the pages: {errors}"


def open_lab(page: Any, lab: JupyterProcess, notebook: str, workspace: str) -> None:
    page.goto(f"{lab.origin}/lab/workspaces/{workspace}/tree/{notebook}?reset", wait_until="domcontentloaded")
    page.wait_for_function(
        "(path) => { const w = window.jupyterapp && window.iavicenneLab && window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path === path && w.content.widgets.length > 0; }",
        arg=notebook,
        timeout=TIMEOUT_MS,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('iavicenne:open-panel')")


def member(page: Any, user: str) -> Any:
    return page.locator(f"#iavicenne-panel .iav-lab-member[data-user='{user}']")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("lab-continuity"), lab=True, options={"broker": "memory"})
    process.config.mkdir(parents=True)
    config = _CONFIG.format(tests=str(Path(__file__).resolve().parents[1]))
    config += f"c.LabApp.extra_labextensions_path = [{str(process.workdir / 'lab-extensions')!r}]\n"
    (process.config / "jupyter_server_config.py").write_text(config)
    extensions = process.workdir / "lab-extensions"
    extensions.mkdir(parents=True)
    (extensions / "iavicenne-lab").symlink_to(BUILD, target_is_directory=True)
    process.root.mkdir(parents=True)
    write_notebook(process.root, "alice.ipynb", ["# Alice's analysis"])
    write_notebook(process.root, "bob.ipynb", ["# Bob's review"])
    process.launch().wait_serving()
    yield process
    process.stop()


def joined(page: Any, room: str) -> Any:
    """The room's row in the panel's list, with *Leave* while this window is in it."""
    return page.locator(f"#iavicenne-panel .iav-lab-room[data-room='{room}'] .iav-lab-room-action")


def say(page: Any, to: str, text: str) -> None:
    """Write `to` a direct message in the panel's composer (the room shown is ROOM)."""
    page.locator("#iavicenne-panel .iav-lab-to").select_option(to)
    page.locator("#iavicenne-panel .iav-lab-input").fill(text)
    page.locator("#iavicenne-panel .iav-lab-input").press("Enter")


def show(page: Any, room: str) -> None:
    page.locator(f"#iavicenne-panel .iav-lab-room[data-room='{room}'] .iav-lab-room-name").click()


def test_after_a_reload_the_rooms_and_the_direct_messages_are_back(lab: JupyterProcess, people: Any) -> None:
    from playwright.sync_api import expect

    alice, bob = people("alice-token"), people("bob-token")
    open_lab(alice, lab, "alice.ipynb", "alice-continuity")
    open_lab(bob, lab, "bob.ipynb", "bob-continuity")
    for page in (alice, bob):
        expect(page.locator("#iavicenne-panel .iav-lab-state")).to_have_attribute("data-state", "online")
        page.evaluate(f"() => window.iavicenneLab.collaboration.join({ROOM!r})")
        expect(joined(page, ROOM)).to_have_text("Leave")
    alice.evaluate(f"() => window.iavicenneLab.collaboration.join({OWN!r})")
    expect(joined(alice, OWN)).to_have_text("Leave")
    show(alice, ROOM)
    expect(member(alice, "bob")).to_be_visible()
    expect(member(bob, "alice")).to_be_visible()

    say(alice, "bob", "only for you: the cohort file moved")
    expect(bob.locator("#iavicenne-panel .iav-lab-direct").filter(has_text="the cohort file moved")).to_contain_text(
        "direct, to you"
    )
    say(bob, "alice", "noted, thanks")
    expect(alice.locator("#iavicenne-panel .iav-lab-direct").filter(has_text="noted, thanks")).to_be_visible()

    for page in (alice, bob):
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp && window.iavicenneLab", timeout=60_000)
        page.evaluate("() => window.jupyterapp.commands.execute('iavicenne:open-panel')")
        expect(page.locator("#iavicenne-panel .iav-lab-state")).to_have_attribute("data-state", "online")
        expect(joined(page, ROOM)).to_have_text("Leave")  # rejoined: nothing in the settings said so
        show(page, ROOM)
        conversation = page.locator("#iavicenne-panel .iav-lab-direct")
        expect(conversation.filter(has_text="only for you: the cohort file moved")).to_be_visible()
        expect(conversation.filter(has_text="noted, thanks")).to_be_visible()
        expect(conversation).to_have_count(2)  # each once
    expect(joined(alice, OWN)).to_have_text("Leave")
    assert bob.evaluate(f"() => window.iavicenneLab.collaboration.rooms.has({OWN!r})") is False  # alice's, not his
    expect(alice.locator("#iavicenne-panel .iav-lab-direct").filter(has_text="only for you")).to_contain_text("direct, to @bob")

    # leaving in the panel is for good: the next window does not rejoin it
    joined(alice, OWN).click()  # (its row goes, or says Join, when nobody is left in it)
    alice.wait_for_function(
        "async (room) => { const c = window.iavicenneLab.collaboration;"
        " return !c.rooms.has(room) && !(await c.client.myRooms()).includes(room); }",
        arg=OWN,
    )
    alice.reload(wait_until="domcontentloaded")
    alice.wait_for_function("() => window.jupyterapp && window.iavicenneLab", timeout=60_000)
    alice.evaluate("() => window.jupyterapp.commands.execute('iavicenne:open-panel')")
    expect(joined(alice, ROOM)).to_have_text("Leave")
    assert alice.evaluate(f"() => window.iavicenneLab.collaboration.rooms.has({OWN!r})") is False
