"""Emit the browser client's ``static/protocol.js`` (and its ``protocol.d.ts``) from ``iavicenne_protocol``.

The package ``iavicenne_protocol`` is the one place where the protocol is spelled; the
browser client imports the values from ``protocol.js``, which this module writes:

    python -m iavicenne_ext.protocol_js            # write static/protocol.js and protocol.d.ts
    python -m iavicenne_ext.protocol_js --check    # exit 1 (and say so) if they differ from the package

It walks the package's modules (`MODULES`, in that order), each in source order, and
emits every public constant (an UPPERCASE name bound to a string, a number, or a tuple,
set or dict of those) and every class made only of such constants (``ErrorCode``,
``Tag``, ``ControlKind``), each with the comments written beside it there; values are read
from the package as it is imported, so a computed one (``NAME_RULE``) is emitted as
Python computes it. A constant added to a module is therefore in ``protocol.js`` at the
next run, with no list to keep here (the package must re-export it, or this says so). The name rule, which Python writes with ``\\w``, is emitted as ``NAME_PATTERN``, a
JavaScript regex built from its parts with ``\\p{L}\\p{N}_`` classes (JavaScript's
``\\w`` is ASCII only).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import iavicenne_protocol as protocol
from iavicenne_protocol import control, errors, frames, members, names, peer_link, sync

#: the package, and its modules in the order protocol.js declares them
SOURCE = Path(protocol.__file__).parent
MODULES = (frames, errors, names, members, sync, peer_link, control)
STATIC = Path(__file__).resolve().parent / "static"
JS_FILE = STATIC / "protocol.js"
DTS_FILE = STATIC / "protocol.d.ts"
COMMAND = "python -m iavicenne_ext.protocol_js"

# the server's own business, not the clients': the hub's key for signaling rooms
SERVER_ONLY = frozenset({"SIGNALING_ROOM_PREFIX"})

_HEADER = f"""\
// Generated from iavicenne_protocol/ by `{COMMAND}`: do not edit.
// Change the package and run that command; tests/browser/test_protocol_js.py fails while they differ.
"""

_JS_DOC = """\
// @ts-check
/**
 * The wire protocol, as the package iavicenne_protocol defines it for the server and the
 * Python client: endpoint paths, frame types, error and close codes, the name rule, the
 * relayed bodies, the y-sync codec's constants, the peer links' data-channel tags and the
 * control messages. The browser client (and the JupyterLab extension, through it) imports
 * these values from here and spells none of them itself (docs/protocol.md is the prose).
 */
"""

_DTS_DOC = """\
// Types of protocol.js (see there); `import { ErrorCode } from "./protocol.js"` finds them.
"""


def _is_constant_name(name: str) -> bool:
    return name[:1].isalpha() and name.isupper() and name not in SERVER_ONLY


def _is_value(value: Any) -> bool:
    if isinstance(value, (str, int, float)):  # bool is an int
        return True
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(isinstance(item, (str, int, float)) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items())
    return False


@dataclass
class _Comments:
    """The comments of a module: whole-line comments by line, and trailing ones by line."""

    lines: dict[int, str] = field(default_factory=dict)
    trailing: dict[int, str] = field(default_factory=dict)

    @classmethod
    def read(cls, source: str) -> _Comments:
        comments = cls()
        text_lines = source.splitlines()
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            row, col = token.start
            before = text_lines[row - 1][:col]
            (comments.trailing if before.strip() else comments.lines)[row] = token.string
        return comments

    def above(self, lineno: int) -> list[str]:
        """The block of whole-line comments right above line `lineno` (no blank line between)."""
        block: list[str] = []
        row = lineno - 1
        while row in self.lines:
            block.insert(0, self.lines[row])
            row -= 1
        return block

    def beside(self, node: ast.stmt) -> str | None:
        return self.trailing.get(node.end_lineno or node.lineno)


@dataclass
class _Entry:
    """One emitted declaration: a constant, or a class of constants."""

    name: str
    value: Any  # the value, or a dict of the class's members
    comments: list[str]  # the comment lines above it, as written in Python
    note: str | None  # its trailing comment
    literals: dict[str, str] = field(default_factory=dict)  # how the source wrote an int (0x02)
    member_comments: dict[str, tuple[list[str], str | None]] = field(default_factory=dict)
    doc: str | None = None  # a class's docstring
    blank_before: bool = True  # a blank line above it in the module (kept, to keep its grouping)
    is_class: bool = False
    pattern: str | None = None  # a regex literal instead of a value (NAME_PATTERN)


def _int_literal(node: ast.expr, source: str) -> str | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return ast.get_source_segment(source, node)
    return None


def _blank_before(node: ast.stmt, comments: _Comments, lines: list[str]) -> bool:
    first = node.lineno - len(comments.above(node.lineno))
    return first < 2 or not lines[first - 2].strip()


def _exported(name: str, module: ModuleType) -> Any:
    """`name`'s value as the package gives it (so what is emitted is what ``p.NAME`` reads)."""
    if name not in protocol.__all__:
        raise RuntimeError(f"{module.__name__}.{name} is public but iavicenne_protocol does not re-export it")
    return getattr(protocol, name)


def _class_entry(node: ast.ClassDef, source: str, comments: _Comments, module: ModuleType) -> _Entry | None:
    if node.name.startswith("_"):
        return None
    cls = _exported(node.name, module)
    if not isinstance(cls, type):
        return None
    members: dict[str, Any] = {}
    entry = _Entry(node.name, members, comments.above(node.lineno), comments.beside(node), is_class=True)
    for item in node.body:
        if isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str):
            entry.doc = item.value.value
            continue
        if not (isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name)):
            return None  # methods, annotations: a class with behaviour is not a table of constants
        name = item.targets[0].id
        value = getattr(cls, name)
        if not (_is_constant_name(name) and isinstance(value, (str, int))):
            return None
        members[name] = value
        literal = _int_literal(item.value, source)
        if literal is not None:
            entry.literals[name] = literal
        entry.member_comments[name] = (comments.above(item.lineno), comments.beside(item))
    return entry if members else None


def name_pattern(max_length: int, separators: str) -> str:
    """The JavaScript source of the name rule of iavicenne_protocol.names (the body of a ``/.../u`` literal).

    The same rule as Python's ``^[\\w<seps>](?:[\\w <seps>]{0,max-2}[\\w<seps>])?$``:
    ``\\w`` becomes ``\\p{L}\\p{N}_`` (letters and digits of any script, and ``_``)."""
    if max_length < 2:
        raise ValueError(f"NAME_MAX_LENGTH must be at least 2, not {max_length}")
    # in a class, with the `u` flag, only these may (and must) be escaped; escaping
    # anything else (\# \~) is a SyntaxError there
    seps = "".join("\\" + c if c in "\\]^-[/" else c for c in separators)
    edge = rf"[\p{{L}}\p{{N}}_{seps}]"
    inner = rf"[\p{{L}}\p{{N}}_ {seps}]"
    return f"^{edge}(?:{inner}{{0,{max_length - 2}}}{edge})?$"


def entries() -> Iterator[_Entry]:
    """What protocol.js declares: each module's, in `MODULES` order, each in source order."""
    name_parts = {"NAME_MAX_LENGTH", "NAME_SEPARATORS", "NAME_RULE"}
    for module in MODULES:
        yield from _module_entries(module, name_parts)
    if name_parts != {"done"}:
        raise RuntimeError(f"iavicenne_protocol lacks {sorted(name_parts)}: the browser client checks names with them")


def _module_title(module: ModuleType) -> str:
    """The comment that opens a module's declarations: its file and its docstring's first sentence."""
    summary = " ".join(line.strip() for line in (module.__doc__ or "").strip().split("\n\n")[0].splitlines())
    return f"# -- {Path(module.__file__ or '').name}. {summary.split('. ')[0].rstrip('.')}."


def _module_entries(module: ModuleType, name_parts: set[str]) -> Iterator[_Entry]:
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    comments = _Comments.read(source)
    tree = ast.parse(source)
    lines = source.splitlines()
    first = True
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            entry = _class_entry(node, source, comments, module)
            if entry is not None:
                entry.blank_before = _blank_before(node, comments, lines)
                if first:
                    entry.comments.insert(0, _module_title(module))
                    entry.blank_before, first = True, False
                yield entry
            continue
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name = node.target.id
        else:
            continue
        if name.startswith("_") or not _is_constant_name(name):
            continue
        value = _exported(name, module)
        if not _is_value(value):
            continue
        entry = _Entry(name, value, comments.above(node.lineno), comments.beside(node))
        entry.blank_before = _blank_before(node, comments, lines)
        if first:
            entry.comments.insert(0, _module_title(module))
            entry.blank_before, first = True, False
        literal = _int_literal(node.value, source) if node.value is not None else None
        if literal is not None:
            entry.literals[name] = literal
        yield entry
        name_parts.discard(name)
        if not name_parts:
            name_parts.add("done")  # once
            yield _Entry(
                "NAME_PATTERN",
                None,
                ["# the name rule as a regex, built from its parts (NAME_RULE says it in words)"],
                None,
                pattern=name_pattern(protocol.NAME_MAX_LENGTH, protocol.NAME_SEPARATORS),
            )


# -- rendering ------------------------------------------------------------------------------


def _js_comment(line: str, indent: str = "") -> str:
    text = line[1:]
    return f"{indent}//{text}" if text else f"{indent}//"


def _js_doc(text: str, indent: str = "") -> list[str]:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def _above(entry: _Entry, *, notes_as_doc: bool) -> list[str]:
    """The lines above a declaration: the module's comments, its ``#:`` doc comments
    (and, in the .d.ts, its trailing note) as a JSDoc, and a class's docstring."""
    out = [_js_comment(line) for line in entry.comments if not line.startswith("#:")]
    doc = [line[2:].strip() for line in entry.comments if line.startswith("#:")]
    if entry.doc:
        doc.append(entry.doc)
    if notes_as_doc and entry.note:
        doc.append(entry.note.lstrip("#").strip())
    if doc:
        out.extend(_js_doc("\n".join(doc)))
    return out


def _trailing(note: str | None) -> str:
    return f" {_js_comment(note)}" if note else ""


def _js_scalar(value: Any, literal: str | None = None) -> str:
    # an int as the module writes it (0x02), as long as that is still its value
    if literal is not None and ast.literal_eval(literal) == value:
        return literal
    return json.dumps(value)


def _js_key(key: str) -> str:
    return key if key.isidentifier() else json.dumps(key)


def _items(value: Any) -> list[Any]:
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value)  # sorted: the same text every run


def _js_value(entry: _Entry) -> str:
    value = entry.value
    if entry.pattern is not None:
        return f"Object.freeze(/{entry.pattern}/u)"
    if isinstance(value, dict):
        return "Object.freeze({ " + ", ".join(f"{_js_key(k)}: {_js_scalar(v)}" for k, v in value.items()) + " })"
    if isinstance(value, (tuple, list, set, frozenset)):
        return f"Object.freeze([{', '.join(_js_scalar(v) for v in _items(value))}])"
    return _js_scalar(value, entry.literals.get(entry.name))


def render_js() -> str:
    out = [(_HEADER + _JS_DOC).rstrip("\n")]
    for entry in entries():
        if entry.blank_before:
            out.append("")
        out.extend(_above(entry, notes_as_doc=False))
        if entry.is_class:
            out.append(f"export const {entry.name} = Object.freeze({{{_trailing(entry.note)}")
            for name, value in entry.value.items():
                above, beside = entry.member_comments[name]
                out.extend(_js_comment(line, "  ") for line in above)
                out.append(f"  {name}: {_js_scalar(value, entry.literals.get(name))},{_trailing(beside)}")
            out.append("});")
        else:
            out.append(f"export const {entry.name} = {_js_value(entry)};{_trailing(entry.note)}")
    return "\n".join(out) + "\n"


def _ts_type(entry: _Entry) -> str:
    value = entry.value
    if entry.pattern is not None:
        return "RegExp"
    if isinstance(value, dict):
        return "Readonly<{ " + "; ".join(f"{_js_key(k)}: {json.dumps(v)}" for k, v in value.items()) + " }>"
    if isinstance(value, (set, frozenset)):
        return f"readonly ({' | '.join(json.dumps(v) for v in _items(value))})[]"
    if isinstance(value, (tuple, list)):
        return f"readonly [{', '.join(json.dumps(v) for v in value)}]"
    return json.dumps(value)


def render_dts() -> str:
    out = [(_HEADER + _DTS_DOC).rstrip("\n")]
    for entry in entries():
        if entry.blank_before:
            out.append("")
        out.extend(_above(entry, notes_as_doc=True))
        if entry.is_class:
            members = "; ".join(f"{name}: {json.dumps(value)}" for name, value in entry.value.items())
            out.append(f"export declare const {entry.name}: Readonly<{{ {members} }}>;")
            out.append(f"/** One of the values of `{entry.name}`. */")
            out.append(f"export type {entry.name}Value = (typeof {entry.name})[keyof typeof {entry.name}];")
        else:
            out.append(f"export declare const {entry.name}: {_ts_type(entry)};")
    return "\n".join(out) + "\n"


def outputs() -> dict[Path, str]:
    return {JS_FILE: render_js(), DTS_FILE: render_dts()}


def stale() -> list[Path]:
    """The emitted files whose checked-in text differs from what the package gives now."""
    return [path for path, text in outputs().items() if not path.exists() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an emitted file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path} is out of date with {SOURCE}: run `{COMMAND}`", file=sys.stderr)
        return 1 if out_of_date else 0
    for path, text in outputs().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
