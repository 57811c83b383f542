#!/usr/bin/env python
"""phaita's loader side by side with the plain clients, against a local hub (issue 6).

    .venv/bin/python benchmarks/run.py            # full: real sizes, 5 runs, 90 s caps (~20 min)
    .venv/bin/python benchmarks/run.py --smoke    # tiny sizes, 1 run, short caps (< 60 s; CI)

Clients, each run in a fresh process (``benchmarks/_client.py``) with the environment set before
huggingface_hub is imported:

=====================  ===========================================================================
phaita                 ``robust_model_download(repo)`` -> a loaded model
phaita fetch           ``prefetch_model(repo)`` -> the snapshot folder (fetch phase only)
hub + from_pretrained  ``huggingface_hub.snapshot_download(repo)`` then ``AutoModel.from_pretrained``
hub fetch              ``snapshot_download(repo)`` alone
transformers           ``AutoModel.from_pretrained(repo)`` alone
minimal client         raw HTTP/1.1 GETs of the weights file, resumed at once (scenario 3's floor)
=====================  ===========================================================================

Scenarios (goals from issue 6):

1. clean network, cold cache, a ~200 MB BERT-like safetensors model: wall time phaita / plain (<= 1.05)
2. warm cache, hub refusing connections and hub stalled (accepts, never answers; every request, API
   and HEAD included): time to a loaded model; phaita within 3 s of a local-only load. Also a raw
   server that never answers anything, with huggingface_hub's telemetry on (its default)
3. the transfer cut after each 10 % of the file (9 cuts), by TCP resets and by clean closes:
   completed, wall time, bytes served / file size (completes, <= 1.01, <= 1.5 x the clean run)
4. a hub trickling 50 kB/s after the first MB, ``timeout=30, max_retries=1``: time until the attempt
   is cut (<= timeout + 2 s)
5. peak resident memory of the fetching process while pulling a 1 GiB file (< 200 MB)

Each row's runs are interleaved with the other rows of its scenario (run 1 of every client, then
run 2..., each round starting one row later) so that noise from a shared machine spreads over all
clients; ``os.sync()`` before every run keeps one run's disk writes out of the next. Times are process wall
times (start-up and imports included: the same for every client) and, in ``call``, the time
inside the client call. A run that reaches the cap is killed and the row is not repeated: more
runs cannot say more than "> cap". ``--smoke`` runs the clients that import torch only in
scenario 1; their other rows read "skipped (smoke)".

Output: a table on stdout, ``<out>/results.json`` and ``<out>/benchmarks.png``.

Parts: ``harness.py`` (processes, rows, interleaving), ``fixtures.py`` (models, dead endpoints),
``scenarios.py`` (one function per scenario, registered), ``report.py`` and ``chart.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from fixtures import make_model, publish
from harness import FULL, HERE, REPO_MODEL, SMOKE, WEIGHTS, Bench
from report import machine, report
from scenarios import SCENARIOS, Context
import parallel  # noqa: F401,E402  (registers scenarios 6-10: parallel transfers)
import fleet  # noqa: F401,E402  (registers scenario 11: a fleet behind olah)
import lan  # noqa: F401,E402  (registers scenarios 13-16: nginx as a LAN mirror, the floors, freshness)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 run, short caps (< 60 s)")
    parser.add_argument("--runs", type=int, default=None, help="runs per row (default 5; smoke 1)")
    parser.add_argument("--cap", type=float, default=None, help="wall-clock cap of one run, s (default 90; smoke 4)")
    parser.add_argument("--only", default=",".join(s.key for s in SCENARIOS), help="scenarios to run, e.g. 1,3")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="results, chart, scratch (default benchmarks/out)")
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models",
                        help="generated models, kept between invocations (default benchmarks/out/models)")
    parser.add_argument("--lan-bytes", type=float, default=None, metavar="BYTES",
                        help="scenarios 13-15: the single file's size (shards: a quarter each; default 1 GiB, smoke 16 MiB)")
    parser.add_argument("--from-results", type=Path, default=None, metavar="JSON",
                        help="measure nothing: print the table and goals and draw the chart of a saved results.json")
    args = parser.parse_args(argv)
    if args.from_results is not None:
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        report(json.loads(args.from_results.read_text()), out)
        return 0
    mode = SMOKE if args.smoke else FULL
    runs = args.runs or mode.runs
    cap = args.cap or mode.cap
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    info = machine()
    log(f"phaita benchmarks, {mode.name} mode: {runs} run(s) per row, cap {cap:g} s; "
        + ", ".join(f"{k} {v}" for k, v in info.items()))
    bench = Bench(mode, out, args.models_dir.resolve(), cap, runs, log=log)
    bench.lan_bytes = int(args.lan_bytes) if args.lan_bytes else None
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.home.mkdir(parents=True)

    from phaita.testing import LocalHub

    model = make_model(bench.models_dir, mode.model_mb, bench.home)
    size = (model / WEIGHTS).stat().st_size
    root = bench.work / "hub-root"
    publish(root, REPO_MODEL, {"config.json": model / "config.json", WEIGHTS: model / WEIGHTS})
    large_size = mode.large_bytes
    with LocalHub(root) as hub:
        hub.files(REPO_MODEL)  # hash once, before anything is timed
        log(f"hub {hub.url}: {REPO_MODEL} weights {size / 1e6:.1f} MB")
        ctx = Context(bench, hub, root, size)
        for sc in SCENARIOS:
            if sc.key in only:
                sc.run(ctx)
    results = {"mode": mode.name, "runs": runs, "cap_s": cap, "model_bytes": size, "large_bytes": large_size,
               "elapsed_s": time.perf_counter() - started, "machine": info,
               "rows": [{"scenario": r.scenario, "op": r.op, "note": r.note, "label": r.label, "skipped": r.skipped,
                         "runs": [asdict(x) for x in r.runs]} for r in bench.rows]}
    report(results, out)
    shutil.rmtree(bench.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
