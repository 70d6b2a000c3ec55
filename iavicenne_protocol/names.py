"""The name rule of rooms, users and peers: what people type and read.

Any letter or digit (unicode), a few separators, and inner spaces; no control
characters, nothing over 64 characters. The rule is written once, as its parts, so that
the JavaScript emitter spells the same rule with \\p{L}\\p{N} classes (JavaScript's \\w
is ASCII only).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ErrorCode, ProtocolError

NAME_MAX_LENGTH = 64
NAME_SEPARATORS = ".@:+#~-_"
NAME_RULE = f"use 1 to {NAME_MAX_LENGTH} letters, digits, inner spaces or {NAME_SEPARATORS}"
_EDGE = r"[\w" + re.escape(NAME_SEPARATORS) + "]"
_INNER = r"[\w " + re.escape(NAME_SEPARATORS) + "]"
_NAME = re.compile(f"^{_EDGE}(?:{_INNER}{{0,{NAME_MAX_LENGTH - 2}}}{_EDGE})?$")


def is_name(value: str) -> bool:
    """Whether `value` follows the name rule (`check_name` says why not)."""
    return _NAME.fullmatch(value) is not None


def check_name(value: Any, field: str) -> str:
    """Check a room, user or peer name: 1 to 64 letters, digits, spaces or ``.@:+#~-_``."""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be a string")
    if not _NAME.fullmatch(value):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"invalid {field} {value[:NAME_MAX_LENGTH]!r}: {NAME_RULE}",
        )
    return value
