"""benchmarks/fanout.py --quick: it runs end to end and every subscriber gets every message.

The smoke run starts a real Jupyter server with the extension and the minimal baseline,
drives both with the multi-process load generator, and prints the tables and the
summary. This checks what it prints and that nothing was lost or duplicated; it does
not check speed (the figures depend on the machine and on what else runs on it).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FANOUT = ROOT / "benchmarks" / "fanout.py"


@pytest.mark.timeout(240)
def test_quick_fanout_prints_the_figures_and_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "fanout.json"
    done = subprocess.run(
        [sys.executable, str(FANOUT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"fanout.py --quick failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    out = done.stdout
    for heading in ("Throughput", "Latency", "Memory", "deliveries/s", "p99 ms", "per connection KiB", "ratio to minimal"):
        assert heading in out, f"{heading!r} missing from:\n{out}"
    summary = out[out.index("---- summary") : out.index("---- end of summary")]
    assert "- MET     losses: 0" in summary
    assert "throughput memory S=50" in summary and "latency memory S=50" in summary and "memory memory" in summary
    assert "KiB each" in summary and "the minimal server's" in summary  # per idle connection, beside the baseline
    assert "minimal" in summary[summary.index("latency memory S=50") :]  # the p99 quoted beside the baseline's
    assert "Generator check S=50, memory" in out

    data = json.loads(report.read_text())
    assert data["losses"] == 0 and data["failures"] == []
    runs = data["runs"]
    assert {(r["deployment"], r["mode"]) for r in runs} == {
        ("minimal", "throughput"),
        ("memory", "throughput"),
        ("minimal", "rate"),
        ("memory", "rate"),
    }
    for run in runs:
        expected = run["subscribers"] * run["messages"]
        assert run["delivered"] == expected and run["losses"] == 0, run
        assert run["duplicates"] == 0 and run["disorder"] == 0 and run["closed"] == 0, run
        assert run["per_second"] > 0
        if run["mode"] == "rate":
            assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], run
    rows = {(r["deployment"], r["mode"]): r for r in data["rows"]}
    assert rows[("minimal", "throughput")]["ratio"] == 1.0
    assert math.isfinite(rows[("memory", "throughput")]["ratio"])
    memory = {m["deployment"]: m for m in data["memory"]}
    assert set(memory) == {"minimal", "memory"}
    for entry in memory.values():
        assert entry["connections"] == 200 and entry["before"] > 0 and entry["after"] > 0


def test_the_full_run_measures_ten_thousand_idle_connections_and_the_quick_one_few() -> None:
    sys.path.insert(0, str(FANOUT.parent))
    try:
        import fanout
    finally:
        sys.path.remove(str(FANOUT.parent))
    assert fanout.parse_args([]).idle == 10_000
    assert fanout.parse_args(["--quick"]).idle == 200
    assert fanout.parse_args(["--idle", "500"]).idle == 500
