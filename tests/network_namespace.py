"""Run a test again in a network namespace of its own, where only ``lo`` exists.

Tests may use loopback only. A WebRTC peer that is not ours to configure (Chromium)
gathers candidates on every interface and may check or select a pair on another address
of this machine; inside a fresh namespace there is no other address, so by construction
every process of the test (the browser, the Jupyter server, the aiortc peer) talks over
127.0.0.1 only.

    def test_webrtc(request):
        if not network_namespace.inside():
            network_namespace.run_inside(request)  # this very test, in a namespace
            return
        ...  # the scenario; fixtures through request.getfixturevalue

`run_inside` starts ``unshare --net`` (``--map-root-user`` when not root), brings ``lo`` up
and runs pytest on the test's node id there, with ``IAVICENNE_TEST_NETNS=1`` so it knows
it is inside. Without ``unshare`` (util-linux) or ``ip`` (iproute2), or without the right
to make a namespace, the test fails in CI (``CI`` set) and is skipped elsewhere, saying
why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

INSIDE = "IAVICENNE_TEST_NETNS"
REPO = Path(__file__).resolve().parent.parent
HINT = "apt-get install util-linux iproute2 (unshare and ip), and run as root or where user namespaces are allowed"


def inside() -> bool:
    """Whether this process runs in the namespace `run_inside` made."""
    return os.environ.get(INSIDE) == "1"


def interfaces() -> set[str]:
    import psutil

    return set(psutil.net_if_addrs())


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test in a loopback-only network namespace: {HINT}", pytrace=False)
    pytest.skip(f"{reason}: {HINT}")


def _tools() -> tuple[list[str], str]:
    """The ``unshare`` command (up to its ``--``) and the path of ``ip``."""
    unshare = shutil.which("unshare")
    # `ip` lives in /usr/sbin, which a non-root PATH may not list
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if unshare is None or ip is None:
        _unavailable(f"no {'unshare' if unshare is None else 'ip'} command")
        raise AssertionError("unreachable")
    return [unshare, "--net", *([] if os.geteuid() == 0 else ["--map-root-user"])], ip


def run_inside(request: Any, timeout: float = 170.0) -> None:
    """Run `request`'s test with pytest in a new network namespace with only ``lo`` (up);
    fail with the inner run's output unless it passed (skip if it skipped)."""
    unshare, ip = _tools()
    probe = subprocess.run([*unshare, "--", ip, "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        _unavailable(f"cannot make a network namespace ({' '.join(unshare)}: {probe.stderr.strip() or probe.returncode})")
    # -rsP: skip reasons, and what a passing test printed (shown here with pytest -s)
    inner = [sys.executable, "-m", "pytest", "-q", "-rsP", "-p", "no:cacheprovider", request.node.nodeid]
    # one namespace: bring lo up, then become pytest ($0 is ip; argv keeps every path as it is)
    args = [*unshare, "--", "sh", "-c", '"$0" link set lo up && exec "$@"', ip, *inner]
    # a session of its own: on a timeout the whole tree (server, browser, agent) is killed
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, INSIDE: "1"},
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the test in its network namespace did not end within {timeout} s:\n{output[-8000:]}", pytrace=False)
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else ""
    if proc.returncode == 0 and " passed" in summary:
        print(output)
        return
    if proc.returncode == 0 and " skipped" in summary:
        reasons = [line for line in lines if line.startswith("SKIPPED")]
        pytest.skip(f"in its network namespace: {'; '.join(reasons) or summary}")
    pytest.fail(f"the test in its network namespace failed (pytest exit {proc.returncode}):\n{output[-10000:]}", pytrace=False)
