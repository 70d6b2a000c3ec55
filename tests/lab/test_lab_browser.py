"""End to end in a real browser: JupyterLab served by the test, headless Chromium (Debian's,
driven by Playwright's Python API), a notebook that joins a room, and a second member
that is a Python client in this process.

The test sees the room panel rendered by JupyterLab's ipywidgets manager with both
members, writes in the panel's input box and clicks Send (the Python client receives
it), sees the client's reply in the panel's log, and saves a screenshot, room-panel.png
(in tests/artifacts/; in docs/img/, the README's, with ``IAVICENNE_UPDATE_SCREENSHOTS=1``).
A second test plays a hostile member that puts markup in every field another member's
panels show, and checks that it stays text.

Without Chromium the test fails in CI (``CI`` set) and is skipped elsewhere, saying how to
install it (`apt-get install chromium`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_support import CHROMIUM_ARGS, chromium_path, kernel_env, screenshot_path
from peer_worker import ice_addresses, loopback_only

from iavicenne import RoomClient, share
from iavicenne.connections import is_tagged, user_of
from iavicenne.peer import PeerLink, PeerNetwork
from iavicenne_ext.testing import JupyterProcess
from iavicenne_protocol import ROOMS_PATH

pytestmark = pytest.mark.timeout(180)

SCREENSHOT = "room-panel.png"  # of the README: docs/img/ with IAVICENNE_UPDATE_SCREENSHOTS=1
ROOM = "analysis"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    chromium_path()  # fail (CI) or skip before starting anything
    app = JupyterProcess(tmp_path_factory.mktemp("lab"), lab=True).start()
    yield app
    app.stop()


def write_notebook(folder: Path) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Team room\nWho is here, and what they say."),
        nbformat.v4.new_code_cell(
            f'from iavicenne import join\n\nroom = join("{ROOM}", user_id="alice", status="exploring sales data")'
        ),
    ]
    nbformat.write(notebook, folder / "team.ipynb")
    return "team.ipynb"


def test_the_room_panel_in_jupyterlab_shows_both_members(lab: JupyterProcess) -> None:
    import pandas as pd
    from playwright.async_api import async_playwright, expect

    name = write_notebook(lab.root)

    async def scenario() -> None:
        bob = await RoomClient.connect(lab.url, lab.token, user_id="bob")
        room = await bob.join(ROOM, state={"status": "reviewing", "notebook": "forecast.ipynb"})
        inbox = room.messages()
        # bob's kernel side of peer links (this process, loopback)
        bob_peers = await PeerNetwork.join(ROOM, "bob", lab.url, lab.token, loopback=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1100, "height": 720})
            try:
                await page.goto(f"{lab.url}lab/tree/{name}?token={lab.token}", wait_until="domcontentloaded")
                # JupyterLab exposes its app (--LabApp.expose_app_in_browser): wait for the
                # notebook and its kernel, then run every cell as the Run menu would
                await page.wait_for_function(
                    "() => window.jupyterapp && window.jupyterapp.shell.currentWidget && window.jupyterapp.shell.currentWidget.sessionContext",
                    timeout=60_000,
                )
                await page.evaluate(
                    """async () => {
                        const panel = window.jupyterapp.shell.currentWidget;
                        await panel.context.ready;
                        await panel.sessionContext.ready;
                        if (window.jupyterapp.shell.leftCollapsed === false) {
                            await window.jupyterapp.commands.execute('application:toggle-left-area');
                        }
                        await window.jupyterapp.commands.execute('notebook:run-all-cells');
                    }"""
                )
                panel = page.locator(".iav-room-panel")
                await expect(panel).to_be_visible(timeout=60_000)
                await expect(panel.locator(".iav-state-online")).to_be_visible(timeout=30_000)
                members = panel.locator(".iav-member")
                # alice, bob, and this page's own Lab window: one Jupyter user here (the
                # server's token), and its Lab panel rejoins the rooms the server remembers
                # for that user (bob's client joined this one with the same token)
                await expect(members).to_have_count(3, timeout=30_000)
                await expect(members.nth(0)).to_contain_text("alice")
                await expect(members.nth(0)).to_contain_text("(you)")
                await expect(members.filter(has_text="bob")).to_contain_text("reviewing")
                await expect(members.nth(1)).to_contain_text("forecast.ipynb")
                await expect(members.nth(1).locator(".iav-peer-button")).to_be_visible()

                # the panel's input box and Send button reach the Python client
                await panel.locator(".iav-compose input").fill("Sales are up 12% in Q3, see my notebook")
                await panel.locator(".iav-compose button").click()
                heard = await asyncio.wait_for(inbox.get(), 30)
                assert (heard.user_id, heard.text) == ("alice", "Sales are up 12% in Q3, see my notebook")
                assert heard.content.get("content") == heard.text
                # ...and so does Enter in the box (the widget event comes on a subshell thread)
                box = panel.locator(".iav-compose input")
                for number in range(3):
                    await box.fill(f"pressed Enter {number}")
                    await box.press("Enter")
                    heard = await asyncio.wait_for(inbox.get(), 30)
                    assert (heard.user_id, heard.text) == ("alice", f"pressed Enter {number}")
                    await expect(box).to_have_value("")
                await expect(panel.locator(".iav-errors")).to_be_hidden()

                # and what the client says shows in the log
                await room.send("Nice — can you share the DataFrame?")
                log = panel.locator(".iav-log")
                await expect(log).to_contain_text("Nice — can you share the DataFrame?", timeout=30_000)
                await expect(log).to_contain_text("Sales are up 12% in Q3")

                # the "Peer link" button next to bob opens a WebRTC link to bob's peer (in
                # this process, on loopback); bob shares a DataFrame over it
                await members.nth(1).locator(".iav-peer-button").click()
                link = await bob_peers.accept(timeout=60)
                assert isinstance(link, PeerLink) and link.path == "direct"
                # alice's kernel joined with join()'s default addresses: the tests' environment
                # (IAVICENNE_ICE_ADDRESSES) keeps them to loopback, at both ends of every pair
                addresses = ice_addresses(link)
                assert loopback_only(addresses), addresses
                peer_panel = panel.locator(".iav-peer-panel")
                await expect(peer_panel.locator(".iav-state-open")).to_be_visible(timeout=30_000)
                await link.send("Here it comes, peer to peer")
                forecast = pd.DataFrame({"week": range(1, 53), "units": [1200 + 15 * w for w in range(52)]})
                await link.send(share.pack_dataframe(forecast, "forecast"))
                transfer = peer_panel.locator(".iav-transfer")
                await expect(transfer).to_contain_text("forecast (DataFrame 52×2, arrow)", timeout=30_000)
                await expect(transfer).to_contain_text("received")
                await expect(peer_panel.locator(".iav-peer-log")).to_contain_text("Here it comes, peer to peer")
                # the peer panel's own box: Send, then Enter, reach bob over the link
                peer_box = peer_panel.locator(".iav-peer-compose input")
                await peer_box.fill("Thanks, got it")
                await peer_panel.locator(".iav-peer-compose button").click()
                assert await link.recv(timeout=30) == "Thanks, got it"
                await peer_box.fill("And Enter works here too")
                await peer_box.press("Enter")
                assert await link.recv(timeout=30) == "And Enter works here too"
                await expect(peer_panel.locator(".iav-peer-log")).to_contain_text("alice: And Enter works here too")

                screenshot = screenshot_path(SCREENSHOT)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(screenshot))
            except Exception:
                failure = lab.workdir / "failure.png"
                await page.screenshot(path=str(failure))
                print(f"screenshot of the failure: {failure}\nserver log:\n{lab.log_text()[-3000:]}")
                raise
            finally:
                await browser.close()
                await bob_peers.close()
                await bob.close()

    asyncio.run(scenario())
    # the presence seen by the server, as the REST API reports it
    status, body = lab.get(f"iavicenne/api/rooms/{ROOM}")
    assert status == 200, body
    assert [m["user_id"] for m in body["members"]] == ["alice"], json.dumps(body)


HOSTILE = '<img src=x onerror="window.iavPwned=1">'
CONTROL = '<img src=x onerror="window.iavControl=1">'


def write_victim_notebook(folder: Path) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    notebook.cells = [
        nbformat.v4.new_code_cell('from iavicenne import join\n\nroom = join("xss", user_id="alice")'),
        # the control: the same markup, unescaped in an HTML widget, does run in this page
        nbformat.v4.new_code_cell(f"import ipywidgets\n\nipywidgets.HTML({CONTROL!r})"),
    ]
    nbformat.write(notebook, folder / "victim.ipynb")
    return "victim.ipynb"


async def refused_user_id(lab: JupyterProcess) -> dict[str, Any]:
    """What the server answers a client whose user_id is markup (the name rule refuses it)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = lab.url.replace("http://", "ws://") + ROOMS_PATH
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {lab.token}"}))
    try:
        await ws.write_message(json.dumps({"type": "connect", "payload": {"user_id": HOSTILE}}))
        reply = await ws.read_message()
        assert isinstance(reply, str)
        return dict(json.loads(reply))
    finally:
        ws.close()


async def kernel_peer_of(network: PeerNetwork, user_id: str, timeout: float = 60) -> str:
    """The peer id of `user_id`'s kernel in the signaling room (`iavicenne.connections`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [peer for peer in network.peers if is_tagged(peer) and user_of(peer) == user_id]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"no kernel of {user_id} among {network.peers}"
        await asyncio.sleep(0.1)


def test_a_hostile_members_strings_show_as_text_and_run_no_script(lab: JupyterProcess) -> None:
    """The issue's attack: a peer's file name ran script in the receiver's JupyterLab. Here
    mallory puts `<img onerror>` in every field another member sees; alice's panels show it
    as text, and the page never runs it (the control shows it would run, unescaped)."""
    import pandas as pd
    from playwright.async_api import async_playwright, expect

    name = write_victim_notebook(lab.root)

    async def scenario() -> None:
        refusal = await refused_user_id(lab)
        assert refusal["type"] == "error" and refusal["code"] == "invalid-field", refusal
        mallory = await RoomClient.connect(lab.url, lab.token, user_id="mallory")
        mallory_peers = await PeerNetwork.join("xss", "mallory", lab.url, lab.token, loopback=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            try:
                # ?reset: a workspace of its own, not the one the test above left open
                await page.goto(f"{lab.url}lab/tree/{name}?reset&token={lab.token}", wait_until="domcontentloaded")
                await page.wait_for_function(
                    "(name) => window.jupyterapp?.shell.currentWidget?.context?.path === name && window.jupyterapp.shell.currentWidget.sessionContext",
                    arg=name,
                    timeout=60_000,
                )
                run_cell = """async (index) => {
                    const panel = window.jupyterapp.shell.currentWidget;
                    await panel.context.ready;
                    await panel.sessionContext.ready;
                    panel.content.activeCellIndex = index;
                    await window.jupyterapp.commands.execute('notebook:run-cell');
                }"""
                await page.evaluate(run_cell, 0)
                panel = page.locator(".iav-room-panel")
                await expect(panel.locator(".iav-state-online")).to_be_visible(timeout=60_000)

                room = await mallory.join("xss", state={"status": HOSTILE, "notebook": HOSTILE})
                await room.send(HOSTILE)
                await room.direct("alice", HOSTILE)
                # alice's kernel takes part in the signaling as one peer of hers: "alice#<its tag>"
                alice_kernel = await kernel_peer_of(mallory_peers, "alice")
                link = await mallory_peers.connect(alice_kernel, timeout=60)
                await link.send(HOSTILE)
                await link.send(share.pack(share.FILE, HOSTILE, b"a,b\n1,2\n"))
                frame = pd.DataFrame({"a": [1, 2, 3]})
                await link.send(share.pack(share.DATAFRAME, HOSTILE, share.encode_dataframe(frame), format=HOSTILE, rows=3))
                await link.send(share.pack(HOSTILE, "x", b""))  # refused: the error text quotes its kind

                member = panel.locator(".iav-member").filter(has_text="mallory")
                await expect(member.locator(".iav-member-status")).to_have_text(HOSTILE, timeout=30_000)
                await expect(member.locator(".iav-member-notebook")).to_have_text(f"in {HOSTILE}")
                log = panel.locator(".iav-log")
                # the server's token is the owner's identity, not "mallory": the panel says whose name it is
                owner = mallory.identity["username"]
                await expect(log).to_contain_text(f"mallory (@{owner}): {HOSTILE}", timeout=30_000)
                await expect(log).to_contain_text(f"mallory (@{owner}) → you: {HOSTILE}")
                peer_panel = panel.locator(".iav-peer-panel")
                await expect(peer_panel.locator(".iav-peer-log")).to_contain_text(f"mallory: {HOSTILE}", timeout=30_000)
                transfers = peer_panel.locator(".iav-transfer")
                await expect(transfers).to_have_count(2, timeout=30_000)
                await expect(transfers.nth(0)).to_contain_text(f"{HOSTILE} (file, 8 B)")
                await expect(transfers.nth(1)).to_contain_text(f"{HOSTILE} (DataFrame 3×0, {HOSTILE})")
                await expect(peer_panel.locator(".iav-errors")).to_contain_text(
                    f"unknown kind of shared object: '{HOSTILE}'", timeout=30_000
                )

                # now the control: once its image has failed to load, so has any image above
                await page.evaluate(run_cell, 1)
                await page.wait_for_function("() => window.iavControl === 1", timeout=30_000)
                assert await page.evaluate("() => window.iavPwned") is None
                assert await panel.locator("img").count() == 0
            except Exception:
                failure = lab.workdir / "failure-xss.png"
                await page.screenshot(path=str(failure))
                print(f"screenshot of the failure: {failure}\nserver log:\n{lab.log_text()[-3000:]}")
                raise
            finally:
                await browser.close()
                await mallory_peers.close()
                await mallory.close()

    asyncio.run(scenario())


class Kernel:
    """A real ipykernel of its own (jupyter_client), as a second notebook of bob's would
    run: code in, what it printed out."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.manager = AsyncKernelManager(kernel_name="python3")
        self.env = env
        self.client: Any = None

    async def start(self) -> Kernel:
        await self.manager.start_kernel(env=self.env)
        self.client = self.manager.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=60)
        return self

    async def run(self, code: str, timeout: float = 60) -> str:
        printed: list[str] = []

        def output(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                printed.append("\n".join(message["content"]["traceback"]))

        reply = await self.client.execute_interactive(code, output_hook=output, timeout=timeout)
        assert reply["content"]["status"] == "ok", "".join(printed)
        return "".join(printed)

    async def value(self, expression: str) -> Any:
        return json.loads(await self.run(f"import json\nprint(json.dumps({expression}))"))

    async def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        await self.manager.shutdown_kernel(now=True)


def write_two_kernels_notebook(folder: Path) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    notebook.cells = [
        nbformat.v4.new_code_cell(f'from iavicenne import join\n\nroom = join("{ROOM_TWO}", user_id="alice", history=5)'),
        nbformat.v4.new_code_cell("await room.leave()"),
    ]
    nbformat.write(notebook, folder / "review.ipynb")
    return "review.ipynb"


ROOM_TWO = "two-kernels"
BOB_KERNEL = f"""from iavicenne import join
room = join("{ROOM_TWO}", user_id="bob", display=False)
await room.ready()
network = await room.peer_network()
print(network.peer_id)"""
HEARD = "[m for s in room.peers.values() for m in s.messages]"

IN_VIEW = """(log) => {
    const scroller = log.querySelector('.iav-scroll');
    const newest = log.querySelector('.iav-newest');
    const a = scroller.getBoundingClientRect(), b = newest.getBoundingClientRect();
    return b.bottom <= a.bottom + 1 && b.top >= a.top - 1;
}"""
UNREAD_SHOWN = """(log) => getComputedStyle(log.querySelector('.iav-unread')).visibility !== 'hidden'
    && log.querySelector('.iav-unread').getBoundingClientRect().height > 0"""


def test_two_kernels_of_one_member_the_closed_panel_and_rejoin(lab: JupyterProcess) -> None:
    """bob runs two kernels (eda.ipynb, forecast.ipynb): one member, two connections in
    alice's panel; the one picked in the list gets the link. Then the log keeps to its
    newest line (and says so when scrolled up), and after leave() the panel is greyed
    and disabled until Rejoin, which shows what was said meanwhile."""
    from playwright.async_api import async_playwright, expect

    name = write_two_kernels_notebook(lab.root)

    async def scenario() -> None:
        eda = await Kernel(kernel_env(lab, JPY_SESSION_NAME="/home/bob/eda.ipynb")).start()
        forecast = await Kernel(kernel_env(lab, JPY_SESSION_NAME="/home/bob/forecast.ipynb")).start()
        carol = await RoomClient.connect(lab.url, lab.token, user_id="carol")
        try:
            eda_peer = (await eda.run(BOB_KERNEL)).strip()
            forecast_peer = (await forecast.run(BOB_KERNEL)).strip()
            assert eda_peer != forecast_peer and eda_peer.startswith("bob#") and forecast_peer.startswith("bob#")
            chat = await carol.join(ROOM_TWO)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                try:
                    await page.goto(f"{lab.url}lab/tree/{name}?reset&token={lab.token}", wait_until="domcontentloaded")
                    await page.wait_for_function(
                        "(name) => window.jupyterapp?.shell.currentWidget?.context?.path === name && window.jupyterapp.shell.currentWidget.sessionContext",
                        arg=name,
                        timeout=60_000,
                    )
                    run_cell = """async (index) => {
                        const panel = window.jupyterapp.shell.currentWidget;
                        await panel.context.ready;
                        await panel.sessionContext.ready;
                        panel.content.activeCellIndex = index;
                        await window.jupyterapp.commands.execute('notebook:run-cell');
                    }"""
                    await page.evaluate(run_cell, 0)
                    panel = page.locator(".iav-room-panel")
                    await expect(panel.locator(".iav-state-online")).to_be_visible(timeout=60_000)
                    bob = panel.locator(".iav-member").filter(has_text="bob")
                    await expect(bob).to_contain_text("2 connections", timeout=30_000)
                    # bob's two kernels, described by themselves; the default is the newest
                    choices = bob.locator(".iav-connections select")
                    await expect(choices).to_be_visible(timeout=30_000)
                    await expect(choices.locator("option")).to_have_count(2)
                    await expect(choices).to_contain_text("kernel · eda.ipynb", timeout=30_000)
                    await expect(choices).to_contain_text("kernel · forecast.ipynb")
                    await choices.select_option(label="kernel · eda.ipynb")
                    await bob.locator(".iav-peer-button").click()
                    peer_panel = panel.locator(".iav-peer-panel")
                    await expect(peer_panel.locator(".iav-state-open")).to_be_visible(timeout=60_000)
                    await expect(peer_panel.locator(".iav-peer-header")).to_contain_text("eda.ipynb")
                    await peer_panel.locator(".iav-peer-compose input").fill("for the eda kernel only")
                    await peer_panel.locator(".iav-peer-compose button").click()
                    deadline = asyncio.get_running_loop().time() + 30
                    while await eda.value(HEARD) != ["for the eda kernel only"]:
                        assert asyncio.get_running_loop().time() < deadline, "the eda kernel heard nothing"
                        await asyncio.sleep(0.2)
                    assert await forecast.value(HEARD) == []

                    # the log keeps to its newest line; scrolled up, a marker says there is more
                    log = panel.locator(".iav-log")
                    for number in range(40):
                        await chat.send(f"carol's line {number}")
                    await expect(log).to_contain_text("carol's line 39", timeout=30_000)
                    assert await log.evaluate(IN_VIEW)
                    assert not await log.evaluate(UNREAD_SHOWN)
                    await log.evaluate("(log) => { const s = log.querySelector('.iav-scroll'); s.scrollTop = -s.scrollHeight; }")
                    await page.wait_for_function(f"() => !({IN_VIEW})(document.querySelector('.iav-log'))")
                    top = await log.evaluate("(log) => log.querySelector('.iav-scroll').scrollTop")
                    await chat.send("carol's line 40, while alice reads older ones")
                    await expect(log).to_contain_text("carol's line 40", timeout=30_000)
                    await page.wait_for_function(f"() => ({UNREAD_SHOWN})(document.querySelector('.iav-log'))", timeout=10_000)
                    assert (
                        abs(await log.evaluate("(log) => log.querySelector('.iav-scroll').scrollTop") - top) < 40
                    )  # she stays where she reads
                    await log.evaluate("(log) => { log.querySelector('.iav-scroll').scrollTop = 0; }")
                    await page.wait_for_function(f"() => !({UNREAD_SHOWN})(document.querySelector('.iav-log'))", timeout=10_000)

                    # leave: closed, greyed, disabled, and a Rejoin button
                    await page.evaluate(run_cell, 1)
                    await expect(panel.locator(".iav-header .iav-state-closed")).to_be_visible(timeout=30_000)
                    # bob, carol and this page's Lab window (which rejoined the room the
                    # server remembers for the token's user)
                    await expect(panel.locator(".iav-member.iav-member-offline")).to_have_count(4)
                    await expect(panel.locator(".iav-compose input")).to_be_disabled()
                    await expect(panel.locator(".iav-compose button")).to_be_disabled()
                    await expect(bob.locator(".iav-peer-button")).to_be_disabled()
                    rejoin = panel.locator(".iav-rejoin")
                    await expect(rejoin).to_be_visible()
                    await chat.send("said while alice was away")
                    await rejoin.click()
                    await expect(panel.locator(".iav-header .iav-state-online")).to_be_visible(timeout=30_000)
                    await expect(log).to_contain_text("said while you were away", timeout=30_000)
                    await expect(log).to_contain_text("said while alice was away")
                    await expect(panel.locator(".iav-member.iav-member-offline")).to_have_count(0)
                    await expect(panel.locator(".iav-compose input")).to_be_enabled()
                    await expect(rejoin).to_be_hidden()
                    inbox = chat.messages()
                    await panel.locator(".iav-compose input").fill("back again")
                    await panel.locator(".iav-compose input").press("Enter")
                    heard = await asyncio.wait_for(inbox.get(), 30)
                    assert (heard.user_id, heard.text) == ("alice", "back again")
                    await expect(panel.locator(".iav-errors")).to_be_hidden()
                except Exception:
                    failure = lab.workdir / "failure-two-kernels.png"
                    await page.screenshot(path=str(failure))
                    print(f"screenshot of the failure: {failure}\nserver log:\n{lab.log_text()[-3000:]}")
                    raise
                finally:
                    await browser.close()
        finally:
            await carol.close()
            await eda.stop()
            await forecast.stop()

    asyncio.run(scenario())
