"""Vendor the `yjs` npm package (and the `lib0` modules it imports) into ``static/vendor/``,
so the browser client's shared state (``static/shared.js``) runs `yjs` as it is, with no
bundler: the client is plain ES modules served by the extension.

    python -m iavicenne_ext.vendor_js            # fetch with npm, check, write static/vendor/
    python -m iavicenne_ext.vendor_js --check    # exit 1 (and say how) if static/vendor/ is not npm's

Each package is fetched with the npm client (``npm pack name@version``) and its tarball
checked against the integrity (sha512) pinned in `PACKAGES`, which is npm's
``dist.integrity`` for that version. Both are MIT-licensed; their LICENSE files are copied
beside them. The files are npm's byte for byte but for one rewrite: a bare specifier
``from 'lib0/x'`` (which a browser cannot resolve without an import map, and the demo
page's Content-Security-Policy runs no inline script) becomes the relative path of the
file lib0's ``exports`` map gives a browser (``from '../lib0/x.js'``). Only the lib0 files
`yjs` reaches are kept. ``--check`` (run by .ci/run) does it all again and compares.

``SHA256SUMS`` beside them lists each file's sha256, written from the checked tarballs:
tests/test_shared_state.py compares the files with it offline (tests talk to loopback
only), so an edit by hand is caught by every test run and a wrong source by CI.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import posixpath
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
COMMAND = "python -m iavicenne_ext.vendor_js"
SUMS = "SHA256SUMS"

#: name -> (version, npm's dist.integrity of its tarball)
PACKAGES = {
    "yjs": (
        "13.6.33",
        "sha512-q/UYvr1gOk4XII+Cu1CW2dINjYqJJFifTzogEaIARznrvX7uOlHsdTEXcnOBMuIsrCGEEKdNxi74kyMLZlKVfw==",
    ),
    "lib0": (
        "0.2.120",
        "sha512-/a2eRImR8sZbmMVKe2we1/KukDQkuPyPf8yol6epvCu2PH6hurjcRI3mdGFFAi0uGoRJGyns99JquZgxwW1tQg==",
    ),
}
YJS_ENTRY = "dist/yjs.mjs"
# an import or export's module specifier: `from 'x'`, `import 'x'`
_SPECIFIER = re.compile(r"""(\bfrom\s*|\bimport\s*)(['"])([^'"\n]+)\2""")


class VendorError(Exception):
    pass


def fetch(name: str, version: str, integrity: str, folder: Path) -> dict[str, bytes]:
    """The files of `name@version`'s npm tarball (paths without ``package/``), checked."""
    try:
        done = subprocess.run(
            ["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    except FileNotFoundError:
        raise VendorError("npm is not installed (apt-get install npm)") from None
    except subprocess.CalledProcessError as error:
        raise VendorError(f"npm pack {name}@{version} failed: {error.stderr.strip()[-500:]}") from None
    tarball = folder / done.stdout.strip().splitlines()[-1]
    data = tarball.read_bytes()
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != integrity:
        raise VendorError(f"{name}@{version}: the tarball's integrity is {got}, not the pinned {integrity}")
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith("package/"):
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name.removeprefix("package/")] = extracted.read()
    return files


def _browser_file(exports: dict[str, object], subpath: str) -> str:
    """The file lib0's ``exports`` map gives a browser's ``import`` for ``lib0/<subpath>``."""
    entry = exports.get(f"./{subpath}")
    for condition in ("browser", "module", "import", "default"):
        if isinstance(entry, dict) and condition in entry:
            entry = entry[condition]
    if isinstance(entry, dict):
        entry = entry.get("import") or entry.get("default")
    if not isinstance(entry, str):
        raise VendorError(f"lib0 exports no browser module for lib0/{subpath}")
    return posixpath.normpath(entry)


def vendored(yjs: dict[str, bytes], lib0: dict[str, bytes]) -> dict[str, bytes]:
    """What static/vendor/ holds: yjs.mjs and the lib0 files it reaches, rewritten as said."""
    exports = json.loads(lib0["package.json"])["exports"]
    out: dict[str, bytes] = {"LICENSE-yjs": yjs["LICENSE"], "LICENSE-lib0": lib0["LICENSE"]}

    def rewrite(text: str, here: str) -> tuple[str, list[str]]:
        reached: list[str] = []

        def one(match: re.Match[str]) -> str:
            prefix, quote, spec = match.groups()
            if spec.startswith("lib0/"):
                target = "lib0/" + _browser_file(exports, spec.removeprefix("lib0/"))
            elif spec.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(here), spec))
            else:
                raise VendorError(f"{here} imports {spec!r}, which is neither lib0 nor relative")
            reached.append(target)
            relative = posixpath.relpath(target, posixpath.dirname(here))
            return f"{prefix}{quote}{relative if relative.startswith('.') else './' + relative}{quote}"

        return _SPECIFIER.sub(one, text), reached

    todo = [("yjs/yjs.mjs", yjs[YJS_ENTRY])]
    while todo:
        here, data = todo.pop()
        if here in out:
            continue
        text, reached = rewrite(data.decode("utf-8"), here)
        out[here] = text.encode("utf-8")
        for target in reached:
            if target not in out:
                source = lib0.get(target.removeprefix("lib0/"))
                if source is None:
                    raise VendorError(f"{here} imports {target}, which lib0's tarball does not have")
                todo.append((target, source))
    return out


def build() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="iav-vendor-") as folder:
        packs = {name: fetch(name, version, integrity, Path(folder)) for name, (version, integrity) in PACKAGES.items()}
    return vendored(packs["yjs"], packs["lib0"])


def on_disk() -> dict[str, bytes]:
    return {path.relative_to(VENDOR).as_posix(): path.read_bytes() for path in VENDOR.rglob("*") if path.is_file()}


def sums(files: dict[str, bytes]) -> bytes:
    """``SHA256SUMS`` of `files` (sha256sum's format, sorted by path)."""
    lines = (f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sorted(files.items()) if path != SUMS)
    return "".join(lines).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare static/vendor/ with npm's packages; write nothing")
    args = parser.parse_args(argv)
    try:
        files = build()
        files[SUMS] = sums(files)
    except VendorError as error:
        print(f"vendor_js: {error}", file=sys.stderr)
        return 2
    if args.check:
        present = on_disk()
        differ = sorted(set(files) ^ set(present) | {k for k in files if k in present and files[k] != present[k]})
        if differ:
            print(f"static/vendor/ is not npm's yjs/lib0 ({', '.join(differ[:8])}); run {COMMAND}", file=sys.stderr)
            return 1
        print(f"static/vendor/: {len(files)} files, as npm's " + ", ".join(f"{n}@{v}" for n, (v, _) in PACKAGES.items()))
        return 0
    for relative, data in files.items():
        target = VENDOR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for stale in set(on_disk()) - set(files):
        (VENDOR / stale).unlink()
    print(f"wrote {len(files)} files to {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
