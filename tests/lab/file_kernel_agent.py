"""A kernel's room session in a process of its own that takes the files offered to it
(the notebook API, `RoomSession.on_file_offer`), for the JupyterLab tests.

    python tests/file_kernel_agent.py URL TOKEN ROOM USER_ID FOLDER

Every offer is accepted into FOLDER. Events (stdout, one JSON object a line): ``ready``
(with ``peer_id``), ``offer`` (``id``, ``name``, ``size``, ``sender``, ``label``: the
panel row's HTML), ``received`` (``path``, ``sha256``, ``steps``: the progress seen,
``status``: the row's last words), ``failed`` (``error``). Command (stdin): ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

from iavicenne import Backoff, join
from iavicenne.files import FileOffer


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=repr) + "\n")
    sys.stdout.flush()


async def main() -> None:
    url, token, name, user_id, folder = sys.argv[1:6]
    room = join(
        name, user_id=user_id, url=url, token=token, display=False, backoff=Backoff(initial=0.1, maximum=0.5), loopback=True
    )
    await room.ready()
    network = await room.peer_network()

    async def take(offer: FileOffer) -> None:
        steps: list[int] = []
        offer.on_progress(lambda done, _total: steps.append(done))
        emit("offer", id=offer.id, name=offer.name, size=offer.size, sender=offer.sender, label=offer.row.label.value)
        await offer.accept(folder)
        try:
            path = await offer.received(timeout=120)
        except Exception as error:
            emit("failed", id=offer.id, error=str(error))
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        emit("received", id=offer.id, path=str(path), sha256=digest, steps=steps, status=offer.row.status.value)

    room.on_file_offer(take)
    emit("ready", peer_id=network.peer_id)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if json.loads(line).get("cmd") == "quit":
            break
    await room.leave()


if __name__ == "__main__":
    asyncio.run(main())
