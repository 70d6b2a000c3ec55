"""The outbound write path: frames go through tornado's frame writer, not a task per write.

`ProtocolSocket._write_text` skips `write_message` (which creates a task for every frame
and made the garbage collector dominate a 500-member fan-out) on plain connections, and
falls back to it when permessage-deflate was negotiated, since only write_message
compresses. Both kinds of member must get every frame, in order, byte-identical once
decoded. The server here offers compression so that both paths run side by side.
"""

from __future__ import annotations

from typing import Any

import pytest
from tornado.websocket import WebSocketProtocol13


@pytest.fixture
def jp_server_config(iavicenne_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"iavicenne_ext": True},
            "websocket_compression_options": {},  # offered; a client may accept it or not
        },
        "IAvicenne": iavicenne_config,
    }


async def test_plain_and_compressed_members_get_every_frame_in_order(iav_connect: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    through_write_message: list[WebSocketProtocol13] = []
    original = WebSocketProtocol13.write_message

    def spy(self: WebSocketProtocol13, message: Any, binary: bool = False) -> Any:
        if not self.mask_outgoing:  # server side (the test's clients mask what they send)
            through_write_message.append(self)
        return original(self, message, binary)

    monkeypatch.setattr(WebSocketProtocol13, "write_message", spy)

    plain = await iav_connect()
    await plain.join("fan", "plain")
    packed = await iav_connect(compression_options={})
    await packed.join("fan", "packed")
    sender = await iav_connect()
    await sender.join("fan", "sender")
    payloads = [{"i": i, "text": "é" * (i % 7) + "x" * (200 * i)} for i in range(40)]  # some over 64 KiB framing
    for payload in payloads:
        await sender.send({"type": "message", "room": "fan", "payload": payload})

    frames = {}
    for name, client in (("plain", plain), ("packed", packed), ("sender", sender)):
        frames[name] = [await client.expect("message") for _ in payloads]
        assert [f["message"] for f in frames[name]] == payloads
        assert [f["seq"] for f in frames[name]] == sorted(f["seq"] for f in frames[name])
    assert frames["plain"] == frames["packed"] == frames["sender"]

    # only the connection that negotiated compression went through write_message
    assert through_write_message, "the compressed member should use write_message"
    assert all(conn._compressor is not None for conn in through_write_message)


async def test_a_closed_member_does_not_stop_the_fan_out(iav_connect: Any) -> None:
    gone = await iav_connect()
    await gone.join("fan", "gone")
    stays = await iav_connect()
    await stays.join("fan", "stays")
    sender = await iav_connect()
    await sender.join("fan", "sender")
    gone.close()
    for i in range(20):
        await sender.send({"type": "message", "room": "fan", "payload": {"i": i}})
    assert [(await stays.expect("message"))["message"]["i"] for _ in range(20)] == list(range(20))
