"""benchmarks/run.py in its tiny smoke mode: every scenario row printed, the chart and results written.

The full benchmark (real sizes, 5 runs, ~20 min) is never run by the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A hang guard, not a speed check: the smoke takes about a minute alone (66 client processes, 40 CPU-s),
# and the parallel suite runs it beside the demo and the model loads on two cores, where it has taken
# over 150 s.
SMOKE_TIMEOUT = 480
pytestmark = pytest.mark.timeout(SMOKE_TIMEOUT + 60)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run.py"

SCENARIOS = [
    "1 clean, cold cache",
    "2 warm, local only (reference)",
    "2 warm, hub refusing",
    "2 warm, hub stalled",
    "2 warm, hub never answers",
    "3 reference: no cuts",
    "3 cut every 10 %: TCP resets",
    "3 cut every 10 %: clean closes",
    "4 trickling hub",
    "5 pull one large file",
]
CLIENTS = ["phaita", "phaita fetch", "hub + from_pretrained", "hub fetch", "transformers", "minimal client (floor)"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True,
                          text=True, timeout=SMOKE_TIMEOUT, cwd=ROOT)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout, out


def test_table_has_every_scenario_and_client(smoke):
    stdout, _ = smoke
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("scenario") and "client" in line)
    body = lines[header + 2:]
    for title in SCENARIOS:
        assert any(line.startswith(title) for line in body), f"no row for scenario {title!r}"
    for client in CLIENTS:
        assert any(client in line for line in body), f"no row for client {client!r}"
    # rows actually measured in smoke mode carry a run count and a time
    measured = [line for line in body if "skipped" not in line and "/1 " in line]
    assert len(measured) >= 14, "\n".join(body)


def test_goals_listed_for_every_scenario(smoke):
    stdout, _ = smoke
    goals = stdout.split("\nGoals\n", 1)[1]
    for n in "12345":
        assert f"] {n}  " in goals, goals


def test_smoke_outcomes_are_sensible(smoke):
    """Tiny sizes still show the behaviours the benchmark is about."""
    _, out = smoke
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "smoke"
    rows = {(r["scenario"], r["op"]): r for r in results["rows"]}
    # phaita loads a model end to end and completes both cut-every-10 % transfers with no resend
    assert all(run["ok"] for run in rows[("1", "phaita")]["runs"])
    for kind in ("reset", "close"):
        runs = rows[(f"3-{kind}", "phaita_fetch")]["runs"]
        assert all(run["ok"] for run in runs)
        assert all(run["bytes_ratio"] <= 1.01 for run in runs)
    # a trickling hub: phaita's attempt ends (with an error) instead of running into the cap
    trickle = rows[("4", "phaita")]["runs"]
    assert trickle and not any(run["capped"] or run["ok"] for run in trickle)
    # the warm cache is used when the hub refuses connections
    assert all(run["ok"] for run in rows[("2-refused", "phaita_fetch")]["runs"])


def test_chart_written(smoke):
    _, out = smoke
    png = out / "benchmarks.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "work").exists(), "scratch caches are removed"
