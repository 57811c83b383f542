#!/usr/bin/env python
"""Scenario 12's cost in one process: a warm offline load with and without ``verify_on_load``.

Process rows (``run.py --only 12``) include interpreter start and imports, whose noise on a shared
machine hides a re-hash of a few hundred MB. Here imports are paid once; five interleaved pairs of
``robust_model_download(..., allow_offline=True, verify_on_load=False/True)`` and one
``verify_snapshot`` alone. Needs the generated model of ``run.py`` (``benchmarks/out/models/bert-200mb``).

    .venv/bin/python benchmarks/verify_on_load_inprocess.py
"""
import os
import shutil
import statistics as st
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import publish  # noqa: E402
work = Path(tempfile.mkdtemp())
model = Path(__file__).resolve().parent / "out" / "models" / "bert-200mb"
publish(work / "root", "bench/bert", {"config.json": model / "config.json", "model.safetensors": model / "model.safetensors"})
os.environ.update(HF_HUB_CACHE=str(work / "cache"), HF_HOME=str(work / "home"), HF_HUB_DISABLE_PROGRESS_BARS="1")
from phaita.testing import LocalHub
with LocalHub(work / "root") as hub:
    os.environ["HF_ENDPOINT"] = hub.url
    from phaita.utils.model_loader import prefetch_model, robust_model_download
    from phaita.loader.cache.verify import verify_snapshot
    snap = Path(prefetch_model("bench/bert"))
robust_model_download("bench/bert", allow_offline=True)  # warm imports
res = {False: [], True: []}
for i in range(5):
    for v in (False, True):
        t = time.perf_counter(); robust_model_download("bench/bert", allow_offline=True, verify_on_load=v)
        res[v].append(time.perf_counter() - t)
t = time.perf_counter(); bad = verify_snapshot(work / "cache", "bench/bert", snap); vt = time.perf_counter() - t
print("size", (snap / "model.safetensors").stat().st_size, "bad", bad)
print("load median s: verify off %.3f, on %.3f; verify_snapshot alone %.3f" % (st.median(res[False]), st.median(res[True]), vt))
print("runs off", [round(x, 3) for x in res[False]], "on", [round(x, 3) for x in res[True]])
shutil.rmtree(work, ignore_errors=True)
