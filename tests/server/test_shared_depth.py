"""How deep a room's shared document may nest (issue 22, max_shared_depth).

A 250 KB update of 17,000 maps, one in the other, was accepted, kept and relayed: every
browser of the room threw RangeError, a kernel printing it died (SIGSEGV), and an update of
30,000 nested JSON arrays crashed the server itself inside pycrdt. Alice writes, bob (on the
other server with Redis) is the one who tries the deep updates; then, with the bound lifted,
the clients show they survive such a document.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pycrdt
import pytest
from access_support import KINDS, Deployment, deployed
from room_support import eventually

import iavicenne_protocol as p
from iavicenne import RoomClient
from iavicenne.shared import CUT, SharedState, share
from iavicenne_ext.shared_depth import DocumentDepth, check_depth, update_depth
from iavicenne_ext.testing import WSClient
from iavicenne_protocol import SyncMessage

LIFTED = 20_000  # the highest max_shared_depth (shared_depth.DEPTH_CEILING)


def _deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"depth-{request.param}"), "depth", **options)


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from _deployment(request, tmp_path_factory)  # the default bound


@pytest.fixture(scope="module", params=["sqlite"])
def lifted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from _deployment(request, tmp_path_factory, max_shared_depth=LIFTED)


def nested_maps(levels: int, key: str = "deep") -> bytes:
    """One update: `levels` maps, each in the one before, under `key` of the room's root
    map (the root is level 1, so the document is `levels` + 1 deep)."""
    doc: pycrdt.Doc = pycrdt.Doc()
    current = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
    with doc.transaction():
        for level in range(levels):
            inner: pycrdt.Map[Any] = pycrdt.Map()
            current[key if level == 0 else "k"] = inner
            current = inner
        current["leaf"] = "bottom"
    return doc.get_update()


def nested_arrays(levels: int) -> bytes:
    """One update setting key "json" of the root map to a JSON value of `levels` arrays,
    one in the other (lib0's Any encoding: 2 bytes a level), as a hostile client writes it."""

    def varuint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes([*out, n])

    def string(text: str) -> bytes:
        return varuint(len(text.encode())) + text.encode()

    value = bytes([117, 1]) * levels + bytes([125, 0])  # [[[...[0]...]]]
    item = bytes([8 | 0x20]) + varuint(1) + string(p.SHARED_ROOT) + string("json") + varuint(1) + value
    return varuint(1) + varuint(1) + varuint(424242) + varuint(0) + item + varuint(0)


def update_frame(room: str, update: bytes, ref: str) -> dict[str, Any]:
    return {"type": p.SHARED, "room": room, "ref": ref, "payload": {"sync": SyncMessage(p.SyncStep.UPDATE, update).b64()}}


async def answer(client: WSClient, ref: str) -> dict[str, Any]:
    while True:
        frame = await client.recv(30)
        if frame.get("ref") == ref and frame.get("type") in (p.SHARED, p.ACK, p.ERROR):
            return frame


async def open_kernel(deployment: Deployment, opened: list[Any], name: str, room: str) -> SharedState:
    client = await RoomClient.connect(url=deployment.server(name).url, token=f"{name}-token", user_id=name)
    opened.append(client)
    state = share(await client.join(room))
    await state.synced(30)
    return state


def test_depth_is_measured_from_the_update_itself() -> None:
    assert update_depth(nested_maps(0)) == 1
    assert update_depth(nested_maps(63)) == 64
    assert update_depth(nested_arrays(3)) == 4  # [[[0]]] in the root map
    doc: pycrdt.Doc = pycrdt.Doc()
    root = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
    root["flat"] = 1
    root["list"] = pycrdt.Array([1, pycrdt.Map({"x": [1, [2]]})])  # root, list, map, [..], [2]
    assert update_depth(doc.get_update()) == 5
    text: pycrdt.Doc = pycrdt.Doc()
    typed = text.get("t", type=pycrdt.Text)
    for _ in range(200):  # one item after the other: each one's parent is its neighbour's
        typed += "ab"
    assert update_depth(text.get_update()) == 1
    assert update_depth(nested_maps(17_000)) == 17_001


async def test_a_too_deep_update_is_refused_naming_the_option_and_the_document_stays(
    deployment: Deployment, opened: list[Any]
) -> None:
    room = "s-too-deep"
    alice = await open_kernel(deployment, opened, "alice", room)
    alice["threshold"] = 0.3
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room})
    await bob.expect(p.ROOM_JOINED)

    # 64 levels pass (the root and 63 maps); one more is refused, and so is deep JSON
    await bob.send(update_frame(room, nested_maps(63, key="fits"), "fits"))
    assert (await answer(bob, "fits"))["type"] == p.ACK
    for ref, update in [("maps", nested_maps(64)), ("json", nested_arrays(64)), ("17000", nested_maps(17_000)), ("crash", nested_arrays(30_000))]:  # fmt: skip
        await bob.send(update_frame(room, update, ref))
        error = await answer(bob, ref)
        assert (error["type"], error["code"], error["option"], error["limit"]) == (p.ERROR, p.ErrorCode.LIMIT_EXCEEDED, "max_shared_depth", 64), error  # fmt: skip
        assert "IAvicenne.max_shared_depth" in error["message"] and error["room"] == room

    # the server is up (30,000 nested arrays once crashed it in pycrdt), the document as it was
    carol = await open_kernel(deployment, opened, "carol", room)
    await eventually(lambda: "fits" in alice, what="alice seeing the update that fits")
    assert carol.to_py() == alice.to_py()
    assert set(carol.to_py()) == {"threshold", "fits"}
    assert carol.to_py(max_depth=3)["fits"] == {"k": {"k": CUT}}  # levels 2 and 3 shown

    # from a kernel: the error names the option, and carol's copy is reset to the room's
    value: dict[str, Any] = {}
    for _ in range(70):
        value = {"k": value}
    carol["nested"] = value
    await eventually(lambda: carol.errors, what="carol's refused update")
    assert "IAvicenne.max_shared_depth" in str(carol.errors[0])
    await eventually(lambda: carol.to_py() == alice.to_py(), what="carol's copy back to the room's")
    assert "nested" not in alice


def level_by_level(levels: int) -> list[bytes]:
    """The updates of a client that nests one map per update, each in the last one's map
    (`deep`, then `k`, `k`...): each update alone is 2 levels deep, the document `levels` + 1."""
    doc: pycrdt.Doc = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    current = doc.get(p.SHARED_ROOT, type=pycrdt.Map)
    for level in range(levels):
        inner: pycrdt.Map[Any] = pycrdt.Map()
        current["deep" if level == 0 else "k"] = inner
        current = inner
    return updates


def test_the_documents_depth_is_kept_as_updates_come() -> None:
    updates = level_by_level(100)
    assert max(update_depth(update) for update in updates) == 2  # each passes alone
    depths = DocumentDepth()
    for update in updates[:63]:  # the root and 63 maps: 64 levels
        checked = check_depth(update, 64)
        depths.add(checked.items, depths.check(checked, 64))
    with pytest.raises(p.ProtocolError) as refused:
        depths.check(check_depth(updates[63], 64), 64)
    assert (refused.value.code, refused.value.fields["option"]) == (p.ErrorCode.LIMIT_EXCEEDED, "max_shared_depth")
    # what hangs off items the document does not have cannot be measured: refused
    with pytest.raises(p.ProtocolError, match="does not have") as dangling:
        DocumentDepth().check(check_depth(updates[5], 64), 64)
    assert dangling.value.code == p.ErrorCode.INVALID_FIELD
    # read from a whole document, the depths are the same as kept update by update
    whole: pycrdt.Doc = pycrdt.Doc()
    for update in updates[:63]:
        whole.apply_update(update)
    writer = check_depth(updates[0], 64).items[0].client
    read = DocumentDepth.of(whole.get_update())
    assert read.parent_depth((writer, 62)) == depths.parent_depth((writer, 62)) == 63
    text: pycrdt.Doc = pycrdt.Doc()
    typed = text.get("t", type=pycrdt.Text)
    for _ in range(200):  # consecutive items of one depth: one range, not 200
        typed += "ab"
    assert len(DocumentDepth.of(text.get_update())._ranges[text.client_id][0]) == 1


async def test_a_document_built_deeper_update_by_update_stops_at_the_bound(deployment: Deployment, opened: list[Any]) -> None:
    """bob nests a map in his last one, an update at a time: each update alone is 2 levels
    (within any bound), the document they make 17,000 if nothing stops it."""
    room = "s-level-by-level"
    alice = await open_kernel(deployment, opened, "alice", room)
    alice["notes"] = {"plan": [1, 2, 3]}
    await eventually(lambda: alice.is_synced and not alice._pending, what="alice's notes sent")
    bob = await deployment.socket("bob", "bob")
    await bob.send({"type": p.JOIN_ROOM, "room": room})
    await bob.expect(p.ROOM_JOINED)

    refusal: dict[str, Any] = {}
    accepted = 0
    updates = level_by_level(100)
    for level, update in enumerate(updates, 1):
        for attempt in range(100):  # rate-limited (shared_cpu_per_second): sent again, as an attacker would
            await bob.send(update_frame(room, update, f"level-{level}-{attempt}"))
            reply = await answer(bob, f"level-{level}-{attempt}")
            if reply.get("code") != p.ErrorCode.RATE_LIMITED:
                break
            await bob.silent(0.2)
        if reply["type"] != p.ACK:
            refusal = reply
            break
        accepted = level
    assert accepted == 63, (accepted, refusal)  # the root and 63 maps: 64 levels
    assert (refusal["code"], refusal["option"], refusal["limit"]) == (p.ErrorCode.LIMIT_EXCEEDED, "max_shared_depth", 64)
    assert "IAvicenne.max_shared_depth" in refusal["message"] and refusal["room"] == room
    # the next level, built on the refused one: the server does not have what it hangs off
    await bob.send(update_frame(room, updates[64], "on-refused"))
    reply = await answer(bob, "on-refused")
    assert (reply["type"], reply["code"]) == (p.ERROR, p.ErrorCode.INVALID_FIELD), reply

    # alice's document is whole, and 64 levels deep at most, for her and for a newcomer
    carol = await open_kernel(deployment, opened, "carol", room)
    await eventually(lambda: "deep" in alice and carol.to_py() == alice.to_py(), what="alice and carol in step")
    assert carol.to_py()["notes"] == {"plan": [1.0, 2.0, 3.0]}
    value: Any = carol.to_py()
    levels = 1
    while isinstance(value, dict) and ("deep" in value or "k" in value):
        value, levels = value.get("deep", value.get("k")), levels + 1
    assert levels == 64


async def test_with_the_bound_lifted_a_deep_document_is_kept_and_the_clients_survive_it(
    lifted: Deployment, opened: list[Any]
) -> None:
    """The attack of the issue where an operator allows it: the server keeps the document, a
    kernel converts, shows and prints it (pycrdt's own `to_py` would kill the kernel)."""
    room = "s-lifted"
    alice = await lifted.socket("alice", "alice")
    await alice.send({"type": p.JOIN_ROOM, "room": room})
    await alice.expect(p.ROOM_JOINED)
    await alice.send(update_frame(room, nested_maps(17_000), "deep"))
    assert (await answer(alice, "deep"))["type"] == p.ACK
    await alice.send(update_frame(room, nested_arrays(LIFTED + 1), "deeper"))
    assert (await answer(alice, "deeper"))["option"] == "max_shared_depth"

    # bob's kernel: another process, as a notebook's would be (a crash there is its exit code)
    kernel = textwrap.dedent(f"""
        import asyncio
        from iavicenne import RoomClient
        from iavicenne.shared import share

        async def main():
            client = await RoomClient.connect(url={lifted.server("bob").url!r}, token="bob-token", user_id="bob")
            state = share(await client.join({room!r}))
            changes = []
            state.observe(lambda change: changes.append(sorted(change.keys)))
            await state.synced(30)
            value = state.to_py()
            for _ in range(17_000 - 1):
                value = value["deep"] if "deep" in value else value["k"]
            print(value)
            print(changes[-1])
            print(state)
            print(len(str(state.to_py(max_depth=100))))
            await client.close()

        asyncio.run(main())
    """)
    printed = subprocess.run([sys.executable, "-c", kernel], capture_output=True, text=True, timeout=120, check=False)
    assert printed.returncode == 0, (printed.returncode, printed.stderr[-2000:])
    leaf, keys, shown, length, *_ = printed.stdout.splitlines()
    assert leaf == "{'k': {'leaf': 'bottom'}}"  # converted all the way down
    assert keys == "['deep']"  # its observer was told
    assert shown.startswith("<SharedState 's-lifted' {'deep': {'k': {'k'") and "…" in shown and len(shown) < 1000
    assert 100 * len("{'k': ") < int(length) < 120 * len("{'k': ")
