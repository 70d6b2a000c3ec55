"""The browser side in a real browser: the demo page and `iavicenne.js` in headless Chromium.

A `jupyter server` process with the extension (in-memory broker) on a free loopback port;
Debian's Chromium driven by Playwright's Python API (`executable_path`: Playwright's own
browser download is not used); the other side of every exchange is a separate Python
process (`browser_agent.py`) with the real Python client and, for the data channel, a
real aiortc peer link. All traffic stays on loopback.

The data-channel test runs in a network namespace of its own with only ``lo``
(`network_namespace`): Chromium gathers candidates on every interface it has, and would
otherwise check, and even select, a pair from another address of this machine. There,
WebRTC on loopback in Chromium needs ``--allow-loopback-in-peer-connection``, local
addresses not hidden behind mDNS names, and, since Chromium enumerates every interface
(loopback included) only for a page that may use the camera or microphone, that
permission granted to the server's origin.

Without Chromium these tests fail in CI (``CI`` set) and are skipped elsewhere, with the
command that installs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import network_namespace
import pytest
from browser_support import TIMEOUT_MS, Agent, CountingServer, counted
from notebook_support import chromium_path, screenshot_path

from iavicenne_ext.handlers.page import STATIC_DIR
from iavicenne_ext.testing import JupyterProcess
from iavicenne_protocol import ROOMS_PATH

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = "demo-page.png"  # of the README: docs/img/ with IAVICENNE_UPDATE_SCREENSHOTS=1, else tests/artifacts/


# -- the server and the browser -----------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    process = JupyterProcess(tmp_path_factory.mktemp("browser"), options={"broker": "memory"})
    process.launch().wait_serving()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Any, server: JupyterProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 640})
    # lets Chromium offer its loopback address as an ICE candidate (see the module docstring)
    context.grant_permissions(["camera", "microphone"], origin=server.origin)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", on_console)
    tab.expected_errors = []  # what a test provokes on purpose (a script the CSP refused)
    yield tab
    context.close()
    # a server that goes away makes the browser log failed WebSocket handshakes: not page errors
    expected = ["WebSocket connection to", "Failed to load resource", *tab.expected_errors]
    real = [e for e in errors if not any(text in e for text in expected)]
    assert real == [], f"errors in the page: {real}"


def open_demo(page: Any, server: JupyterProcess, room: str, name: str, *, loopback: bool = False, cookie: bool = False) -> None:
    """Open the demo page and join `room` as `name`. Logged in by the token in the page's
    address (which the module then uses too), or, with `cookie`, by Jupyter's login cookie
    alone: the token logs in once, and the page is opened again without it."""
    from playwright.sync_api import expect

    page.goto(f"{server.origin}/iavicenne/?token={server.token}" + ("&loopback=1" if loopback else ""))
    if cookie:
        page.goto(f"{server.origin}/iavicenne/")
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join")
    expect(page.locator("#connection")).to_have_text("online")
    expect(page.locator("#room-name")).to_have_text(room)


def member(page: Any, user_id: str) -> Any:
    return page.locator(f'#members li[data-member="{user_id}"]')


# -- a Python client in its own process -----------------------------------------------------


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Any]:
    started: list[Agent] = []

    def start(server: JupyterProcess, room: str, user_id: str, *, peer: bool = False) -> Agent:
        agent = Agent(server, room, user_id, peer=peer, log=tmp_path / f"{user_id}.log")
        started.append(agent)
        agent.expect("ready", timeout=30)
        return agent

    yield start
    for agent in started:
        agent.stop()


# -- the page and the module over HTTP --------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(server: JupyterProcess, path: str, token: bool = True) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"token {server.token}"} if token else {}
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(server.origin + path, headers=headers), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_page_needs_a_login_and_the_module_is_served_to_logged_in_users(server: JupyterProcess) -> None:
    # a visitor who is not logged in goes to Jupyter's login page, and comes back after it
    status, headers, _ = fetch(server, "/iavicenne/", token=False)
    assert status == 302
    assert headers["Location"].startswith("/login?next=%2Fiavicenne%2F")
    # logged in: the page, with this server's base URL for the module
    status, headers, body = fetch(server, "/iavicenne/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<meta name="iavicenne-base-url" content="/" />' in body
    assert fetch(server, "/iavicenne")[0] in (301, 302)  # to the address with its slash
    # a strict Content-Security-Policy: this server's scripts only (and the page's own import
    # map, by this response's nonce), nothing embedded, no <base>
    policy = [directive.strip() for directive in headers["Content-Security-Policy"].split(";")]
    for directive in ("object-src 'none'", "base-uri 'none'", "default-src 'self'"):
        assert directive in policy, policy
    nonce = re.search(rb'<script type="importmap" nonce="([^"]+)">', body)
    assert nonce is not None, body
    assert f"script-src 'self' 'nonce-{nonce.group(1).decode()}'" in policy, policy
    # the entry module and every module it imports carry the XSRF token (JupyterHub >= 4.1
    # asks it of module fetches; a plain server ignores it)
    assert re.search(rb'<script type="module" src="/iavicenne/static/demo.js\?_xsrf=[^"]+"></script>', body), body
    assert "frame-ancestors 'self'" in policy  # Jupyter's own, kept
    # every module of the client, its types, the demo's files: only for logged-in users (a
    # script cannot follow a login page); modules with a JavaScript type, or no browser runs them
    files = sorted(path.name for path in STATIC_DIR.iterdir() if path.is_file())
    modules = [name for name in files if name.endswith(".js")]
    assert {"iavicenne.js", "protocol.js", "wire.js", "peer.js", "client.js", "demo.js"} <= set(modules), modules
    for path in files:
        assert fetch(server, f"/iavicenne/static/{path}", token=False)[0] == 403, path
        status, headers, body = fetch(server, f"/iavicenne/static/{path}")
        assert status == 200 and body == (STATIC_DIR / path).read_bytes(), path
        if path.endswith(".js"):
            assert headers["Content-Type"] == "text/javascript; charset=UTF-8", path
        elif path.endswith(".d.ts"):
            assert headers["Content-Type"].startswith("text/plain"), path
    # nothing outside the static folder
    for path in ("../handlers/page.py", "..%2Fhandlers%2Fpage.py", "missing.js"):
        assert fetch(server, f"/iavicenne/static/{path}")[0] in (403, 404), path


# -- in the browser ---------------------------------------------------------------------------


def test_the_page_sees_a_python_client_and_messages_flow_both_ways(page: Any, server: JupyterProcess, agents: Any) -> None:
    from playwright.sync_api import expect

    kernel = agents(server, "chat", "kernel-1")
    open_demo(page, server, "chat", "ada", cookie=True)
    assert page.evaluate("window.iavicenneDemo.client.server.token") == ""  # the cookie authenticates
    # the module's REST calls follow Jupyter's XSRF rule: a browser's POST needs X-XSRFToken
    # every module of the client loads in the browser, as the page's own scripts do
    modules = sorted(path.name for path in STATIC_DIR.glob("*.js"))
    loaded = page.evaluate(
        "async (names) => Promise.all(names.map(async (n) => Object.keys(await import(`./static/${n}`)).length))", modules
    )
    assert all(count > 0 for name, count in zip(modules, loaded, strict=True) if name != "demo.js"), dict(
        zip(modules, loaded, strict=True)
    )
    created = page.evaluate(
        """async () => {
            const { Server } = await import("./static/iavicenne.js");
            const server = new Server();
            const made = await server.request("api/contents", { method: "POST", body: { type: "notebook" } });
            const bare = await fetch("../api/contents", { method: "POST", body: "{}", credentials: "same-origin" });
            return [made.type, bare.status, "X-XSRFToken" in server.headers(), await server.rooms()];
        }"""
    )
    assert created == ["notebook", 403, True, [{"room": "chat", "members": 2, "connections": 2, "access": "public"}]], created

    # presence both ways: the kernel with its state, the browser in the kernel's view
    expect(member(page, "kernel-1")).to_contain_text("kind: kernel")
    expect(member(page, "kernel-1")).to_contain_text("status: idle")
    expect(member(page, "ada")).to_contain_text("(you)")
    kernel.expect("presence", kind="joined", user_id="ada")

    # browser -> room -> kernel
    page.fill("#message", "hello from the browser")
    page.click("#send")
    got = kernel.expect("message", user_id="ada", text="hello from the browser")
    assert isinstance(got["seq"], int)
    expect(page.locator("#log")).to_contain_text("ada: hello from the browser")

    # kernel -> room -> browser, in order
    for text in ("one", "two", "three"):
        kernel.command(cmd="send", text=f"from python {text}")
        kernel.expect("sent")
    expect(page.locator("#log li.message").last).to_contain_text("kernel-1: from python three")
    texts = page.locator("#log li.message .text").all_inner_texts()
    assert texts[-3:] == ["from python one", "from python two", "from python three"]

    # direct messages, through the server, both ways
    kernel.command(cmd="direct", to="ada", text="just for you")
    expect(page.locator("#log li.message").last).to_contain_text("just for you")
    expect(page.locator("#log li.message").last.locator(".via")).to_have_text("direct")
    page.select_option("#send-to", "direct:kernel-1")
    page.fill("#message", "psst")
    page.click("#send")
    assert kernel.expect("message", user_id="ada", text="psst")["direct"] is True

    # a presence state change shows up
    kernel.command(cmd="state", state={"kind": "kernel", "status": "busy", "notebook": "eda.ipynb"})
    expect(member(page, "kernel-1")).to_contain_text("status: busy")
    expect(member(page, "kernel-1")).to_contain_text("notebook: eda.ipynb")

    # the kernel leaves: gone from the members
    kernel.stop()
    expect(member(page, "kernel-1")).to_have_count(0)
    expect(page.locator("#log")).to_contain_text("kernel-1 left")


# Markup a hostile member sends as text: each would set window.pwned if the page ran it
# (inserted as HTML, or allowed by the page's CSP).
HOSTILE = {
    "message": """<img src=x onerror="window.pwned='message'">""",
    "direct": """<script>window.pwned='direct'</script><b>bold</b>""",
    "status": """<svg onload="window.pwned='status'"></svg>""",
    "notebook": """eda.ipynb"><iframe srcdoc="<script>parent.pwned='notebook'</script>"></iframe>""",
    "key": """<img src=y onerror="window.pwned='key'">""",
    "json": """<a href="javascript:window.pwned='json'">click</a>""",
}
MARKUP = "img, script, svg, iframe, b, a"


def test_hostile_strings_from_another_member_are_shown_as_text_and_run_nothing(
    page: Any, server: JupyterProcess, agents: Any
) -> None:
    from playwright.sync_api import expect
    from websocket import create_connection

    # the one field that cannot carry markup at all: the server refuses such a user_id
    ws = create_connection(f"{server.ws_url(ROOMS_PATH)}?token={server.token}", timeout=10)
    try:
        ws.send(json.dumps({"type": "connect", "payload": {"user_id": HOSTILE["message"]}}))
        refused = json.loads(ws.recv())
    finally:
        ws.close()
    assert (refused["type"], refused["code"]) == ("error", "invalid-field"), refused

    mallory = agents(server, "hostile", "mallory")
    response = page.goto(f"{server.url}iavicenne/?token={server.token}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#name", "ada")
    page.fill("#room", "hostile")
    page.click("#join")
    expect(page.locator("#connection")).to_have_text("online")
    mallory.expect("presence", kind="joined", user_id="ada")

    # in every field another person fills: a room message, a JSON message, a direct
    # message, a presence state (its values and its keys), a notebook name
    mallory.command(cmd="send", text=HOSTILE["message"])
    mallory.expect("sent")
    mallory.command(cmd="send", text={HOSTILE["key"]: HOSTILE["json"]})
    mallory.expect("sent")
    mallory.command(cmd="direct", to="ada", text=HOSTILE["direct"])
    mallory.expect("sent")
    mallory.command(
        cmd="state", state={"kind": "kernel", "status": HOSTILE["status"], "notebook": HOSTILE["notebook"], HOSTILE["key"]: 1}
    )
    mallory.expect("sent")

    row = member(page, "mallory")
    expect(row).to_contain_text(f"status: {HOSTILE['status']}")
    expect(row).to_contain_text(f"notebook: {HOSTILE['notebook']}")
    expect(row).to_contain_text(f"{HOSTILE['key']}: 1")
    texts = page.locator("#log li.message .text").all_inner_texts()
    assert texts[-3:] == [
        HOSTILE["message"],
        json.dumps({HOSTILE["key"]: HOSTILE["json"]}, separators=(",", ":")),
        HOSTILE["direct"],
    ], texts
    expect(page.locator("#log li.message").last.locator(".via")).to_have_text("direct")
    # shown as text: no element of theirs in the page, and none of their scripts ran
    assert page.locator(f"#log :is({MARKUP}), #members :is({MARKUP})").count() == 0
    assert page.evaluate("window.pwned") is None

    # and the second wall: markup that did get into the page as HTML still runs nothing,
    # because the page's policy allows no inline script (the browser reports the refusal)
    page.expected_errors.append("Content Security Policy")
    violation = page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", (e) => resolve(e.effectiveDirective), { once: true });
            const probe = document.createElement("div");
            probe.innerHTML = `<img src="x" onerror="window.pwned='probe'">`;
            document.body.append(probe);
        })"""
    )
    assert violation == "script-src-attr", violation
    assert page.evaluate("window.pwned") is None


# -- issue 21: names cannot lie, a message fetches nothing ------------------------------------

_ANALYSTS = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""


@pytest.fixture(scope="module")
def analysts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """A server with two identities, alice and bob, each with a personal token (room_support.TwoAnalysts)."""
    process = JupyterProcess(tmp_path_factory.mktemp("analysts"), options={"broker": "memory"})
    process.config.mkdir(parents=True)
    (process.config / "jupyter_server_config.py").write_text(_ANALYSTS.format(tests=str(REPO / "tests")))
    process.launch().wait_serving()
    yield process
    process.stop()


def test_on_the_page_bob_cannot_pose_as_alice_and_a_message_fetches_nothing(
    browser: Any, analysts: JupyterProcess, tmp_path: Path
) -> None:
    """alice on the demo page; bob, a Python client with his own token, tries her name and
    a look-alike (refused), then a name of his own: the page shows his verified ``@bob``
    before it on every message; his state's file name with U+202E is written out; a
    Markdown image of a canary path and of a counting server, and an ``<img>``, are text:
    zero requests."""
    from playwright.sync_api import expect

    # alice's every request carries her personal token (the page, its modules, its socket)
    context = browser.new_context(extra_http_headers={"Authorization": "token alice-token"})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    canary: list[str] = []
    context.route("**/logout-canary*", counted(canary))
    with CountingServer() as images:
        page.goto(f"{analysts.origin}/iavicenne/")
        page.fill("#room", "names")
        page.click("#join")
        expect(page.locator("#connection")).to_have_text("online")
        expect(member(page, "alice")).to_contain_text("(you)")
        as_bob = SimpleNamespace(origin=analysts.origin, token="bob-token")
        for impostor in ("alice", "\u0430lice"):
            refused = Agent(as_bob, "names", impostor, log=tmp_path / "impostor.log")  # type: ignore[arg-type]
            try:
                refused.proc.wait(timeout=30)
            finally:
                refused.stop()
            assert "looks like 'alice'" in (tmp_path / "impostor.log").read_text(), impostor
        bob = Agent(as_bob, "names", "al1ce", log=tmp_path / "bob.log")  # type: ignore[arg-type]
        try:
            bob.expect("ready", timeout=30)
            bob.command(cmd="state", state={"kind": "kernel", "notebook": "report\u202efdp.ipynb", "display_name": "Alice"})
            # a display name like alice's username: refused (the agent reports the error)
            with pytest.raises(AssertionError, match="display name 'Alice' looks like 'alice'"):
                bob.expect("sent")
            bob.command(cmd="state", state={"kind": "kernel", "notebook": "report\u202efdp.ipynb"})
            bob.expect("sent")
            text = f"look ![x](/logout-canary) ![c]({images.url('/img.png')}) <img src='{images.url('/i.png')}'>"
            bob.command(cmd="send", text=text)
            bob.expect("sent")
            line = page.locator("#log li.message").filter(has_text="look")
            expect(line).to_contain_text(f"@bob al1ce: {text}")
            expect(line.locator(".member-identity")).to_have_text("@bob ")
            row = member(page, "al1ce")
            expect(row.locator(".member-name")).to_have_text("al1ce @bob")
            expect(row).to_contain_text("notebook: report[U+202E]fdp.ipynb")
            expect(row).not_to_contain_text("display_name")
            assert page.locator("#log :is(img, a, iframe), #members :is(img, a, iframe)").count() == 0
            page.wait_for_timeout(500)
            assert canary == [] and images.paths() == [], (canary, images.paths())
        finally:
            bob.stop()
            context.close()
    assert errors == [], errors


def zlib_bomb(total: int) -> bytes:
    """`total` zero bytes, zlib-compressed (about a thousandth of it), made 1 MiB at a time."""
    deflate = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    return b"".join([*(deflate.compress(zeros) for _ in range(total >> 20)), deflate.flush()])


# what the page collected from a link: received payloads, bytes as their length and SHA-256
COLLECT = """(peerId) => {
    const link = window.iavicenneDemo.peers.links.get(peerId);
    window.received = [];
    link.on("message", (data) => window.received.push(data));
}"""
RECEIVED = """async () => Promise.all(window.received.map(async (d) => d instanceof Uint8Array
    ? { size: d.length, sha256: [...new Uint8Array(await crypto.subtle.digest("SHA-256", d))]
          .map((b) => b.toString(16).padStart(2, "0")).join("") }
    : d))"""
# the addresses of the selected candidate pair (local, remote) and of every pair Chromium has
CANDIDATE_PAIRS = """async (peerId) => {
    const stats = await window.iavicenneDemo.peers.links.get(peerId).pc.getStats();
    const byId = new Map([...stats.values()].map((s) => [s.id, s]));
    const addresses = (pair) => [byId.get(pair.localCandidateId).address, byId.get(pair.remoteCandidateId).address];
    const transport = [...stats.values()].find((s) => s.type === "transport");
    return {
        selected: addresses(byId.get(transport.selectedCandidatePairId)),
        pairs: [...stats.values()].filter((s) => s.type === "candidate-pair").map(addresses),
    };
}"""
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


@pytest.mark.timeout(200)
def test_a_data_channel_between_chromium_and_an_aiortc_kernel(request: pytest.FixtureRequest) -> None:
    if not network_namespace.inside():
        chromium_path()  # fail (CI) or skip here when there is none
        network_namespace.run_inside(request)
        return
    from playwright.sync_api import expect

    assert network_namespace.interfaces() == {"lo"}  # nothing but loopback to gather
    page, server, agents = (request.getfixturevalue(name) for name in ("page", "server", "agents"))
    kernel = agents(server, "p2p", "kernel-p", peer=True)
    open_demo(page, server, "p2p", "ada", loopback=True)
    row = member(page, "kernel-p")
    # a few words through the room first (they show in the screenshot)
    kernel.command(cmd="send", text="the model is trained; want the weights?")
    expect(page.locator("#log")).to_contain_text("kernel-p: the model is trained")
    page.fill("#message", "yes please, peer to peer")
    page.click("#send")
    kernel.expect("message", user_id="ada", text="yes please, peer to peer")
    expect(row.locator(".link-state")).to_have_text("no link")
    row.locator(".connect-peer").click()
    expect(row.locator(".link-state")).to_have_text("open")
    opened = kernel.expect("link", peer="ada", state="open")
    assert opened["offerer"] is False  # the page offered; the kernel answered
    expect(page.locator("#log")).to_contain_text("data channel with kernel-p open")
    # loopback ICE: both ends of the selected pair, and of every pair Chromium tried
    pairs = page.evaluate(CANDIDATE_PAIRS, "kernel-p")
    print(f"candidate pairs (Chromium, kernel): {pairs}")
    assert all(address in LOOPBACK_ADDRESSES for address in pairs["selected"]), pairs
    assert pairs["pairs"] and all(address in LOOPBACK_ADDRESSES for pair in pairs["pairs"] for address in pair), pairs
    page.evaluate(COLLECT, "kernel-p")

    # browser -> kernel, typed in the page
    page.select_option("#send-to", "peer:kernel-p")
    page.fill("#message", "hello over WebRTC")
    page.click("#send")
    assert kernel.expect("peer-message", peer="ada")["data"] == "hello over WebRTC"

    # kernel -> browser: text, a JSON value, bytes
    kernel.command(cmd="peer-send", peer="ada", data="hello from aiortc")
    kernel.expect("sent")
    kernel.command(cmd="peer-send", peer="ada", data={"json": {"rows": [1, 2, 3], "ok": True}})
    kernel.expect("sent")
    kernel.command(cmd="peer-send", peer="ada", data={"bytes": base64.b64encode(b"\x00\x01\x02").decode()})
    kernel.expect("sent")
    expect(page.locator("#log li.message").last).to_contain_text("(3 bytes)")
    log = page.locator("#log li.message").all_inner_texts()
    assert any("kernel-p: hello from aiortc" in line and "data channel" in line for line in log), log
    assert any('{"rows":[1,2,3],"ok":true}' in line for line in log), log
    screenshot = screenshot_path(SCREENSHOT)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))

    # payloads larger than one data-channel message: transfers, both ways, intact
    blob = os.urandom(700_000)
    kernel.command(cmd="peer-send", peer="ada", data={"bytes": base64.b64encode(blob).decode()})
    kernel.expect("sent", timeout=30)  # the page confirmed it has it all
    received = page.evaluate(RECEIVED)
    assert received[:3] == [
        "hello from aiortc",
        {"rows": [1, 2, 3], "ok": True},
        {"size": 3, "sha256": hashlib.sha256(b"\x00\x01\x02").hexdigest()},
    ]
    assert received[3] == {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    sent = page.evaluate(
        """async () => {
            const link = window.iavicenneDemo.peers.links.get("kernel-p");
            const data = new Uint8Array(900000).map((_, i) => (i * 7919) % 251);
            const steps = [];
            await link.send(data, { onProgress: (p) => steps.push(p.done) });
            await link.send("é".repeat(100000));           // text over one message: a transfer too
            await link.send({ big: "x".repeat(70000) });   // and JSON
            return { steps: steps.length, last: steps[steps.length - 1], size: link.maxMessageSize };
        }"""
    )
    assert sent["last"] == 900_000 and sent["steps"] > 10 and sent["size"] == 65536, sent
    got = kernel.expect("peer-message", peer="ada", timeout=30)["data"]
    assert got["size"] == 900_000
    assert base64.b64decode(got["bytes"]) == bytes((i * 7919) % 251 for i in range(900_000))
    assert kernel.expect("peer-message", peer="ada")["data"] == "é" * 100_000
    assert kernel.expect("peer-message", peer="ada")["data"] == {"json": {"big": "x" * 70_000}}

    # a compressed transfer (zlib, as the kernel writes it) is inflated in the page
    lines = "the same line again\n" * 150_000
    kernel.command(cmd="peer-send", peer="ada", data=lines, compress=True)
    kernel.expect("sent", timeout=30)
    # "sent" is the kernel's word: the page may still be inflating, so wait for it (a loaded
    # machine took longer than one evaluate)
    page.wait_for_function(
        "(n) => window.received.length === n && window.received.at(-1) === 'the same line again\\n'.repeat(150000)",
        arg=5,
        timeout=TIMEOUT_MS,
    )

    # a hostile kernel: a transfer declaring more than the page takes (maxTransferBytes,
    # 256 MiB), then a zlib bomb declaring 4 MiB with 256 MiB of zeros inside; both are
    # refused on arrival, nothing is delivered, and the link stays open
    oversized = [struct.pack("!BIBBQ", 0x02, 900, 0, 0, 300 << 20), b"\x03" + bytes(1000), struct.pack("!BI", 0x04, 900)]
    bomb = zlib_bomb(256 << 20)
    pieces = [b"\x03" + bomb[at : at + 65535] for at in range(0, len(bomb), 65535)]
    bombing = [struct.pack("!BIBBQ", 0x02, 901, 0, 1, 4 << 20), *pieces, struct.pack("!BI", 0x04, 901)]
    kernel.command(cmd="peer-raw", peer="ada", messages=[base64.b64encode(m).decode() for m in oversized + bombing])
    kernel.expect("sent")
    log = page.locator("#log")
    expect(log).to_contain_text('transfer 900 from "kernel-p" declares 300.0 MiB, more than maxTransferBytes (256.0 MiB) allows')
    expect(log).to_contain_text('transfer 901 from "kernel-p" inflates to more than the 4.0 MiB it declared')
    kernel.command(cmd="peer-send", peer="ada", data="still open")
    kernel.expect("sent")
    expect(page.locator("#log li.message").last.locator(".text")).to_have_text("still open")
    assert page.evaluate("window.received.length") == 6  # only "still open" since the compressed text
    assert row.locator(".link-state").inner_text() == "open"

    # markup over the data channel is text too
    kernel.command(cmd="peer-send", peer="ada", data=HOSTILE["message"])
    kernel.expect("sent")
    expect(page.locator("#log li.message").last.locator(".text")).to_have_text(HOSTILE["message"])
    assert page.locator(f"#log :is({MARKUP})").count() == 0
    assert page.evaluate("window.pwned") is None

    # the kernel goes away: the page's link closes, and says why
    kernel.stop()
    expect(row).to_have_count(0)
    expect(page.locator("#log")).to_contain_text("data channel with kernel-p closed")


def test_the_module_stops_with_a_clear_error_when_the_login_is_gone(page: Any, server: JupyterProcess) -> None:
    """A page whose Jupyter session ended (logged out, cookie expired): the browser does
    not say why a WebSocket was refused, so the module asks the REST API, and stops with
    an `AuthenticationError` that says what to do instead of retrying for ever."""
    page.goto(f"{server.origin}/iavicenne/?token={server.token}")
    page.evaluate("import('./static/iavicenne.js')")  # loaded while logged in
    page.context.clear_cookies()
    result = page.evaluate(
        """async () => {
            const { RoomClient } = await import("./static/iavicenne.js");
            const client = new RoomClient({ token: "", userId: "x", backoff: { initial: 50, maximum: 100 } });
            const reconnects = [];
            client.on("reconnecting", (e) => reconnects.push(e.attempt));
            try { await client.open(); return "connected?"; }
            catch (error) { return `${error.name}: ${error.message} after ${reconnects.length} attempt(s); ${client.state}`; }
        }"""
    )
    assert result.startswith("AuthenticationError:"), result
    assert "HTTP 403" in result and "log in to Jupyter" in result and result.endswith("closed"), result


def test_the_page_reconnects_after_the_server_restarts(page: Any, server: JupyterProcess, agents: Any) -> None:
    from playwright.sync_api import expect

    kernel = agents(server, "restart", "kernel-r")
    open_demo(page, server, "restart", "grace")
    expect(member(page, "kernel-r")).to_be_visible()
    page.fill("#message", "before the restart")
    page.click("#send")
    kernel.expect("message", text="before the restart")

    server.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting")
    expect(page.locator("#log")).to_contain_text("connection lost")
    kernel.expect("disconnected")
    # what the page sends while the server is down waits in its outbox
    page.fill("#message", "sent during the outage")
    page.click("#send")

    server.launch().wait_serving()  # the same port
    expect(page.locator("#connection")).to_have_text("online", timeout=30_000)
    expect(page.locator("#log")).to_contain_text("reconnected")
    expect(page.locator("#log")).to_contain_text("the server restarted")  # its history is gone: said plainly
    kernel.expect("connected", timeout=30)
    expect(member(page, "kernel-r")).to_be_visible()
    # the message written during the outage is delivered once, after the kernel is back in
    # (the kernel may get it before its own "connected" event: either order is right)
    got = kernel.expect("message", text="sent during the outage", timeout=30, seen=True)
    assert got["user_id"] == "grace"
    kernel.command(cmd="send", text="after the restart")
    expect(page.locator("#log li.message").last).to_contain_text("kernel-r: after the restart")
    texts = page.locator("#log li.message .text").all_inner_texts()
    assert texts.count("sent during the outage") == 1, texts
