"""The notebook client and the protocol package stand without the server: importing every
module of ``iavicenne`` loads no module of ``iavicenne_ext``, and ``iavicenne_protocol``
loads neither ``iavicenne_ext`` nor the client (nor pycrdt: the y-sync codec is pure).

Each check runs in a fresh interpreter, so what an earlier test imported cannot hide an
import (or fake one).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import iavicenne

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> list[str]:
    """The modules loaded once `code` ran in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_every_module_of_the_client_imports_without_the_server_package() -> None:
    modules = sorted(info.name for info in pkgutil.walk_packages(iavicenne.__path__, "iavicenne."))
    assert {"iavicenne.client", "iavicenne.room", "iavicenne.shared", "iavicenne.relay", "iavicenne.files"} <= set(modules)
    loaded = loaded_after("import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in modules))
    assert set(modules) <= set(loaded)
    assert "iavicenne_protocol" in loaded
    assert [m for m in loaded if m == "iavicenne_ext" or m.startswith("iavicenne_ext.")] == []


def test_the_protocol_package_imports_nothing_of_the_server_or_the_client() -> None:
    loaded = loaded_after("import iavicenne_protocol")
    assert [m for m in loaded if m.split(".")[0] in ("iavicenne_ext", "iavicenne", "pycrdt", "tornado")] == []
