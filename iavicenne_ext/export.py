"""A room's kept history as a document: Markdown, or jupyterlab-chat's ``.chat`` file.

Both read the history as it is kept (edits applied, deleted messages without their text)
and put every string people wrote as text, never as markup:

- Markdown (``format=md``): a heading, then one entry per message: the author's verified
  ``@username`` (their display name only after it), the time, the text. Every character
  Markdown or HTML could read as syntax is escaped with a backslash or an entity, and
  line breaks inside a text stay inside its entry, so nothing a person wrote becomes a
  link, an image, a heading or HTML in a renderer.
- ``.chat`` (``format=chat``): the JSON that jupyterlab-chat keeps in a ``.chat`` file
  (its ``YChat.get``): ``messages`` (``type`` "msg", ``id``, ``body``, ``time`` in seconds,
  ``sender`` a username, ``raw_time`` false, ``edited`` / ``deleted`` when so), ``users`` (by
  username: ``username``, ``name``, ``display_name``, ``initials``, ``color`` None,
  ``avatar_url`` None) and ``metadata`` (``id``). jupyterlab-chat renders a body as
  Markdown: a body here is escaped the same way, so the text shows as it was written.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import iavicenne_protocol as p

#: the formats `GET rooms/<room>/export?format=` serves, with their media types
FORMATS = {"md": "text/markdown; charset=utf-8", "chat": "application/json"}

# what Markdown (CommonMark, GFM) may read as syntax anywhere in a line (backslashed), and
# what HTML may (as entities, after: the backslashes must not touch the entities)
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:=])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def escape_markdown(text: str) -> str:
    """`text` as Markdown that renders as the very same text (HTML entities, backslashes)."""
    text = _MARKDOWN_SYNTAX.sub(r"\\\1", text.replace("\r", ""))
    return "".join(_HTML.get(char, char) for char in text)


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """One kept message, as an export shows it."""

    seq: int
    username: str
    display_name: str
    user_id: str
    text: str
    timestamp: str
    edited: bool
    deleted: bool
    reply_to: int | None
    quote: str


def _text(message: Any) -> str:
    """What a message says: its ``content`` string, else its payload as JSON."""
    if isinstance(message, dict):
        content = message.get("content")
        if isinstance(content, str):
            return content
        return json.dumps(message, ensure_ascii=False) if message else ""
    return ""


def kept_messages(frames: list[bytes]) -> list[KeptMessage]:
    """The ``message`` frames of a history (edit and deletion notices are not kept)."""
    kept: list[KeptMessage] = []
    for frame in frames:
        data = json.loads(frame)
        if data.get("type") != p.MESSAGE:
            continue
        identity = data.get("identity") if isinstance(data.get("identity"), dict) else {}
        reply = data.get("reply") if isinstance(data.get("reply"), dict) else {}
        kept.append(
            KeptMessage(
                seq=int(data.get("seq", 0)),
                username=str(identity.get("username") or data.get("user_id") or ""),
                display_name=str(identity.get("display_name") or ""),
                user_id=str(data.get("user_id") or ""),
                text=_text(data.get("message")),
                timestamp=str(data.get("timestamp") or ""),
                edited="edited_at" in data,
                deleted="deleted" in data,
                reply_to=reply.get("seq") if isinstance(reply.get("seq"), int) else None,
                quote=str(reply.get("quote") or ""),
            )
        )
    return kept


def to_markdown(room: str, messages: list[KeptMessage]) -> str:
    lines = [f"# Room {escape_markdown(room)}", ""]
    for message in messages:
        who = f"@{escape_markdown(message.username)}"
        if message.display_name and message.display_name != message.username:
            who += f" ({escape_markdown(message.display_name)})"
        marks = " *(edited)*" if message.edited else ""
        lines.append(f"**{who}** · {escape_markdown(message.timestamp)} · \\#{message.seq}{marks}")
        lines.append("")
        if message.reply_to is not None:
            quote = escape_markdown(message.quote) if message.quote else "*(deleted)*"
            lines.append(f"> in reply to \\#{message.reply_to}: {' '.join(quote.splitlines())}")
            lines.append("")
        if message.deleted:
            lines.append("*(deleted)*")
        else:
            # each line of the text stays a line of this entry (two spaces: a line break)
            lines.extend(f"{escape_markdown(line)}  " for line in message.text.splitlines() or [""])
        lines.append("")
    return "\n".join(lines)


def _seconds(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return 0.0


def _initials(name: str) -> str:
    return "".join(part[0] for part in name.split()[:2]).upper() or name[:1].upper()


def to_chat(room: str, epoch: str, messages: list[KeptMessage]) -> dict[str, Any]:
    """jupyterlab-chat's ``.chat`` document for the room (ids stable for a room's life)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"iavicenne:{room}:{epoch}")
    users: dict[str, dict[str, Any]] = {}
    chat_messages: list[dict[str, Any]] = []
    for message in messages:
        name = message.display_name or message.username
        users.setdefault(
            message.username,
            {
                "username": message.username,
                "name": name,
                "display_name": name,
                "initials": _initials(name),
                "avatar_url": None,
                "color": None,
            },
        )
        body = "" if message.deleted else escape_markdown(message.text)
        if message.reply_to is not None and not message.deleted:
            quote = escape_markdown(message.quote) if message.quote else "*(deleted)*"
            body = f"> {' '.join(quote.splitlines())}\n\n{body}"
        entry: dict[str, Any] = {
            "type": "msg",
            "id": str(uuid.uuid5(namespace, str(message.seq))),
            "body": body,
            "time": _seconds(message.timestamp),
            "sender": message.username,
            "raw_time": False,
        }
        if message.edited:
            entry["edited"] = True
        if message.deleted:
            entry["deleted"] = True
        chat_messages.append(entry)
    return {"messages": chat_messages, "users": users, "metadata": {"id": str(namespace), "iavicenne_room": room}}
