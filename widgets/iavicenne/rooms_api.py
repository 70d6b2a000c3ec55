"""The rooms' REST API: list the rooms we may enter, make a private or group room, invite
and remove its members, end it (``iavicenne/api/rooms`` on the server, with our token).

``await create_room("q3", members=["bob"])`` and ``await list_rooms()`` are what a notebook
calls; a `RoomClient` has the same as methods (``client.create_room(...)``), on its own
server and token. A room is public unless someone made it otherwise; its owner (or, for a
member, themself) changes who may enter. A refusal is the server's own sentence as an
exception (`iavicenne.errors.http_error`): `Forbidden` (not yours, not a member),
`RequestFailed` (a room that exists, a bad name; its ``code`` says which).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

import iavicenne_protocol as p

from .discovery import ServerInfo, discover_server
from .errors import ServerUnreachable, http_error

#: who may enter a room (``access`` of `RoomsAPI.create_room`)
ACCESS_KINDS = (p.AccessKind.PUBLIC, p.AccessKind.GROUP, p.AccessKind.PRIVATE)


class RoomsAPI:
    """The rooms' REST API on one server (``{base}iavicenne/api/rooms``), with its token:
    list the rooms we may enter, make a private or group room, invite and remove members.

    Each method returns the server's JSON answer (a room's access record: ``room``,
    ``access``, ``owner``, ``members``, ``group``) and raises what the server refused with
    its own message (`iavicenne.errors.http_error`)."""

    def __init__(self, server: ServerInfo, *, request_timeout: float = 10.0) -> None:
        self.server = server
        self.request_timeout = request_timeout

    async def list_rooms(self) -> list[dict[str, Any]]:
        """The rooms we may enter (with members now, or a record), each with its ``access``
        kind, ``members`` and ``connections`` counts (and ``owner``, ``group``, ``invited``
        of a room that is not public)."""
        answer = await self._call("GET", "rooms")
        rooms = answer.get("rooms") if isinstance(answer, dict) else None
        return [room for room in rooms if isinstance(room, dict)] if isinstance(rooms, list) else []

    async def create_room(
        self, room: str, *, access: str = p.AccessKind.PRIVATE, members: Iterable[str] = (), group: str | None = None
    ) -> dict[str, Any]:
        """Make `room` with `access` ``"private"`` (we own it; `members` may enter too),
        ``"group"`` (the members of Hub group `group`) or ``"public"``; the new record.
        A room that exists, or already has members or history, is refused (``409``)."""
        p.check_name(room, "room")
        if access not in ACCESS_KINDS:
            raise ValueError(f"access is one of {', '.join(ACCESS_KINDS)}, not {access!r}")
        if access == p.AccessKind.GROUP and not group:
            raise ValueError("a group room needs group=<the Hub group whose members may enter>")
        if isinstance(members, str):
            raise ValueError("members is a list of usernames (members=['bob']), not one string")
        body: dict[str, Any] = {"room": room, "access": access, "members": list(members)}
        if group is not None:
            body["group"] = group
        return await self._call("POST", "rooms", body)

    async def invite(self, room: str, username: str) -> dict[str, Any]:
        """Let `username` (a user's identity name) enter our private room `room`; the record."""
        return await self._call("PUT", self._member_path(room, username))

    async def remove_member(self, room: str, username: str) -> dict[str, Any]:
        """Take `username` off `room`'s members (they are evicted at once); the record."""
        return await self._call("DELETE", self._member_path(room, username))

    async def delete_room(self, room: str) -> None:
        """End our room `room`: its record goes and everyone in it is evicted."""
        p.check_name(room, "room")
        await self._call("DELETE", f"rooms/{quote(room, safe='')}")

    async def export_room(self, room: str, format: str = "md") -> str:
        """Room `room`'s kept history as Markdown (``"md"``) or as jupyterlab-chat's ``.chat``
        JSON (``"chat"``, a string to write to a ``.chat`` file); only a room we may enter."""
        p.check_name(room, "room")
        if format not in ("md", "chat"):
            raise ValueError(f"format is 'md' or 'chat', not {format!r}")
        text: str = await self._call("GET", f"rooms/{quote(room, safe='')}/export?format={format}", raw=True)
        return text

    async def search(self, q: str, *, room: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest kept messages that say every word of `q` (each as a word's beginning,
        ignoring case; `q` is text, never a query syntax), in the rooms we may enter, or in
        `room` only; at most `limit` (the server's ``max_search_results`` when None). Each:
        ``room``, ``seq``, ``author`` (a verified username), ``text``, ``time``."""
        if not isinstance(q, str) or not q.strip():
            raise ValueError("q is the text to search for, a non-empty string")
        query: dict[str, Any] = {"q": q}
        if room is not None:
            query["room"] = p.check_name(room, "room")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"limit is a positive integer, not {limit!r}")
            query["limit"] = limit
        answer = await self._call("GET", f"search?{urlencode(query)}")
        results = answer.get("results") if isinstance(answer, dict) else None
        return [hit for hit in results if isinstance(hit, dict)] if isinstance(results, list) else []

    async def unread(self) -> list[dict[str, Any]]:
        """Our unread counts: each room we may enter (or have read in) with ``read`` (our
        position), ``seq`` (its last message) and ``unread``, the same on every device."""
        answer = await self._call("GET", "rooms?unread=1")
        rooms = answer.get("rooms") if isinstance(answer, dict) else None
        return [room for room in rooms if isinstance(room, dict)] if isinstance(rooms, list) else []

    @staticmethod
    def _member_path(room: str, username: str) -> str:
        p.check_name(room, "room")
        if not isinstance(username, str) or not username:
            raise ValueError("username is the member's identity name, a non-empty string")
        return f"rooms/{quote(room, safe='')}/members/{quote(username, safe='')}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, raw: bool = False) -> Any:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = f"{self.server.url}{p.REST_PATH}{path}"
        headers = {"Accept": "application/json"}
        if self.server.token:
            headers["Authorization"] = f"token {self.server.token}"
        payload: str | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body)
        elif method in ("PUT", "POST"):
            payload = ""  # tornado wants a body for these
        try:
            response = await AsyncHTTPClient().fetch(
                url, method=method, headers=headers, body=payload, request_timeout=self.request_timeout
            )
        except HTTPClientError as error:
            if error.code == 599:  # tornado's "no answer" (refused, timed out)
                raise ServerUnreachable(f"{self.server.url} did not answer: {error.message}") from None
            body_text = error.response.body if error.response is not None else None
            raise http_error(error.code, body_text, url) from None
        except OSError as error:
            raise ServerUnreachable(f"{self.server.url} did not answer: {error}") from None
        if raw:
            return response.body.decode()
        return json.loads(response.body) if response.body else None


async def create_room(
    room: str,
    *,
    access: str = p.AccessKind.PRIVATE,
    members: Iterable[str] = (),
    group: str | None = None,
    url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """``await create_room("q3", members=["bob"])``: make a private room (ours, `members`
    invited), a group's (``access="group", group=...``) or a public one, on the server
    `discover_server` finds; its access record. Then ``join("q3")`` as usual."""
    return await RoomsAPI(discover_server(url, token)).create_room(room, access=access, members=members, group=group)


async def list_rooms(url: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
    """The rooms we may enter that have members now, with their access kind."""
    return await RoomsAPI(discover_server(url, token)).list_rooms()


__all__ = ["ACCESS_KINDS", "RoomsAPI", "create_room", "list_rooms"]
