"""Every demo notebook, executed top to bottom by nbclient in real kernels against a live
`jupyter server` with iAvicenne: two copies of each notebook run at once in two kernels
(roles alice and bob, given through the kernel's environment as a newcomer's kernels
would get them from `pick_name`) and talk to each other through the server and peer to
peer.

A demo prints only what its reader wants to see; what the test checks it reads from the
kernel once every cell of both copies has run, in a cell of the test's own that is not
part of the notebook (`NotebookRun.read`). Both kernels stay up until both copies are
done: the demos stay in the room at their end, as a user's would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_support import NOTEBOOKS, NotebookRun, kernel_env

from iavicenne_ext.testing import JupyterProcess

pytestmark = pytest.mark.timeout(180)

# what each kernel is asked at the end (a Python expression, its value as JSON)
SESSION = """{"role": ROLE, "members": sorted(room.members), "online": room.online, "state": room.state,
 "errors": [str(e) for e in room.errors]}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    server = JupyterProcess(tmp_path_factory.mktemp("notebooks")).start()
    yield server
    server.stop()


def pair(app: JupyterProcess, notebook: str, **extra: str) -> list[NotebookRun]:
    """Two runs of `notebook`, as alice and as bob, in a room of their own; each kernel
    works in a folder of its own (what a notebook writes stays out of the repository)."""
    room = f"nb-{Path(notebook).stem}-{secrets.token_hex(3)}"
    runs = []
    for role in ("alice", "bob"):
        cwd = app.workdir / f"{Path(notebook).stem}-{role}-{secrets.token_hex(2)}"
        cwd.mkdir()
        env = kernel_env(
            app, IAVICENNE_ROLE=role, IAVICENNE_ROOM=room, IAVICENNE_TIMEOUT="60", JPY_SESSION_NAME=f"{role}-{notebook}", **extra
        )
        runs.append(NotebookRun(NOTEBOOKS / notebook, env, label=f"{notebook} as {role}", cwd=cwd))
    return runs


def run_and_read(runs: list[NotebookRun], expression: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Execute `runs` at once, each in its own kernel; once all are done, the value of
    `expression` (JSON) in each kernel."""
    finished = 0
    all_done = asyncio.Event()

    async def one(run: NotebookRun) -> dict[str, Any]:
        nonlocal finished
        notebook = nbformat.read(run.path, as_version=4)
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(run.cwd or run.path.parent)}}
        )
        async with client.async_setup_kernel(env=run.env):
            try:
                for index, cell in enumerate(notebook.cells):
                    await client.async_execute_cell(cell, index)
            except Exception as error:
                all_done.set()  # the other copy would wait for this one in vain
                raise AssertionError(f"{run.label} failed: {error}\n{printed(notebook)[-3000:]}") from error
            finally:
                finished += 1
                if finished == len(runs):
                    all_done.set()
            run.result = nbformat.from_dict(json.loads(json.dumps(notebook)))  # as the reader saw it
            await asyncio.wait_for(all_done.wait(), timeout)
            probe = nbformat.v4.new_code_cell(f"import json as _json\nprint(_json.dumps({expression}))")
            notebook.cells.append(probe)  # the test's own cell, in its copy of the notebook only
            await client.async_execute_cell(probe, len(notebook.cells) - 1)
        # the probe's own line: a print from the notebook's callbacks (another thread) may
        # still land in this cell, before or after it (ipykernel sends its "\n" separately)
        printed_lines = "".join(out.get("text", "") for out in probe.outputs if out.get("name") == "stdout").splitlines()
        return dict(json.loads(next(line for line in reversed(printed_lines) if line.startswith("{"))))

    async def all_of_them() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(run) for run in runs)))

    return asyncio.run(all_of_them())


def printed(notebook: Any) -> str:
    """What the cells showed, as a reader sees it: every stream and text output."""
    parts: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "data" in output and "text/plain" in output["data"]:
                parts.append(output["data"]["text/plain"] + "\n")
    return "".join(parts)


def shown_for_people_only(run: NotebookRun) -> None:
    """Nothing a reader would not want: no test lines, no repr of library internals."""
    assert run.result is not None
    text = printed(run.result)
    assert "RESULT" not in text and "<function" not in text and "object at 0x" not in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


def test_every_notebook_has_a_test() -> None:
    tested = {"rooms_and_presence.ipynb", "peer_messages.ipynb", "share_dataframe.ipynb", "shared_state.ipynb"}
    assert {path.name for path in NOTEBOOKS.glob("*.ipynb")} == tested


def test_no_notebook_leaves_the_room_or_needs_editing() -> None:
    for path in NOTEBOOKS.glob("*.ipynb"):
        source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
        assert "leave()" not in source, path.name
        assert 'pick_name(ROOM, ["alice", "bob"])' in source, path.name  # a role without editing a line
        assert 'print("RESULT' not in source, path.name


def test_rooms_and_presence(app: JupyterProcess) -> None:
    runs = pair(app, "rooms_and_presence.ipynb")
    expression = SESSION[:-1] + ', "reply": reply.text, "direct": secret.text, "heard": heard, "partner": partner["state"]}'
    a, b = run_and_read(runs, expression)
    assert a["members"] == b["members"] == ["alice", "bob"]
    assert a["online"] and b["online"]  # still in the room at the end
    assert a["reply"] == "hello from bob" and b["reply"] == "hello from alice"
    assert a["direct"] == "a word for alice only" and b["direct"] == "a word for bob only"
    # presence: the partner's status and the notebook its kernel runs for
    assert a["partner"] == {"status": "bob is reviewing", "notebook": "bob-rooms_and_presence.ipynb"}
    assert ["bob", "hello from bob"] in a["heard"] and ["alice", "hello from alice"] in b["heard"]
    assert a["errors"] == b["errors"] == []
    for run in runs:
        shown_for_people_only(run)
        assert run.result is not None
        assert f"You are {run.label.rsplit(' ', 1)[1]} in room" in printed(run.result)


def test_peer_messages(app: JupyterProcess) -> None:
    runs = pair(app, "peer_messages.ipynb")
    expression = (
        SESSION[:-1]
        + ', "text": text, "obj": obj, "raw": list(raw), "answers": sorted(answers), "link": link.state, "path": link.path}'
    )
    a, b = run_and_read(runs, expression)
    assert a["text"] == "hi alice, this is bob, peer to peer" and b["text"] == "hi bob, this is alice, peer to peer"
    assert a["obj"] == {"from": "bob", "numbers": [1, 2, 3], "ok": True}
    assert a["raw"] == b["raw"] == list(range(8))  # bytes stay bytes
    assert a["answers"] == b["answers"] == ["ping", "pong"]
    assert a["link"] == b["link"] == "open" and a["path"] == b["path"] == "direct"
    assert a["online"] and b["online"] and a["errors"] == b["errors"] == []
    for run in runs:
        shown_for_people_only(run)


def test_share_dataframe(app: JupyterProcess) -> None:
    runs = pair(app, "share_dataframe.ipynb")
    expression = (
        SESSION[:-1]
        + """, "rows": len(sales), "amount": round(float(sales["amount"].sum()), 2),
 "dtypes": {c: str(t) for c, t in sales.dtypes.items()}, "regions": sorted(summary.index),
 "file": saved.read_text() if ROLE == "alice" else None}"""
    )
    a, b = run_and_read(runs, expression)
    assert a["rows"] == b["rows"] == 300_000
    assert a["amount"] == b["amount"]  # the same data on both sides
    assert a["dtypes"] == b["dtypes"] and a["dtypes"]["region"] == "category" and a["dtypes"]["day"].startswith("datetime64")
    assert a["regions"] == b["regions"] == ["east", "north", "south", "west"]
    assert a["file"].startswith("region,count,sum,mean\n")
    assert a["online"] and b["online"] and a["errors"] == b["errors"] == []
    for run in runs:
        shown_for_people_only(run)
    # nothing was written next to the notebooks
    assert not (NOTEBOOKS / "summary.csv").exists() and not (NOTEBOOKS / "received").exists()


def test_shared_state(app: JupyterProcess) -> None:
    runs = pair(app, "shared_state.ipynb")
    expression = (
        SESSION[:-1] + ', "threshold": threshold.value, "shared": room.shared.to_py(), "changes": changes, "drawn": drawn}'
    )
    a, b = run_and_read(runs, expression)
    assert a["threshold"] == b["threshold"] == 0.3  # alice tuned it, bob's linked slider followed
    assert b["drawn"][-1] == 0.3  # and bob's plot with it
    assert a["shared"] == b["shared"]
    assert a["shared"]["threshold"] == 0.3
    assert sorted(a["shared"]["questions"]) == ["alice: is 0.5 too strict?", "bob: is 0.5 too strict?"]
    assert ["threshold"] in b["changes"] and ["questions"] in a["changes"]
    assert a["online"] and b["online"] and a["errors"] == b["errors"] == []
    for run in runs:
        shown_for_people_only(run)
