"""REST on a room's kept history: export it, and the caller's read positions.

As the other room endpoints (rest.py): JSON errors with the protocol's codes, and a room
the caller may not enter answered as if it did not exist (404).

- ``GET rooms/<room>/export?format=md|chat``  the history as Markdown or as jupyterlab-chat's
  ``.chat`` JSON (export.py), for whoever may enter the room
- ``GET rooms/<room>/read``                   the caller's read position and unread count
- ``PUT rooms/<room>/read``  ``{"seq": n}``   move it forward; the caller's connections in
  the room get the new ``unread``
- ``GET search?q=...&room=...&limit=n``        the newest kept messages matching `q` (every
  word, as a word's beginning) in the rooms the caller may enter, or in `room` only
- ``GET rooms?unread=1``                      the listing (rest.py) with the caller's
  ``read``, ``seq`` and ``unread`` in each room, and the rooms it has a read position in
  (under the room service, rooms/... is what a user's server relays)
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

import iavicenne_protocol as p

from .. import export
from ..access import may_enter
from ..broker import search
from ..broker.base import BrokerUnavailable, ReadState
from ..broker.events import PersonalFrame
from ..identity import Identity
from ..rooms import RoomHub
from . import AUTH_RESOURCE
from .rest import RoomsAPIError, _RoomsAPIHandler, limit_refusal


def _state_json(state: ReadState) -> dict[str, Any]:
    return {"room": state.room, "read": state.read, "seq": state.seq, "unread": state.unread, "epoch": state.epoch}


class _RoomHistoryHandler(_RoomsAPIHandler):
    async def readable(self, room: str) -> str:
        """`room` checked: 404 unless it exists and the caller may enter it."""
        room = self.room_name(room)
        access = await self.hub.access(room)
        if not may_enter(self.who, access) or (access is None and not await self.hub.room_exists(room)):
            raise self.unknown(room)
        return room


class RoomExportHandler(_RoomHistoryHandler):
    """`{base_url}iavicenne/api/rooms/<room>/export?format=md|chat`."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, room: str) -> None:
        kind = self.get_argument("format", "md")
        if kind not in export.FORMATS:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, f"format must be one of {', '.join(export.FORMATS)}")
        try:
            room = await self.readable(room)
            history = await self.hub.messages.history(room, 0, None)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        messages = export.kept_messages(history.messages)
        filename = f"{room}.{kind}".replace('"', "_")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        if kind == "md":
            self.finish(export.to_markdown(room, messages), set_content_type=export.FORMATS[kind])
        else:
            self.finish(
                json.dumps(export.to_chat(room, history.epoch, messages), indent=1), set_content_type=export.FORMATS[kind]
            )


#: longest query accepted (characters)
MAX_QUERY_LENGTH = 500


class SearchHandler(_RoomHistoryHandler):
    """`{base_url}iavicenne/api/search?q=...&room=...&limit=n`: full-text search (broker/search.py)."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        query = self.get_argument("q", "")
        if not query.strip():
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "q must be the text to search for")
        if len(query) > MAX_QUERY_LENGTH:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, f"q is too long: at most {MAX_QUERY_LENGTH} characters")
        words = search.terms(query)
        if len(words) > search.MAX_TERMS:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, f"q has too many words: at most {search.MAX_TERMS}")
        budget = self.budgets.max_search_results
        limit_text = self.get_argument("limit", str(budget))
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "limit must be a positive integer")
        limit = int(limit_text)
        if limit > budget:
            raise limit_refusal("max_search_results", budget, f"limit {limit} is more results than a search gives")
        room = self.get_argument("room", None)
        try:
            if room is not None:
                rooms = [await self.readable(room)]
            else:
                rooms = await self.readable_rooms()
            found = await self.hub.search.search(rooms, words, limit)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        hits = []
        for hit in found:
            for message in export.kept_messages([hit.frame]):
                hits.append(
                    {
                        "room": hit.room,
                        "seq": message.seq,
                        "author": message.username,
                        "display_name": message.display_name,
                        "text": message.text,
                        "time": message.timestamp,
                        "edited": message.edited,
                    }
                )
        self.finish_json({"q": query, "limit": limit, "results": hits})

    async def readable_rooms(self) -> list[str]:
        """The rooms a search without `room` looks in: those the broker offers and those the
        caller has a read position in, that the caller may enter now."""
        names = set(await self.hub.search.searchable_rooms())
        names.update(await self.hub.edits.reads.read_rooms(self.who.username))
        return [name for name in sorted(names) if may_enter(self.who, await self.hub.access(name))]


class RoomReadHandler(_RoomHistoryHandler):
    """`{base_url}iavicenne/api/rooms/<room>/read`: the caller's read position in the room."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, room: str) -> None:
        try:
            room = await self.readable(room)
            state = await self.hub.edits.reads.read_state(room, self.who.username)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        self.finish_json(_state_json(state))

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def put(self, room: str) -> None:
        seq = self.body().get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "seq must be a non-negative integer (a message's seq)")
        username = self.who.username
        try:
            room = await self.readable(room)
            before = await self.hub.edits.reads.read_state(room, username)
            state = await self.hub.edits.reads.mark_read(room, username, seq)
            if state.read != before.read:
                await self.hub.messages.emit(PersonalFrame(room, self.hub.edits.unread_frame(state), username))
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        self.finish_json(_state_json(state))


async def with_unread(hub: RoomHub, who: Identity, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rooms of a listing with `who`'s read state in each, and the rooms `who` has a
    read position in that the listing has not (no members now), if it may still enter them."""
    rooms = {room["room"]: room for room in listed}
    for name in await hub.edits.reads.read_rooms(who.username):
        if name not in rooms and may_enter(who, await hub.access(name)):
            rooms[name] = {"room": name}
    for name, room in rooms.items():
        state = await hub.edits.reads.read_state(name, who.username)
        room.update(read=state.read, seq=state.seq, unread=state.unread, epoch=state.epoch)
    return [rooms[name] for name in sorted(rooms)]
