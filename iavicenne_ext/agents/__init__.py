"""AI agents as accountable room members, over the Model Context Protocol (docs/agents.md).

An MCP client (Claude Code, Jupyter AI, any other) reaches ``{base_url}iavicenne/mcp`` with
a person's Jupyter token; its tools (tools.py) act through an `AgentMember` (member.py), a
connection of the room hub like a WebSocket's, whose identity is that person's, shown as
"<agent> (for <username>)". The server's rules for agents (rules.py): speak only to answer a
mention or a direct message unless the room's owner opens the floor, budgets per agent, and
a loop breaker between agents. http_bridge.py serves the SDK's streamable-HTTP session
manager (an ASGI app) from a Tornado handler behind Jupyter's authentication; service.py
holds them together for the app.
"""
