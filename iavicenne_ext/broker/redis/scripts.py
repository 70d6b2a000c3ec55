"""The Redis broker's Lua scripts, read from the package's ``lua/`` folder.

Every state change is one script, so it is atomic across servers. Each script is
``common.lua`` (the key names and the presence bookkeeping they share) followed by its
own file, and gets its tagged prefix (keys.py) as its one key and its first argument: a
room's scripts run on the shard of the room's slot.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

NAMES = (
    "publish",
    "history",
    "claim",
    "release",
    "join",
    "leave",
    "members_page",
    "set_state",
    "reconcile",
    "sweep_room",
    "audit_room",
    "access_create",
    "access_get",
    "access_member",
    "access_moderate",
    "access_delete",
    # kept messages rewritten in place, read positions
    "kept_message",
    "rewrite_message",
    "read_mark",
    # shared state (shared_state.py)
    "shared_load",
    "shared_append",
    "shared_compact",
    "shared_delete",
    "shared_audit",
    # kept direct messages (continuity.py)
    "direct_keep",
    "direct_replay",
    "direct_forget",
    # in the deployment's slot (keys.DEPLOYMENT_TAG)
    "heartbeat",
    "dead_servers",
    "forget_server",
    "access_reserve",
)


@cache
def source(name: str) -> str:
    """The full text of script `name`, as Redis runs it."""
    folder = resources.files(__package__).joinpath("lua")
    return folder.joinpath("common.lua").read_text(encoding="utf-8") + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded again if Redis forgot them)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in NAMES}

    def sha(self, name: str) -> str:
        return str(self._scripts[name].sha)

    async def run(self, name: str, tagged: str, *args: Any) -> Any:
        """Run script `name` in the slot of `tagged` (a tagged prefix, keys.py)."""
        return await self._scripts[name](keys=[tagged], args=[tagged, *args])
