"""The notebook widgets' Python behaviour (`iavicenne.room`, `iavicenne.panels`, `iavicenne.share`)
with real client objects against pytest-jupyter's in-process Jupyter server.

The sessions run on the test's event loop, as they run on a kernel's loop in a notebook;
widgets are real ipywidgets objects (without a kernel their comms go nowhere, their
Python state is what we check: what a front-end would render).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import room_support

from iavicenne import Backoff, Message, RoomClient, ServerInfo, join
from iavicenne.room import RoomSession

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def server(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> ServerInfo:
    """The in-process server (`http_server_client` makes it listen), as a kernel would find it."""
    return ServerInfo(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token)


async def eventually(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """`room_support.eventually` with this module's shorter default: one process's panels update quickly."""
    await room_support.eventually(condition, timeout, what)


def joined(opened: list[Any], server: ServerInfo, room: str, user_id: str, **kwargs: Any) -> RoomSession:
    session = join(room, user_id=user_id, url=server.url, token=server.token, display=False, backoff=FAST, **kwargs)
    opened.append(session)
    return session


def member_names(session: RoomSession) -> list[str]:
    return [row.user_id for row in session.panel.members_box.children]


# -- joining and presence ------------------------------------------------------------------


async def test_join_returns_at_once_and_the_panel_goes_online_with_the_members(server: ServerInfo, opened: list[Any]) -> None:
    alice = joined(opened, server, "analysis", "alice", state={"notebook": "eda.ipynb"})
    assert alice.state == "connecting" and "connecting" in alice.panel.header.value
    assert await alice is alice  # awaiting the session waits for the join
    assert alice.state == "online" and "online" in alice.panel.header.value
    assert member_names(alice) == ["alice"]
    assert alice.members["alice"]["state"] == {"status": "available", "notebook": "eda.ipynb"}

    bob = joined(opened, server, "analysis", "bob")
    await bob.ready()
    await eventually(lambda: member_names(alice) == ["alice", "bob"], what="bob in alice's panel")
    assert member_names(bob) == ["bob", "alice"]  # you first
    assert "(you)" in bob.panel.rows["bob"].label.value
    assert bob.panel.rows["bob"].peer_button.layout.display == "none"  # no link with yourself
    assert alice.panel.rows["bob"].peer_button.layout.display is None
    assert "2 members" in alice.panel.header.value

    bob.set_status("busy")
    await eventually(lambda: "busy" in alice.panel.rows["bob"].label.value, what="bob's status")
    assert alice.members["bob"]["state"]["status"] == "busy"

    await bob.leave()
    assert bob.state == "closed" and "closed" in bob.panel.header.value
    await eventually(lambda: member_names(alice) == ["alice"], what="bob gone")
    assert "bob left" in alice.panel.conversation.value


async def test_messages_reach_the_log_callbacks_and_streams(server: ServerInfo, opened: list[Any]) -> None:
    alice = await joined(opened, server, "chat", "alice")
    bob = await joined(opened, server, "chat", "bob")
    got: list[Message] = []
    bob.on_message(got.append)
    stream = bob.stream("message")

    ack = await alice.send("hello <b>bob</b>")
    assert ack["seq"] >= 1
    first = await stream.get(5)
    assert (first.user_id, first.text, first.seq) == ("alice", "hello <b>bob</b>", ack["seq"])
    assert got == [first] and bob.messages[-1] is first
    # peers' text is escaped, never markup
    assert "hello &lt;b&gt;bob&lt;/b&gt;" in bob.panel.conversation.value and "<b>bob</b>" not in bob.panel.conversation.value

    # the panel's input box and Send button
    alice_inbox = alice.stream("message")
    bob.panel.composer.text.value = "hi alice"
    bob.panel.composer.button.click()
    assert bob.panel.composer.text.value == ""
    while (reply := await alice_inbox.get(5)).user_id != "bob":
        pass
    assert reply.text == "hi alice"

    await bob.direct("alice", "just for you")
    direct = await alice_inbox.get(5)
    assert direct.direct and direct.text == "just for you"
    # every session here uses the server's token, the owner's identity: beside bob's name, whose it is
    assert bob.client is not None
    assert f"bob (@{bob.client.identity['username']}) → you" in alice.panel.conversation.value
    stream.close()
    alice_inbox.close()


async def test_an_error_in_a_callback_is_shown_in_the_panel(server: ServerInfo, opened: list[Any]) -> None:
    alice = await joined(opened, server, "errors", "alice")
    bob = await joined(opened, server, "errors", "bob")

    def broken(message: Message) -> None:
        raise ZeroDivisionError("my callback is broken")

    async def broken_later(message: Message) -> None:
        await asyncio.sleep(0)
        raise KeyError("async too")

    seen: list[str] = []
    bob.on_message(broken)
    bob.on_message(broken_later)
    bob.on_message(lambda m: seen.append(m.text))  # later callbacks still run
    await alice.send("boom")
    await eventually(lambda: len(bob.errors) == 2, what="both errors recorded")
    assert seen == ["boom"]
    area = bob.panel.errors
    assert area.layout.display is None  # shown
    assert "ZeroDivisionError" in area.text.value and "my callback is broken" in area.text.value
    assert "KeyError" in area.text.value and "broken_later" in area.text.value
    area.clear_button.click()
    assert area.layout.display == "none" and area.text.value == ""
    assert bob.online  # the connection did not suffer


async def test_a_wrong_token_is_shown_and_raised(server: ServerInfo, opened: list[Any]) -> None:
    session = join("r", user_id="eve", url=server.url, token="wrong", display=False)
    opened.append(session)
    with pytest.raises(Exception, match="403"):
        await session.ready()
    assert session.state == "offline"
    assert "refused the token" in session.panel.errors.text.value
    assert "offline" in session.panel.header.value


async def test_a_send_before_the_join_completes_is_carried_out(server: ServerInfo, opened: list[Any]) -> None:
    alice = await joined(opened, server, "early", "alice")
    inbox = alice.stream("message")
    bob = joined(opened, server, "early", "bob")
    early = bob.send("sent before joined")  # from a cell, right after join()
    ack = await early
    assert ack["type"] == "ack"
    assert (await inbox.get(5)).text == "sent before joined"


async def test_running_the_cell_again_replaces_the_old_session(server: ServerInfo, opened: list[Any]) -> None:
    first = await joined(opened, server, "again", "alice")
    bob = await joined(opened, server, "again", "bob")
    await first.set_status("busy")
    second = await joined(opened, server, "again", "alice")  # the same cell, run again
    assert first.state == "closed" and "replaced by a newer join" in first.panel.header.value
    assert first.errors == [] and first.panel.errors.text.value == ""  # a replacement is not an error
    assert second.online and sorted(second.members) == ["alice", "bob"]
    # the old connection left before the new one joined: one connection, the status kept
    assert second.members["alice"]["connections"] == 1 and "connections" not in second.panel.rows["alice"].label.value
    assert second.presence["status"] == "busy"
    await eventually(lambda: bob.members["alice"]["state"].get("status") == "busy", what="bob sees alice's status")


async def test_the_panel_shows_reconnecting_then_online(server: ServerInfo, opened: list[Any]) -> None:
    alice = await joined(opened, server, "flaky", "alice")
    bob = await joined(opened, server, "flaky", "bob")
    states: list[str] = []
    alice.on("state", states.append)
    assert alice.client is not None and alice.client._ws is not None
    alice.client._ws.close()  # the network drops
    await eventually(lambda: "reconnecting" in states, what="reconnecting shown")
    await eventually(lambda: alice.online, what="online again")
    assert "online" in alice.panel.header.value
    inbox = alice.stream("message")
    await bob.send("after the drop")
    assert (await inbox.get(5)).text == "after the drop"


async def test_a_python_client_and_a_session_see_each_other(server: ServerInfo, opened: list[Any]) -> None:
    """A member that is a plain `RoomClient` (a script, another kernel) shows in the panel."""
    alice = await joined(opened, server, "mixed", "alice")
    script = await RoomClient.connect(server.url, server.token, user_id="script", backoff=FAST)
    opened.append(script)
    room = await script.join("mixed", state={"status": "batch job"})
    await eventually(lambda: "script" in alice.panel.rows, what="script in panel")
    assert "batch job" in alice.panel.rows["script"].label.value
    inbox = alice.stream("message")
    await room.send("from a script")
    assert (await inbox.get(5)).user_id == "script"
    # a script without a peer of its own takes no links: its button says so
    await alice.peer_network()
    assert alice.panel.rows["script"].peer_button.disabled
    assert "takes no peer links" in alice.panel.rows["script"].peer_button.tooltip


async def test_background_calls_return_a_pending_with_a_readable_repr(server: ServerInfo, opened: list[Any]) -> None:
    alice = await joined(opened, server, "pending", "alice", peers=False)
    sending = alice.send("hi")
    assert repr(sending) == "<sending a message: pending>"
    await sending
    assert repr(sending) == "<sending a message: done>" and sending.result()["seq"] >= 1
    failing = alice.direct("nobody", "hello?")
    with pytest.raises(Exception, match=r"nobody|not in"):
        await failing
    assert repr(failing).startswith("<sending a direct message to nobody: failed:")
    assert "sending a direct message to nobody failed" in alice.panel.errors.text.value  # shown even if not awaited


async def test_widget_updates_from_another_thread_run_on_the_loop(server: ServerInfo, opened: list[Any]) -> None:
    """Only the loop's thread touches widgets: an update from elsewhere is handed over."""
    import threading

    alice = await joined(opened, server, "threads", "alice", peers=False)
    seen: list[int] = []
    original = alice.panel.show_state

    def spy(*args: Any, **kwargs: Any) -> None:
        seen.append(threading.get_ident())
        original(*args, **kwargs)

    alice.panel.show_state = spy
    worker = threading.Thread(target=alice._connection.set_state, args=("reconnecting", "from a thread"))
    worker.start()
    worker.join()
    await eventually(lambda: seen, what="the update ran")
    assert seen == [threading.get_ident()]
    assert "from a thread" in alice.panel.header.value
    # a send from another thread is handed to the loop too (tests/client/test_panel.py calls every method so)
    sending = await asyncio.to_thread(alice.send, "from a thread")
    assert (await sending)["seq"] >= 1


def test_join_outside_a_loop_says_how_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="notebook cell"):
        join("r", display=False)


# -- sharing: DataFrames and files, never pickle ----------------------------------------------


def sales() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "region": pd.Categorical(["north", "south", "north"]),
            "amount": [12.5, 7.25, None],
            "units": pd.array([3, None, 5], dtype="Int64"),
            "day": pd.to_datetime(["2026-01-02", "2026-01-03", "2026-01-04"]),
            "note": ["a", "b", "ç"],
        },
        index=pd.Index([101, 102, 103], name="order"),
    )


@pytest.mark.parametrize("format", ["arrow", "parquet"])
def test_a_dataframe_round_trips_with_its_index_and_dtypes(format: str) -> None:
    import pandas as pd

    from iavicenne import share

    df = sales()
    packed = share.pack_dataframe(df, "sales", format)
    assert share.is_shared(packed) and not share.is_shared(b"plain bytes") and not share.is_shared("text")
    shared = share.unpack(packed)
    assert (shared.kind, shared.name, shared.header["rows"], shared.header["format"]) == ("dataframe", "sales", 3, format)
    pd.testing.assert_frame_equal(shared.dataframe(), df)
    assert "sales (DataFrame 3×5" in share.describe(shared.header)


def test_a_pickled_arrow_extension_type_is_refused() -> None:
    """CVE-2023-47248's vector: a column marked as a Python (pickled) extension type."""
    import io

    import pyarrow as pa

    from iavicenne import share

    marked = pa.field(
        "x",
        pa.binary(),
        metadata={b"ARROW:extension:name": b"arrow.py_extension_type", b"ARROW:extension:metadata": b"cos\nsystem\n"},
    )
    table = pa.table({"x": [b"1"]}).cast(pa.schema([marked]))
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(share.ShareError, match="pickled"):
        share.unpack(share.pack(share.DATAFRAME, "evil", sink.getvalue(), format="arrow")).dataframe()


def test_malformed_shared_objects_are_refused() -> None:
    from iavicenne import share

    good = share.pack(share.FILE, "a.txt", b"hello")
    with pytest.raises(share.ShareError, match="truncated"):
        share.unpack(good[:-1])
    with pytest.raises(share.ShareError, match="bad header length"):
        share.unpack(share.MAGIC + (10**6).to_bytes(4, "big") + b"{}")
    with pytest.raises(share.ShareError, match="unknown kind"):
        share.unpack(share.pack("pickle", "x", b""))
    with pytest.raises(share.ShareError, match="unknown DataFrame format"):
        share.unpack(share.pack(share.DATAFRAME, "x", b"", format="pickle")).dataframe()
    with pytest.raises(share.ShareError, match="cannot read"):
        share.unpack(share.pack(share.DATAFRAME, "x", b"not arrow", format="arrow")).dataframe()


def test_a_received_file_stays_in_the_folder_the_receiver_chose(tmp_path: Any) -> None:
    from iavicenne import share

    (tmp_path / "report.csv").write_text("a,b\n1,2\n")
    shared = share.unpack(share.pack_file(tmp_path / "report.csv"))
    inbox = tmp_path / "inbox"
    first = share.save_file(shared, inbox)
    second = share.save_file(shared, inbox)  # kept, not overwritten
    assert (first.name, second.name) == ("report.csv", "report (1).csv")
    assert first.read_text() == second.read_text() == "a,b\n1,2\n"
    evil = share.unpack(share.pack(share.FILE, "../../../etc/cron.d/x", b"*"))
    assert share.save_file(evil, inbox).parent == inbox
    assert share.safe_file_name("..\\..\\win.ini") == "win.ini" and share.safe_file_name("..") == "received"


# -- peer links from the panel -------------------------------------------------------------


async def pair_of_sessions(
    opened: list[Any], server: ServerInfo, room: str, sender: str = "alice"
) -> tuple[RoomSession, RoomSession]:
    """`sender` (alice) and bob in `room`, both reachable for peer links on loopback."""
    alice = await joined(opened, server, room, sender, loopback=True)
    bob = await joined(opened, server, room, "bob", loopback=True)
    await alice.wait_for_member("bob")
    return alice, bob


async def test_the_member_button_opens_a_peer_link_both_sides_see(server: ServerInfo, opened: list[Any]) -> None:
    alice, bob = await pair_of_sessions(opened, server, "p2p")
    await bob.peer_network()  # bob's kernel can take links
    await alice.peer_network()
    await eventually(lambda: not alice.panel.rows["bob"].peer_button.disabled, what="bob reachable")
    alice.panel.rows["bob"].peer_button.click()
    link = alice.peers["bob"]
    assert link.panel in alice.panel.peers_box.children
    await link.ready(30)
    assert link.state == "open" and "open" in link.panel.header.value
    await eventually(lambda: "alice" in bob.peers and bob.peers["alice"].state == "open", 30, "bob's side of the link")
    back = bob.peers["alice"]
    assert back.panel in bob.panel.peers_box.children  # an incoming link gets its panel too

    await link.send("hello over the data channel")
    await link.send({"numbers": [1, 2, 3], "unicode": "ç"})
    await link.send(b"\x00\x01raw")
    assert await back.receive(10) == "hello over the data channel"
    assert await back.receive(10) == {"numbers": [1, 2, 3], "unicode": "ç"}
    assert await back.receive(10) == b"\x00\x01raw"
    assert "hello over the data channel" in back.panel.conversation.value
    assert "(5 B of bytes)" in back.panel.conversation.value

    # the peer panel's own input box
    got: list[Any] = []
    link.on_message(got.append)
    back.panel.composer.text.value = "typed in bob's peer panel"
    back.panel.composer.button.click()
    assert await link.receive(10) == "typed in bob's peer panel"
    assert got == ["typed in bob's peer panel"]


async def test_a_dataframe_and_a_file_travel_peer_to_peer_with_progress_bars(
    server: ServerInfo, opened: list[Any], tmp_path: Any
) -> None:
    import numpy as np
    import pandas as pd

    alice, bob = await pair_of_sessions(opened, server, "share")
    rows = 200_000
    big = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": np.random.default_rng(1).random(rows),
            "tag": pd.Categorical(np.where(np.arange(rows) % 2, "odd", "even")),
        }
    )
    to_bob = alice.peer("bob")
    namespace: dict[str, Any] = {}
    receiver = bob.peer("alice")
    receiver.store_dataframes(namespace)

    sent = to_bob.send_dataframe(big, "measurements")
    received = await receiver.receive_dataframe(60)
    await sent
    pd.testing.assert_frame_equal(received, big)
    assert namespace["measurements"] is not None and namespace["measurements"].shape == (rows, 3)
    assert "stored as `measurements`" in receiver.panel.conversation.value
    (out_row,) = to_bob.panel.transfers.children
    (in_row,) = receiver.panel.transfers.children
    assert out_row.bar.value == in_row.bar.value == 1.0
    assert out_row.bar.bar_style == in_row.bar.bar_style == "success"
    assert "measurements (DataFrame 200000×3, arrow)" in in_row.label.value and in_row.status.value == "received"

    small = pd.DataFrame({"a": [1, 2]})
    await to_bob.send_dataframe(small, "tiny", format="parquet")
    pd.testing.assert_frame_equal(await receiver.receive_dataframe(10), small)

    report = tmp_path / "report.csv"
    report.write_bytes(b"region,amount\nnorth,12\n" * 5000)
    await to_bob.send_file(report)
    saved = await receiver.receive_file(tmp_path / "inbox", 30)
    assert saved == tmp_path / "inbox" / "report.csv" and saved.read_bytes() == report.read_bytes()
    assert receiver.messages == []  # shared objects never land among the messages


async def test_an_error_in_a_peer_callback_shows_in_the_peer_panel(server: ServerInfo, opened: list[Any]) -> None:
    import pandas as pd

    alice, bob = await pair_of_sessions(opened, server, "peer-errors")
    receiver = bob.peer("alice")

    def broken(name: str, df: Any) -> None:
        raise ValueError(f"cannot handle {name}")

    receiver.on_dataframe(broken)
    await alice.peer("bob").send_dataframe(pd.DataFrame({"a": [1]}), "prices")
    await eventually(lambda: receiver.errors, 20, "the error recorded")
    assert "cannot handle prices" in receiver.panel.errors.text.value
    assert receiver.panel.errors.layout.display is None
    pd.testing.assert_frame_equal(await receiver.receive_dataframe(5), pd.DataFrame({"a": [1]}))  # still delivered


async def test_when_the_peer_leaves_the_link_shows_closed_and_waits_end(server: ServerInfo, opened: list[Any]) -> None:
    alice, bob = await pair_of_sessions(opened, server, "leaving")
    link = await alice.peer("bob").ready(30)
    await eventually(lambda: "alice" in bob.peers, 30, "bob's side")
    await bob.leave()
    await eventually(lambda: link.state == "closed", 20, "alice's link closed")
    assert "closed" in link.panel.header.value and "link closed" in link.panel.conversation.value
    with pytest.raises(Exception, match="bob"):
        await link.receive(5)


# -- a hostile peer: bounded DataFrames, variables kept, strings escaped ------------------------

MiB = 1 << 20
HOSTILE = '<img src=x onerror="window.iavPwned=1">'


def parquet_of_zeros(rows: int) -> bytes:
    """The issue's figure: 100 million int64 zeros are a 445 KiB Parquet file and 763 MiB once
    decoded. Written a million rows at a time, so the test itself stays small."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    chunk = pa.table({"z": pa.array(np.zeros(1_000_000, dtype=np.int64))})
    with pq.ParquetWriter(sink, chunk.schema, compression="zstd") as writer:
        for _ in range(rows // 1_000_000):
            writer.write_table(chunk)
    return sink.getvalue()


@pytest.mark.parametrize("limit", ["rows", "bytes"])
async def test_a_445_kib_parquet_share_that_decodes_to_763_mib_is_refused(
    server: ServerInfo, opened: list[Any], limit: str
) -> None:
    from peer_worker import MemoryWatch

    from iavicenne import share

    options = {} if limit == "rows" else {"max_dataframe_rows": 10**9}  # then the bytes bound answers
    mallory = await joined(opened, server, f"bomb-{limit}", "mallory", loopback=True)
    bob = await joined(opened, server, f"bomb-{limit}", "bob", loopback=True, **options)
    await mallory.wait_for_member("bob")
    bomb = parquet_of_zeros(100_000_000)
    assert len(bomb) < 500 * 1024
    receiver = bob.peer("mallory")
    namespace: dict[str, Any] = {}
    receiver.store_dataframes(namespace)
    to_bob = await mallory.peer("bob").ready(30)
    assert to_bob.link is not None
    with MemoryWatch() as memory:
        # the header lies ("rows": 3); what counts is the file's own footer
        await to_bob.link.send(share.pack(share.DATAFRAME, "zeros", bomb, format="parquet", rows=3, columns=["z"]))
        option = "max_dataframe_rows" if limit == "rows" else "max_dataframe_bytes"
        with pytest.raises(share.ShareError, match="refused before decoding") as refused:
            await receiver.receive_dataframe(30)
        await eventually(lambda: receiver.errors, 10, "the refusal shown")
    assert option in str(refused.value)
    assert memory.growth < 100 * MiB, f"the receiver grew by {memory.growth / MiB:.0f} MiB"
    assert namespace == {}
    assert option in receiver.panel.errors.text.value


async def test_store_dataframes_does_not_rebind_a_name_already_used(server: ServerInfo, opened: list[Any]) -> None:
    import pandas as pd

    mallory, bob = await pair_of_sessions(opened, server, "rebind", sender="mallory")
    receiver = bob.peer("mallory")
    mine = object()
    namespace: dict[str, Any] = {"pd": pd, "room": bob, "sales": mine}
    receiver.store_dataframes(namespace)
    sender = mallory.peer("bob")
    for number, name in enumerate(("pd", "room", "sales", "forecast", "forecast")):
        await sender.send_dataframe(pd.DataFrame({"n": [number]}), name)
    for _ in range(5):
        await receiver.receive_dataframe(30)  # each one still arrives
    await eventually(lambda: receiver.panel.conversation.value.count("stored as `forecast`") == 2, 10, "forecast stored twice")
    assert namespace["pd"] is pd and namespace["room"] is bob and namespace["sales"] is mine
    assert namespace["forecast"]["n"].tolist() == [4]  # the second one replaced the first: both were the peer's
    log = receiver.panel.conversation.value
    assert "not stored as `pd`: that name is already used here" in log and "overwrite=True" in log

    receiver.store_dataframes(namespace, overwrite=True)  # asked for
    await sender.send_dataframe(pd.DataFrame({"n": [1]}), "sales")
    await receiver.receive_dataframe(30)
    await eventually(lambda: namespace["sales"] is not mine, 10, "sales replaced when asked")


async def test_a_hostile_peers_strings_are_text_in_every_panel(server: ServerInfo, opened: list[Any], tmp_path: Any) -> None:
    """The Python side of tests/lab/test_lab_browser.py's check: each HTML value holds the
    hostile string escaped, never as markup."""
    from iavicenne import share

    mallory = await joined(opened, server, "xss", "mallory", loopback=True, state={"notebook": HOSTILE + ".ipynb"})
    bob = await joined(opened, server, "xss", "bob", loopback=True)
    await bob.wait_for_member("mallory")
    mallory.set_status(HOSTILE)
    await mallory.send(HOSTILE)
    await bob.wait_for_member("mallory", lambda m: m["state"].get("status") == HOSTILE)
    await bob.wait_for_message(lambda m: m.user_id == "mallory")
    to_bob = await mallory.peer("bob").ready(30)
    assert to_bob.link is not None
    await to_bob.send(HOSTILE)
    (tmp_path / "f.csv").write_text("a\n1\n")
    await to_bob.send_file(tmp_path / "f.csv", name=HOSTILE + ".csv")
    await to_bob.link.send(share.pack(HOSTILE, HOSTILE, b""))  # refused: its error text quotes the kind
    receiver = bob.peer("mallory")
    await receiver.receive(30)
    await receiver.receive_file(tmp_path / "inbox", 30)
    await eventually(lambda: receiver.errors, 10, "the malformed share reported")

    values = [bob.panel.rows["mallory"].label.value, bob.panel.conversation.value]
    values += [receiver.panel.conversation.value, receiver.panel.errors.text.value]
    values += [row.label.value for row in receiver.panel.transfers.children]
    escaped = "&lt;img src=x onerror=&quot;window.iavPwned=1&quot;&gt;"
    for value in values:
        assert "<img" not in value, value
        assert escaped in value, value
