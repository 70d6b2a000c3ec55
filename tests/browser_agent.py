"""A kernel stand-in for the browser tests: a separate Python process with the real
Python client (and, with ``--peer``, a real aiortc peer link), driven over its stdin and
reporting over its stdout, one JSON object per line.

    python tests/browser_agent.py URL TOKEN ROOM USER_ID [--peer]

Commands (stdin): ``{"cmd": "send", "text": ...}``, ``{"cmd": "direct", "to": ..., "text": ...}``,
``{"cmd": "state", "state": {...}}``, ``{"cmd": "flood", "count": N, "seconds": S, "text": ...}``
(N room messages evenly over S seconds, not waiting for their acks; then ``flooded`` with how
many were accepted and the error codes of the others), ``{"cmd": "peer-send", "peer": ..., "data": ..., "compress": false}``
(``data`` a string, or ``{"bytes": <base64>}``, or ``{"json": ...}``), ``{"cmd": "peer-raw", "peer": ...,
"messages": [<base64>, ...]}`` (data-channel messages written as they are: what a hostile
peer could send), ``{"cmd": "quit"}``.

Events (stdout): ``ready``, ``message``, ``presence``, ``gap``, ``connected``,
``disconnected``, ``link`` (a peer link's state), ``peer-message``, ``sent``, ``flooded``, ``error``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import traceback
from typing import Any

from iavicenne import Backoff, Message, PresenceEvent, RoomClient


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=repr) + "\n")
    sys.stdout.flush()


def wire(data: Any) -> Any:
    """What a received peer message looks like in the test's JSON."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return {"bytes": base64.b64encode(bytes(data)).decode(), "size": len(data)}
    if isinstance(data, str):
        return data
    return {"json": data}


def unwire(data: Any) -> Any:
    if isinstance(data, dict) and "bytes" in data:
        return base64.b64decode(data["bytes"])
    if isinstance(data, dict) and "json" in data:
        return data["json"]
    return data


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("room")
    parser.add_argument("user_id")
    parser.add_argument("--peer", action="store_true", help="also take peer links (aiortc, loopback ICE)")
    args = parser.parse_args()

    fast = Backoff(initial=0.1, maximum=0.5)
    client = await RoomClient.connect(args.url, args.token, user_id=args.user_id, backoff=fast)
    client.on("connected", lambda e: emit("connected", reconnects=e.get("reconnects")))
    client.on("disconnected", lambda e: emit("disconnected", code=e.get("code")))
    room = await client.join(args.room, state={"kind": "kernel", "status": "idle"})

    def on_message(message: Message) -> None:
        emit(
            "message", user_id=message.user_id, text=message.text, content=message.content, seq=message.seq, direct=message.direct
        )

    def on_presence(event: PresenceEvent) -> None:
        emit("presence", kind=event.kind, user_id=event.user_id, members=sorted(event.members))

    room.on("message", on_message)
    room.on("presence", on_presence)
    room.on("gap", lambda gap: emit("gap", since=gap.since, epoch_changed=gap.epoch_changed))

    peers = None
    if args.peer:
        peers = await start_peers(args, fast)

    emit("ready", user_id=client.user_id, members=sorted(room.members))
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)  # commands may carry megabytes of base64
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        try:
            kind = command["cmd"]
            if kind == "quit":
                break
            if kind == "send":
                ack = await room.send(command["text"])
                emit("sent", seq=ack.get("seq"))
            elif kind == "direct":
                await room.direct(command["to"], command["text"])
                emit("sent")
            elif kind == "flood":
                emit("flooded", **(await flood(room, command["count"], command["seconds"], command.get("text", "flood"))))
            elif kind == "state":
                await room.set_state(command["state"])
                emit("sent")
            elif kind == "peer-send":
                assert peers is not None, "start the agent with --peer"
                await peer_send(peers, command["peer"], unwire(command["data"]), compress=command.get("compress", False))
                emit("sent")
            elif kind == "peer-raw":
                assert peers is not None, "start the agent with --peer"
                await peer_raw(peers, command["peer"], [base64.b64decode(m) for m in command["messages"]])
                emit("sent")
        except Exception as error:  # report, keep serving: the test decides
            emit("error", message=str(error), kind=type(error).__name__, trace=traceback.format_exc())
    if peers is not None:
        await stop_peers(peers)
    await client.close()


async def flood(room: Any, count: int, seconds: float, text: str) -> dict[str, Any]:
    """`count` messages "<text> <n>" evenly over `seconds`, each sent without waiting for the
    last one's ack (as a script in a loop would): how many the server accepted, and why not."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sending = []
    for n in range(count):
        await asyncio.sleep(max(0.0, started + n * seconds / count - loop.time()))
        sending.append(room.send_nowait(f"{text} {n}"))
    answers = await asyncio.gather(*sending, return_exceptions=True)
    refused: dict[str, int] = {}
    for answer in answers:
        if isinstance(answer, BaseException):
            code = getattr(answer, "code", type(answer).__name__)
            refused[code] = refused.get(code, 0) + 1
    return {"accepted": count - sum(refused.values()), "refused": refused, "took": round(loop.time() - started, 2)}


# -- peer links (iavicenne.peer, on aiortc; loopback candidates only) -------------------------


async def start_peers(args: argparse.Namespace, backoff: Backoff) -> Any:
    from iavicenne.peer import PeerNetwork

    network = await PeerNetwork.join(
        args.room, args.user_id, args.url, args.token, loopback=True, signaling_options={"backoff": backoff}
    )

    def on_link(link: Any) -> None:
        emit("link", peer=link.peer_id, state=link.state, offerer=link.offerer, max_message_size=link.max_message_size)
        link.on("message", lambda data: emit("peer-message", peer=link.peer_id, data=wire(data)))
        link.on("close", lambda error: emit("link", peer=link.peer_id, state="closed", error=str(error)))

    network.on("link", on_link)
    return network


async def open_link(network: Any, peer_id: str) -> Any:
    link = network.links.get(peer_id)
    if link is None or not link.open:
        link = await network.connect(peer_id, timeout=20)
    return link


async def peer_send(network: Any, peer_id: str, data: Any, *, compress: bool = False) -> None:
    await (await open_link(network, peer_id)).send(data, compress=compress)


async def peer_raw(network: Any, peer_id: str, messages: list[bytes]) -> None:
    """Write data-channel messages as they are, past the link's own framing (a hostile peer's)."""
    link = await open_link(network, peer_id)
    for message in messages:
        link.channel.send(message)


async def stop_peers(network: Any) -> None:
    await network.close()


if __name__ == "__main__":
    asyncio.run(main())
