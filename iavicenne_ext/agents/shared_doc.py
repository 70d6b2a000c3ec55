"""An agent's view of a room's shared document (shared_state.py): read it as JSON, set one
key. Writing goes the way a client's update does: checked and kept by `SharedDocs.apply`
(its budgets, the identity's pacing), then sent to the room's members as a ``shared``
frame, so every client's document (browser, notebook, lab) takes it in.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pycrdt

import iavicenne_protocol as p

from ..shared_state import SharedDocs


async def read_shared(docs: SharedDocs, room: str, who: str) -> dict[str, Any]:
    """The document's root map as plain JSON; its time is the identity's (shared_cpu_per_second)."""
    docs.pacing.check(who)
    started = time.thread_time()
    try:
        doc = await docs.document(room)
        root = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
        value = root.to_py() or {}
        return json.loads(json.dumps(value, default=str))  # Text and the like as strings
    finally:
        docs.pacing.charge(who, time.thread_time() - started)


def update_setting(docs: SharedDocs, current: pycrdt.Doc, key: str, value: Any) -> bytes:
    """The Yjs update that sets `key` of the root map to `value` (on a copy: the server's
    document changes only through `SharedDocs.apply`, which keeps the update in the log)."""
    copy: pycrdt.Doc = pycrdt.Doc()
    copy.apply_update(current.get_update())
    before = copy.get_state()
    root = copy.get(p.SHARED_ROOT, type=pycrdt.Map)
    with copy.transaction():
        root[key] = _shared(value, docs.max_depth)
    update: bytes = copy.get_update(before)
    if len(update) > docs.max_update_bytes:
        raise p.limit_exceeded(
            "max_shared_update_bytes", docs.max_update_bytes, f"not set: the update is {len(update)} bytes; set less at once"
        )
    return update


def _shared(value: Any, max_depth: int) -> Any:
    """A JSON value as the document keeps it: objects and arrays as shared maps and arrays
    (as the notebook client writes them). Its depth is checked first, without recursion,
    so that building it (recursive) is bounded by max_shared_depth."""
    stack: list[tuple[Any, int]] = [(value, 2)]  # the root map is level 1
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > max_depth:
                raise p.limit_exceeded("max_shared_depth", max_depth, "not set: the value is nested too deep")
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return _build(value)


def _build(value: Any) -> Any:
    if isinstance(value, dict):
        return pycrdt.Map({str(k): _build(v) for k, v in value.items()})
    if isinstance(value, list):
        return pycrdt.Array([_build(v) for v in value])
    return value
