"""The browser client's protocol.js is the protocol package's, and says the same thing.

``static/protocol.js`` (and ``protocol.d.ts``) are emitted from the package ``iavicenne_protocol``
by ``python -m iavicenne_ext.protocol_js`` and checked in. These tests fail when the two
drift apart, read the emitted module back in node to compare every value with Python's,
hold the JavaScript name rule to the Python one (chosen names, then every character
Python's Unicode database knows), and check that the rest of static/ (and the JupyterLab
extension's sources) spells none of those values itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from browser_support import node_executable

import iavicenne_protocol as protocol
from iavicenne_ext import protocol_js
from iavicenne_protocol import names

STATIC = protocol_js.STATIC
REPO = Path(__file__).resolve().parents[2]


def node_eval(script: str, stdin: str = "") -> Any:
    """Run an ES module `script` in node (cwd: static/); what it writes to stdout, as JSON."""
    run = subprocess.run(
        [node_executable(), "--input-type=module", "-e", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=STATIC,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_the_checked_in_files_are_what_protocol_py_gives_now() -> None:
    assert protocol_js.stale() == [], (
        f"iavicenne_protocol changed: run `{protocol_js.COMMAND}` and commit static/protocol.js and .d.ts"
    )
    run = subprocess.run(
        [sys.executable, "-m", "iavicenne_ext.protocol_js", "--check"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert run.returncode == 0, run.stderr


def test_check_fails_when_either_side_drifts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    js, dts = tmp_path / "protocol.js", tmp_path / "protocol.d.ts"
    shutil.copy(protocol_js.JS_FILE, js)
    shutil.copy(protocol_js.DTS_FILE, dts)
    monkeypatch.setattr(protocol_js, "JS_FILE", js)
    monkeypatch.setattr(protocol_js, "DTS_FILE", dts)
    assert protocol_js.main(["--check"]) == 0
    # someone edits the generated file by hand
    js.write_text(js.read_text().replace('NAME_TAKEN: "name-taken"', 'NAME_TAKEN: "taken"'))
    assert protocol_js.main(["--check"]) == 1
    assert f"protocol.js is out of date with {protocol_js.SOURCE}: run `{protocol_js.COMMAND}`" in capsys.readouterr().err
    assert protocol_js.main([]) == 0 and protocol_js.main(["--check"]) == 0  # writing puts it right
    # the package changes a value: both files are out of date until they are emitted again
    monkeypatch.setattr(protocol, "CLOSE_SUPERSEDED", 4001)
    assert protocol_js.main(["--check"]) == 1
    assert sorted(protocol_js.stale()) == [dts, js]
    protocol_js.main([])
    assert "export const CLOSE_SUPERSEDED = 4001;" in js.read_text()
    assert "export declare const CLOSE_SUPERSEDED: 4001;" in dts.read_text()


def _python_value(entry: Any) -> Any:
    if entry.pattern is not None:
        return {"source": entry.pattern, "flags": "u"}
    if isinstance(entry.value, (set, frozenset)):
        return sorted(entry.value)
    if isinstance(entry.value, tuple):
        return list(entry.value)
    return entry.value


def test_node_reads_every_value_of_protocol_py_from_protocol_js() -> None:
    got = node_eval(
        """
        import * as protocol from "./protocol.js";
        const out = {};
        for (const [name, value] of Object.entries(protocol)) {
          if (!Object.isFrozen(value)) throw new Error(`${name} can be changed`);
          out[name] = value instanceof RegExp ? { source: value.source, flags: value.flags } : value;
        }
        process.stdout.write(JSON.stringify(out));
        """
    )
    expected = {entry.name: _python_value(entry) for entry in protocol_js.entries()}
    assert got == expected
    # what the clients need is there, with the package's values
    assert got["ErrorCode"] == {k: v for k, v in vars(protocol.ErrorCode).items() if k.isupper()}
    assert got["Tag"]["START"] == protocol.Tag.START and got["Kind"]["TEXT"] == protocol.Kind.TEXT
    assert got["RELAY_BODY"] == protocol.RELAY_BODY and got["REF_MAX_LENGTH"] == protocol.REF_MAX_LENGTH
    assert {
        "ROOMS_PATH",
        "SIGNALING_PATH",
        "REST_PATH",
        "CLOSE_SUPERSEDED",
        "CHANNEL_LABEL",
        "FLAG_ZLIB",
        "DEFAULT_REMOTE_MAX_MESSAGE",
    } <= set(got)
    assert "SIGNALING_ROOM_PREFIX" not in got  # the hub's business


ACCEPTED = [
    "a", "r1", "_", "Ada Lovelace", "kernel-1.x@host:8888", "a+b#c~d", "café", "ñandú", "Ωmega", "分析",
    "データ", "٣٤", "x" * 64, "a" + " " * 62 + "b", ".@:+#~-_",
]  # fmt: skip
REFUSED = [
    "", " ", " lead", "trail ", "x" * 65, "a" + " " * 63 + "b", "tab\there", "a\nb", "a/b", "\x00", "a\x7fb",
    "e\u0301", "a\u200bb", "a\u00a0b", "😀", "<img src=x onerror=alert(1)>", "a'b", 'a"b', "a\\b", "a\u2028b",
]  # fmt: skip


def test_the_javascript_name_rule_accepts_and_refuses_what_python_does() -> None:
    for name in ACCEPTED:
        assert protocol.check_name(name, "room") == name
    for name in REFUSED:
        with pytest.raises(protocol.ProtocolError):
            protocol.check_name(name, "room")
    got = node_eval(
        """
        import { readFileSync } from "node:fs";
        import { NAME_PATTERN } from "./protocol.js";
        import { checkName } from "./errors.js";
        const names = JSON.parse(readFileSync(0, "utf8"));
        const refusal = (name) => { try { checkName(name, "room"); return null; } catch (e) { return e.message; } };
        process.stdout.write(JSON.stringify(names.map((n) => [NAME_PATTERN.test(n), refusal(n)])));
        """,
        json.dumps(ACCEPTED + REFUSED),
    )
    verdicts = dict(zip(ACCEPTED + REFUSED, got, strict=True))
    assert [n for n in ACCEPTED if not verdicts[n][0]] == []
    assert [n for n in REFUSED if verdicts[n][0]] == []
    assert verdicts["a/b"][1] == f'invalid room "a/b": {protocol.NAME_RULE}'


def test_the_two_name_rules_agree_on_every_character_python_knows() -> None:
    # every code point assigned in Python's Unicode database, alone as a name (the edge
    # class) and between two letters (the inner one); node's newer Unicode may know more
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"]
    python = "".join("1" if names._NAME.fullmatch(chr(c)) else "0" for c in points)
    python_inner = "".join("1" if names._NAME.fullmatch(f"a{chr(c)}b") else "0" for c in points)
    got = node_eval(
        """
        import { readFileSync } from "node:fs";
        import { NAME_PATTERN } from "./protocol.js";
        const points = JSON.parse(readFileSync(0, "utf8"));
        const test = (wrap) => points.map((c) => (NAME_PATTERN.test(wrap(String.fromCodePoint(c))) ? "1" : "0")).join("");
        process.stdout.write(JSON.stringify([test((s) => s), test((s) => `a${s}b`)]));
        """,
        json.dumps(points),
    )
    for label, mine, theirs in (("alone", python, got[0]), ("inner", python_inner, got[1])):
        differ = [
            f"U+{points[i]:04X} {unicodedata.name(chr(points[i]), '?')}" for i in range(len(points)) if mine[i] != theirs[i]
        ]
        assert differ == [], f"{label}: {len(differ)} characters judged differently, e.g. {differ[:10]}"
    assert python.count("1") > 100_000  # letters and digits of every script, not ASCII only


def _protocol_strings() -> set[str]:
    """The protocol's values that no other module of static/ may spell: paths, error
    codes, and the frame types that are no plain word (a plain one, "message", is also
    an event name of the client's API)."""
    values: set[str] = {
        protocol.ROOMS_PATH,
        protocol.SIGNALING_PATH,
        protocol.REST_PATH,
        protocol.NAME_RULE,
        protocol.NAME_SEPARATORS,
    }
    values |= {v for k, v in vars(protocol.ErrorCode).items() if k.isupper()}
    values |= {v for v in (*protocol.ROOM_REQUESTS, *protocol.SIGNALING_REQUESTS, protocol.ROOM_JOINED, protocol.ROOM_LEFT,
                           protocol.USER_JOINED, protocol.USER_LEFT, protocol.PEER_JOINED, protocol.PEER_LEFT) if "-" in v}  # fmt: skip
    return values


def test_no_other_module_of_static_spells_the_protocol() -> None:
    literals = re.compile(r"""(["'`])((?:\\.|(?!\1).)*)\1""")
    found = []
    for path in sorted(STATIC.glob("*.js")):
        if path.name == "protocol.js":
            continue
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("//")[0] if not line.lstrip().startswith("*") else ""
            for match in literals.finditer(code):
                if match.group(2) in _protocol_strings():
                    found.append(f"{path.name}:{number}: {line.strip()}")
            if r"\p{L}" in line:
                found.append(f"{path.name}:{number}: the name rule (protocol.js has NAME_PATTERN)")
    assert found == [], "import these from protocol.js:\n" + "\n".join(found)
    assert _protocol_strings() >= {"join-room", "ice-candidate", "name-taken", "iavicenne/ws/mcp"}


def test_protocol_js_has_the_control_messages_and_the_sync_codec() -> None:
    got = node_eval(
        """
        import { CONTROL_KEY, ControlKind, ConnectionKind, RELAY_KINDS, SYNC_MESSAGE, SyncStep, SHARED_ROOT } from "./protocol.js";
        process.stdout.write(JSON.stringify({ CONTROL_KEY, ControlKind, ConnectionKind, RELAY_KINDS, SYNC_MESSAGE, SyncStep, SHARED_ROOT }));
        """
    )
    assert got["CONTROL_KEY"] == protocol.CONTROL_KEY == "iavicenne"
    assert got["ControlKind"] == {k: v for k, v in vars(protocol.ControlKind).items() if k.isupper()}
    assert got["ControlKind"]["DESCRIBE"] == "describe" and got["ControlKind"]["FILE_OFFER"] == "file-offer"
    assert got["ConnectionKind"]["KERNEL"] == "kernel"
    assert got["RELAY_KINDS"] == sorted(protocol.RELAY_KINDS)
    assert got["SyncStep"] == {"STEP1": 0, "STEP2": 1, "UPDATE": 2} and got["SYNC_MESSAGE"] == protocol.SYNC_MESSAGE
    assert got["SHARED_ROOT"] == protocol.SHARED_ROOT
    dts = protocol_js.DTS_FILE.read_text(encoding="utf-8")
    assert 'export declare const CONTROL_KEY: "iavicenne";' in dts
    assert "export type ControlKindValue = (typeof ControlKind)[keyof typeof ControlKind];" in dts


def test_no_client_source_spells_a_control_message() -> None:
    """The kinds of control messages come from protocol.js (static/) or the loaded client
    module (the JupyterLab extension), never as literals."""
    kinds = {v for k, v in vars(protocol.ControlKind).items() if k.isupper() and "-" in v}
    literals = re.compile(r"""(["'`])((?:\\.|(?!\1).)*)\1""")
    sources = [p for p in sorted(STATIC.glob("*.js")) if p.name != "protocol.js"]
    sources += sorted((REPO / "labextension" / "src").glob("*.ts"))
    found = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("//")[0] if not line.lstrip().startswith("*") else ""
            found += [f"{path.name}:{number}: {line.strip()}" for m in literals.finditer(code) if m.group(2) in kinds]
    assert found == [], "take these from protocol.js (ControlKind):\n" + "\n".join(found)
    assert kinds >= {"file-offer", "file-accept", "file-decline", "relay-open", "relay-data"}
