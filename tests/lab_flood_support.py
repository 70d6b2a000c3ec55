"""A flood into alice's JupyterLab, measured: what tests/lab/test_lab_flood.py asserts and
benchmarks/lab_flood.py prints (issue 21: bob's 1,500 messages in 14 s stalled her Lab
up to 3.4 s at a time).

alice's window records the main thread's long tasks (Chromium's ``PerformanceObserver``
``longtask`` entries: any task over 50 ms) from before JupyterLab starts; bob floods from a
Python client in a process of its own (browser_agent.py's ``flood``); once the last message
is on alice's screen, the longest task while it came and the DOM's size are read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from browser_support import TIMEOUT_MS, Agent

from iavicenne_ext.testing import JupyterProcess

ROOM = "flood"
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from room_support import TwoAnalysts

c.ServerApp.identity_provider_class = TwoAnalysts
"""

# before any of the page's own scripts: every long task of the window, with its start
LONG_TASKS = """
window.__iavLongTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__iavLongTasks.push({ start: entry.startTime, duration: entry.duration });
}).observe({ type: "longtask", buffered: true });
"""


def lab_server(workdir: Path, build: Path, *, options: dict[str, Any] | None = None) -> JupyterProcess:
    """A JupyterLab server (memory broker, alice and bob by token) with the extension at
    `build` and the room joined at start; launched, not yet waited for."""
    process = JupyterProcess(workdir, lab=True, options={"broker": "memory", **(options or {})})
    process.config.mkdir(parents=True)
    config = _CONFIG.format(tests=str(Path(__file__).resolve().parent))
    config += f"c.LabApp.extra_labextensions_path = [{str(process.workdir / 'lab-extensions')!r}]\n"
    (process.config / "jupyter_server_config.py").write_text(config)
    extensions = process.workdir / "lab-extensions"
    extensions.mkdir(parents=True)
    (extensions / "iavicenne-lab").symlink_to(build, target_is_directory=True)
    settings = process.workdir / "lab-settings" / "iavicenne-lab"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"rooms": [ROOM]}))
    process.root.mkdir(parents=True)
    return process.launch()


def open_window(browser: Any, token: str) -> Any:
    """A page of its own for `token`'s person, recording long tasks from the start."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, extra_http_headers={"Authorization": f"token {token}"})
    context.add_init_script(LONG_TASKS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def open_lab(page: Any, lab: JupyterProcess, workspace: str) -> None:
    """JupyterLab with the iAvicenne panel open and online in the room."""
    page.goto(f"{lab.origin}/lab/workspaces/{workspace}?reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.iavicenneLab", timeout=60_000)
    # once the workspace is restored (it would show the file browser over the panel)
    page.evaluate(
        "async () => { await window.jupyterapp.restored; await window.jupyterapp.commands.execute('iavicenne:open-panel'); }"
    )
    page.locator("#iavicenne-panel").wait_for(state="visible")
    page.wait_for_function(
        "(room) => { const c = window.iavicenneLab.collaboration; return c.state === 'online' && c.rooms.has(room); }",
        arg=ROOM,
        timeout=60_000,
    )


def bob(lab: JupyterProcess, log: Path, user_id: str = "bob") -> Agent:
    agent = Agent(SimpleNamespace(origin=lab.origin, token="bob-token"), ROOM, user_id, log=log)  # type: ignore[arg-type]
    agent.expect("ready")
    return agent


def longest(ms: float) -> str:
    """A longest task as said: Chromium reports only tasks over 50 ms, so 0 is "under 50 ms"."""
    return f"{ms:.0f} ms" if ms else "under 50 ms"


@dataclass(frozen=True)
class Flood:
    """What a flood cost alice's window."""

    accepted: int
    refused: dict[str, int]
    seconds: float  # how long bob took to send them
    longest_task_ms: float  # the longest task of alice's main thread while they came
    long_tasks: int  # tasks over 50 ms meanwhile
    messages_in_dom: int  # `.iav-lab-message` elements once the last one is shown
    dom_nodes: int  # every element of the page then

    def summary(self) -> str:
        return (
            f"{self.accepted} accepted {self.refused or ''} in {self.seconds:.1f} s; longest task "
            f"{longest(self.longest_task_ms)} ({self.long_tasks} over 50 ms); {self.messages_in_dom} messages and "
            f"{self.dom_nodes} elements in the DOM"
        )


def flood(page: Any, sender: Agent, *, count: int, seconds: float, text: str = "flood") -> Flood:
    """`sender` sends `count` messages over `seconds` while `page` shows the room; measured
    from the first until the last is on the screen (and one more second, for what follows)."""
    page.evaluate("() => { window.__iavLongTasks = []; }")
    started = page.evaluate("() => performance.now()")
    sender.command(cmd="flood", count=count, seconds=seconds, text=text)
    sent = sender.expect("flooded", timeout=seconds * 4 + 60)
    last = f"{text} {sent['accepted'] - 1}" if not sent["refused"] else None
    if last is not None:
        # the last message (numbers are in order: the room's seq order is the send order)
        page.wait_for_function(
            "(last) => [...document.querySelectorAll('#iavicenne-panel .iav-lab-message .iav-lab-body')]"
            ".some((body) => body.textContent.trim() === last)",
            arg=last,
            timeout=120_000,
        )
    time.sleep(1.0)
    tasks = page.evaluate("(from) => window.__iavLongTasks.filter((t) => t.start + t.duration >= from)", started)
    messages, nodes = page.evaluate(
        "() => [document.querySelectorAll('#iavicenne-panel .iav-lab-message').length, document.querySelectorAll('*').length]"
    )
    return Flood(
        accepted=sent["accepted"],
        refused=sent["refused"],
        seconds=sent["took"],
        longest_task_ms=max((t["duration"] for t in tasks), default=0.0),
        long_tasks=len(tasks),
        messages_in_dom=messages,
        dom_nodes=nodes,
    )
