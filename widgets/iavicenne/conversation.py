"""What is said in a room, as a room session keeps and shows it: the messages that arrive
(kept in `messages`, shown in the panel, emitted for the user's callbacks), the recent
history shown on joining, the gaps the server admits, and the waits a cell wants
(``await room.next_message()``, ``wait_for_message``, ``wait_for_member``).

* **Recent history.** On joining (and rejoining) the panel shows the last
  `history_count` messages the server keeps (the protocol's ``since`` replay), in
  `history`; they are not ``message`` events, so a callback never takes an old message
  for a new one. Live messages that arrive meanwhile are held and shown after them, in
  order; a rejoin shows only what was said while we were away.
* **Names as the server verified them.** A message's sender is shown with the verified
  username beside a name that is not theirs (`iavicenne.panels.named`).

What it needs from the room session is `ConversationHost`: it does not import the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConnectionClosed
from .panels.text import named

if TYPE_CHECKING:
    from .background import KernelLoop
    from .client_room import Room as ClientRoom
    from .events import EventEmitter, EventStream, Gap, Message, MessageChange
    from .panels.room_panel import RoomPanel

MESSAGES_KEPT = 1000  # messages a session remembers in `messages`


class ConversationHost(Protocol):
    """What a `Conversation` needs from its room session (`iavicenne.session.RoomSession`)."""

    @property
    def name(self) -> str: ...

    @property
    def kernel(self) -> KernelLoop: ...

    @property
    def panel(self) -> RoomPanel: ...

    @property
    def events(self) -> EventEmitter:
        """The user's events (``message``, ``gap``...)."""
        ...

    @property
    def members(self) -> dict[str, dict[str, Any]]: ...

    async def ready(self, timeout: float | None = 30.0) -> Any: ...

    def stream(self, *kinds: str) -> EventStream: ...


class Conversation:
    """The messages of one room session: kept, shown, waited for."""

    def __init__(self, host: ConversationHost, *, history: int) -> None:
        self.host = host
        self.kernel = host.kernel
        self.messages: list[Message] = []
        self.history: list[Message] = []
        self.history_count = history
        self._holding: list[Message] | None = None  # live messages held while the history is shown
        self._last_seen: tuple[str | None, int | None] = (None, None)  # (epoch, seq) when we left

    # -- what arrives -----------------------------------------------------------------
    def take(self, message: Message) -> None:
        """A message of the room (or to us): kept, shown (after the history, if that is
        being shown), emitted."""
        if message.room != self.host.name:
            return
        self.messages.append(message)
        del self.messages[:-MESSAGES_KEPT]
        if self._holding is not None:
            self._holding.append(message)  # shown after the history, in order
        else:
            self._show(message)
        self.host.events.emit("message", message)

    def joined(self, room: ClientRoom) -> None:
        """The room is joined: show its recent history (if asked for), then what arrives."""
        if self.history_count:
            self._holding = []
            self.kernel.loop.create_task(self._show_history(room))

    def left(self, room: ClientRoom | None) -> None:
        """We leave: a rejoin shows what was said from here on."""
        if room is not None:
            self._last_seen = (room.epoch, room.seq)

    def gap(self, gap: Gap) -> None:
        if gap.room != self.host.name:
            return
        why = "the room started over" if gap.epoch_changed else "they are older than the history the server keeps"
        self.kernel.call(self.host.panel.show_note, "", f"some messages sent while you were away are lost ({why})")
        self.host.events.emit("gap", gap)

    def change(self, change: MessageChange) -> None:
        """A kept message was edited or deleted: a note in the panel, a ``change`` event."""
        if change.room != self.host.name:
            return
        by = change.identity.get("username") or "?"
        if change.kind == "edited":
            text = change.content.get("content", change.content)
            note = f"@{by} edited message {change.seq}: {text}"
        else:
            note = f"@{by} deleted message {change.seq}"
        self.kernel.call(self.host.panel.show_note, "", note)
        self.host.events.emit("change", change)

    async def _show_history(self, room: ClientRoom) -> None:
        """The last messages before we came (after those we saw, on a rejoin), then the
        live ones that arrived meanwhile."""
        panel = self.host.panel
        try:
            epoch, seq = self._last_seen
            after = seq if epoch is not None and epoch == room.epoch else None
            recent = await room.recent(self.history_count, after=after)
            if recent:
                self.history.extend(recent)
                del self.history[:-MESSAGES_KEPT]
                what = "said while you were away" if after is not None else "before you joined"
                panel.show_note(recent[0].timestamp, f"{len(recent)} message{'s' if len(recent) != 1 else ''} {what}:")
                for message in recent:
                    self._show(message, old=True)
                panel.show_note("", "— now —")
        finally:
            held, self._holding = self._holding or [], None
            for message in held:
                self._show(message)

    def _show(self, message: Message, *, old: bool = False) -> None:
        text = message.text if message.text is not None else message.content
        if message.deleted:
            text = "(deleted)"
        elif message.edited:
            text = f"{text} (edited)"
        reply = message.reply
        if reply is not None and not message.deleted:
            # the replied-to author as the server verified it, and its quote (escaped as text by the panel)
            author = reply.get("identity", {}).get("username") if isinstance(reply.get("identity"), dict) else None
            quote = reply.get("quote") or "(deleted)"
            text = f"(re @{author or reply.get('user_id')}: {quote}) {text}"
        who = named(message.user_id, message.identity)  # the verified username beside a name not its own
        self.kernel.call(self.host.panel.show_message, message.timestamp, who, str(text), direct=message.direct, old=old)

    # -- waiting for what comes -------------------------------------------------------
    async def next_message(self, timeout: float | None, where: Callable[[Message], bool] | None) -> Message:
        loop = self.kernel.loop
        deadline = None if timeout is None else loop.time() + timeout
        async with self.host.stream("message") as stream:
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    message = await stream.get(left)
                except asyncio.TimeoutError:
                    raise asyncio.TimeoutError(f"no such message in {self.host.name!r} within {timeout} s") from None
                except EOFError:
                    raise ConnectionClosed(f"left {self.host.name!r} while waiting for a message") from None
                if where is None or where(message):
                    return message

    async def wait_for_message(self, where: Callable[[Message], bool], timeout: float | None) -> Message:
        for message in list(self.messages):
            if where(message):
                return message
        return await self.next_message(timeout, where)

    async def wait_for_member(
        self, user_id: str, where: Callable[[dict[str, Any]], bool] | None, timeout: float | None
    ) -> dict[str, Any]:
        host = self.host
        await host.ready(timeout)

        def found() -> bool:
            member = host.members.get(user_id)
            return member is not None and (where is None or bool(where(member)))

        loop = self.kernel.loop
        deadline = None if timeout is None else loop.time() + timeout
        async with host.stream("presence") as stream:
            while not found():
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    await stream.get(left)
                except asyncio.TimeoutError:
                    what = "join" if user_id not in host.members else "reach that presence"
                    raise asyncio.TimeoutError(f"{user_id!r} did not {what} in {host.name!r} within {timeout} s") from None
                except EOFError:
                    raise ConnectionClosed(f"left {host.name!r} while waiting for {user_id!r}") from None
        return host.members[user_id]
