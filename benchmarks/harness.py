"""The benchmark harness: one client operation per fresh process, rows of runs, interleaving.

A :class:`Row` is one client in one scenario; :meth:`Bench.measure` runs a scenario's rows ``runs``
times, interleaved (run 1 of every row, then run 2..., each round starting one row later) so that
noise on a shared machine spreads over every client; ``os.sync()`` before each run keeps one
run's disk writes out of the next. A run that reaches the cap is killed and not repeated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "_client.py"
REPO_MODEL = "bench/bert"
REPO_LARGE = "bench/large"
WEIGHTS = "model.safetensors"

LABELS = {
    "phaita": "phaita",
    "phaita_fetch": "phaita fetch",
    "hub": "hub + from_pretrained",
    "hub_fetch": "hub fetch",
    "transformers": "transformers",
    "floor": "minimal client (floor)",
    "hf_transfer": "hf_transfer.download",
    "curl_null": "floor: curl to /dev/null",
    "curl_disk": "floor: curl to disk, then sync",
    "curl_cache": "floor: curl to disk, no sync",
    "sha256": "floor: sha256 on one core",
    "import_phaita": "import phaita only",
    "import_hub": "import hub only",
}
HEAVY = {"phaita", "hub", "transformers"}  # import torch + transformers to load a model


@dataclass(frozen=True)
class Mode:
    name: str
    runs: int
    cap: float  # wall-clock cap of one run, seconds
    model_mb: float
    large_bytes: int
    trickle_after: int
    trickle_rate: float
    trickle_timeout: float
    heavy_everywhere: bool


FULL = Mode("full", runs=5, cap=90.0, model_mb=200, large_bytes=1 << 30, trickle_after=1_000_000,
            trickle_rate=50_000, trickle_timeout=30.0, heavy_everywhere=True)
SMOKE = Mode("smoke", runs=1, cap=4.0, model_mb=2, large_bytes=16 << 20, trickle_after=100_000,
             trickle_rate=50_000, trickle_timeout=2.0, heavy_everywhere=False)


@dataclass
class Run:
    ok: bool
    capped: bool
    wall_s: float
    call_s: float | None
    rss_mb: float
    error: str | None = None
    bytes_ratio: float | None = None


def child_env(endpoint: str, cache: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean client environment: no token, no offline switch, no loader knobs from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "PHAITA_", "TRANSFORMERS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled imports, as on a user's machine
    env.update(
        HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def run_child(spec: dict, env: dict[str, str], cap: float, logdir: Path) -> Run:
    """Run one client operation in a fresh process; kill it at ``cap`` seconds.

    Peak RSS comes from ``wait4`` (the kernel's high-water mark of that very process).
    """
    logdir.mkdir(parents=True, exist_ok=True)
    out_path = logdir / "child.out"
    with open(out_path, "w") as out, open(logdir / "child.err", "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(CLIENT), json.dumps(spec)], env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        capped = threading.Event()

        def kill() -> None:
            capped.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: only what it started
            except ProcessLookupError:
                pass

        timer = threading.Timer(cap, kill)
        timer.daemon = True
        timer.start()
        try:
            _, _status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = 0  # reaped by wait4; keep Popen from trying again
    result: dict = {}
    for line in reversed(out_path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                pass
    rss_mb = usage.ru_maxrss * 1024 / 1e6  # Linux reports KiB
    if capped.is_set():
        return Run(False, True, wall, None, rss_mb, error=f"killed at the {cap:g} s cap")
    if not result:
        tail = (logdir / "child.err").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return Run(False, False, wall, None, rss_mb, error=f"crashed: {tail[0][:200]}")
    return Run(bool(result.get("ok")), False, wall, result.get("call_s"), rss_mb, error=result.get("error"))


@dataclass
class Row:
    scenario: str  # "1", "2-local", "2-refused", "2-stalled", "3-reset", "3-close", "4", "5"
    op: str
    note: str = ""
    spec: dict = field(default_factory=dict)  # extra keys for the child spec
    endpoint: Callable[[], str] | None = None
    cache: Path | None = None  # None: a fresh, empty cache for every run
    cache_root: Path | None = None  # where those fresh caches go (None: the work folder; e.g. a tmpfs)
    hub: object | None = None  # the LocalHub whose bytes are counted
    file_size: int | None = None
    count: str = WEIGHTS  # which requests' bytes the bytes ratio counts (a path part)
    faults: Callable[[], object] | None = None  # a fresh FaultPlan for every run
    cap: float | None = None  # None: the run's cap (``--cap``)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the client
    skipped: str | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.op] + (f" ({self.note})" if self.note else "")

    @property
    def capped(self) -> bool:
        return any(r.capped for r in self.runs)

    def values(self, attr: str = "wall_s") -> list[float]:
        return [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None and not r.capped]

    def median(self, attr: str = "wall_s") -> float | None:
        if self.capped or not self.runs:
            return None
        vals = self.values(attr)
        return statistics.median(vals) if vals else None

    @property
    def done(self) -> int:
        return sum(r.ok for r in self.runs)


class Bench:
    def __init__(self, mode: Mode, out: Path, models_dir: Path, cap: float, runs: int, log=print) -> None:
        self.mode, self.out, self.models_dir, self.cap, self.runs = mode, out, models_dir, cap, runs
        self.work = out / "work"
        self.home = self.work / "hf-home"
        self.rows: list[Row] = []
        self.log = log
        self._counter = 0

    # ------------------------------------------------------------------ running rows
    def measure(self, rows: list[Row]) -> None:
        """Run every row ``runs`` times, interleaved; round i starts at row i (no client always first)."""
        self.rows.extend(rows)
        for i in range(self.runs):
            k = i % len(rows)
            for row in rows[k:] + rows[:k]:
                if row.skipped or row.capped:
                    continue
                self.run_once(row, i)

    def run_once(self, row: Row, i: int) -> Run:
        self._counter += 1
        tag = f"{self._counter:03d}-{row.scenario}-{row.op}"
        cache = row.cache
        fresh = cache is None
        if fresh:
            cache = (row.cache_root or self.work / "caches") / tag
        endpoint = row.endpoint() if row.endpoint else "http://127.0.0.1:9"
        spec = {"op": row.op, "repo": row.spec.get("repo", REPO_MODEL), "cache_dir": str(cache), **row.spec}
        if row.hub is not None:
            if row.faults is not None:
                row.hub.set_faults(row.faults())
            row.hub.reset_stats()
        os.sync()  # the previous run's dirty pages are written back now, not during this run
        run = run_child(spec, child_env(endpoint, cache, self.home, row.env), row.cap or self.cap,
                        self.work / "logs" / tag)
        if row.hub is not None and row.file_size:
            if run.capped:
                time.sleep(0.2)  # let the hub notice the killed client
            run.bytes_ratio = row.hub.bytes_sent(row.count) / row.file_size
            if row.faults is not None:
                row.hub.set_faults(None)
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
        row.runs.append(run)
        state = "ok" if run.ok else ("CAPPED" if run.capped else f"failed: {run.error}")
        extra = f", bytes x{run.bytes_ratio:.3f}" if run.bytes_ratio is not None else ""
        self.log(f"  [{row.scenario}] {row.label:<38} run {i + 1}: {run.wall_s:7.2f} s, "
                 f"RSS {run.rss_mb:6.0f} MB{extra} -- {state}")
        return run

    def prime(self, op: str, endpoint: str, cache: Path, repo: str = REPO_MODEL) -> None:
        """Fill a warm cache with the client's own download (not timed)."""
        run = run_child({"op": op, "repo": repo, "cache_dir": str(cache)}, child_env(endpoint, cache, self.home),
                        max(self.cap, 600), self.work / "logs" / f"prime-{op}")
        if not run.ok:
            raise RuntimeError(f"could not fill the warm cache with {op}: {run.error}")

    @property
    def long_cap(self) -> float:
        """Cap of runs expected to finish (loads): generous even in smoke mode."""
        return max(self.cap, 60.0)

    def heavy_row(self, row: Row) -> Row:
        if row.op in HEAVY and not self.mode.heavy_everywhere:
            row.skipped = "skipped (smoke)"
        return row
