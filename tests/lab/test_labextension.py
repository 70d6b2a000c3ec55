"""The JupyterLab extension as it ships: the committed build is the build of the committed
sources, its own logic passes its unit tests, and a wheel installed in a fresh environment
is listed by ``jupyter labextension list`` as enabled and OK, with nothing else to run.

The build (TypeScript and webpack, Node.js) is committed in iavicenne_ext/labextension/, so
``pip install`` on a machine with only Python ships it as it is. `build-inputs.json` there
records the sha256 of the sources it was built from (labextension/scripts/stamp.mjs); the
first test computes it again: when it fails, rebuild with ``cd labextension && npm ci &&
npm run build`` and commit the result. The build is deterministic, and .ci/run rebuilds it
and fails when the rebuild differs from the committed build.

tsc's output, labextension/lib/, is not committed: the unit tests build it first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "labextension"
BUILD = REPO / "iavicenne_ext" / "labextension"
#: what the build reads, as stamp.mjs lists it
INPUTS = ("src", "style", "schema", "package.json", "package-lock.json", "tsconfig.json", "webpack.config.js")
#: the browser client the build bundles: its modules, types and package.json, not the demo page's own
CLIENT = REPO / "iavicenne_ext" / "static"
NODE_HINT = "apt-get install nodejs (node 20.19 or later: the unit tests import the compiled ES modules of lib/)"
TSC = SOURCES / "node_modules" / "typescript" / "bin" / "tsc"
TSC_HINT = "cd labextension && npm ci (the unit tests import lib/, which tsc builds from src/)"

pytestmark = pytest.mark.timeout(300)


def sources_hash() -> tuple[str, list[str]]:
    paths: list[Path] = []
    for name in INPUTS:
        path = SOURCES / name
        paths.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    relative = [path.relative_to(SOURCES).as_posix() for path in paths]
    relative += [
        f"../iavicenne_ext/static/{path.name}"
        for path in CLIENT.iterdir()
        if path.name == "package.json" or (path.name.endswith((".js", ".d.ts")) and not path.name.startswith("demo."))
    ]
    relative.sort()
    digest = hashlib.sha256()
    for name in relative:
        digest.update(name.encode() + b"\0")
        digest.update((SOURCES / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest(), relative


def test_the_committed_build_is_of_the_committed_sources() -> None:
    stamp = json.loads((BUILD / "build-inputs.json").read_text())
    digest, files = sources_hash()
    assert stamp["files"] == files, "the extension's source files changed since the build: cd labextension && npm run build"
    assert stamp["sha256"] == digest, (
        "labextension/ changed since iavicenne_ext/labextension was built: cd labextension && npm run build"
    )
    built = json.loads((BUILD / "package.json").read_text())
    assert built["name"] == "iavicenne-lab"
    assert built["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (BUILD / built["jupyterlab"]["_build"]["load"]).is_file()


def test_the_extension_bundles_the_client_the_server_serves() -> None:
    """One client source: the bundle holds iavicenne_ext/static's client (built from it, as
    build-inputs.json records), and fetches no module from the server at run time (under
    JupyterHub a module fetched with the login cookie is refused without the XSRF token)."""
    bundle = "\n".join(path.read_text() for path in (BUILD / "static").glob("*.js"))
    assert "iavicenne/static/iavicenne.js" not in bundle
    # (minified: the client's own messages, not its class names, show it is there)
    for marker in ("refused the request (HTTP 403)", "cannot open a link to oneself", "no server address: pass url"):
        assert marker in bundle, f"{marker!r} is not in the bundle: the client is not bundled"
    stamp = json.loads((BUILD / "build-inputs.json").read_text())
    assert "../iavicenne_ext/static/iavicenne.js" in stamp["files"]


def node_20() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip() if node else ""
    found = re.match(r"v(\d+)\.(\d+)", version)
    if node and found and (int(found.group(1)), int(found.group(2))) >= (20, 19):
        return node
    reason = f"node {version} cannot import lib/'s modules" if node else "node is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the extension's unit tests: {NODE_HINT}", pytrace=False)
    pytest.skip(f"{reason}: {NODE_HINT}")
    raise AssertionError("unreachable")


def build_lib(node: str) -> None:
    """tsc's output, lib/, from src/: what the unit tests import (`npm test` does the same)."""
    if not TSC.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"TypeScript is not installed; CI must run the extension's unit tests: {TSC_HINT}", pytrace=False)
        pytest.skip(f"TypeScript is not installed: {TSC_HINT}")
    run = subprocess.run([node, str(TSC)], capture_output=True, text=True, timeout=180, check=False, cwd=SOURCES)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]


def test_the_extension_unit_tests() -> None:
    node = node_20()
    build_lib(node)
    # the compiled modules the unit tests import are of the same sources (tsc's output)
    for source in (SOURCES / "src").glob("*.ts"):
        assert (SOURCES / "lib" / f"{source.stem}.js").is_file(), f"lib/{source.stem}.js missing: npm run build"
    files = sorted(str(path) for path in (SOURCES / "test").glob("*.test.mjs"))
    assert files
    run = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120, check=False, cwd=SOURCES)
    assert run.returncode == 0 and "# fail 0" in run.stdout, run.stdout[-6000:] + run.stderr[-3000:]


def test_jupyter_labextension_list_shows_it_enabled_and_ok(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    env.pop("JUPYTER_PATH", None)
    listed = subprocess.run(
        [str(installed), "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    out = listed.stdout + listed.stderr
    assert listed.returncode == 0, out
    line = next((line for line in out.splitlines() if "iavicenne-lab" in line), None)
    assert line is not None, out
    # e.g. "        iavicenne-lab v0.1.0 enabled OK (python, iavicenne)"
    assert re.search(r"iavicenne-lab v0\.1\.0 .*enabled.* OK \(python, iavicenne\)", re.sub(r"\x1b\[[0-9;]*m", "", line)), line
    where = next(line for line in out.splitlines()[: out.splitlines().index(line)][::-1] if "labextensions" in line)
    assert str(installed.parent.parent) in where, where  # the fresh environment's share/jupyter, from the wheel
