"""The pub/sub connection's messages, parsed in bulk from the bytes Redis sends.

redis-py's `PubSub.get_message` costs about 30 µs of CPU per message (a lock, a read per
line, a dict per message; measured with redis-py 8.1 without hiredis), once per message
and server: at 50 messages a second that is nothing, at thousands it is a third of a
server's time beside the frames it writes. Under load one read from the socket carries
many messages; `PushParser` takes them all out of it at once, a few µs each.

Only what a subscribed connection receives is understood: arrays (RESP2 ``*``) or pushes
(RESP3 ``>``) of bulk strings, integers and simple strings, such as
``["message", channel, data]`` and ``["subscribe", channel, count]``. Anything else is a
`ProtocolMismatch`, which the link treats as a lost connection (reconnect, catch up).
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

_ARRAY, _PUSH, _BULK, _INTEGER, _SIMPLE, _ERROR = b"*>$:+-"
_CRLF = b"\r\n"


class ProtocolMismatch(RedisConnectionError):
    """The pub/sub connection sent something that is not a pub/sub message."""


class PushParser:
    """Bytes in, complete messages out (each a list of bytes items); keeps the incomplete rest."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[bytes]]:
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        messages: list[list[bytes]] = []
        at = 0
        while at < size:
            head = buffer[at]
            line_end = buffer.find(_CRLF, at)
            if line_end < 0:
                break
            if head == _ERROR:
                raise ProtocolMismatch(f"Redis answered the pub/sub connection with {bytes(buffer[at + 1 : line_end])!r}")
            if head not in (_ARRAY, _PUSH):
                raise ProtocolMismatch(f"unexpected RESP type {chr(head)!r} on the pub/sub connection")
            count = int(buffer[at + 1 : line_end])
            cursor = line_end + 2
            items: list[bytes] = []
            for _ in range(count):
                if cursor >= size:
                    break
                kind = buffer[cursor]
                line_end = buffer.find(_CRLF, cursor)
                if line_end < 0:
                    break
                if kind == _BULK:
                    start = line_end + 2
                    stop = start + int(buffer[cursor + 1 : line_end])
                    if stop + 2 > size:
                        break
                    items.append(bytes(buffer[start:stop]))
                    cursor = stop + 2
                elif kind in (_INTEGER, _SIMPLE):
                    items.append(bytes(buffer[cursor + 1 : line_end]))
                    cursor = line_end + 2
                else:
                    raise ProtocolMismatch(f"unexpected RESP type {chr(kind)!r} in a pub/sub message")
            if len(items) < count:
                break  # the rest of this message is still on its way
            messages.append(items)
            at = cursor
        if at:
            del buffer[:at]
        return messages
