"""The memory broker's continuity state is its three plain attributes: a store that saves
them (`remembered`, `direct_logs`, `direct_seqs`) and loads them into a new broker, then
calls `reindex_direct`, has the same rooms and conversations (what a persistent broker
built on `MemoryBroker` relies on)."""

from __future__ import annotations

import copy
import json
from typing import Any

import iavicenne_protocol as p
from iavicenne_ext.broker import MemoryBroker

BUDGETS: dict[str, Any] = {"history_size": 100, "history_ttl": 60.0, "dedup_ttl": 60.0}


def direct(sender: str, to: str, text: str) -> bytes:
    return p.encoded(p.DIRECT_MESSAGE, user_id=sender, to=to, message={"content": text}, room="r", identity={"username": sender})


async def test_the_state_saved_and_loaded_answers_the_same() -> None:
    before = MemoryBroker(**BUDGETS)
    await before.remember_room("alice", "r", 1.0)
    await before.direct_keep("r", "alice", "bob", direct("alice", "bob", "kept"))
    await before.direct_keep("r", "mallory", "bob", direct("mallory", "bob", "hers"))
    after = MemoryBroker(**BUDGETS)
    after.remembered = copy.deepcopy(before.remembered)
    after.direct_logs = copy.deepcopy(before.direct_logs)
    after.direct_seqs = dict(before.direct_seqs)
    after.reindex_direct()
    assert await after.remembered_rooms("alice") == ["r"]
    for name in ("alice", "bob", "mallory", "eve"):
        assert await after.direct_replay("r", name, 0) == await before.direct_replay("r", name, 0)
    frames, _ = await after.direct_replay("r", "alice", 0)
    assert [json.loads(f)["message"]["content"] for f in frames] == ["kept"]
    assert await after.direct_keep("r", "alice", "bob", direct("alice", "bob", "next")) == 3
