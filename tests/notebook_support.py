"""What the notebook and browser tests share: notebooks run in real kernels, Chromium for
Playwright, and where screenshots go.

Imported by the test modules (pytest puts `tests/` on ``sys.path``). The Jupyter server or
JupyterLab they run against is an `iavicenne_ext.testing.JupyterProcess` (``lab=True``).

- `run_notebooks`: several notebooks executed at the same time by nbclient, each in its
  own kernel, with its own environment (how a test parameterises a notebook's role).
- `kernel_env`: that environment, pointing the kernel at a `JupyterProcess`.
- `chromium_path`: Debian's Chromium, or fail in CI / skip elsewhere saying how to get it.
- `screenshot_path`: tests/artifacts/, or docs/img/ with ``IAVICENNE_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from iavicenne_ext.testing import JupyterProcess

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "tests" / "artifacts"  # git-ignored
DOCS_IMAGES = REPO / "docs" / "img"
# set to 1 to refresh the README's screenshots (then commit docs/img): a plain run leaves
# the working tree as it was
UPDATE_SCREENSHOTS = "IAVICENNE_UPDATE_SCREENSHOTS"
CHROMIUM_HINT = "apt-get install chromium"
# what Chromium needs here: no sandbox as root in a container, and no calls to Google's
# services, which a closed network refuses one by one, slowly. Some of them (autofill,
# accounts) still look names up: the tests talk to 127.0.0.1 only, so no name resolves
NO_NAMES = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebRTC between the page and a kernel on 127.0.0.1: loopback candidates, real addresses
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    NO_NAMES,
]


def screenshot_path(name: str) -> Path:
    """Where a browser test saves the screenshot `name` (``demo-page.png``): docs/img/ when
    ``IAVICENNE_UPDATE_SCREENSHOTS=1`` asks for the README's images to be refreshed,
    tests/artifacts/ otherwise (the test makes the folder when it saves)."""
    folder = DOCS_IMAGES if os.environ.get(UPDATE_SCREENSHOTS) == "1" else ARTIFACTS
    return folder / name


def chromium_path() -> str:
    """Debian's Chromium (Playwright's own browser download does not work here)."""
    for candidate in (os.environ.get("IAVICENNE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "no Chromium found at /usr/bin/chromium"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests: {CHROMIUM_HINT}", pytrace=False)
    pytest.skip(f"{reason}: {CHROMIUM_HINT}")
    raise AssertionError("unreachable")


@dataclass
class NotebookRun:
    """One notebook to execute: its file, the environment of its kernel, and the result."""

    path: Path
    env: dict[str, str]
    label: str = ""
    cwd: Path | None = None  # where the kernel runs (default: the notebook's folder)
    result: nbformat.NotebookNode | None = field(default=None, repr=False)

    def outputs_text(self) -> str:
        """Every stream and text/plain output of the executed notebook, in order."""
        assert self.result is not None
        parts: list[str] = []
        for cell in self.result.cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    parts.append(output.get("text", ""))
                elif "data" in output and "text/plain" in output["data"]:
                    parts.append(output["data"]["text/plain"] + "\n")
        return "".join(parts)

    def results(self) -> dict[str, Any]:
        """The JSON line a demo notebook prints last, prefixed ``RESULT `` (what the test checks)."""
        for line in reversed(self.outputs_text().splitlines()):
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        raise AssertionError(f"{self.label}: no RESULT line in the outputs:\n{self.outputs_text()[-2000:]}")


async def _execute(run: NotebookRun, timeout: float) -> None:
    notebook = nbformat.read(run.path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(run.cwd or run.path.parent)}},
        # ipywidgets' state is recorded as it would be saved from JupyterLab
        record_timing=False,
    )
    try:
        run.result = await client.async_execute(env=run.env)
    except Exception as error:
        partial = "\n".join(
            f"--- cell {i}: {''.join(o.get('text', '') for o in c.get('outputs', []) if o.get('output_type') == 'stream')[-800:]}"
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "code"
        )
        raise AssertionError(f"{run.label or run.path.name} failed: {error}\n{partial}") from error


def run_notebooks(runs: list[NotebookRun], timeout: float = 60.0) -> list[NotebookRun]:
    """Execute `runs` at once, each in its own kernel (they may wait for each other)."""

    async def all_of_them() -> None:
        await asyncio.gather(*(_execute(run, timeout) for run in runs))

    asyncio.run(all_of_them())
    return runs


def kernel_env(server: JupyterProcess, **variables: str) -> dict[str, str]:
    """A kernel's environment: the server given through IAVICENNE_URL / IAVICENNE_TOKEN, plus
    `variables` (a notebook's parameters). Its peer links stay on loopback as this
    process's do (conftest.py sets that in the environment every test process inherits)."""
    return {**os.environ, "IAVICENNE_URL": server.url, "IAVICENNE_TOKEN": server.token, **variables}
