"""Run a test again in a mount namespace of its own, where it may mount what it needs.

The store's bad-disk tests need a disk that is full (a small tmpfs) or read-only (a folder
bound onto itself read-only). Inside a mount namespace a test mounts them for itself and
the servers it starts, and nothing outside sees them or outlives the test:

    def test_full_disk(request, tmp_path):
        if not mount_namespace.inside():
            mount_namespace.run_inside(request)  # this very test, in a namespace
            return
        mount_namespace.mount_tmpfs(tmp_path / "disk", size="2m")
        ...

`run_inside` runs pytest on the test's node id under ``unshare --mount``
(``--map-root-user`` when not root), with ``IAVICENNE_TEST_MOUNTNS=1``. Without
``unshare`` or the right to make a namespace, the test fails in CI and is skipped
elsewhere, saying why (as network_namespace.py does for its namespaces).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from network_namespace import REPO

INSIDE = "IAVICENNE_TEST_MOUNTNS"
HINT = "apt-get install util-linux (unshare and mount), and run as root or where user namespaces are allowed"


def inside() -> bool:
    """Whether this process runs in the namespace `run_inside` made."""
    return os.environ.get(INSIDE) == "1"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test in a mount namespace: {HINT}", pytrace=False)
    pytest.skip(f"{reason}: {HINT}")


def run_inside(request: Any, timeout: float = 380.0) -> None:
    """Run `request`'s test with pytest in a new mount namespace; fail with the inner run's
    output unless it passed (skip if it skipped)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("no unshare command")
    command = [str(unshare), "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]), "--"]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        _unavailable(f"cannot make a mount namespace ({' '.join(command)}: {probe.stderr.strip() or probe.returncode})")
    inner = [sys.executable, "-m", "pytest", "-q", "-rsP", "-p", "no:cacheprovider", request.node.nodeid]
    try:
        done = subprocess.run(
            [*command, *inner],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, INSIDE: "1"},
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the test in its mount namespace did not end within {timeout} s:\n{error.stdout!s:.8000}", pytrace=False)
    output = done.stdout + done.stderr
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else ""
    if done.returncode == 0 and " passed" in summary:
        print(output)
        return
    if done.returncode == 0 and " skipped" in summary:
        reasons = [line for line in lines if line.startswith("SKIPPED")]
        pytest.skip(f"in its mount namespace: {'; '.join(reasons) or summary}")
    pytest.fail(f"the test in its mount namespace failed (pytest exit {done.returncode}):\n{output[-10000:]}", pytrace=False)


def mount_tmpfs(folder: Path, size: str) -> None:
    """A filesystem of `size` bytes (``2m``...) at `folder`: a disk that fills up."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True, capture_output=True)


def make_read_only(folder: Path) -> None:
    """`folder`, as it is, read-only from now on (for root too, unlike a file's mode)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
