"""What travels on a room's channel: one JSON header line, then the frame's bytes.

The header is ``{"seq":..,"epoch":..,"to":..,"skip":..,"supersede":..,"evict":..,"presence":..,"person":..,"moderate":..,"muted":..}``
(only ``seq`` is always there; ``epoch`` comes with a seq). A frame with a seq is published
by the publish script without it, and the receiving server puts it in (`protocol.with_seq`);
frames without seq (presence, direct messages, signaling) have ``"seq":0``. The header says
which broker event (events.py) the frame is: `encode` writes one, `Envelope.event` reads it.

Anything else that reaches a room's channel (another program's PUBLISH, garbage) is a
`MalformedEnvelope`: the reader drops it, and the link and the other rooms are untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..events import (
    BrokerEvent,
    DirectFrame,
    Emitted,
    Eviction,
    Moderation,
    PersonalFrame,
    PresenceFrame,
    Publication,
    RoomFrame,
    Supersede,
)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# NaN and Infinity are not JSON: a browser's JSON.parse would fail on the frame
_STRICT = json.JSONDecoder(parse_constant=_not_json)


class MalformedEnvelope(ValueError):
    """A message on a room's channel that this broker did not publish."""


@dataclass(frozen=True, slots=True)
class Envelope:
    seq: int  # 0: a frame without seq or history
    epoch: str | None
    to: str | None  # deliver to this user_id only
    skip: str | None  # deliver to every connection but this one
    supersede: bool  # the recipient's connection was taken over by a newer one
    frame: bytes  # without its seq
    evict: str | None = None  # the username whose connections get it and leave the room
    presence: bool = False  # a user-joined, user-left or presence frame
    person: str | None = None  # the username whose connections get it (a `PersonalFrame`)
    moderate: str | None = None  # the username the room's owner muted (`muted`) or unmuted
    muted: bool = False

    def event(self, room: str, frame: bytes) -> BrokerEvent:
        """The broker event this envelope carries, with `frame` (the seq put in, if any)."""
        if self.seq:
            return Publication(room, frame, self.seq)
        if self.evict is not None:
            return Eviction(room, frame, self.evict)
        if self.person is not None:
            return PersonalFrame(room, frame, self.person, self.skip)
        if self.moderate is not None:
            return Moderation(room, frame, self.moderate, self.muted)
        if self.to is not None:
            kind = Supersede if self.supersede else DirectFrame
            return kind(room, frame, self.to, self.skip)
        if self.presence:
            return PresenceFrame(room, frame, self.skip)
        return RoomFrame(room, frame, self.skip)


def encode(event: Emitted) -> bytes:
    """An event without seq as published (the publish script writes the seq ones)."""
    header: dict[str, Any] = {"seq": 0, "to": None, "skip": None}
    if isinstance(event, Eviction):
        header["evict"] = event.username
    elif isinstance(event, PersonalFrame):
        header["person"] = event.username
        header["skip"] = event.skip
    elif isinstance(event, Moderation):
        header["moderate"] = event.username
        header["muted"] = event.muted
    else:
        header["skip"] = event.skip
        if isinstance(event, (DirectFrame, Supersede)):
            header["to"] = event.to
            if isinstance(event, Supersede):
                header["supersede"] = True
        elif isinstance(event, PresenceFrame):
            header["presence"] = True
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + event.frame


def _optional_str(header: dict[str, Any], name: str) -> str | None:
    value = header.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedEnvelope(f"{name} is {type(value).__name__}, not a string")
    return value


def decode(data: bytes) -> Envelope:
    """Read one channel message, or raise `MalformedEnvelope` saying what is wrong."""
    head, newline, frame = data.partition(b"\n")
    if not newline:
        raise MalformedEnvelope("no header line")
    try:
        header = json.loads(head)
    except (ValueError, RecursionError):
        raise MalformedEnvelope("the header is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedEnvelope("the header is not a JSON object")
    seq = header.get("seq")
    if type(seq) is not int or seq < 0:  # bool is an int: excluded on purpose
        raise MalformedEnvelope("seq is not a non-negative integer")
    epoch = _optional_str(header, "epoch")
    if seq and not epoch:
        raise MalformedEnvelope("a frame with a seq has no epoch")
    supersede, presence, muted = header.get("supersede", False), header.get("presence", False), header.get("muted", False)
    if not isinstance(supersede, bool) or not isinstance(presence, bool) or not isinstance(muted, bool):
        raise MalformedEnvelope("supersede, presence or muted is not a boolean")
    to = _optional_str(header, "to")
    if supersede and to is None:
        raise MalformedEnvelope("supersede without to")
    # the frame goes to clients as it is, in a text message: it must be UTF-8 JSON, an
    # object with a type (parsed once per server here, not once per recipient)
    try:
        body = _STRICT.decode(frame.decode())
    except UnicodeDecodeError:
        raise MalformedEnvelope("the frame is not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedEnvelope("the frame is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise MalformedEnvelope("the frame is not a JSON object with a type")
    return Envelope(
        seq,
        epoch,
        to,
        _optional_str(header, "skip"),
        supersede,
        frame,
        _optional_str(header, "evict"),
        presence,
        _optional_str(header, "person"),
        _optional_str(header, "moderate"),
        muted,
    )
