"""Full-text search over rooms' kept messages: the query's terms, and what a message says.

One meaning on every backend: a query is text, split into words (letters and digits;
everything else, FTS5 syntax included, only separates them); a message is found when each
word begins one of its words, ignoring case. Only ``message`` frames with a text
(``message.content``) are searched: a deleted message has none, an edited one its new one.
The store (sqlite/) answers with its FTS5 index, the memory and Redis brokers by reading
their kept history (`found_in`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import iavicenne_protocol as p

# letters and digits: what SQLite's unicode61 tokenizer keeps as a token (`_` separates)
_WORD = re.compile(r"[^\W_]+")
#: most words a query may have (each is one more condition to check on every message)
MAX_TERMS = 16


@dataclass(frozen=True, slots=True)
class Found:
    """A kept message a search found: its room and its frame as the history keeps it."""

    room: str
    frame: bytes


def terms(query: str) -> list[str]:
    """The words of a query, case-folded, in order, without repeats."""
    return list(dict.fromkeys(word.casefold() for word in _WORD.findall(query)))


def fts_query(words: Iterable[str]) -> str:
    """The FTS5 query of `words`: each a quoted prefix (text, never FTS5 syntax), all required."""
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def searchable_text(frame: bytes) -> str | None:
    """What a kept frame says, when it is a message with a text (not deleted)."""
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != p.MESSAGE or "deleted" in data:
        return None
    message = data.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def matches(words: list[str], text: str) -> bool:
    """True when each of `words` begins a word of `text` (ignoring case)."""
    said = _WORD.findall(text.casefold())
    return all(any(word.startswith(term) for word in said) for term in words)


def found_in(room: str, frames: Iterable[bytes], words: list[str]) -> list[Found]:
    """The frames of `room` whose text matches `words`, in the order given."""
    found = []
    for frame in frames:
        text = searchable_text(frame)
        if text is not None and matches(words, text):
            found.append(Found(room, frame))
    return found


def _sent(found: Found) -> tuple[str, int]:
    data = json.loads(found.frame)
    return str(data.get("timestamp") or ""), int(data.get("seq") or 0)


def newest(found: Iterable[Found], limit: int) -> list[Found]:
    """The `limit` newest of `found`, newest first (by the time each message was sent)."""
    return sorted(found, key=_sent, reverse=True)[: max(0, limit)]
