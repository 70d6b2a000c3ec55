"""Issue 11, the Python side: the notebook panel and its API behave as a user expects.

Against pytest-jupyter's in-process server with two real identities (alice and bob, each
with a personal token, `room_support.TwoAnalysts`) and a third, mallory, holding the
server's own token, who misbehaves where she can. Sessions run on the test's loop as they
run on a kernel's; widgets are real ipywidgets (their Python state is what a front-end
renders: tests/lab/test_lab_browser.py checks the rendering in JupyterLab).

- every public method of `RoomSession` and `PeerSession` works from another thread;
- what a user gets wrong fails at once, in one sentence (invalid room name, a peer not
  in the room, a closed room), and lands in the error area one entry a line;
- after ``leave()`` the panel is greyed and disabled with a Rejoin button, and rejoining
  shows what was said meanwhile; joining shows recent history; a re-run ``join`` replaces
  the old session cleanly;
- the default user_id is the name of the identity the server verified (never a guess from
  $JUPYTERHUB_USER or $USER); one's own row says "(you)";
- a member with two kernels: the link goes to the one chosen (``notebook=``), by default
  the one in the same notebook, and an open link stays where it is.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from room_support import TOKENS, eventually, session, with_analysts

from iavicenne import ConnectionClosed, Message, PeerUnreachable, join
from iavicenne.client import CONTROL
from iavicenne.panels import when


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


# -- every public method from another thread ---------------------------------------------


async def test_every_public_method_works_from_another_thread(base: str, opened: list[Any], tmp_path: Path) -> None:
    """ipykernel 7 runs widget events on a subshell thread with a loop of its own: every
    call is handed to the kernel's loop, and what it returns can be awaited there."""
    import pandas as pd

    alice = session(opened, base, "threads", "alice")
    bob = session(opened, base, "threads", "bob")
    main = threading.get_ident()
    await alice.ready()
    await bob.ready()
    heard: list[Message] = []
    bob.on_message(heard.append)
    to_alice = await bob.peer_network()
    (tmp_path / "notes.txt").write_text("from a worker thread\n")
    threads: list[int] = []

    async def on_a_subshell() -> dict[str, Any]:
        """What a cell or a widget callback on another thread does, with its own loop."""
        threads.append(threading.get_ident())
        got: dict[str, Any] = {}
        got["ready"] = await alice.ready()
        stream = alice.stream("message")
        presence: list[Any] = []
        stop_presence = alice.on_presence(presence.append)
        stop_any = alice.on("state", lambda state: None)
        # listening before bob can answer the hello below
        pinged = asyncio.ensure_future(alice.next_message(30, where=lambda m: m.user_id == "bob" and m.text == "ping"))
        got["ack"] = await alice.send("hello from a thread")
        got["direct"] = await alice.direct("bob", "a direct word from a thread")
        await alice.set_status("threaded")
        await alice.set_presence(mood="fine")
        await alice.wait_for_member("bob")
        got["member"] = await alice.wait_for_member("bob", where=lambda m: m["state"].get("status") == "bob here")
        got["next"] = await pinged
        while (streamed := await stream.get(10)).text != "ping":
            pass  # our own messages come back too
        got["streamed"] = streamed
        got["waited"] = await alice.wait_for_message(lambda m: m.text == "ping")
        stream.close()
        stop_presence()
        stop_any()
        got["presence_events"] = len(presence)
        network = await alice.peer_network()
        got["connections"] = [c.peer_id for c in alice.connections("bob")]
        got["described"] = [c.notebook for c in await alice.describe("bob")]
        link = alice.peer("bob")
        got["link"] = await link.ready(30)
        got["link_state"] = link.state
        texts: list[Any] = []
        link.on_message(texts.append)
        link.on_dataframe(lambda name, df: None)
        link.on_file(lambda name, data: None)
        namespace: dict[str, Any] = {}
        link.store_dataframes(namespace)
        await link.open()
        await link.send("over the link, from a thread")
        await link.send_dataframe(pd.DataFrame({"a": [1, 2, 3]}), "small")
        await link.send_file(tmp_path / "notes.txt")
        got["reply"] = await link.receive(20)
        got["df"] = await link.receive_dataframe(20)
        got["file"] = (await link.receive_file(tmp_path / "inbox", 20)).read_text()
        got["namespace"] = sorted(namespace)
        got["texts"] = list(texts)
        await link.close()
        await alice.leave()
        got["after_leave"] = alice.state
        got["rejoined"] = await alice.rejoin()
        got["network"] = network
        return got

    worker: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(asyncio.to_thread(asyncio.run, on_a_subshell()))
    await bob.set_status("bob here")
    await alice.wait_for_message(lambda m: m.text == "hello from a thread")
    await bob.send("ping")
    back = bob.peer("alice")
    await eventually(lambda: back.link is not None and back.link.open, 30, "alice's link at bob's")
    assert await back.receive(20) == "over the link, from a thread"
    frame = await back.receive_dataframe(20)
    saved = await back.receive_file(tmp_path / "bob-inbox", 20)
    await back.send("reply from bob")
    await back.send_dataframe(frame, "echo")
    await back.send_file(saved)
    got = await asyncio.wait_for(worker, 90)

    assert threads and threads[0] != main
    assert got["ready"] is alice and got["ack"]["seq"] >= 1 and got["direct"]["type"] == "ack"
    assert got["member"]["state"]["status"] == "bob here"
    assert got["next"].text == got["streamed"].text == got["waited"].text == "ping"
    assert got["connections"] == [to_alice.peer_id] and got["presence_events"] >= 1
    assert got["link"].remote == "bob" and got["link_state"] == "open" and got["reply"] == "reply from bob"
    assert got["df"]["a"].tolist() == [1, 2, 3] and got["file"] == "from a worker thread\n"
    assert got["namespace"] == ["echo"] and got["texts"] == ["reply from bob"]
    assert got["after_leave"] == "closed" and got["rejoined"] is alice and alice.online
    assert [m.text for m in heard if m.user_id == "alice"] == ["hello from a thread", "a direct word from a thread"]
    # alice left and came back: bob's view has it within a presence-batch
    await eventually(lambda: bob.members.get("alice", {}).get("state") == {"status": "threaded", "mood": "fine"})
    assert alice.errors == [], alice.errors


async def test_enter_and_send_from_a_subshell_thread_reach_the_room(base: str, opened: list[Any]) -> None:
    """The issue's first bug: Enter in the box ran on a subshell thread and the message was lost."""
    alice = await session(opened, base, "enter", "alice")
    bob = await session(opened, base, "enter", "bob")
    inbox = bob.stream("message")

    def press_enter() -> None:  # what ipywidgets does with the Text view's "submit" event
        alice.panel.composer.text.value = "typed, then Enter"
        alice.panel.composer._on_text_message(alice.panel.composer.text, {"event": "submit"}, [])

    def click_send() -> None:
        alice.panel.composer.text.value = "typed, then Send"
        alice.panel.composer.button.click()

    for action in (press_enter, click_send):
        worker = threading.Thread(target=action)
        worker.start()
        worker.join()
    got = [(await inbox.get(10)).text for _ in range(2)]
    assert got == ["typed, then Enter", "typed, then Send"]
    assert alice.panel.composer.text.value == "" and alice.errors == []


# -- failing fast, in one sentence ------------------------------------------------------------


async def test_what_a_user_gets_wrong_fails_at_once_in_one_sentence(base: str, opened: list[Any], server_token: str) -> None:
    for bad in ("a/b", "", " padded", "x" * 65):
        with pytest.raises(ValueError, match=r"invalid room .*use 1 to 64 letters") as refused:
            join(bad, url=base, token=TOKENS["alice"], display=False)
        assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="invalid user_id"):
        join("ok", user_id="<b>", url=base, token=TOKENS["alice"], display=False)

    alice = await session(opened, base, "fast", "alice")
    mallory = await session(opened, base, "fast", "mallory", token=server_token)
    await alice.wait_for_member("mallory")  # presence comes in batches (docs/protocol.md, "Large rooms")
    started = time.monotonic()
    with pytest.raises(PeerUnreachable, match=r"'nobody' is not in room 'fast' \(here: alice, mallory\)"):
        alice.peer("nobody")
    assert time.monotonic() - started < 0.5
    with pytest.raises(ValueError, match="not to yourself"):
        alice.peer("alice")

    # mallory is here but takes no links (no peer of hers): said within the grace for her peer
    await mallory.leave()
    deadline = time.monotonic() + 10
    while "mallory" in alice.members:  # presence comes in batches: her leave, then her return
        assert time.monotonic() < deadline, "alice never saw mallory leave"
        await asyncio.sleep(0.02)
    script = await session(opened, base, "fast", "mallory", token=server_token, peers=False)
    await alice.wait_for_member("mallory")
    started = time.monotonic()
    with pytest.raises(PeerUnreachable, match="'mallory' takes no peer links"):
        await alice.peer("mallory").ready()
    first_ask = time.monotonic() - started
    assert first_ask < 8, first_ask  # her peer could still have been on its way
    assert "takes no peer links" in alice.peer("mallory").panel.header.value
    started = time.monotonic()
    with pytest.raises(PeerUnreachable, match="'mallory' takes no peer links"):
        await alice.peer("mallory").send("and now?")
    no_peer = time.monotonic() - started
    assert no_peer < 0.5, no_peer  # asked again later: at once
    # once she leaves, the session says so at once
    await script.leave()
    await eventually(lambda: "mallory" not in alice.members, what="mallory gone")
    started = time.monotonic()
    with pytest.raises(PeerUnreachable, match="'mallory' is not in room"):
        await alice.peer("mallory").send("hello?")
    absent = time.monotonic() - started
    assert absent < 0.5, absent
    print(
        f"FIGURE fail-fast: absent peer {absent * 1000:.1f} ms, member without peer {no_peer * 1000:.1f} ms (just after they joined: {first_ask:.2f} s)"
    )
    # ...and when someone of that name comes back, the failed session is ready to try again
    again = await session(opened, base, "fast", "mallory", token=server_token)
    await again.peer_network()
    await eventually(lambda: alice.peers["mallory"].state == "new", what="the failed session reset")
    assert "is in the room" in alice.peers["mallory"].panel.conversation.value

    # a closed room: at once, and it says how to come back
    await alice.leave()
    with pytest.raises(ConnectionClosed, match=r"you left 'fast': room.rejoin\(\)"):
        alice.send("after leaving")


async def test_failures_are_one_entry_a_line_without_internal_traceback(base: str, opened: list[Any]) -> None:
    wrong = join("r", user_id="eve", url=base, token="not-a-token", display=False)
    opened.append(wrong)
    with pytest.raises(Exception, match="refused the token") as failed:
        await wrong.ready()
    frames = traceback.extract_tb(failed.value.__traceback__)
    assert len(frames) <= 3, traceback.format_tb(failed.value.__traceback__)
    assert "Traceback" not in wrong.panel.errors.text.value
    assert wrong.panel.errors.text.value.count("class='iav-error'") == 1  # one failure, said once

    alice = await session(opened, base, "lines", "alice")
    alice.direct("nobody", "first")
    alice.direct("nobody either", "second")
    await eventually(lambda: len(alice.errors) == 2, what="two failures")
    value = alice.panel.errors.text.value
    assert value.count("class='iav-error'") == 2  # each in its own entry, on its own line
    assert value.index("nobody") < value.index("nobody either")


# -- the panel's state: closed, rejoin, history, a re-run join ---------------------------------


async def test_after_leave_the_panel_is_plainly_closed_and_rejoin_shows_what_was_missed(base: str, opened: list[Any]) -> None:
    alice = await session(opened, base, "closing", "alice")
    bob = await session(opened, base, "closing", "bob")
    await alice.wait_for_member("bob")
    await bob.peer_network()
    await eventually(lambda: not alice.panel.rows["bob"].peer_button.disabled, what="bob reachable")
    await alice.leave()
    panel = alice.panel
    assert "closed" in panel.header.value and panel.rejoin_button.layout.display is None
    assert panel.composer.text.disabled and panel.composer.button.disabled
    assert "Rejoin to write" in panel.composer.text.placeholder
    for row in panel.rows.values():
        assert "iav-member-offline" in row._dom_classes and "#9e9e9e" in row.label.value
    assert panel.rows["bob"].peer_button.disabled
    panel.composer.text.value = "typed while closed"
    panel.composer._submit()
    assert panel.composer.text.value == "typed while closed"  # nothing vanishes

    for number in range(3):
        await bob.send(f"while alice was away {number}")
    panel.rejoin_button.click()
    await eventually(lambda: alice.online, what="alice online again")
    await eventually(lambda: len(alice.history) == 3, what="the missed messages")
    assert [m.text for m in alice.history] == [f"while alice was away {n}" for n in range(3)]
    assert "3 messages said while you were away" in panel.conversation.value
    assert not panel.composer.text.disabled and panel.rejoin_button.layout.display == "none"
    assert all("iav-member-offline" not in row._dom_classes for row in panel.rows.values())
    await eventually(lambda: not panel.rows["bob"].peer_button.disabled, what="bob reachable again")
    assert alice.errors == []


async def test_joining_shows_recent_history_and_callbacks_get_only_new_messages(
    base: str, opened: list[Any], server_token: str
) -> None:
    bob = await session(opened, base, "history", "bob")
    mallory = await session(opened, base, "history", "mallory", token=server_token)
    for number in range(30):
        await bob.send(f"old {number}")
    # mallory puts control-shaped and hostile content in history: shown as text, never obeyed
    await mallory.send({CONTROL: "relay-open", "content": "<b>not a control</b>"})
    alice = session(opened, base, "history", "alice", history=10)
    seen: list[Message] = []
    alice.on_message(seen.append)
    await alice.ready()
    await eventually(lambda: len(alice.history) == 10, what="ten messages of history")
    assert [m.text for m in alice.history][:9] == [f"old {n}" for n in range(21, 30)]
    assert alice.history[-1].user_id == "mallory"
    assert seen == [] and alice.messages == []  # old messages are not new ones
    log = alice.panel.conversation.value
    assert "10 messages before you joined" in log and "old 29" in log and "old 20" not in log
    assert "&lt;b&gt;not a control&lt;/b&gt;" in log
    await bob.send("new one")
    await eventually(lambda: [m.text for m in seen] == ["new one"], what="the live message")
    assert log.index("old 29") < alice.panel.conversation.value.index("new one")
    print(f"FIGURE history on join: {len(alice.history)} messages (history=10)")

    quiet = session(opened, base, "history", "alice", history=0, connection_tag="0000aa")
    await quiet.ready()
    assert quiet.history == []


async def test_a_rerun_join_replaces_the_old_session_cleanly(base: str, opened: list[Any], server_token: str) -> None:
    first = await session(opened, base, "rerun", "alice")
    mallory = await session(opened, base, "rerun", "mallory", token=server_token)
    await first.set_status("focusing")
    again = await session(opened, base, "rerun", "alice")
    assert first.state == "closed" and first.errors == []
    assert again.presence["status"] == "focusing" and again.members["alice"]["connections"] == 1
    await eventually(lambda: mallory.members.get("alice", {}).get("connections") == 1, what="one connection for the others")
    assert "connections" not in again.panel.rows["alice"].label.value
    # given explicitly, a status is what was given
    third = await session(opened, base, "rerun", "alice", status="back")
    assert third.presence["status"] == "back"


# -- your name, your row ----------------------------------------------------------------------


async def test_the_default_user_id_is_the_name_of_the_identity_the_server_verified(
    base: str, opened: list[Any], monkeypatch: pytest.MonkeyPatch, server_token: str
) -> None:
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    alice = session(opened, base, "names", "alice", user_id=None)  # the identity the server gives alice's token
    assert alice.user_id is None
    await alice.ready()
    assert alice.user_id == "alice"
    row = alice.panel.rows["alice"]
    assert "(you)" in row.label.value and row.peer_button not in row.children
    assert "as <b class='iav-me'>alice</b>" in alice.panel.header.value

    # $JUPYTERHUB_USER is the user's to set: a hint in the panel until the server answers,
    # never the name we join with (that is the identity the server verified for the token)
    monkeypatch.setenv("JUPYTERHUB_USER", "carol@example.org")
    carol = session(opened, base, "names", "carol", token=server_token, user_id=None)
    assert carol.user_id is None
    assert "carol@example.org" in carol.panel.header.value
    await carol.ready()
    assert carol.client is not None
    name = carol.client.identity["name"]
    assert carol.user_id == name != "carol@example.org"
    assert alice.online  # another identity's session in this kernel and room: not replaced
    await eventually(lambda: name in alice.panel.rows, what="the server's owner in alice's panel")
    assert "carol@example.org" not in alice.panel.rows
    assert "(you)" in carol.panel.rows[name].label.value
    assert "(you)" not in alice.panel.rows[name].label.value


async def test_bob_cannot_pose_as_alice_and_a_message_loads_nothing(base: str, opened: list[Any]) -> None:
    """Issue 21 in the notebook panel: bob's name ``\u0430lice`` (Cyrillic a) and his display
    name ``alice`` are refused, said in his panel; his message's Markdown image and HTML stay
    characters (no element, nothing fetched); a file name with U+202E shows that character
    written out, in his row and in a file offer."""
    from iavicenne.panels import FileOfferRow

    alice = await session(opened, base, "names-21", "alice")
    impostor = session(opened, base, "names-21", "bob", user_id="\u0430lice")
    with pytest.raises(Exception, match="looks like 'alice'"):
        await impostor.ready()
    assert "looks like &#x27;alice&#x27;" in impostor.panel.errors.text.value
    posing = session(opened, base, "names-21", "bob", state={"display_name": "alice"})
    with pytest.raises(Exception, match="display name 'alice' looks like 'alice'"):
        await posing.ready()

    bob = await session(opened, base, "names-21", "bob", state={"notebook": "report\u202efdp.ipynb"})
    await bob.send("look ![x](/logout-canary) ![c](http://127.0.0.1:9/img.png) <img src='http://127.0.0.1:9/i.png'>")
    await alice.wait_for_message(lambda m: m.user_id == "bob")
    await alice.wait_for_member("bob")
    log = alice.panel.conversation.value
    assert "look ![x](/logout-canary) ![c](http://127.0.0.1:9/img.png) &lt;img src=" in log, log
    assert "<img" not in log and "<a " not in log
    row = alice.panel.rows["bob"].label.value
    assert "in report[U+202E]fdp.ipynb" in row and "\u202e" not in row, row
    offer = FileOfferRow("o1", "report\u202efdp.py", 3, "bob", {"username": "bob"})
    assert "<span class='iav-file-name'>report[U+202E]fdp.py</span>" in offer.label.value
    impostor_offer = FileOfferRow("o2", "x.csv", 3, "alice (admin)", {"username": "bob"})
    assert "@bob" in impostor_offer.label.value  # a name not its holder's username: the username beside it


async def test_a_cell_that_ends_with_a_subscription_prints_one_readable_line(base: str, opened: list[Any]) -> None:
    alice = session(opened, base, "repr", "alice", peers=False)

    def note(message: Message) -> None:
        pass

    stop = alice.on_message(note)
    assert (
        repr(stop)
        == "<calling test_a_cell_that_ends_with_a_subscription_prints_one_readable_line.<locals>.note for each 'message' event; call this to stop>"
    )
    stop()
    assert repr(alice.send("x")) == "<sending a message: pending>"


def test_times_show_the_date_when_the_day_is_not_today() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    assert when(now.isoformat()) == now.astimezone().strftime("%H:%M:%S")
    earlier = now - timedelta(days=3)
    assert when(earlier.isoformat()) == earlier.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert when("") == "" and when("not a time") == ""


async def test_a_new_line_redraws_its_chunk_only_and_marks_the_newest(base: str, opened: list[Any]) -> None:
    """Why the log keeps a reader's place: older lines are other widgets, not redrawn."""
    from iavicenne.panels import CHUNK_LINES

    alice = session(opened, base, "log", "alice", peers=False)
    log = alice.panel.conversation
    for number in range(CHUNK_LINES + 3):
        log.add("", "bob", f"line {number}")
    first, second = log.lines.children
    before = first.value
    log.add("", "bob", "one more")
    assert log.lines.children == (first, second) and first.value == before  # the older chunk untouched
    assert second.value.count("iav-newest") == 1 and "iav-newest" not in first.value
    assert "iav-newest" in second.value.rsplit("<div", 1)[1] and "one more" in second.value.rsplit("<div", 1)[1]
    assert log.scroller.layout.flex_flow == "column-reverse" and "iav-unread" in log.unread._dom_classes


# -- a member with several connections -------------------------------------------------------


async def test_a_link_goes_to_the_kernel_chosen_and_an_open_link_stays(
    base: str, opened: list[Any], monkeypatch: pytest.MonkeyPatch, server_token: str
) -> None:
    """bob has two kernels in the room (eda.ipynb, forecast.ipynb): one member, two peers."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/bob/eda.ipynb")
    eda = await session(opened, base, "two", "bob", connection_tag="00000e")
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/bob/forecast.ipynb")
    forecast = await session(opened, base, "two", "bob", connection_tag="00000f")
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/alice/eda.ipynb")
    alice = await session(opened, base, "two", "alice")
    mallory = await session(opened, base, "two", "mallory", token=server_token)
    eda_net, forecast_net = await eda.peer_network(), await forecast.peer_network()
    assert (eda_net.peer_id, forecast_net.peer_id) == ("bob#00000e", "bob#00000f")
    assert alice.members["bob"]["connections"] == 2 and list(alice.members).count("bob") == 1

    # mallory answers alice's questions about bob, claiming a kernel of bob's: ignored
    def lie(message: Message) -> None:
        if message.content.get(CONTROL) == "describe":
            fake = {CONTROL: "connection", "q": message.content.get("q"), "peer_id": "bob#0000ff", "kind": "kernel"}
            mallory.spawn(room.direct("alice", {**fake, "notebook": "forecast.ipynb", "since": "9999"}), "lying")

    room = mallory.room
    assert room is not None
    room.on("control", lie)
    await alice.peer_network()
    await eventually(lambda: len(alice.connections("bob")) == 2, what="both of bob's peers")
    described = {c.peer_id: c.notebook for c in await alice.describe("bob")}
    assert described == {"bob#00000e": "eda.ipynb", "bob#00000f": "forecast.ipynb"}

    # by default: bob's kernel in the same notebook as alice's
    default = await alice.peer("bob").ready(30)
    assert default.peer_id == "bob#00000e" and default.path == "direct"
    # asked for: the one in forecast.ipynb
    chosen = await alice.peer("bob", notebook="forecast.ipynb").ready(30)
    assert chosen.peer_id == "bob#00000f" and chosen is not default
    await chosen.send("for the forecast kernel")
    at_forecast = forecast.peers["alice"]
    assert await at_forecast.receive(10) == "for the forecast kernel"
    assert "alice" not in eda.peers or eda.peers["alice"].messages == []
    assert "kernel · forecast.ipynb" in chosen.panel.header.value
    with pytest.raises(PeerUnreachable, match=r"bob has no kernel in 'report.ipynb'.*bob#00000e \(kernel · eda.ipynb\)"):
        await alice.peer("bob", notebook="report.ipynb").ready(10)

    # the panel lists bob's connections; its default is the one room.peer("bob") takes
    row = alice.panel.rows["bob"]
    await eventually(lambda: row.connections.layout.display is None, what="bob's connection list")
    assert {v: k for k, v in row.connections.options} == {
        "bob#00000e": "kernel · eda.ipynb",
        "bob#00000f": "kernel · forecast.ipynb",
    }
    assert row.connections.value == "bob#00000e" and row.chosen_connection is None
    row.connections.value = "bob#00000f"
    assert row.chosen_connection == "bob#00000f"

    # a third kernel of bob joins, newer: the open links stay where they are
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/bob/eda.ipynb")
    newer = await session(opened, base, "two", "bob", connection_tag="00000a")
    await newer.peer_network()
    await eventually(lambda: len(alice.connections("bob")) == 3, what="bob's third peer")
    await default.send("still to the first eda kernel")
    assert await eda.peers["alice"].receive(10) == "still to the first eda kernel"
    assert default.peer_id == "bob#00000e" and default.link is not None and default.link.open


async def test_a_demo_gives_each_kernel_a_role_without_editing(base: str, opened: list[Any], server_token: str) -> None:
    """The demos' first cell: the first kernel to run it is alice, the next bob."""
    from iavicenne import pick_name

    assert await pick_name("roles", ["alice", "bob"], url=base, token=TOKENS["alice"]) == "alice"
    await session(opened, base, "roles", "alice")
    assert await pick_name("roles", ["alice", "bob"], url=base, token=TOKENS["bob"]) == "bob"
    await session(opened, base, "roles", "bob", token=server_token, user_id="bob")  # mallory took bob's name first
    assert await pick_name("roles", ["alice", "bob"], url=base, token=TOKENS["bob"]) == "bob"  # all taken: the last
    with pytest.raises(ValueError, match="invalid room"):
        await pick_name("no/slash", ["alice"], url=base, token=TOKENS["bob"])
