"""What every test gets from pytest: the plugins, loopback-only peer links, the room
socket fixture the endpoint tests share, and the in-process server's address and the
sessions a notebook-API test opened (fixtures live here, where pytest finds them, so a
test module asks for one by naming it, without importing it)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from room_support import Connect, assert_timestamped

from iavicenne.ice import ADDRESSES_VARIABLE
from iavicenne_ext.testing import WSClient

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]

# Tests talk to loopback only: a peer link whose code names no addresses (join()'s
# default) gathers 127.0.0.1 alone, in this process and in every process it starts (the
# Jupyter servers, their kernels, the notebooks' kernels inherit this environment).
os.environ[ADDRESSES_VARIABLE] = "127.0.0.1"


@pytest.fixture
def connect(iav_connect: Connect) -> Iterator[Connect]:
    """`iav_connect`, and at the end: every frame any client read carried a UTC timestamp."""
    clients: list[WSClient] = []

    async def open_client(*args: Any, **kwargs: Any) -> WSClient:
        client = await iav_connect(*args, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        assert_timestamped(client.seen)


@pytest.fixture
def base(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> str:
    """The in-process test server's address (pytest-jupyter's), as a client is given it."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


@pytest.fixture
def server_token(jp_serverapp: Any) -> str:
    return str(jp_serverapp.identity_provider.token)


@pytest.fixture
def opened(io_loop: Any) -> Any:
    """Sessions and clients a test opened; closed at the end on the test's loop."""
    things: list[Any] = []
    yield things

    async def close_all() -> None:
        for thing in reversed(things):
            await thing.close()

    io_loop.run_sync(close_all)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout (``pip wheel . --no-deps``), built once per run."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("iavicenne-*.whl")
    return found


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh environment with the wheel installed; its cwd is neutral."""
    env = tmp_path_factory.mktemp("venv") / "fresh"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # only now: had pip seen the test environment (where CI installs this very version,
    # not editable), it would have found iavicenne "already satisfied" and installed nothing
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "dependencies-of-the-test-environment.pth").write_text("\n".join(ours) + "\n")
    return python
