"""benchmarks/peers.py --quick: iAvicenne and python-socketio measured in one run, nothing lost.

The smoke run starts a real Jupyter server with the extension, benchmarks/socketio_server.py
(python-socketio's AsyncServer), two of each on a private Redis, drives them all with the
same load generator (iAvicenne's protocol and Socket.IO over plain WebSocket frames) and
prints each phase's figures and the ratios. This checks that every phase measured both
servers, that every subscriber of both got every message exactly once and in order, and
that every presence announcement arrived; not the speed (it depends on what else runs).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from servers import redis_binary

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers.py"
PAIRS = {
    "fanout": ("iavicenne", "socketio"),
    "redis": ("iavicenne-redis", "socketio-redis"),
    "joins": ("iavicenne", "socketio"),
    "whole": ("iavicenne-redis", "socketio-redis"),
}


@pytest.mark.timeout(240)
def test_quick_peers_measures_both_servers_and_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "peers.json"
    done = subprocess.run(
        [sys.executable, str(PEERS), "--quick", "--redis-server", redis_binary(), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"peers.py --quick failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    out = done.stdout
    for heading in (
        "(a) Fan-out, one server",
        "(b) Fan-out, two servers sharing Redis",
        "(c) Joins",
        "(d) The whole run",
        "| 50 | iavicenne |",
        "| 50 | socketio |",
        "| 50 | iavicenne-redis |",
        "| 50 | socketio-redis |",
        "python-socketio spends",
        "bytes per join",
        '"presence": "batched"',  # the iAvicenne clients sent the new join fields (and were answered)
    ):
        assert heading in out, f"{heading!r} missing from:\n{out}"
    assert "Checks: losses and duplicates 0, out of order 0, presence announcements missing 0, failures 0" in out

    data = json.loads(report.read_text())
    assert data["losses"] == 0 and data["disorder"] == 0 and data["presence_missing"] == 0 and data["failures"] == []
    measured = {(m["phase"], m["system"]) for m in data["measures"]}
    assert measured == {(phase, system) for phase, pair in PAIRS.items() for system in pair}
    for m in data["measures"]:
        if m["phase"] in ("fanout", "redis", "whole"):  # every subscriber got every message exactly once
            assert m["expected"] > 0 and m["delivered"] == m["expected"] and m["losses"] == 0, m
            assert m["duplicates"] == 0 and m["disorder"] == 0 and m["per_second"] > 0, m
        if m["phase"] in ("joins", "whole"):
            assert m["presence_received"] >= m["presence_expected"] > 0, m
            assert m["server_cpu_s"] > 0, m
        if m["phase"] == "joins":
            assert m["joins"] == 100 and 0 < m["join_median_ms"] <= m["join_p90_ms"], m
            assert m["snapshot_bytes"] > 0 and m["bytes_per_join"] > m["snapshot_bytes"], m
    ratios = {r["phase"]: r for r in data["ratios"]}
    assert set(ratios) == set(PAIRS)
    for entry in ratios.values():
        assert math.isfinite(entry["cpu_ratio"]) and entry["cpu_ratio"] > 0, entry
