"""Every demo notebook, executed top to bottom by nbclient in real kernels against a live
`jupyter server` with iAvicenne: two copies of each notebook run at once in two kernels
(roles alice and bob, given as the notebook's parameters through the kernel's
environment) and talk to each other through the server and peer to peer.

A notebook ends by printing ``RESULT {json}``: what each side saw, checked here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from notebook_support import NOTEBOOKS, NotebookRun, kernel_env, run_notebooks

from iavicenne_ext.testing import JupyterProcess

pytestmark = pytest.mark.timeout(180)


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


def test_every_notebook_has_a_test() -> None:
    tested = {"rooms_and_presence.ipynb", "peer_messages.ipynb", "share_dataframe.ipynb"}
    assert {path.name for path in NOTEBOOKS.glob("*.ipynb")} == tested


def test_rooms_and_presence(app: JupyterProcess) -> None:
    alice, bob = run_notebooks(pair(app, "rooms_and_presence.ipynb"))
    a, b = alice.results(), bob.results()
    assert a["members"] == b["members"] == ["alice", "bob"]
    assert a["reply"] == "hello from bob" and b["reply"] == "hello from alice"
    assert a["direct"] == "a word for alice only" and b["direct"] == "a word for bob only"
    # presence: the partner's status and the notebook its kernel runs for
    assert a["partner_state"] == {"status": "bob is reviewing", "notebook": "bob-rooms_and_presence.ipynb"}
    assert ["bob", "hello from bob"] in a["heard"] and ["alice", "hello from alice"] in b["heard"]
    assert a["errors"] == b["errors"] == []


def test_peer_messages(app: JupyterProcess) -> None:
    alice, bob = run_notebooks(pair(app, "peer_messages.ipynb"))
    a, b = alice.results(), bob.results()
    assert a["text"] == "hi alice, this is bob, peer to peer" and b["text"] == "hi bob, this is alice, peer to peer"
    assert a["obj"] == {"from": "bob", "numbers": [1, 2, 3], "ok": True}
    assert a["raw"] == b["raw"] == list(range(8))  # bytes stay bytes
    assert a["answers"] == b["answers"] == ["ping", "pong"]
    assert a["state"] == b["state"] == "open"
    assert a["errors"] == b["errors"] == []


def test_share_dataframe(app: JupyterProcess) -> None:
    alice, bob = run_notebooks(pair(app, "share_dataframe.ipynb"))
    a, b = alice.results(), bob.results()
    assert a["rows"] == b["rows"] == 300_000
    assert a["amount"] == b["amount"]  # the same data on both sides
    assert a["dtypes"] == b["dtypes"] and a["dtypes"]["region"] == "category" and a["dtypes"]["day"].startswith("datetime64")
    assert a["regions"] == b["regions"] == ["east", "north", "south", "west"]
    assert a["file"].startswith("region,count,sum,mean\n")
    assert a["errors"] == b["errors"] == []
    # nothing was written next to the notebooks
    assert not (NOTEBOOKS / "summary.csv").exists() and not (NOTEBOOKS / "received").exists()
