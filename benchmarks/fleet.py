#!/usr/bin/env python
"""A fleet behind one mirror (issue 10): olah in front of the local hub, many clients at once.

    .venv/bin/python benchmarks/fleet.py            # 20 clients, base backoff 4 s (~1 min)
    .venv/bin/python benchmarks/fleet.py --smoke    # 4 clients, base 1 s (~15 s; the test suite)
    .venv/bin/python benchmarks/fleet.py --only reset

Part ``outage``: the mirror (olah) is down when ``--clients`` clients start at once (devices booting,
a scheduled pull); it comes back about 1.5 s later. Every client's first attempt is refused; each
waits its backoff and retries. Run once with ``PHAITA_BACKOFF_JITTER=0`` (the exact schedule: every
client retries at the same instant) and once with the default jitter (0.5: each wait drawn within
+-50 % of the scheduled one). Reported: when the retries reach the mirror (spread, and the most
arriving within any 0.5 s), whether every client got the weights, and what the upstream saw
(weights bytes and GETs: olah fetches the file once for everyone).

Part ``reset``: one client through olah while the upstream resets the weights transfer once before
its first byte (olah has already answered 200: the client sees an empty body). Time to the fetched
snapshot with the default 10 s backoff and no jitter, so a lost attempt would show as +10 s. Run it
with an older phaita on ``PYTHONPATH`` to see the cost before empty-break retries.

Clients are threads of this process (one cache folder each; the loader's retry policy and jitter
are per call), so that 20 clients do not mean 20 interpreters on a small machine. Output: a table
on stdout and ``<out>/fleet.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from scenarios import Context, scenario  # (this folder: run.py's registry, see the end of this file)

HERE = Path(__file__).resolve().parent
REPO = "fleet/weights"


class RetryLog(logging.Handler):
    """The loader's retry warnings, with the instant each retry is due (record time + wait)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)  # (Handler.handle holds the handler's own lock around emit)
        self.retries: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        wait = getattr(record, "retry_wait", None)
        if wait is not None:
            self.retries.setdefault(record.threadName, []).append(record.created + wait)


def _env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def outage(upstream, olah, clients: int, base: float, jitter: float, scratch: Path) -> dict:
    from phaita.utils.model_loader import prefetch_model

    olah.stop()
    upstream.reset_stats()
    shutil.rmtree(olah.repos_path, ignore_errors=True)  # a cold mirror: nothing cached yet
    _env({"HF_ENDPOINT": olah.url, "PHAITA_BACKOFF_JITTER": str(jitter), "PHAITA_BACKOFF_BASE": str(base)})
    log = RetryLog()
    logging.getLogger("phaita.model_loader").addHandler(log)
    done: dict[str, float] = {}
    failed: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        try:
            prefetch_model(REPO, max_retries=5, timeout=120, cache_dir=scratch / f"j{jitter}-c{i}")
            done[threading.current_thread().name] = time.time()
        except Exception as exc:  # reported, not raised: one client failing is a result
            failed.append(f"{threading.current_thread().name}: {str(exc).splitlines()[0]}")

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i:02d}") for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.time()
    olah.start()  # back after its own start-up time
    back = time.time() - t0
    for t in threads:
        t.join()
    logging.getLogger("phaita.model_loader").removeHandler(log)
    first = sorted(min(r) - t0 for r in log.retries.values())  # each client's first retry
    window = max((sum(1 for y in first if x <= y < x + 0.5) for x in first), default=0)
    size = (upstream.root / REPO / "model.safetensors").stat().st_size
    return {
        "clients": clients, "jitter": jitter, "backoff_base_s": base, "mirror_back_after_s": round(back, 2),
        "ok": len(done), "failed": failed,
        "first_retry_s": {"min": round(first[0], 2), "median": round(statistics.median(first), 2),
                          "max": round(first[-1], 2), "stdev": round(statistics.pstdev(first), 2)} if first else {},
        "most_retries_within_0_5_s": window,
        "retries_total": sum(len(r) for r in log.retries.values()),
        "all_done_after_s": round(max(done.values()) - t0, 2) if done else None,
        "upstream_weights_bytes": upstream.bytes_sent("model.safetensors"), "weights_size": size,
        "upstream_weights_gets": len(upstream.requests("model.safetensors", method="GET")),
        "upstream_requests": len(upstream.stats),
    }


def reset(upstream, olah, scratch: Path) -> dict:
    from phaita.utils.model_loader import prefetch_model

    olah.restart()
    shutil.rmtree(olah.repos_path, ignore_errors=True)
    upstream.reset_stats()
    upstream.set_faults("reset@0x1:path=*model.safetensors")
    _env({"HF_ENDPOINT": olah.url, "PHAITA_BACKOFF_JITTER": "0", "PHAITA_BACKOFF_BASE": "10"})
    log = RetryLog()
    logging.getLogger("phaita.model_loader").addHandler(log)
    t0 = time.time()
    try:
        prefetch_model(REPO, max_retries=3, timeout=120, cache_dir=scratch / "reset")
        ok = True
    except Exception:
        ok = False
    took = time.time() - t0
    logging.getLogger("phaita.model_loader").removeHandler(log)
    fired = len(upstream.faults.fired)
    upstream.set_faults(None)
    return {"ok": ok, "seconds": round(took, 2), "failed_attempts": sum(len(r) for r in log.retries.values()),
            "fault_fired": fired}


def run_parts(clients: int, base: float, mb: float, parts: set[str]) -> dict:
    """Both parts (or those in ``parts``) on a fresh local hub and olah; the results as a dict."""
    from phaita.testing import LocalHub, publish_large_file
    from phaita.testing.olah import OlahMirror

    scratch = Path(tempfile.mkdtemp(prefix="phaita-fleet-"))
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    _env({"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
          "HF_HOME": str(scratch / "home"), "HF_HUB_OFFLINE": None, "HF_TOKEN": None, "PHAITA_ENDPOINTS": None,
          "PHAITA_STALL_TIMEOUT": "30"})
    loader_log = logging.getLogger("phaita.model_loader")
    level, propagate = loader_log.level, loader_log.propagate
    loader_log.setLevel(logging.WARNING)  # the retry records (not printed)
    loader_log.propagate = False
    publish_large_file(scratch / "root", REPO, int(mb * 1e6))
    (scratch / "root" / REPO / "config.json").write_text('{"model_type": "bert"}')
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                     "weights_mb": mb}
    try:
        with LocalHub(scratch / "root") as upstream:
            olah = OlahMirror(upstream.url, scratch / "olah-repos").start()
            try:
                if "outage" in parts:
                    results["outage"] = [outage(upstream, olah, clients, base, j, scratch) for j in (0.0, 0.5)]
                if "reset" in parts:
                    results["reset"] = reset(upstream, olah, scratch)
            finally:
                olah.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _env(saved)
        loader_log.setLevel(level)
        loader_log.propagate = propagate
    return results


ENV_KEYS = ("HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HOME",
            "HF_HUB_OFFLINE", "HF_TOKEN", "PHAITA_ENDPOINTS", "PHAITA_STALL_TIMEOUT", "HF_ENDPOINT",
            "PHAITA_BACKOFF_JITTER", "PHAITA_BACKOFF_BASE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="4 clients, base backoff 1 s, 1 MB of weights")
    parser.add_argument("--clients", type=int, default=None, help="clients at once (default 20; smoke 4)")
    parser.add_argument("--base", type=float, default=None, help="PHAITA_BACKOFF_BASE for the outage (default 4)")
    parser.add_argument("--mb", type=float, default=None, help="size of the weights, MB (default 8; smoke 1)")
    parser.add_argument("--only", default="outage,reset", help="parts to run: outage, reset")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
               **run_parts(args.clients or (4 if args.smoke else 20), args.base or (1.0 if args.smoke else 4.0),
                           args.mb or (1.0 if args.smoke else 8.0), {p.strip() for p in args.only.split(",")})}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fleet.json").write_text(json.dumps(results, indent=1))
    print(report(results))
    bad = [r for r in results.get("outage", []) if r["ok"] != r["clients"]]
    if "reset" in results and not results["reset"]["ok"]:
        bad.append(results["reset"])
    return 1 if bad else 0


def report(results: dict) -> str:
    lines = [f"fleet behind olah: {results['machine']}; weights {results['weights_mb']:g} MB"]
    for r in results.get("outage", []):
        fr = r["first_retry_s"]
        lines.append(
            f"outage, {r['clients']} clients, jitter {r['jitter']:g}: mirror back after {r['mirror_back_after_s']} s; "
            f"first retries at {fr.get('min')}-{fr.get('max')} s (median {fr.get('median')}, stdev {fr.get('stdev')}); "
            f"at most {r['most_retries_within_0_5_s']} within 0.5 s; {r['ok']}/{r['clients']} fetched, all by "
            f"{r['all_done_after_s']} s; upstream sent the weights {r['upstream_weights_bytes'] / r['weights_size']:.2f}"
            f" times in {r['upstream_weights_gets']} GET(s), {r['upstream_requests']} requests in all")
    if "reset" in results:
        r = results["reset"]
        lines.append(f"upstream reset before the first byte, behind olah (backoff 10 s, no jitter): "
                     f"{'fetched' if r['ok'] else 'FAILED'} in {r['seconds']} s, {r['failed_attempts']} failed attempt(s), "
                     f"fault fired {r['fault_fired']} time(s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- as scenario 11 of run.py


@scenario("11", {"11-outage": "11 fleet: 20 after mirror outage", "11-reset": "11 fleet: origin reset, olah"})
def fleet_behind_olah(ctx: Context) -> None:
    """Both parts (olah in front of a hub of their own) as rows of run.py's table.

    One run each, of many clients at once: ``wall s`` is when the last client had the snapshot; the
    note says how the retries spread; ``bytes`` is what the origin sent of the weights. Not in smoke
    mode (tests/test_fleet_benchmark.py runs ``fleet.py --smoke``).
    """
    import resource

    from harness import Row, Run

    from phaita.testing.olah import find_olah_cli

    b = ctx.bench
    rows = {j: Row("11-outage", "phaita_fetch", f"jitter {j:g}") for j in (0.0, 0.5)}
    reset_row = Row("11-reset", "phaita_fetch", "backoff 10 s, no jitter")
    b.rows.extend([*rows.values(), reset_row])
    skip = "skipped (smoke)" if not b.mode.heavy_everywhere else (
        "skipped (no olah)" if find_olah_cli() is None else None)
    if skip:
        for row in (*rows.values(), reset_row):
            row.skipped = skip
        return
    b.log("Scenario 11: 20 clients through olah after a mirror outage; an origin reset behind olah")
    results = run_parts(clients=20, base=4.0, mb=8.0, parts={"outage", "reset"})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in results["outage"]:
        fr = r["first_retry_s"]
        row = rows[r["jitter"]]
        row.note += (f", retries {fr['min']:.1f}-{fr['max']:.1f} s, <= {r['most_retries_within_0_5_s']} in 0.5 s, "
                     f"{r['upstream_requests']} origin requests")
        row.runs.append(Run(r["ok"] == r["clients"], False, r["all_done_after_s"] or 0.0, None, rss,
                            error="; ".join(r["failed"]) or None,
                            bytes_ratio=r["upstream_weights_bytes"] / r["weights_size"]))
    r = results["reset"]
    reset_row.note += f", {r['failed_attempts']} failed attempt(s)"
    reset_row.runs.append(Run(r["ok"], False, r["seconds"], None, rss))


if __name__ == "__main__":
    sys.exit(main())
