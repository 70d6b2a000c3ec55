"""Edits, deletions and replies of kept messages, and each person's read position.

A message keeps its seq and its place: an edit or a deletion rewrites the frame kept under
that seq (`HistoryEditor.rewrite_message`, compare and swap) and the room gets a notice
live (``message-edited``, ``message-deleted``: no seq, not kept; the history holds the
message as it now is). Who may: the author edits and deletes (the verified identity that
published it, ``identity.username``, never a name the client chose); a room's owner (its
access record's) deletes any message. A deleted message keeps its author and time and
loses its text, and so do the quotes of it in the replies kept after it.

A reply is a ``message`` with ``reply_to`` (a kept seq): the server fills ``reply`` with
that message's author as it was verified and a short quote of its ``content``.

Read positions (`ReadPositions`): ``read`` moves a person's position forward; the
``unread`` answer goes to every connection of that identity in the room, on every server.
"""

from __future__ import annotations

import json
from typing import Any

import iavicenne_protocol as p

from .broker.base import ReadState
from .broker.events import PersonalFrame, RoomFrame
from .broker.interfaces import AccessStore, HistoryEditor, MessageBroker, ReadPositions
from .local_rooms import Connection

#: how often a rewrite is tried again when another one changed the message meanwhile
REWRITE_ATTEMPTS = 5


def unknown_message(room: str, seq: int, ref: str | None, why: str = "is not in the room's history") -> p.ProtocolError:
    return p.ProtocolError(p.ErrorCode.UNKNOWN_MESSAGE, f"message {seq} of room {room!r} {why}", ref, room=room, seq=seq)


def author_of(message: dict[str, Any]) -> str:
    """The verified username that published a kept message ("" when none was kept)."""
    identity = message.get("identity")
    return str(identity.get("username") or "") if isinstance(identity, dict) else ""


def quote_of(message: dict[str, Any]) -> str:
    """The start of a message's ``content`` (a string), as a reply quotes it."""
    content = message.get("message", {}).get("content") if isinstance(message.get("message"), dict) else None
    return content[: p.REPLY_QUOTE_MAX_LENGTH] if isinstance(content, str) else ""


class MessageEdits:
    """The hub's part for kept messages and read positions (RoomHub.edits)."""

    def __init__(
        self,
        *,
        messages: MessageBroker,
        history: HistoryEditor,
        access_records: AccessStore,
        reads: ReadPositions,
        max_message_bytes: int,
    ) -> None:
        self.messages = messages
        self.history = history
        self.access_records = access_records
        self.reads = reads
        self.max_message_bytes = max_message_bytes

    async def _kept(self, room: str, seq: int, ref: str | None, *, deleted: bool = False) -> tuple[bytes, dict[str, Any]]:
        """The frame kept under `seq` and its fields; ``unknown-message`` when it is gone, or
        deleted (unless `deleted`: a deletion sent again finds it so)."""
        frame = await self.history.kept_message(room, seq)
        if frame is None:
            raise unknown_message(room, seq, ref)
        message = json.loads(frame)
        if message.get("type") != p.MESSAGE:
            raise unknown_message(room, seq, ref, "is not a message")
        if "deleted" in message and not deleted:
            raise unknown_message(room, seq, ref, "was deleted")
        return frame, message

    def _fits(self, frame: bytes, what: str) -> None:
        if len(frame) > self.max_message_bytes:
            raise p.limit_exceeded(
                "max_message_bytes",
                self.max_message_bytes,
                f"{what}: {len(frame)} bytes encoded, too large to keep in the room's history; send less",
            )

    # -- replies ------------------------------------------------------------------------
    async def reply_field(self, room: str, seq: int, ref: str | None) -> dict[str, Any]:
        """The ``reply`` a message replying to `seq` carries: its author as verified, a quote."""
        _, message = await self._kept(room, seq, ref)
        return {"seq": seq, "user_id": message.get("user_id"), "identity": message.get("identity"), "quote": quote_of(message)}

    # -- edits and deletions ---------------------------------------------------------------
    async def edit(self, conn: Connection, room: str, seq: int, payload: dict[str, Any], ref: str | None) -> None:
        """Replace the text of `conn`'s own message `seq`; the room gets ``message-edited``."""
        username = conn.who.username
        for _ in range(REWRITE_ATTEMPTS):
            kept, message = await self._kept(room, seq, ref)
            if author_of(message) != username:
                raise p.ProtocolError(
                    p.ErrorCode.FORBIDDEN, f"message {seq} is not yours: only its author edits it", ref, room=room, seq=seq
                )
            edited_at = p.now_iso()
            message["message"] = payload
            message["edited_at"] = edited_at
            frame = p.encode(message)
            self._fits(frame, "message not edited")
            if await self.history.rewrite_message(room, seq, kept, frame):
                break
        else:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, f"message {seq} kept changing; try again", ref, room=room)
        notice = p.encoded(
            p.MESSAGE_EDITED,
            room=room,
            seq=seq,
            user_id=message.get("user_id"),
            message=payload,
            identity=conn.identity,
            edited_at=edited_at,
        )
        await self.messages.emit(RoomFrame(room, notice))

    async def delete(self, conn: Connection, room: str, seq: int, ref: str | None) -> None:
        """Delete message `seq` (its author, or the room's owner): its text leaves the history."""
        username = conn.who.username
        access = await self.access_records.get_access(room)
        owner = access.owner if access is not None else None
        for _ in range(REWRITE_ATTEMPTS):
            kept, message = await self._kept(room, seq, ref, deleted=True)
            if author_of(message) != username and username != owner:
                raise p.ProtocolError(
                    p.ErrorCode.FORBIDDEN,
                    f"message {seq} is not yours: only its author, or the room's owner, deletes it",
                    ref,
                    room=room,
                    seq=seq,
                )
            if "deleted" in message:
                return  # deleted already (this request sent again after a reconnect): done
            deleted = {"by": username, "at": p.now_iso()}
            tombstone = {
                "seq": seq,
                "type": p.MESSAGE,
                "user_id": message.get("user_id"),
                "message": {},
                "room": room,
                "identity": message.get("identity"),
                "deleted": deleted,
                "timestamp": message.get("timestamp"),
            }
            if await self.history.rewrite_message(room, seq, kept, p.encode(tombstone)):
                break
        else:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, f"message {seq} kept changing; try again", ref, room=room)
        notice = p.encoded(
            p.MESSAGE_DELETED, room=room, seq=seq, user_id=message.get("user_id"), identity=conn.identity, deleted=deleted
        )
        await self.messages.emit(RoomFrame(room, notice))
        await self._unquote(room, seq)

    async def _unquote(self, room: str, seq: int) -> None:
        """Take the deleted message's text out of the quotes of the replies kept after it
        (those in the newest max_replay_bytes of the history)."""
        marker = b'"reply":{"seq":%d,' % seq
        history = await self.messages.history(room, seq, None)
        for found in history.messages:
            frame: bytes | None = found
            for _ in range(REWRITE_ATTEMPTS):
                if frame is None or marker not in frame:
                    break
                reply = json.loads(frame)
                if not isinstance(reply.get("reply"), dict) or reply["reply"].get("seq") != seq:
                    break
                reply["reply"] = {**reply["reply"], "quote": "", "deleted": True}
                if await self.history.rewrite_message(room, int(reply["seq"]), frame, p.encode(reply)):
                    break
                # the reply changed meanwhile (edited, deleted): read it again
                frame = await self.history.kept_message(room, int(reply["seq"]))

    # -- read positions -----------------------------------------------------------------
    @staticmethod
    def unread_frame(state: ReadState, ref: str | None = None) -> bytes:
        return p.encoded(
            p.UNREAD, ref=ref, room=state.room, read=state.read, seq=state.seq, unread=state.unread, epoch=state.epoch
        )

    async def mark_read(self, conn: Connection, room: str, seq: int | None, ref: str | None) -> None:
        """Move `conn`'s identity's position to `seq` (None: only tell it); its other
        connections in the room get the new ``unread`` when it moved."""
        username = conn.who.username
        if seq is None:
            conn.send(self.unread_frame(await self.reads.read_state(room, username), ref))
            return
        before = await self.reads.read_state(room, username)
        state = await self.reads.mark_read(room, username, seq)
        conn.send(self.unread_frame(state, ref))
        if state.read != before.read:
            await self.messages.emit(PersonalFrame(room, self.unread_frame(state), username, skip=conn.key))

    async def read_own(self, conn: Connection, room: str, seq: int) -> None:
        """`conn` sent message `seq`: what it said is read (its other connections are not told)."""
        await self.reads.mark_read(room, conn.who.username, seq)
