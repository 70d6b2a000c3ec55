"""A file offered to a kernel (issue 13, "Send to a person", to one of their kernels): the
notebook side of "Files between people" (docs/protocol.md), against pytest-jupyter's
in-process server with two real identities (alice, bob: `room_support.TwoAnalysts`) and
mallory holding the server's own token. alice offers as a JupyterLab window does (a
direct message, then a link with the header and the bytes); bob's kernel takes it with
``room.on_file_offer``. tests/lab/test_lab_panel.py sends from a real JupyterLab window.

- the offer shows in bob's panel with the sender and the name as text, never markup;
- a name with a path is saved under its last segment inside the folder bob chose, and an
  existing file there is kept;
- bytes for an accepted id that come on a link of another identity (mallory) are refused
  and nothing is written; bytes for an id bob did not accept are refused too;
- declining tells the sender, and ``received()`` says why nothing came.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from room_support import eventually, session, with_analysts

from iavicenne.client import CONTROL
from iavicenne.files import FileNotReceived, FileOffer

HOSTILE = '<img src=x onerror="window.iavPwned=1">'


def errors_of(room: Any) -> str:
    return str(room.panel.errors.text.value)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def test_a_kernel_takes_a_file_offered_to_it_and_nothing_else(
    base: str, opened: list[Any], tmp_path: Path, server_token: str
) -> None:
    alice = session(opened, base, "files", "alice")
    bob = session(opened, base, "files", "bob")
    mallory = session(opened, base, "files", "mallory", token=server_token)
    for room in (alice, bob, mallory):
        await room.ready()
    alice_network = await alice.peer_network()
    bob_network = await bob.peer_network()
    await mallory.peer_network()
    offers: list[FileOffer] = []
    bob.on_file_offer(offers.append)
    answers: list[dict[str, Any]] = []
    alice_room = alice.room
    assert alice_room is not None
    alice_room.on("control", lambda message: answers.append(message.content))

    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "x.txt").write_text("bob's own file, kept")
    data = os.urandom(300_000)  # several chunks: progress on the way
    name = f"../../etc/{HOSTILE}x.txt"
    await alice.direct(
        "bob", {CONTROL: "file-offer", "id": "f1", "name": name, "size": len(data), "peer_id": alice_network.peer_id}
    )
    await eventually(lambda: offers)
    offer = offers[0]
    assert (offer.sender, offer.name, offer.size, offer.state) == ("alice", name, len(data), "offered")
    assert offer.row in bob.panel.files_box.children
    label = offer.row.label.value
    assert "<img" not in label and "&lt;img src=x onerror=&quot;window.iavPwned=1&quot;&gt;" in label
    assert "alice" in label and "293.0 KB" in label

    steps: list[int] = []
    offer.on_progress(lambda done, _total: steps.append(done))
    await offer.accept(folder)
    await eventually(lambda: [a for a in answers if a.get(CONTROL) == "file-accept"])
    accept = next(a for a in answers if a.get(CONTROL) == "file-accept")
    assert accept == {CONTROL: "file-accept", "id": "f1", "peer_id": bob_network.peer_id}
    with pytest.raises(ValueError, match="already answered"):
        offer.accept(folder)

    # mallory, another identity, sends bytes for the id bob accepted: refused, nothing written
    to_bob = mallory.peer("bob", connection=bob_network.peer_id)
    await to_bob.ready()
    await to_bob.send({CONTROL: "file", "id": "f1", "name": "evil.txt", "size": len(data)})
    await to_bob.send(b"mallory's bytes" * 100)
    await eventually(lambda: "refused a file from mallory" in errors_of(bob), what="bob's panel refusing mallory's bytes")
    assert offer.state == "accepted" and sorted(p.name for p in folder.iterdir()) == ["x.txt"]
    # ... and bytes for an id nobody offered bob are refused as well
    await to_bob.send({CONTROL: "file", "id": "nope", "name": "evil.txt", "size": 15})
    await to_bob.send(b"mallory's bytes")
    await asyncio.sleep(0.5)
    assert sorted(p.name for p in folder.iterdir()) == ["x.txt"]
    assert not [m for peer in bob.peers.values() for m in peer.messages if isinstance(m, (bytes, dict))]

    # alice, who offered it, sends it: saved under the name's last segment, inside the folder
    to_bob_from_alice = alice.peer("bob", connection=bob_network.peer_id)
    await to_bob_from_alice.ready()
    await to_bob_from_alice.send({CONTROL: "file", "id": "f1", "name": name, "size": len(data)})
    await to_bob_from_alice.send(data)
    path = await offer.received(timeout=30)
    assert path.parent == folder and path.name == "_img src_x onerror_window.iavPwned_1_x.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert (folder / "x.txt").read_text() == "bob's own file, kept"
    assert offer.state == "done" and "saved as" in offer.row.status.value
    assert [step for step in steps if 0 < step < len(data)], steps  # progress on the way
    assert steps[-1] == len(data)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["x.txt", path.name])  # nothing written elsewhere


async def test_declining_tells_the_sender(base: str, opened: list[Any]) -> None:
    alice = session(opened, base, "decline", "alice")
    bob = session(opened, base, "decline", "bob")
    await alice.ready()
    await bob.ready()
    offers: list[FileOffer] = []
    bob.on_file_offer(offers.append)
    answers: list[dict[str, Any]] = []
    assert alice.room is not None
    alice.room.on("control", lambda message: answers.append(message.content))
    await alice.direct("bob", {CONTROL: "file-offer", "id": "f2", "name": "big.csv", "size": 10, "peer_id": "alice#x"})
    await eventually(lambda: offers)
    await offers[0].decline()
    await eventually(lambda: answers)
    assert answers == [{CONTROL: "file-decline", "id": "f2"}]
    with pytest.raises(FileNotReceived, match="declined"):
        await offers[0].received(timeout=5)
    assert offers[0].row.accept_button.disabled
