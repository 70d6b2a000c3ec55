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
from notebook_support import NOTEBOOKS, JupyterApp, NotebookRun, kernel_env, run_notebooks

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterApp]:
    server = JupyterApp(tmp_path_factory.mktemp("notebooks")).start()
    yield server
    server.stop()


def pair(app: JupyterApp, notebook: str, **extra: str) -> list[NotebookRun]:
    """Two runs of `notebook`, as alice and as bob, in a room of their own."""
    room = f"nb-{Path(notebook).stem}-{secrets.token_hex(3)}"
    return [
        NotebookRun(
            NOTEBOOKS / notebook,
            kernel_env(app, IAVICENNE_ROLE=role, IAVICENNE_ROOM=room, IAVICENNE_TIMEOUT="60", JPY_SESSION_NAME=f"{role}-{notebook}", **extra),
            label=f"{notebook} as {role}",
        )
        for role in ("alice", "bob")
    ]


def test_every_notebook_has_a_test() -> None:
    tested = {"rooms_and_presence.ipynb", "peer_messages.ipynb", "share_dataframe.ipynb"}
    assert {path.name for path in NOTEBOOKS.glob("*.ipynb")} == tested


def test_rooms_and_presence(app: JupyterApp) -> None:
    alice, bob = run_notebooks(pair(app, "rooms_and_presence.ipynb"))
    a, b = alice.results(), bob.results()
    assert a["members"] == b["members"] == ["alice", "bob"]
    assert a["reply"] == "hello from bob" and b["reply"] == "hello from alice"
    assert a["direct"] == "a word for alice only" and b["direct"] == "a word for bob only"
    # presence: the partner's status and the notebook its kernel runs for
    assert a["partner_state"] == {"status": "bob is reviewing", "notebook": "bob-rooms_and_presence.ipynb"}
    assert ["bob", "hello from bob"] in a["heard"] and ["alice", "hello from alice"] in b["heard"]
    assert a["errors"] == b["errors"] == []
