"""The agents' MCP service of one Jupyter server: its tools, its session manager, its life.

The SDK's session manager runs in a task of its own for the server's life (`start`,
`stop`): MCP sessions are tasks of its task group, and `McpHandler` hands requests to it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .rules import AgentLimits, AgentRules
from .tools import AgentTools

#: an MCP session without a request for this long is closed (its agent leaves its rooms)
SESSION_IDLE_TIMEOUT = 30 * 60.0


class AgentService:
    def __init__(
        self,
        hub: Any,
        quotas: Any,
        limits: AgentLimits,
        owner_name: str,
        log: logging.Logger,
        *,
        max_sessions: int,
        shared_docs: Any = None,
    ) -> None:
        self.rules = AgentRules(limits)
        self.owner_name = owner_name
        self.tools = AgentTools(hub, quotas, self.rules, owner_name, shared_docs)
        # builds the session manager (and a Starlette app we do not use: Jupyter serves it).
        # JSON answers, not an event stream per request: a tool's round trip took 45 ms and
        # 5.4 ms of the server's CPU per message with streams, 18 ms and 3.0 ms without
        # (benchmarks/agents.py); the tools send no progress that a stream would carry
        self.tools.server.streamable_http_app(
            session_idle_timeout=SESSION_IDLE_TIMEOUT, max_sessions=max_sessions, host="", json_response=True
        )
        self.manager = self.tools.server.session_manager
        self.log = log
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_app(cls, app: Any) -> AgentService:
        """The service of the `IAvicenne` app, with its options (``agent_*``), hub and quotas."""
        limits = AgentLimits(
            messages_per_minute=app.agent_messages_per_minute,
            bytes_per_minute=app.agent_bytes_per_minute,
            max_consecutive_turns=app.agent_max_consecutive_turns,
            max_wait_seconds=app.agent_max_wait_seconds,
            max_rooms=app.agent_max_rooms,
        )
        return cls(
            app.hub,
            app.quotas,
            limits,
            app.owner_name,
            app.log,
            max_sessions=app.agent_max_sessions,
            shared_docs=app.shared_docs,
        )

    def routes(self, rest: dict[str, Any]) -> list[tuple[str, type, dict[str, Any]]]:
        """Its handlers: the MCP endpoint, and the owners' REST call (`rest`: the REST handlers' arguments)."""
        from .http_bridge import McpHandler
        from .rest import AgentStandingHandler

        standing = {**rest, "rules": self.rules, "owner_name": self.owner_name}
        return [
            (r"/iavicenne/mcp/?", McpHandler, {"service": self}),
            (r"/iavicenne/api/rooms/([^/]+)/agents/([^/]+)/?", AgentStandingHandler, standing),
        ]

    async def start(self) -> None:
        """Run the session manager (at the extension's start, or at the first request when the
        server was started without it: pytest-jupyter's in-process server)."""
        if self._task is not None:
            return
        started = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await self._stopping.wait()

        self._task = task = asyncio.ensure_future(run())
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # it failed to start: say why
            waiting.cancel()
            await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except (asyncio.TimeoutError, Exception):
            self.log.warning("iavicenne: the agents' MCP sessions did not close within 5 s")
        # sse-starlette (the SDK's event streams) starts a watcher of uvicorn's shutdown per
        # event loop, which polls for ever: there is no uvicorn here, the server stops now
        for task in asyncio.all_tasks():
            if getattr(task.get_coro(), "__qualname__", "") == "_shutdown_watcher":
                task.cancel()
