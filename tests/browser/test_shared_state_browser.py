"""A room's shared document with a browser in it: alice and bob in Python clients (as their
kernels hold them, each with its own token), and the server's owner as carol in Debian's
Chromium on the demo page (Playwright, ``executable_path``; logged in with the server's
token, so Jupyter's login cookie loads the page's modules), all editing the same keys at once.

Apart from tests/server/test_shared_state.py because Playwright's sync API runs its own event loop
in the test's thread (as in tests/browser/test_browser_page.py, whose Chromium set-up this uses):
the Python clients run on a loop of their own, in a thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pycrdt
import pytest
from access_support import SERVER_CONFIG
from browser_support import TIMEOUT_MS

import iavicenne_protocol as p
from iavicenne import RoomClient
from iavicenne.shared import SharedState, share
from iavicenne_ext.testing import JupyterProcess

T = TypeVar("T")
ROOM = "s-browser"
HOSTILE = "<img src=x onerror=window.pwned=1>"


class Kernels:
    """alice's and bob's clients on a loop in a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[RoomClient] = []

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def call(self, function: Any, *args: Any) -> Any:
        async def call() -> Any:
            return function(*args)

        return self.run(call())

    async def open(self, server: JupyterProcess, name: str) -> SharedState:
        client = await RoomClient.connect(url=server.url, token=f"{name}-token", user_id=name)
        self.clients.append(client)
        state = share(await client.join(ROOM))
        return await state.synced(10)

    def close(self) -> None:
        async def close_all() -> None:
            for client in self.clients:
                await client.close()

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    options = {"broker": "memory", **getattr(request, "param", {})}  # a test's options, given indirectly
    process = JupyterProcess(tmp_path_factory.mktemp("shared-browser"), options=options)
    process.config.mkdir(parents=True, exist_ok=True)
    (process.config / "jupyter_server_config.py").write_text(SERVER_CONFIG)  # alice's and bob's tokens
    process.start()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Any, server: JupyterProcess) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def browser_state(page: Any) -> dict[str, Any]:
    return dict(json.loads(page.evaluate("JSON.stringify(window.iavicenneDemo.shared.toJSON())")))


def wait_until(condition: Any, what: str, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.05)


def test_two_kernels_and_a_browser_editing_the_same_keys_at_once_converge(server: JupyterProcess, page: Any) -> None:
    from playwright.sync_api import expect

    kernels = Kernels()
    try:
        alice = kernels.run(kernels.open(server, "alice"))
        bob = kernels.run(kernels.open(server, "bob"))
        kernels.call(alice.__setitem__, "questions", [])

        # carol, in Chromium, on the demo page: a third identity (the server's owner)
        page.goto(f"{server.origin}/iavicenne/?token={server.token}")
        page.fill("#name", "carol")
        page.fill("#room", ROOM)
        page.click("#join")
        expect(page.locator("#connection")).to_have_text("online")
        page.wait_for_function("window.iavicenneDemo.shared && window.iavicenneDemo.shared.has('questions')")

        async def kernels_write() -> None:
            for i in range(30):
                alice["threshold"] = i
                bob["threshold"] = 100 + i
                alice["questions"].append(f"alice {i}")
                bob["questions"].append(f"bob {i}")
                await asyncio.sleep(0.005)

        writing = asyncio.run_coroutine_threadsafe(kernels_write(), kernels.loop)
        page.evaluate(
            """async () => {
              const shared = window.iavicenneDemo.shared;
              for (let i = 0; i < 30; i++) {
                shared.set("threshold", 200 + i);
                shared.get("questions").push([`carol ${i}`]);
                await new Promise((resolve) => setTimeout(resolve, 5));
              }
            }"""
        )
        writing.result(30)

        def converged() -> bool:
            python = kernels.call(alice.to_py)
            return python == kernels.call(bob.to_py) == browser_state(page) and len(python["questions"]) == 90

        wait_until(converged, "alice, bob and carol having the same document")
        state = browser_state(page)
        assert sorted(state["questions"]) == sorted(f"{who} {i}" for who in ("alice", "bob", "carol") for i in range(30))
        assert state["threshold"] in (29, 129, 229)

        # bob writes markup: carol's page shows it as text, and it runs nothing
        kernels.call(bob.__setitem__, "note", HOSTILE)
        expect(page.locator("#shared-state")).to_contain_text(HOSTILE)
        assert page.locator("#shared-state img").count() == 0
        assert page.evaluate("window.pwned") is None
    finally:
        kernels.close()


def nested_maps(levels: int) -> bytes:
    """One update: `levels` maps, each in the one before, under key "deep" of the room's root."""
    doc: pycrdt.Doc = pycrdt.Doc()
    current = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
    with doc.transaction():
        for level in range(levels):
            inner: pycrdt.Map[Any] = pycrdt.Map()
            current["deep" if level == 0 else "k"] = inner
            current = inner
        current["leaf"] = HOSTILE
    return doc.get_update()


@pytest.mark.parametrize("server", [{"max_shared_depth": 20_000}], indirect=True)
def test_the_page_shows_a_document_17000_levels_deep_without_an_error(server: JupyterProcess, page: Any) -> None:
    """Where the bound is lifted, a document of the issue's depth (it made every visitor's
    page throw RangeError): the page shows its first levels and "…", converts it whole on
    request, and keeps following the room."""
    from playwright.sync_api import expect

    kernels = Kernels()
    try:
        alice = kernels.run(kernels.open(server, "alice"))
        kernels.call(alice.doc.apply_update, nested_maps(17_000))  # alice's kernel sends it as its own edit

        page.goto(f"{server.origin}/iavicenne/?token={server.token}")
        page.fill("#name", "carol")
        page.fill("#room", ROOM)
        page.click("#join")
        expect(page.locator("#connection")).to_have_text("online")
        # polled from here: wait_for_function's polling evaluates strings, which the page's CSP forbids
        wait_until(
            lambda: page.evaluate("() => Boolean(window.iavicenneDemo.shared?.has('deep'))"),
            "the deep document reaching the page",
        )
        expect(page.locator("#shared-state")).to_contain_text("…")
        shown = page.locator("#shared-state").inner_text()
        assert shown.count('"k"') == 64 - 1 and shown.count("…") == 1  # the "k" of levels 2 to 64, the last one cut
        leaf = page.evaluate(
            """() => {
              let value = window.iavicenneDemo.shared.toJSON().deep;
              for (let level = 1; level < 17000; level++) value = value.k;
              return value.leaf;
            }"""
        )
        assert leaf == HOSTILE
        # the page still follows the room's edits
        kernels.call(alice.__setitem__, "threshold", 0.5)
        expect(page.locator("#shared-state")).to_contain_text('"threshold": 0.5')
        assert page.locator("#shared-state img").count() == 0
    finally:
        kernels.close()
