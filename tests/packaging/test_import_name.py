"""The import name, as a user installs the package: ``import iavicenne`` works, and nothing
named ``widgets`` is installed at the top of site-packages (it would collide with other
wheels, be shadowed by a notebook folder's ``widgets/``, and read like ``ipywidgets``).

The wheel is built from this checkout (``pip wheel . --no-deps``) and installed into a
fresh virtual environment (the `wheel` and `installed` fixtures, in conftest.py). Its dependencies come from the environment running the tests,
without downloading anything: a ``.pth`` file in the fresh environment lists this
environment's site-packages. Python adds a ``.pth`` file's directories to ``sys.path``
but does not read the ``.pth`` files inside them, so this checkout's editable install
(which puts the repository and ``widgets/`` on ``sys.path``) is not seen: what imports
is the wheel.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def run(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_the_wheel_installs_iavicenne_and_nothing_named_widgets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert "widgets" not in top and not any(name.startswith("widgets") for name in top), sorted(top)
    assert {"iavicenne", "iavicenne_ext"} <= top
    assert "iavicenne/__init__.py" in names and "iavicenne/wire.py" in names and "iavicenne_protocol/frames.py" in names


def test_import_iavicenne_works_and_import_widgets_fails(installed: Path, tmp_path: Path) -> None:
    got = run(
        installed,
        "import iavicenne, iavicenne.client; print(iavicenne.__file__); print(iavicenne.RoomClient.__module__)",
        tmp_path,
    )
    assert got.returncode == 0, got.stderr
    where, module = got.stdout.split()
    assert Path(where).is_relative_to(installed.parent.parent) and "site-packages" in where, (
        where
    )  # the wheel's, not this checkout
    assert module == "iavicenne.client"
    widgets = run(installed, "import widgets", tmp_path)
    assert widgets.returncode != 0 and "No module named 'widgets'" in widgets.stderr, widgets.stdout + widgets.stderr


def test_the_public_names_import_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    got = run(
        installed,
        "from iavicenne import join, RoomClient, PeerNetwork, PeerLink, TransferRefused; print(join.__module__)",
        tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "iavicenne.room"


def test_the_client_alone_does_not_import_the_notebook_libraries(installed: Path, tmp_path: Path) -> None:
    """A script that chats pays for neither aiortc nor ipywidgets nor pandas; every name of
    ``__all__`` (the lazy ones too) is there once asked for."""
    code = (
        "import sys, iavicenne\n"
        "heavy = ['aiortc', 'ipywidgets', 'pandas', 'pyarrow']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "missing = [n for n in iavicenne.__all__ if getattr(iavicenne, n, None) is None]\n"
        "print(missing, len(iavicenne.__all__) == len(set(iavicenne.__all__)))\n"
    )
    got = run(installed, code, tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["[]", "[] True"]
