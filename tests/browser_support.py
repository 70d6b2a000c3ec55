"""What the tests of pages share: the fixtures of every test that drives Chromium with
Playwright's sync API, defined once and imported by the conftest.py of each folder whose
tests do (browser/, hub/, lab/); a Python room client in a process of its own (`Agent`);
node for the browser modules' unit tests.

Playwright's sync API runs its own event loop in the test's thread. pytest-jupyter's
autouse fixtures would take that loop as theirs and close it after each test; these tests
use no in-process server, so they get a loop of their own and no server clean-up."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notebook_support import CHROMIUM_ARGS, chromium_path

from iavicenne_ext.testing import JupyterProcess


@pytest.fixture
def jp_asyncio_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def jp_server_cleanup() -> None:
    return


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright's sync API, one per test module (its tests
    open their own contexts)."""
    executable = chromium_path()  # fail (CI) or skip before starting anything
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


REPO = Path(__file__).resolve().parent.parent
AGENT = Path(__file__).resolve().parent / "browser_agent.py"


TIMEOUT_MS = 20_000


class Agent:
    """`browser_agent.py` in a process of its own: commands in, events out."""

    def __init__(self, server: JupyterProcess, room: str, user_id: str, *, peer: bool = False, log: Path) -> None:
        args = [sys.executable, str(AGENT), f"{server.origin}/", server.token, room, user_id]
        if peer:
            args.append("--peer")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.log = log
        self._stderr = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=REPO, text=True
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "output", "line": line})

    def expect(self, event: str, timeout: float = 20.0, *, seen: bool = False, **match: Any) -> dict[str, Any]:
        """The next event of kind `event` whose fields equal `match`, skipping others; with
        `seen`, one already skipped counts too (for events whose order is not promised)."""
        if seen:
            for got in self.seen:
                if got.get("event") == event and all(got.get(k) == v for k, v in match.items()):
                    return got
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"agent: no {event} {match} within {timeout} s; saw {self.seen[-8:]}\n{self.stderr()[-3000:]}"
                )
            try:
                got = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.events.empty():
                    raise AssertionError(f"agent exited ({self.proc.returncode}):\n{self.stderr()[-3000:]}") from None
                continue
            self.seen.append(got)
            if got.get("event") == "error":
                raise AssertionError(f"agent error: {got.get('message')}\n{got.get('trace')}")
            if got.get("event") == event and all(got.get(k) == v for k, v in match.items()):
                return got

    def command(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise AssertionError(f"agent exited ({self.proc.poll()}):\n{self.stderr()[-3000:]}") from None

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


INSTALL_HINT = "apt-get install nodejs (node 18 or later)"


def node_executable() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    version = ""
    if node:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        found = re.match(r"v(\d+)\.", version)
        if found and int(found.group(1)) >= 18:
            return node
    reason = f"node {version} is too old for node:test" if node else "node is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the JavaScript unit tests: {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{reason}: {INSTALL_HINT}")
    raise AssertionError("unreachable")


# a 1x1 transparent PNG
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)


class CountingServer:
    """A tiny HTTP server on 127.0.0.1 that answers every GET with a PNG and keeps what it
    was asked (path and headers): the "remote image" of a message, whose requests a test
    counts. ``with CountingServer() as images: ... images.url("/img.png")``."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, dict[str, str]]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.end_headers()
                self.wfile.write(PIXEL)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def counted(seen: list[str]) -> Any:
    """A Playwright route handler that notes each request's URL in `seen` and answers 204:
    ``context.route("**/logout-canary*", counted(canary))``."""

    def handle(route: Any) -> None:
        seen.append(route.request.url)
        route.fulfill(status=204)

    return handle
