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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
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


# --------------------------------------------------------------------------- one run


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


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    scenario: str  # "1", "2-local", "2-refused", "2-stalled", "3-reset", "3-close", "4", "5"
    op: str
    note: str = ""
    spec: dict = field(default_factory=dict)  # extra keys for the child spec
    endpoint: Callable[[], str] | None = None
    cache: Path | None = None  # None: a fresh, empty cache for every run
    hub: object | None = None  # the LocalHub whose bytes are counted
    file_size: int | None = None
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
            cache = self.work / "caches" / tag
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
            run.bytes_ratio = row.hub.bytes_sent(WEIGHTS) / row.file_size
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


# --------------------------------------------------------------------------- inputs


def make_model(models_dir: Path, mb: float, home: Path) -> Path:
    """A BERT-like model of about ``mb`` MB, generated once and kept in ``models_dir``."""
    dest = models_dir / f"bert-{mb:g}mb"
    if (dest / "config.json").is_file() and (dest / WEIGHTS).is_file():
        return dest
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=models_dir))
    run = run_child({"op": "make_model", "out": str(tmp), "mb": mb}, child_env("http://127.0.0.1:9", home, home),
                    600, tmp.with_suffix(".log"))
    if not run.ok:
        raise RuntimeError(f"could not generate the benchmark model: {run.error}")
    try:
        os.replace(tmp, dest)  # atomic: a concurrent run may have won; then keep theirs
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(tmp.with_suffix(".log"), ignore_errors=True)
    return dest


def make_large(models_dir: Path, size: int) -> Path:
    from phaita.testing import publish_large_file

    path = models_dir / f"large-{size}" / REPO_LARGE / WEIGHTS
    if path.is_file() and path.stat().st_size == size:
        return path
    tmp_root = Path(tempfile.mkdtemp(prefix="large.", dir=models_dir))
    made = publish_large_file(tmp_root, REPO_LARGE, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(made, path)
    shutil.rmtree(tmp_root, ignore_errors=True)
    return path


def publish(root: Path, repo_id: str, files: dict[str, Path]) -> None:
    from phaita.testing.models import link_or_copy

    for name, src in files.items():
        link_or_copy(src, root / repo_id / name)


class Blackhole:
    """A server that accepts TCP connections and never answers anything (nor reads)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="Blackhole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in [self._sock, *self._conns]:
            conn.close()


def refusing_endpoint() -> tuple[str, socket.socket]:
    """A bound, never-listening port: every connection attempt is refused (RST) at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock


# --------------------------------------------------------------------------- scenarios


def scenario_1(b: Bench, hub, size: int) -> None:
    b.log("Scenario 1: clean network, cold cache")
    rows = [b.heavy_row(Row("1", op, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap))
            for op in ("phaita", "hub", "transformers", "phaita_fetch", "hub_fetch")]
    rows[0].skipped = None  # smoke mode too: load one model through phaita, end to end
    b.measure(rows)


def scenario_2(b: Bench, hub, stalled_hub, refused_url: str, blackhole: Blackhole) -> None:
    b.log("Scenario 2: warm cache; hub refusing connections / stalled")
    caches = {op: b.work / "warm" / op for op in ("phaita", "hub", "transformers")}
    b.prime("phaita_fetch", hub.url, caches["phaita"])
    b.prime("hub_fetch", hub.url, caches["hub"])
    if b.mode.heavy_everywhere:
        b.prime("transformers", hub.url, caches["transformers"])
    owner = {"phaita": "phaita", "phaita_fetch": "phaita", "hub": "hub", "hub_fetch": "hub",
             "transformers": "transformers"}
    local = [
        b.heavy_row(Row("2-local", "transformers", "local_files_only=True", spec={"local_only": True},
                        cache=caches["transformers"], cap=b.long_cap)),
        b.heavy_row(Row("2-local", "phaita", "allow_offline=True", spec={"local_only": True}, cache=caches["phaita"],
                        cap=b.long_cap)),
        Row("2-local", "phaita_fetch", "local_files_only=True", spec={"local_only": True}, cache=caches["phaita"],
            cap=b.long_cap),
    ]
    rows = list(local)
    for scenario, url in (("2-refused", lambda: refused_url), ("2-stalled", lambda: stalled_hub.url)):
        rows += [b.heavy_row(Row(scenario, op, endpoint=url, cache=caches[owner[op]]))
                 for op in ("phaita", "hub", "transformers")]
        rows.append(Row(scenario, "phaita_fetch", endpoint=url, cache=caches["phaita"]))
    # The LocalHub answers routes it does not serve (such as huggingface_hub's /api/agent-harnesses,
    # fetched with a 3 s timeout whenever telemetry is on and no registry younger than a day is cached)
    # with a 404, stalled or not. A server that never answers anything shows what that costs.
    telemetry_on = {"HF_HUB_DISABLE_TELEMETRY": "0"}
    rows += [
        Row("2-blackhole", "phaita_fetch", "telemetry off", endpoint=lambda: blackhole.url, cache=caches["phaita"]),
        Row("2-blackhole", "phaita_fetch", "telemetry on: hf default", endpoint=lambda: blackhole.url,
            cache=caches["phaita"], env=telemetry_on),
        b.heavy_row(Row("2-blackhole", "phaita", "telemetry on: hf default", endpoint=lambda: blackhole.url,
                        cache=caches["phaita"], env=telemetry_on)),
    ]
    b.measure(rows)  # one interleaved set: the references share the faulty runs' noise


def scenario_3(b: Bench, hub, size: int) -> None:
    from phaita.testing import FaultPlan, FaultRule

    cut = size // 10
    b.log("Scenario 3: transfer cut after each 10 % of the file, by TCP resets and by clean closes")

    def plan_for(kind: str) -> Callable[[], FaultPlan]:
        def plan() -> FaultPlan:
            # rule k fires on the k-th GET of the weights, after 10 % of the file: a client that resumes
            # where it stopped is cut at 10 %, 20 % ... 90 % of the file.
            return FaultPlan([FaultRule(kind, path=f"*/{WEIGHTS}", nth=k, times=1, after_bytes=cut) for k in range(1, 10)])
        return plan

    # clean references in the same interleaved set, so that "x the clean run" compares runs made
    # at the same time on a shared machine
    rows = [Row("3-clean", op, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap)
            for op in ("phaita_fetch", "hub_fetch", "floor")]
    for kind in ("reset", "close"):
        rows += [Row(f"3-{kind}", op, endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan_for(kind))
                 for op in ("phaita_fetch", "hub_fetch", "floor")]
        rows.append(b.heavy_row(Row(f"3-{kind}", "transformers", endpoint=lambda: hub.url, hub=hub, file_size=size,
                                    faults=plan_for(kind))))
    b.measure(rows)


def scenario_4(b: Bench, hub, size: int) -> None:
    from phaita.testing import FaultPlan, FaultRule

    m = b.mode
    b.log(f"Scenario 4: hub trickling {m.trickle_rate / 1e3:g} kB/s after {m.trickle_after / 1e6:g} MB")

    def plan() -> FaultPlan:
        return FaultPlan([FaultRule("trickle", path=f"*/{WEIGHTS}", after_bytes=m.trickle_after, rate_bps=m.trickle_rate)])

    timeout = {"timeout": m.trickle_timeout, "max_retries": 1}
    rows = [Row("4", "phaita", f"timeout={m.trickle_timeout:g}, max_retries=1", spec=timeout, endpoint=lambda: hub.url,
                hub=hub, file_size=size, faults=plan)]
    rows.append(Row("4", "hub_fetch", endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan))
    rows.append(b.heavy_row(Row("4", "transformers", endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan)))
    b.measure(rows)


def scenario_5(b: Bench, hub, size: int) -> None:
    b.log(f"Scenario 5: peak memory while pulling a {size / 2**30:.2f} GiB file")
    rows = [Row("5", op, spec={"repo": REPO_LARGE}, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap)
            for op in ("phaita_fetch", "hub_fetch")]
    rows += [Row("5", op, endpoint=lambda: hub.url, cap=b.long_cap) for op in ("import_phaita", "import_hub")]
    b.measure(rows)


# --------------------------------------------------------------------------- report

SCENARIO_TITLES = {
    "1": "1 clean, cold cache",
    "2-local": "2 warm, local only (reference)",
    "2-refused": "2 warm, hub refusing",
    "2-stalled": "2 warm, hub stalled",
    "2-blackhole": "2 warm, hub never answers",
    "3-clean": "3 reference: no cuts",
    "3-reset": "3 cut every 10 %: TCP resets",
    "3-close": "3 cut every 10 %: clean closes",
    "4": "4 trickling hub",
    "5": "5 pull one large file",
}


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def find(rows: list[Row], scenario: str, op: str, note_has: str = "") -> Row | None:
    for r in rows:
        if r.scenario == scenario and r.op == op and note_has in r.note and not r.skipped and r.runs:
            return r
    return None


def ratio(a: Row | None, b: Row | None, attr: str = "wall_s") -> float | None:
    if a is None or b is None:
        return None
    ma, mb = a.median(attr), b.median(attr)
    return None if ma is None or mb is None or mb == 0 else ma / mb


def comparison(row: Row, rows: list[Row], cap: float, timeout: float) -> str:
    """The last column of the table: what this row means against its reference."""
    if row.skipped:
        return ""
    s = row.scenario
    if row.capped:
        return f"> {cap:g} s cap"
    if s == "1":
        ref = {"phaita": "hub", "phaita_fetch": "hub_fetch"}.get(row.op)
        if ref:
            parts = [f"x{r:.3f} vs {LABELS[ref]}" for r in [ratio(row, find(rows, '1', ref))] if r is not None]
            if row.op == "phaita":
                parts += [f"x{r:.3f} vs transformers" for r in [ratio(row, find(rows, '1', 'transformers'))] if r is not None]
            return ", ".join(parts)
        return "reference"
    if s.startswith("2-") and s != "2-local":
        refs = [("phaita_fetch", "")] if row.op == "phaita_fetch" else [("transformers", ""), ("phaita", "")]
        out = []
        for ref_op, _ in refs:
            ref = find(rows, "2-local", ref_op)
            m, mr = row.median(), ref.median() if ref else None
            if m is not None and mr is not None:
                out.append(f"{m - mr:+.2f} s vs {ref.label}")
        return ", ".join(out)
    if s == "3-clean":
        return "reference"
    if s.startswith("3-"):
        clean = find(rows, "3-clean", row.op) or find(rows, "1", row.op)
        br = [r.bytes_ratio for r in row.runs if r.bytes_ratio is not None]
        out = [f"bytes x{statistics.median(br):.3f}"] if br else []
        r = ratio(row, clean)
        if r is not None and row.done:
            out.append(f"x{r:.2f} the clean run")
        return ", ".join(out)
    if s == "4":
        m = row.median("call_s") if row.done == 0 else None
        return f"attempt cut after {m:.2f} s (timeout {timeout:g} s)" if m is not None else ""
    if s == "5":
        return f"peak RSS {statistics.median(r.rss_mb for r in row.runs):.0f} MB"
    return ""


def table(rows: list[Row], cap: float, timeout: float) -> str:
    head = f"{'scenario':<32} {'client':<40} {'runs':>4} {'ok':>5} {'wall s':>8} {'min-max':>13} {'call s':>7} {'RSS MB':>7}  result"
    lines = [head, "-" * len(head)]
    last = None
    for row in rows:
        title = SCENARIO_TITLES[row.scenario] if row.scenario != last else ""
        last = row.scenario
        if row.skipped:
            lines.append(f"{title:<32} {row.label:<40} {'':>4} {'':>5} {row.skipped:>8}")
            continue
        vals = row.values()
        wall = f"> {cap:g}" if row.capped else fmt_s(row.median())
        spread = f"{min(vals):.2f}-{max(vals):.2f}" if vals else "-"
        rss = statistics.median(r.rss_mb for r in row.runs) if row.runs else 0
        lines.append(f"{title:<32} {row.label:<40} {len(row.runs):>4} {row.done:>2}/{len(row.runs):<2} {wall:>8} "
                     f"{spread:>13} {fmt_s(row.median('call_s')):>7} {rss:>7.0f}  {comparison(row, rows, cap, timeout)}")
    return "\n".join(lines)


@dataclass
class Goal:
    scenario: str
    text: str
    met: bool | None  # None: not measured in this mode
    detail: str


def goals(rows: list[Row], mode: Mode, cap: float) -> list[Goal]:
    out: list[Goal] = []
    g1 = [(ratio(find(rows, "1", "phaita"), find(rows, "1", "hub")), "vs hub + from_pretrained"),
          (ratio(find(rows, "1", "phaita"), find(rows, "1", "transformers")), "vs transformers")]
    g1 = [(r, what) for r, what in g1 if r is not None]
    detail = "; ".join(f"{r:.3f} ({what})" for r, what in g1) or "loaded models not measured"
    fetch = ratio(find(rows, "1", "phaita_fetch"), find(rows, "1", "hub_fetch"))
    if fetch is not None:
        detail += (f"; fetch phase alone {fetch:.3f} vs hub fetch (not the goal's measure: phaita fsyncs each "
                   "file before it becomes visible, the hub client does not)")
    out.append(Goal("1", "clean cold cache, time to a loaded model, phaita / plain <= 1.05 (median wall time)",
                    all(r <= 1.05 for r, _ in g1) if g1 else None, detail))
    details, oks = [], []
    pairs = [("phaita", find(rows, "2-local", "transformers")), ("phaita", find(rows, "2-local", "phaita")),
             ("phaita_fetch", find(rows, "2-local", "phaita_fetch"))]
    for cond in ("refused", "stalled"):
        for op, r in pairs:
            row = find(rows, f"2-{cond}", op)
            if row is None or r is None:
                continue
            m, mr = row.median(), r.median()
            if m is None or mr is None or row.done < len(row.runs):
                oks.append(False)
                details.append(f"{cond}, {LABELS[op]}: not loaded")
                continue
            oks.append(m - mr <= 3.0)
            details.append(f"{cond}, {LABELS[op]} {m - mr:+.2f} s vs {r.label}")
    out.append(Goal("2", "warm cache, hub refusing / stalled: phaita within 3 s of a local-only load",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    details, oks = [], []
    for op, r in pairs:
        row = find(rows, "2-blackhole", op, "telemetry on")
        if row is not None and row.capped:
            oks.append(False)
            details.append(f"{LABELS[op]} > {cap:g} s (cap)")
            continue
        if row is None or r is None or row.median() is None or r.median() is None:
            continue
        oks.append(row.done == len(row.runs) and row.median() - r.median() <= 3.0)
        details.append(f"{LABELS[op]} {row.median() - r.median():+.2f} s vs {r.label}")
    off = find(rows, "2-blackhole", "phaita_fetch", "telemetry off")
    if off is not None and off.median() is not None and pairs[2][1] is not None and pairs[2][1].median() is not None:
        details.append(f"(telemetry off: phaita fetch {off.median() - pairs[2][1].median():+.2f} s)")
    out.append(Goal("2*", "the same on a hub that never answers anything, huggingface_hub telemetry on (its default)",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    details, oks = [], []
    clean = find(rows, "3-clean", "phaita_fetch")
    for kind in ("reset", "close"):
        row = find(rows, f"3-{kind}", "phaita_fetch")
        if row is None:
            continue
        br = max((r.bytes_ratio or 0) for r in row.runs)
        r = ratio(row, clean)
        done = row.done == len(row.runs)
        oks.append(done and br <= 1.01 and r is not None and r <= 1.5)
        fl = ratio(find(rows, f"3-{kind}", "floor"), find(rows, "3-clean", "floor"))
        details.append(f"{kind}: {row.done}/{len(row.runs)} completed, bytes x{br:.3f} (worst), "
                       + (f"wall x{r:.2f} the clean fetch" if r is not None else "no clean reference")
                       + (f" (minimal client: x{fl:.2f})" if fl is not None else ""))
    out.append(Goal("3", "cut every 10 %: completes, bytes served <= 1.01 x file, wall <= 1.5 x clean",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    row = find(rows, "4", "phaita")
    if row is not None and not row.capped:
        worst = max(r.call_s or r.wall_s for r in row.runs)
        cut = all(not r.ok for r in row.runs)
        out.append(Goal("4", f"trickle: attempt cut within timeout + 2 s ({mode.trickle_timeout + 2:g} s)",
                        cut and worst <= mode.trickle_timeout + 2,
                        f"cut after {row.median('call_s'):.2f} s median, {worst:.2f} s worst (call); "
                        f"process wall {row.median():.2f} s"))
    else:
        out.append(Goal("4", "trickle: attempt cut within timeout + 2 s", False if row else None,
                        "reached the cap" if row else "not measured"))
    row = find(rows, "5", "phaita_fetch")
    if row is not None:
        peak = max(r.rss_mb for r in row.runs)
        out.append(Goal("5", "peak RSS of the fetching process < 200 MB", peak < 200 and row.done == len(row.runs),
                        f"phaita fetch {peak:.0f} MB worst; "
                        + ", ".join(f"{x.label} {max(r.rss_mb for r in x.runs):.0f} MB"
                                    for x in rows if x.scenario == "5" and x is not row and x.runs)))
    return out


def chart(rows: list[Row], path: Path, cap: float, mode: Mode, goals_: list[Goal]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("1 clean, cold cache: wall time (s)", ["1"], "wall_s"),
        ("2 warm cache: time to a loaded model (s)", ["2-local", "2-refused", "2-stalled", "2-blackhole"], "wall_s"),
        ("3 cut every 10 %: wall time (s)", ["3-clean", "3-reset", "3-close"], "wall_s"),
        ("4 trickling hub: time until the call ends (s)", ["4"], "call_s"),
        ("5 pulling one large file: peak RSS (MB)", ["5"], "rss_mb"),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(17, 16))
    colors = {"phaita": "#1b7837", "phaita_fetch": "#5aae61", "hub": "#2166ac", "hub_fetch": "#67a9cf",
              "transformers": "#b2182b", "floor": "#999999", "import_phaita": "#a6dba0", "import_hub": "#d1e5f0"}
    for ax, (title, scenarios, attr) in zip(axes.flat, panels):
        picked = [r for r in rows if r.scenario in scenarios and not r.skipped and r.runs]
        names, vals, errs, cols, hatches, notes = [], [], [], [], [], []
        for r in picked:
            names.append(f"{r.scenario}: {r.label}")
            cols.append(colors.get(r.op, "grey"))
            if r.capped and attr != "rss_mb":
                vals.append(cap)
                errs.append((0, 0))
                hatches.append("//")
                notes.append(f"> {cap:g} s (cap)")
                continue
            if attr == "rss_mb":
                v = [x.rss_mb for x in r.runs]
            else:
                v = r.values(attr) or [0.0]
            med = statistics.median(v)
            vals.append(med)
            errs.append((med - min(v), max(v) - med))
            hatches.append("xx" if r.done < len(r.runs) and r.scenario != "4" else "")
            failed = r.done < len(r.runs) and r.scenario != "4"  # in 4 an attempt that ends is the point
            notes.append(f"{med:.2f}" + (f"  ({r.done}/{len(r.runs)} ok)" if failed else ""))
        y = list(range(len(names)))
        bars = ax.barh(y, vals, color=cols, xerr=list(zip(*errs)) if errs else None, capsize=3)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        for yi, v, err, note in zip(y, vals, errs, notes):
            ax.text(v + err[1], yi, "  " + note, va="center", fontsize=8)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        goal_x = {"4": mode.trickle_timeout + 2, "5": 200.0}.get(title[0])
        if goal_x is not None:
            ax.axvline(goal_x, color="k", ls="--", lw=1)
            ax.text(goal_x, len(names) - 0.45, " goal", fontsize=8)
        ax.set_xlim(0, max(vals + [goal_x or 0, 0.1]) * 1.4)
    ax = axes.flat[-1]
    ax.axis("off")
    text = "\n".join(f"{g.scenario}  {'MET ' if g.met else 'n/a ' if g.met is None else 'MISSED'}  {g.text}"
                     for g in goals_)
    ax.text(0, 1, f"Goals ({mode.name} mode; hatched //: reached the cap; xx: some runs failed)\n\n" + text,
            va="top", fontsize=8, family="monospace", wrap=True)
    fig.suptitle("phaita loader vs huggingface_hub / transformers against a local hub", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "?"
    return {
        "cpus": str(os.cpu_count()), "cpu": cpu, "ram": ram, "os": platform.platform(),
        "python": platform.python_version(), "torch": version("torch"), "transformers": version("transformers"),
        "huggingface_hub": version("huggingface_hub"), "httpx2": version("httpx2"),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 run, short caps (< 60 s)")
    parser.add_argument("--runs", type=int, default=None, help="runs per row (default 5; smoke 1)")
    parser.add_argument("--cap", type=float, default=None, help="wall-clock cap of one run, s (default 90; smoke 4)")
    parser.add_argument("--only", default="1,2,3,4,5", help="scenarios to run, e.g. 1,3")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="results, chart, scratch (default benchmarks/out)")
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models",
                        help="generated models, kept between invocations (default benchmarks/out/models)")
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
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.home.mkdir(parents=True)

    from phaita.testing import FaultPlan, FaultRule, LocalHub

    model = make_model(bench.models_dir, mode.model_mb, bench.home)
    size = (model / WEIGHTS).stat().st_size
    root = bench.work / "hub-root"
    publish(root, REPO_MODEL, {"config.json": model / "config.json", WEIGHTS: model / WEIGHTS})
    large_size = mode.large_bytes
    if "5" in only:
        publish(root, REPO_LARGE, {WEIGHTS: make_large(bench.models_dir, large_size)})
    refused_url, refused_sock = refusing_endpoint()
    blackhole = Blackhole()
    stall = FaultPlan([FaultRule("stall_headers", path="*", api=True, methods=("GET", "HEAD"))])
    try:
        with LocalHub(root) as hub:
            for repo in (REPO_MODEL, REPO_LARGE):
                if hub.repo_exists(repo):
                    hub.files(repo)  # hash once, before anything is timed
            log(f"hub {hub.url}: {REPO_MODEL} weights {size / 1e6:.1f} MB")
            if "1" in only:
                scenario_1(bench, hub, size)
            if "2" in only:
                with LocalHub(root, faults=stall) as stalled:
                    scenario_2(bench, hub, stalled, refused_url, blackhole)
            if "3" in only:
                scenario_3(bench, hub, size)
            if "4" in only:
                scenario_4(bench, hub, size)
            if "5" in only:
                scenario_5(bench, hub, large_size)
    finally:
        refused_sock.close()
        blackhole.close()
    results = {"mode": mode.name, "runs": runs, "cap_s": cap, "model_bytes": size, "large_bytes": large_size,
               "elapsed_s": time.perf_counter() - started, "machine": info,
               "rows": [{"scenario": r.scenario, "op": r.op, "note": r.note, "label": r.label, "skipped": r.skipped,
                         "runs": [asdict(x) for x in r.runs]} for r in bench.rows]}
    report(results, out)
    shutil.rmtree(bench.work, ignore_errors=True)
    return 0


def rows_from(results: dict) -> list[Row]:
    rows = []
    for r in results["rows"]:
        note = r.get("note")
        if note is None:  # results written before notes were saved: recover it from the label
            base = LABELS[r["op"]]
            note = r["label"][len(base) + 2:-1] if r["label"].startswith(base + " (") else ""
        rows.append(Row(r["scenario"], r["op"], note, skipped=r["skipped"], runs=[Run(**x) for x in r["runs"]]))
    return rows


def report(results: dict, out: Path) -> None:
    """Print the table and the goals, write the chart and results.json (also from saved results)."""
    mode = SMOKE if results["mode"] == "smoke" else FULL
    cap, info, rows = results["cap_s"], results["machine"], rows_from(results)
    goals_ = goals(rows, mode, cap)
    print(f"\nphaita vs plain clients ({mode.name} mode, {results['runs']} run(s) per row, median; cap {cap:g} s; "
          f"model weights {results['model_bytes'] / 1e6:.1f} MB, large file {results['large_bytes'] / 2**30:.2f} GiB; "
          f"total {results['elapsed_s'] / 60:.1f} min)")
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['ram']} RAM, Python {info['python']}, "
          f"torch {info['torch']}, transformers {info['transformers']}, huggingface_hub {info['huggingface_hub']}")
    print()
    print(table(rows, cap, mode.trickle_timeout))
    print("\nGoals")
    for g in goals_:
        verdict = "n/a" if g.met is None else ("MET" if g.met else "MISSED")
        print(f"  [{verdict:^6}] {g.scenario:<2} {g.text}\n             {g.detail}")
    errors = sorted({(r.scenario, r.label, run.error) for r in rows for run in r.runs if run.error})
    if errors:
        print("\nFailures")
        for scenario, label, error in errors:
            print(f"  {scenario:<10} {label:<40} {error}")
    png = out / "benchmarks.png"
    chart(rows, png, cap, mode, goals_)
    results = {**results, "goals": [asdict(g) for g in goals_]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nchart: {png}\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
