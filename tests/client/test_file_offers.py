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
- declining tells the sender, and ``received()`` says why nothing came;
- the sender is told what became of the bytes (``file-outcome``): the name saved as, or why
  not; bob, hostile, sending to alice's kernel a name that is taken (her file is kept, his
  is numbered, even past a planted symlink), a path, a bidi override, and fewer bytes than
  offered, is told each outcome, and nothing of alice's is overwritten.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
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
    # alice is told what became of it: saved, under which name (never bob's folder)
    await eventually(lambda: [a for a in answers if a.get(CONTROL) == "file-outcome"], what="alice told the outcome")
    outcome = next(a for a in answers if a.get(CONTROL) == "file-outcome")
    assert outcome == {CONTROL: "file-outcome", "id": "f1", "ok": True, "path": path.name}


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


async def offer_to(
    sender: Any,
    network: Any,
    receiver: Any,
    receiver_network: Any,
    offers: list[FileOffer],
    offer_id: str,
    name: str,
    data: bytes,
    size: int | None = None,
) -> FileOffer:
    """`sender` offers `name` to the receiver's kernel, which accepts it into its folder; the
    bytes go on a link (`size`: what the offer says, when it lies)."""
    before = len(offers)
    size = len(data) if size is None else size
    await sender.direct(
        receiver.user_id, {CONTROL: "file-offer", "id": offer_id, "name": name, "size": size, "peer_id": network.peer_id}
    )
    await eventually(lambda: len(offers) > before, what=f"the offer {offer_id}")
    return offers[-1]


def answered(answers: dict[str, dict[str, Any]], offer_id: str) -> Callable[[], bool]:
    return lambda: offer_id in answers


async def test_the_sender_hears_the_outcome_and_nothing_is_overwritten(base: str, opened: list[Any], tmp_path: Path) -> None:
    alice = session(opened, base, "outcomes", "alice")
    bob = session(opened, base, "outcomes", "bob")
    await alice.ready()
    await bob.ready()
    alice_network = await alice.peer_network()
    bob_network = await bob.peer_network()
    offers: list[FileOffer] = []
    alice.on_file_offer(offers.append)
    outcomes: dict[str, dict[str, Any]] = {}
    assert bob.room is not None
    bob.room.on("control", lambda message: outcomes.__setitem__(message.content.get("id"), message.content))

    folder = tmp_path / "alice-inbox"
    folder.mkdir()
    mine = os.urandom(24 * 1024)  # alice's 24 KB, which bob's 18 bytes must not replace
    (folder / "x.csv").write_bytes(mine)
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the folder")
    (folder / "x (1).csv").symlink_to(outside)  # planted: a numbered name that leads out

    link = bob.peer("alice", connection=alice_network.peer_id)
    await link.ready()
    cases = [
        ("o1", "x.csv", b"bob's 18 bytes!!!!", "x (2).csv"),
        ("o2", "../../x.csv", b"up and out", "x (3).csv"),
        ("o3", "/etc/x.csv", b"absolute", "x (4).csv"),
        ("o4", "report\u202efdp.py", b"bidi", "report_fdp.py"),
    ]
    for offer_id, name, data, saved_as in cases:
        offer = await offer_to(bob, bob_network, alice, alice_network, offers, offer_id, name, data)
        await offer.accept(folder)
        await eventually(answered(outcomes, offer_id), what=f"bob waiting for {offer_id}'s acceptance")
        outcomes.pop(offer_id)  # the file-accept
        await link.send({CONTROL: "file", "id": offer_id, "name": name, "size": len(data)})
        await link.send(data)
        path = await offer.received(timeout=30)
        assert (path.parent, path.name, path.read_bytes()) == (folder, saved_as, data)
        await eventually(answered(outcomes, offer_id), what=f"bob told what became of {offer_id}")
        assert outcomes[offer_id] == {CONTROL: "file-outcome", "id": offer_id, "ok": True, "path": saved_as}
    assert (folder / "x.csv").read_bytes() == mine
    assert outside.read_text() == "not in the folder"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["x.csv", "x (1).csv", *(case[3] for case in cases)])

    # fewer bytes than offered: not saved, and bob is told why
    offer = await offer_to(bob, bob_network, alice, alice_network, offers, "o5", "y.csv", b"12345", size=10)
    await offer.accept(folder)
    await eventually(lambda: "o5" in outcomes, what="bob waiting for o5's acceptance")
    outcomes.pop("o5")
    await link.send({CONTROL: "file", "id": "o5", "name": "y.csv", "size": 10})
    await link.send(b"12345")
    with pytest.raises(FileNotReceived):
        await offer.received(timeout=30)
    await eventually(lambda: "o5" in outcomes, what="bob told o5 failed")
    assert outcomes["o5"][CONTROL] == "file-outcome" and outcomes["o5"]["ok"] is False
    assert "5 bytes arrived, 10 were offered" in outcomes["o5"]["error"]
    assert not (folder / "y.csv").exists()
