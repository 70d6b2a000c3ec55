"""What the notebook and browser tests share: a `jupyter server` / `jupyter lab` process
with iAvicenne on loopback, notebooks run in real kernels, and Chromium for Playwright.

Imported by the test modules (pytest puts `tests/` on ``sys.path``).

- `JupyterApp`: a Jupyter server (``jupyter_server``) or JupyterLab (``jupyterlab``)
  process on a free loopback port, with a token, the extension enabled in a config
  folder of its own, and its own runtime folder (so a kernel it starts finds it there).
- `run_notebooks`: several notebooks executed at the same time by nbclient, each in its
  own kernel, with its own environment (how a test parameterises a notebook's role).
- `chromium_path`: Debian's Chromium, or fail in CI / skip elsewhere saying how to get it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from servers import LOOPBACK, LOOPBACK_ICE, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
CHROMIUM_HINT = "apt-get install chromium"
# what Chromium needs here: no sandbox as root in a container, and no calls to Google's
# services, which a closed network refuses one by one, slowly. Some of them (autofill,
# accounts) still look names up: the tests talk to 127.0.0.1 only, so no name resolves
NO_NAMES = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", NO_NAMES]


def chromium_path() -> str:
    """Debian's Chromium (Playwright's own browser download does not work here)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "no Chromium found at /usr/bin/chromium"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests: {CHROMIUM_HINT}", pytrace=False)
    pytest.skip(f"{reason}: {CHROMIUM_HINT}")
    raise AssertionError("unreachable")


class JupyterApp:
    """``python -m jupyter_server`` (or ``-m jupyterlab`` with `lab`) on a free loopback port."""

    def __init__(self, workdir: Path, *, lab: bool = False, token: str = "iavicenne-notebook-tests", options: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.lab = lab
        self.token = token
        self.port = free_port()
        self.root = workdir / "root"
        self.runtime = workdir / "runtime"
        self.config = workdir / "config"
        self.options = {
            # the notebooks send in bursts; the limits have tests of their own
            "messages_per_second": 10_000,
            "burst": 10_000,
            **(options or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def env(self) -> dict[str, str]:
        """The environment of the process, and of the kernels it starts."""
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.config),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTER_PLATFORM_DIRS": "0",
            "PYTHONUNBUFFERED": "1",
            **LOOPBACK_ICE,  # the kernels' join() links stay on loopback
        }
        # the kernels must find this server by themselves, not through a test's variables
        for var in ("IAVICENNE_URL", "IAVICENNE_TOKEN", "JUPYTER_SERVER_URL", "JUPYTER_TOKEN"):
            env.pop(var, None)
        return env

    def start(self, timeout: float = 90.0) -> JupyterApp:
        for folder in (self.root, self.runtime, self.config):
            folder.mkdir(parents=True, exist_ok=True)
        extensions = {"iavicenne_ext": True, "jupyter_server_terminals": False}
        if self.lab:
            extensions["jupyterlab"] = True
        (self.config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
        args = [
            sys.executable,
            "-m",
            "jupyterlab" if self.lab else "jupyter_server",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI containers run as root
            f"--ServerApp.root_dir={self.root}",
        ]
        if self.lab:
            # settings and workspaces of its own; no news pop-up (nothing to fetch from here)
            settings = self.workdir / "lab-settings"
            notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
            notification.parent.mkdir(parents=True, exist_ok=True)
            notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
            args += [
                # the test drives the notebook through JupyterLab's own commands (window.jupyterapp)
                "--LabApp.expose_app_in_browser=True",
                f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={self.workdir / 'lab-workspaces'}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
        args += [f"--IAvicenne.{key}={value}" for key, value in self.options.items()]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        log.close()

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"jupyter exited ({self.proc and self.proc.returncode}):\n{self.log_text()[-3000:]}")
            return self.get("iavicenne/api/rooms")[0] == 200

        try:
            wait_until(ready, timeout, "jupyter serving iavicenne/api/rooms", interval=0.1)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_text()[-3000:]}") from None
        return self

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, None
        except (OSError, ValueError):
            return 0, None

    def stop(self) -> None:
        """SIGTERM (Jupyter shuts its kernels down), SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


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


def kernel_env(app: JupyterApp, **variables: str) -> dict[str, str]:
    """A kernel's environment: the server given through IAVICENNE_URL / IAVICENNE_TOKEN,
    loopback-only peer links, plus `variables` (a notebook's parameters)."""
    return {**os.environ, **LOOPBACK_ICE, "IAVICENNE_URL": app.url, "IAVICENNE_TOKEN": app.token, **variables}
