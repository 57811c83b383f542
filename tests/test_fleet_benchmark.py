"""benchmarks/fleet.py in its smoke mode (4 clients through olah after a mirror outage, and one
upstream reset behind olah): every client gets the weights, the upstream sends them once, the reset
costs no attempt. The figures themselves (spread of retry times with and without jitter) are the
benchmark's, reported in docs/BENCHMARKS.md, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phaita.testing.olah import find_olah_cli

ROOT = Path(__file__).resolve().parents[1]


def test_fleet_benchmark_smoke(tmp_path):
    if find_olah_cli() is None:
        pytest.skip("olah-cli not installed (make setup creates .venv-olah)")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "fleet.json").read_text())
    assert [r["jitter"] for r in results["outage"]] == [0.0, 0.5]
    for run in results["outage"]:
        assert run["ok"] == run["clients"] == 4 and run["failed"] == []
        assert run["upstream_weights_bytes"] == run["weights_size"] and run["upstream_weights_gets"] == 1
        assert run["retries_total"] >= run["clients"]  # every client met the outage
    assert results["reset"]["ok"] and results["reset"]["fault_fired"] == 1 and results["reset"]["failed_attempts"] == 0
    assert "outage, 4 clients, jitter 0.5" in proc.stdout
