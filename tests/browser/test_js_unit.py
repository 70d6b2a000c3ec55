"""The browser client's unit tests (`tests/browser/js/*.test.mjs`), run by node's test runner.

They cover the logic that needs no browser (backoff, resend and dedup bookkeeping, since
tracking, frame parsing, the peer links' wire format, its bounds against a hostile
sender, and negotiation), importing each module of static/ where they test its
internals, with fake WebSocket and RTCPeerConnection objects; the browser tests
(test_browser_page.py) run the same modules in Chromium. Running them from here makes the README's ``python -m
pytest`` run them too. Without node (18 or later) they fail in CI (``CI`` set) and are
skipped elsewhere, with the command that installs it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from browser_support import node_executable

JS_TESTS = Path(__file__).resolve().parent / "js"


def test_browser_module_unit_tests() -> None:
    node = node_executable()
    files = sorted(str(path) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs in {JS_TESTS}"
    # the file list, not the folder: node 21+ reads its arguments as globs
    run = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120, check=False, cwd=JS_TESTS)
    summary = "\n".join(line for line in run.stdout.splitlines() if line.startswith(("# tests", "# pass", "# fail")))
    failures = "\n".join(
        block
        for block in re.split(r"\n(?=# Subtest|not ok|ok )", run.stdout)
        if block.startswith("not ok") or "\nnot ok" in block
    )
    assert run.returncode == 0, f"node --test failed:\n{summary}\n{failures[-6000:]}\n{run.stderr[-3000:]}"
    assert "# fail 0" in run.stdout, run.stdout[-3000:]
