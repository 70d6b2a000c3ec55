"""REST endpoints: which rooms the caller may enter and who is in them; rooms with members.

Every answer is JSON. An error is ``{"error": <code>, "message": <what to do>}`` (with
``"option"`` and ``"limit"`` when a budget refused it), and Jupyter's ``"reason"``. A room
the caller may not enter is answered as if it did not exist (404), so a listing or a
probe tells nobody which private rooms there are. Reading needs Jupyter's ("read",
"iavicenne") permission, changing ("write", "iavicenne"); browsers send the XSRF token
(``X-XSRFToken`` header from the ``_xsrf`` cookie), as for every Jupyter API.

- ``GET    rooms``                      rooms with members now, or with a record, the caller may enter
                                        (``?unread=1``: with the caller's unread counts, room_history.py)
- ``POST   rooms``                      create a record: ``{"room", "access", "members", "group"}`` -> 201
- ``GET    rooms/<room>``               its members (presence) and its access
- ``DELETE rooms/<room>``               owner only: the record and the history go, everyone is evicted
- ``PUT    rooms/<room>/members/<u>``   owner only: invite username ``u``
- ``DELETE rooms/<room>/members/<u>``   owner, or ``u`` itself (leaving): remove, and evict ``u``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

import iavicenne_protocol as p

from ..access import KINDS, USERNAME_MAX_LENGTH, RoomAccess, may_enter
from ..broker.base import BrokerUnavailable, CreateOutcome, Member, MemberOutcome
from ..identity import Identity, identity_of
from ..rooms import RoomHub
from . import AUTH_RESOURCE


@dataclass(frozen=True, slots=True)
class RoomBudgets:
    """What one identity may create: the app's traitlets of the same names."""

    max_private_rooms_per_identity: int
    max_room_members: int
    max_search_results: int = 50


class RoomsAPIError(web.HTTPError):
    """An HTTP error with the protocol's error code (and a budget's option and limit)."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        # the message is no format string: tornado formats log_message only with args
        super().__init__(status, message.replace("%", "%%"))
        self.code = code
        self.message = message
        self.fields = fields


def limit_refusal(option: str, limit: int, what: str) -> RoomsAPIError:
    error = p.limit_exceeded(option, limit, what)
    return RoomsAPIError(403, error.code, error.message, **error.fields)


class _RoomsAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, *, hub: RoomHub, budgets: RoomBudgets) -> None:
        self.hub = hub
        self.budgets = budgets

    async def prepare(self) -> None:  # type: ignore[override]  # APIHandler's, which drops JupyterHandler's keyword
        try:
            await super().prepare()
        except web.HTTPError as error:
            # APIHandler answers a foreign Origin with 404, which reads as a missing room;
            # refuse it as the room socket does, with 403 and the reason
            if error.status_code == 404 and self.current_user is not None and not self.check_origin():
                raise web.HTTPError(403, "cross-origin request refused: Origin does not match Host") from None
            raise

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """APIHandler's JSON error, with the protocol's ``error`` code (and budget fields)."""
        self.set_header("Content-Type", "application/json")
        error = kwargs.get("exc_info", (None, None, None))[1]
        reply: dict[str, Any]
        if isinstance(error, RoomsAPIError):
            reply = {"error": error.code, "message": error.message, "reason": error.reason, **error.fields}
        elif isinstance(error, web.HTTPError):
            code = {400: p.ErrorCode.INVALID_FIELD, 403: p.ErrorCode.FORBIDDEN, 503: p.ErrorCode.UNAVAILABLE}
            reply = {
                "error": code.get(status_code, "http-error"),
                "message": error.log_message or error.reason or str(status_code),
                "reason": error.reason,
            }
        else:
            reply = {"error": p.ErrorCode.INTERNAL, "message": "Unhandled error", "reason": None}
        self.finish(json.dumps(reply))

    @property
    def who(self) -> Identity:
        return identity_of(self, self.current_user)

    def room_name(self, room: Any) -> str:
        try:
            return p.check_name(room, "room")
        except p.ProtocolError as error:
            raise RoomsAPIError(400, error.code, error.message) from None

    def unknown(self, room: str) -> RoomsAPIError:
        return RoomsAPIError(404, p.ErrorCode.UNKNOWN_ROOM, f"no room {room!r}")

    async def visible_access(self, room: str, *, private: bool = False) -> RoomAccess:
        """The room's record, 404 when there is none (none private, with `private`) or the caller may not see it."""
        access = await self.hub.access(room)
        if access is None or not may_enter(self.who, access) or (private and access.kind != p.AccessKind.PRIVATE):
            raise self.unknown(room)
        return access

    def owner_only(self, access: RoomAccess, what: str) -> None:
        if self.who.username != access.owner:
            raise RoomsAPIError(403, p.ErrorCode.FORBIDDEN, f"only the owner of room {access.room!r} ({access.owner}) may {what}")

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError):
            raise RoomsAPIError(400, p.ErrorCode.INVALID_JSON, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FRAME, "the body must be a JSON object")
        return body

    def finish_json(self, data: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))


def _username(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= USERNAME_MAX_LENGTH or not value.isprintable():
        raise RoomsAPIError(
            400, p.ErrorCode.INVALID_FIELD, f"{what} must be a username: 1 to {USERNAME_MAX_LENGTH} printable characters"
        )
    return value


def _listed(name: str, members: list[Member], access: RoomAccess | None) -> dict[str, Any]:
    """One room of the listing: the counts as before, and its access (the record's fields for
    those who may enter it, which are the only ones it is listed to)."""
    room: dict[str, Any] = {"room": name, "members": len(members), "connections": sum(m.connections for m in members)}
    room["access"] = access.kind if access is not None else p.AccessKind.PUBLIC
    if access is not None:
        room.update(owner=access.owner, group=access.group, invited=sorted(access.members), muted=sorted(access.muted))
    return room


class RoomListHandler(_RoomsAPIHandler):
    """`{base_url}iavicenne/api/rooms`: list the rooms the caller may enter; create one with members."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        from .room_history import with_unread  # it builds on this module

        try:
            rooms = await self.hub.visible_rooms(self.who)
            listed = [_listed(name, members, access) for name, (members, access) in rooms.items()]
            if self.get_argument("unread", "") in ("1", "true"):
                listed = await with_unread(self.hub, self.who, listed)
        except BrokerUnavailable as error:  # Redis down: say so, not a 500 with a traceback
            raise web.HTTPError(503, str(error)) from None
        self.finish_json({"rooms": listed})

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def post(self) -> None:
        body = self.body()
        who = self.who
        room = self.room_name(body.get("room"))  # a missing or non-string room is refused there too
        kind = body.get("access", p.AccessKind.PRIVATE)
        if kind not in KINDS:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, f"access must be one of {', '.join(KINDS)}")
        members = body.get("members")
        if members is None:
            members = []
        if not isinstance(members, list):
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "members must be a list of usernames")
        if members and kind != p.AccessKind.PRIVATE:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "members are for a private room; a group room admits its group")
        invited = frozenset(_username(member, "every member") for member in members) - {who.username}
        group = body.get("group")
        if kind == p.AccessKind.GROUP:
            if not isinstance(group, str) or not group:
                raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "a group room needs 'group', the name of a group")
            if group not in who.groups:
                raise RoomsAPIError(
                    403, p.ErrorCode.FORBIDDEN, f"you are not in group {group!r}: only its members may create its rooms"
                )
        elif group is not None:
            raise RoomsAPIError(400, p.ErrorCode.INVALID_FIELD, "'group' is for a group room (access: 'group')")
        budgets = self.budgets
        if len(invited) > budgets.max_room_members:
            raise limit_refusal(
                "max_room_members", budgets.max_room_members, f"room not created: {len(invited)} members are too many"
            )
        access = RoomAccess(room, kind, who.username, group if kind == p.AccessKind.GROUP else None, invited)
        try:
            outcome = await self.hub.create_access(access, max_per_owner=budgets.max_private_rooms_per_identity)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        if outcome is CreateOutcome.EXISTS:
            raise RoomsAPIError(
                409,
                p.ErrorCode.ROOM_EXISTS,
                f"room {room!r} exists already (it has an access record, members or history); choose another name",
            )
        if outcome is CreateOutcome.BUDGET:
            raise limit_refusal(
                "max_private_rooms_per_identity",
                budgets.max_private_rooms_per_identity,
                f"room not created: {who.username} created as many rooms with members as it may; delete one first",
            )
        self.log.info("iavicenne: %s created %s room %r", who.username, kind, room)
        self.finish_json(access.to_json(), 201)


class RoomMembersHandler(_RoomsAPIHandler):
    """`{base_url}iavicenne/api/rooms/<room>`: one room's members with their presence state; delete its record."""

    @web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, room: str) -> None:
        room = self.room_name(room)
        try:
            access = await self.hub.access(room)
            if not may_enter(self.who, access) or (access is None and not await self.hub.room_exists(room)):
                raise self.unknown(room)
            members = await self.hub.members(room)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        answer: dict[str, Any] = {"room": room, "members": [m.to_json() for m in members]}
        answer["access"] = access.kind if access is not None else p.AccessKind.PUBLIC
        if access is not None:
            answer.update(owner=access.owner, group=access.group, invited=sorted(access.members), muted=sorted(access.muted))
            if access.owner == self.who.username:
                answer["removed"] = sorted(access.removed)
        self.finish_json(answer)

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def delete(self, room: str) -> None:
        room = self.room_name(room)
        try:
            access = await self.visible_access(room)
            self.owner_only(access, "delete it")
            await self.hub.delete_access(room)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        self.log.info("iavicenne: %s deleted the access record of room %r", access.owner, room)
        self.finish_json({"room": room, "deleted": True})


class RoomMemberHandler(_RoomsAPIHandler):
    """`{base_url}iavicenne/api/rooms/<room>/members/<username>`: invite (PUT) or remove (DELETE)."""

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def put(self, room: str, username: str) -> None:
        room = self.room_name(room)
        username = _username(username, "the member")
        try:
            access = await self.visible_access(room, private=True)
            self.owner_only(access, "invite")
            outcome, access_now = await self.hub.invite(room, username, max_members=self.budgets.max_room_members)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        if outcome is MemberOutcome.MISSING or access_now is None:
            raise self.unknown(room)  # deleted meanwhile
        if outcome is MemberOutcome.FULL:
            raise limit_refusal(
                "max_room_members", self.budgets.max_room_members, f"{username} not invited: room {room!r} is full"
            )
        self.finish_json(access_now.to_json())

    @web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def delete(self, room: str, username: str) -> None:
        room = self.room_name(room)
        username = _username(username, "the member")
        try:
            access = await self.visible_access(room, private=True)
            if self.who.username != username:  # anyone may leave; only the owner removes others
                self.owner_only(access, "remove members")
            outcome, access_now = await self.hub.remove_member(room, username)
        except BrokerUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        if outcome is MemberOutcome.MISSING or access_now is None:
            raise self.unknown(room)
        self.finish_json(access_now.to_json())
