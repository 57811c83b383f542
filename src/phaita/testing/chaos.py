"""Chaos runner: many loads through a faulty local hub, every result checked byte for byte.

``python -m phaita.testing.chaos [--full] [--loads N] [--seed S] [--workers W] [--rate R]``
prints a summary table and exits with status 1 when a load was corrupt, hung or failed with an
unexpected error. ``run_chaos()`` is the same thing from Python (the CI test calls it).

What one run does
-----------------
1. Publishes a few tiny models into a temporary hub root (a BERT, a GPT-2, a DeBERTa tokenizer,
   a BERT with four safetensors shards and an index, and a 2 MB raw weights file), starts a
   :class:`~phaita.testing.hub.LocalHub` on it, and loads each one once with no faults: that
   reference load gives the files each kind of load needs and checks the set-up.
2. Turns on a seeded :class:`ChaosPlan`: each GET of a file (and, at a lower rate, of the listing
   API) draws a fault: a TCP reset or a clean close (truncation) at a random offset, HTTP
   500/502/503/504, 429 with a short ``Retry-After``, a stall after the headers or mid-body, a
   trickle, or corrupted bytes.
3. Runs ``loads`` loads on ``workers`` threads. Loads come in groups that share one fresh cache
   folder (the second load of a group finds the first one's files: a warm cache, or partial files
   to resume). Each load picks a model, a way of loading it (``robust_model_download``,
   ``load_model_and_tokenizer``, or the fetch phase alone) and ``max_retries`` in 1..4.
4. Checks every load:

   * **succeeded**: every file of the snapshot that ``from_pretrained`` was given (or that the
     fetch returned) has exactly the hub's bytes (sha256 of both), and no needed file is missing;
   * **failed cleanly**: a ``ModelDownloadError`` whose cause is transient, after exactly
     ``max_retries`` attempts;
   * anything else is an **unexpected error**;
   * **hang**: the load ran past ``max_retries * (timeout + longest wait) + slack``;
   * **corrupt**: a loaded file differed from the hub's, or the cache afterwards holds a blob
     whose content does not match its name (sha256 or git sha1), or a snapshot links a partial
     (``.incomplete``) file or any file whose bytes are not the hub's.

Bytes served / bytes needed: the hub's count of file-body bytes sent, over the sum of the sizes
of the distinct files each cache folder needed (what a fault-free client would transfer).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .digests import git_sha1_file, sha256_file
from .faults import FaultPlan, FaultRule, FiredFault
from .env import environment
from .hub import LocalHub

__all__ = ["ChaosConfig", "ChaosPlan", "ChaosReport", "LoadResult", "run_chaos", "audit_cache", "main",
           "CHAOS_KINDS"]

# Fault labels drawn by ChaosPlan (a label names a kind plus its parameters).
CHAOS_KINDS = ("reset", "close", "5xx", "429", "stall", "stall_headers", "trickle", "corrupt")

SHARDED = "chaos/tiny-bert-sharded"
RAW = "chaos/raw-weights"


# --------------------------------------------------------------------------- configuration


@dataclass
class ChaosConfig:
    """Knobs of one run. ``short()`` is the CI mode; ``full()`` the long one."""

    loads: int = 200
    seed: int = 0
    rate: float = 0.12  # fault probability per file GET
    api_rate: float = 0.06  # fault probability per listing request
    kinds: tuple[str, ...] = CHAOS_KINDS
    timeout: float = 2.0  # per attempt
    stall_timeout: float = 0.25  # PHAITA_STALL_TIMEOUT
    backoff_base: float = 0.01  # PHAITA_BACKOFF_BASE
    retry_after: tuple[float, ...] = (0.1, 0.3)  # Retry-After values of injected 429s
    stall_seconds: tuple[float, float] = (0.5, 1.5)
    trickle_rates: tuple[float, ...] = (20_000.0, 100_000.0, 500_000.0)
    retries: tuple[int, ...] = (1, 2, 3, 4)
    workers: int = 3
    loads_per_cache: int = 2
    raw_size: int = 2_000_000
    slack: float = 6.0
    keep: bool = False  # keep the work folder (caches of failed loads) for inspection

    @classmethod
    def short(cls, **overrides: Any) -> "ChaosConfig":
        return cls(**overrides)

    @classmethod
    def full(cls, **overrides: Any) -> "ChaosConfig":
        values: dict[str, Any] = dict(loads=1000, rate=0.2, api_rate=0.1, timeout=4.0, stall_timeout=0.5,
                                      stall_seconds=(0.5, 3.0), retries=(1, 2, 3, 4, 5), raw_size=8_000_000,
                                      loads_per_cache=3, slack=10.0)
        values.update(overrides)
        return cls(**values)

    def longest_wait(self, attempts: int) -> float:
        backoff = self.backoff_base * 2 ** max(attempts - 2, 0)
        return max([backoff, *self.retry_after]) * 1.5  # PHAITA_BACKOFF_JITTER's default spread, +50 %

    def bound(self, attempts: int) -> float:
        """Longest a load with ``attempts`` attempts may take before it counts as a hang."""
        return attempts * (self.timeout + self.longest_wait(attempts)) + self.slack


# --------------------------------------------------------------------------- faults


class ChaosPlan(FaultPlan):
    """Random faults with random parameters, drawn from a seeded generator.

    With one worker the sequence of faults is reproducible for a seed; with several, which
    request draws which fault depends on thread timing (the rates and parameters do not).
    """

    def __init__(self, config: ChaosConfig) -> None:
        super().__init__(seed=config.seed)
        self.config = config
        self.enabled = True
        self.labels: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return self.enabled

    def select(self, method: str, path: str, api: bool = False) -> FaultRule | None:
        cfg = self.config
        with self._lock:
            if not self.enabled or method.upper() != "GET":
                return None
            if self._rng.random() >= (cfg.api_rate if api else cfg.rate):
                return None
            rng = self._rng
            label = rng.choice(cfg.kinds)
            at = round(rng.uniform(0.05, 0.95), 3)
            if label == "5xx":
                rule = FaultRule("status", status=rng.choice((500, 502, 503, 504)))
            elif label == "429":
                rule = FaultRule("status", status=429, retry_after=rng.choice(cfg.retry_after))
            elif label == "stall":
                rule = FaultRule("stall", after_fraction=at, seconds=round(rng.uniform(*cfg.stall_seconds), 2))
            elif label == "stall_headers":
                rule = FaultRule("stall_headers", seconds=round(rng.uniform(*cfg.stall_seconds), 2))
            elif label == "trickle":
                rule = FaultRule("trickle", after_fraction=at, rate_bps=rng.choice(cfg.trickle_rates))
            elif label == "corrupt":
                rule = FaultRule("corrupt", after_fraction=at, corrupt_bytes=rng.randint(1, 16))
            else:  # reset, close
                rule = FaultRule(label, after_fraction=at)
            self.labels[label] += 1
            self.fired.append(FiredFault(rule.kind, method, path, None, time.time()))
            return rule


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class LoadSpec:
    """One way of loading one repository."""

    repo: str
    how: str  # "model" (robust_model_download), "pair" (load_model_and_tokenizer), "fetch" (prefetch_model)
    model_type: str

    @property
    def name(self) -> str:
        return f"{self.repo} [{self.how}:{self.model_type}]"


SPECS = (
    LoadSpec("phaita-test/tiny-bert", "model", "auto"),
    LoadSpec("phaita-test/tiny-bert", "model", "tokenizer"),
    LoadSpec("phaita-test/tiny-gpt2", "pair", "causal_lm"),
    LoadSpec("phaita-test/tiny-deberta", "model", "tokenizer"),
    LoadSpec("phaita-test/tiny-deberta", "model", "auto"),
    LoadSpec(SHARDED, "model", "auto"),
    LoadSpec(RAW, "fetch", "auto"),
)


def publish_chaos_models(root: Path, raw_size: int) -> None:
    """The tiny models, a sharded BERT, and a raw weights file of ``raw_size`` bytes."""
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    from .models import publish_large_file, write_tiny_bert, write_tiny_deberta, write_tiny_gpt2

    hf_logging.disable_progress_bar()
    write_tiny_bert(root / "phaita-test" / "tiny-bert")
    write_tiny_gpt2(root / "phaita-test" / "tiny-gpt2")
    write_tiny_deberta(root / "phaita-test" / "tiny-deberta")
    sharded = root / SHARDED
    BertModel.from_pretrained(str(root / "phaita-test" / "tiny-bert")).save_pretrained(str(sharded), max_shard_size="60KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy2(root / "phaita-test" / "tiny-bert" / name, sharded / name)
    publish_large_file(root, RAW, raw_size)
    (root / RAW / "config.json").write_text('{"note": "raw weights for the chaos runner"}\n')


# --------------------------------------------------------------------------- checking


def snapshot_files(folder: Path) -> dict[str, Path]:
    """Every file (or link) under a snapshot folder, by relative posix path."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_symlink() or p.is_file()}


def audit_cache(cache_dir: Path, truth: Callable[[str, str], str | None]) -> list[str]:
    """Problems in a cache folder: blobs that do not match their name, snapshots linking partial
    files or files whose bytes are not the hub's (``truth(repo, path)`` gives the hub's sha256)."""
    problems: list[str] = []
    for repo_dir in sorted(Path(cache_dir).glob("models--*")):
        repo_id = "/".join(repo_dir.name.split("--")[1:])
        for blob in sorted((repo_dir / "blobs").glob("*")):
            name = blob.name
            if name.endswith(".incomplete"):
                continue
            actual = sha256_file(blob) if len(name) == 64 else git_sha1_file(blob)
            if actual != name:
                problems.append(f"{repo_id}: blob {name} holds other bytes ({blob.stat().st_size} bytes)")
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            for rel, path in snapshot_files(snapshot).items():
                target = os.path.realpath(path)
                if target.endswith(".incomplete"):
                    problems.append(f"{repo_id}: {rel} links a partial file")
                    continue
                if not os.path.exists(target):
                    continue  # dangling: a missing file, never treated as complete
                expected = truth(repo_id, rel)
                if expected is None:
                    problems.append(f"{repo_id}: {rel} is not a file of the hub")
                elif sha256_file(Path(target)) != expected:
                    problems.append(f"{repo_id}: {rel} in snapshot {snapshot.name[:8]} differs from the hub")
    return problems


# --------------------------------------------------------------------------- results


@dataclass
class LoadResult:
    index: int
    spec: str
    max_retries: int
    outcome: str  # succeeded | failed cleanly | unexpected error | hang
    seconds: float
    bound: float
    corrupt: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class ChaosReport:
    config: ChaosConfig
    results: list[LoadResult]
    faults: Counter
    bytes_served: int
    bytes_needed: int
    resumes: int
    failed_attempts: int
    wall_seconds: float

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def loads(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> int:
        return self.count("succeeded")

    @property
    def failed_cleanly(self) -> int:
        return self.count("failed cleanly")

    @property
    def unexpected(self) -> int:
        return self.count("unexpected error")

    @property
    def hangs(self) -> int:
        return self.count("hang")

    @property
    def corrupt(self) -> int:
        return sum(bool(r.corrupt) for r in self.results)

    @property
    def ratio(self) -> float:
        return self.bytes_served / self.bytes_needed if self.bytes_needed else float("nan")

    @property
    def ok(self) -> bool:
        return self.corrupt == 0 and self.hangs == 0 and self.unexpected == 0

    def problems(self) -> list[str]:
        out = []
        for r in self.results:
            if r.outcome in ("unexpected error", "hang") or r.corrupt:
                out.append(f"load {r.index} {r.spec} (max_retries={r.max_retries}, {r.seconds:.1f} s, "
                           f"bound {r.bound:.1f} s): {r.outcome}; {r.detail}; corrupt: {r.corrupt}")
        return out

    def table(self) -> str:
        cfg = self.config
        slowest = max(self.results, key=lambda r: r.seconds / r.bound, default=None)
        rows = [
            ("loads", f"{self.loads}"),
            ("succeeded (exact bytes)", f"{self.succeeded}"),
            ("failed cleanly (transient, all attempts)", f"{self.failed_cleanly}"),
            ("unexpected errors (must be 0)", f"{self.unexpected}"),
            ("corrupt (must be 0)", f"{self.corrupt}"),
            ("hangs (must be 0)", f"{self.hangs}"),
            ("faults injected", f"{sum(self.faults.values())}  (" + ", ".join(
                f"{k} {self.faults.get(k, 0)}" for k in cfg.kinds) + ")"),
            ("transfers resumed inside an attempt", f"{self.resumes}"),
            ("failed attempts (retried or last)", f"{self.failed_attempts}"),
            ("bytes served / bytes needed", f"{self.bytes_served:,} / {self.bytes_needed:,} = {self.ratio:.3f}"),
            ("slowest load vs its hang bound", f"{slowest.seconds:.1f} s / {slowest.bound:.1f} s" if slowest else "-"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        head = (f"Chaos run: seed {cfg.seed}, fault rate {cfg.rate:g} per file GET ({cfg.api_rate:g} per listing), "
                f"timeout {cfg.timeout:g} s, stall timeout {cfg.stall_timeout:g} s, "
                f"backoff base {cfg.backoff_base:g} s, {cfg.workers} workers")
        lines = [head, "-" * len(head)] + [f"{k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


class _LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.resumes = 0
        self.failed_attempts = 0
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        with self._lock2:
            if "resuming" in msg:
                self.resumes += 1
            elif record.levelno >= logging.WARNING and "attempt " in msg and "failed" in msg:
                self.failed_attempts += 1


class _LoadedFolders(threading.local):
    folders: list[Path]


def run_chaos(config: ChaosConfig | None = None, workdir: str | os.PathLike | None = None,
              log: Callable[[str], None] | None = None) -> ChaosReport:
    """Run the chaos suite (see the module docstring); returns the report."""
    config = config or ChaosConfig.short()
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="phaita-chaos-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(config, work, log or (lambda s: None))
    finally:
        if own and not config.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(config: ChaosConfig, work: Path, log: Callable[[str], None]) -> ChaosReport:
    from transformers.utils import logging as hf_logging

    from phaita.loader import api
    from phaita.utils import model_loader
    from phaita.utils.model_loader import ModelDownloadError

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    root = work / "hub"
    if not (root / RAW / "config.json").exists():
        log("publishing the chaos models ...")
        publish_chaos_models(root, config.raw_size)
    truth: dict[tuple[str, str], str] = {}
    sizes: dict[tuple[str, str], int] = {}
    for spec in SPECS:
        for path in (root / spec.repo).rglob("*"):
            if path.is_file() and path.name != ".hub.json":
                key = (spec.repo, path.relative_to(root / spec.repo).as_posix())
                truth[key], sizes[key] = sha256_file(path), path.stat().st_size

    loaded = _LoadedFolders()
    real_load = api.load_snapshot

    def recording_load(folder: Path, model_type: str, kwargs: dict[str, Any]) -> Any:
        getattr(loaded, "folders", []).append(Path(folder))
        return real_load(folder, model_type, kwargs)

    counter = _LogCounter()
    loader_logger = logging.getLogger("phaita.model_loader")
    saved_logger = (loader_logger.level, loader_logger.propagate)
    plan = ChaosPlan(config)
    plan.enabled = False
    env = {
        "PHAITA_BACKOFF_BASE": f"{config.backoff_base:g}",
        "PHAITA_STALL_TIMEOUT": f"{config.stall_timeout:g}",
        "PHAITA_CONNECT_TIMEOUT": "2",
        "PHAITA_FRESHNESS_TIMEOUT": "0.5",
        "PHAITA_MAX_RETRY_AFTER": None,
        "PHAITA_MAX_BACKOFF": None,
        "PHAITA_MAX_FILE_SIZE": None,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": None,
    }

    def one_load(spec: LoadSpec, cache: Path, max_retries: int) -> str | None:
        """Run one load; return the snapshot folder that was loaded (or fetched)."""
        loaded.folders = []
        kwargs = dict(cache_dir=str(cache), max_retries=max_retries, timeout=config.timeout)
        if spec.how == "model":
            model_loader.robust_model_download(spec.repo, model_type=spec.model_type, **kwargs)
        elif spec.how == "pair":
            model_loader.load_model_and_tokenizer(spec.repo, model_type=spec.model_type, **kwargs)
        else:
            return model_loader.prefetch_model(spec.repo, model_type=spec.model_type, **kwargs)
        folders = {str(f) for f in loaded.folders}
        if len(folders) != 1:
            raise AssertionError(f"expected one snapshot folder to be loaded, got {sorted(folders)}")
        return folders.pop()

    needed_by_spec: dict[LoadSpec, set[str]] = {}

    def check_folder(spec: LoadSpec, folder: str) -> list[str]:
        present = snapshot_files(Path(folder))
        problems = [f"missing {p}" for p in sorted(needed_by_spec.get(spec, set()) - set(present))]
        for rel, path in present.items():
            expected = truth.get((spec.repo, rel))
            try:
                actual = sha256_file(path)
            except OSError as exc:
                problems.append(f"{rel}: unreadable ({exc})")
                continue
            if actual != expected:
                problems.append(f"{rel}: loaded bytes differ from the hub's")
        return problems

    results: list[LoadResult] = []
    results_lock = threading.Lock()

    def run_one(index: int, spec: LoadSpec, cache: Path, max_retries: int) -> LoadResult:
        bound = config.bound(max_retries)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["folder"] = one_load(spec, cache, max_retries)
            except BaseException as exc:  # noqa: BLE001 - judged below
                box["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=target, name=f"chaos-load-{index}", daemon=True)
        thread.start()
        thread.join(bound)
        seconds = time.monotonic() - started
        result = LoadResult(index, spec.name, max_retries, "", seconds, bound)
        if thread.is_alive():
            result.outcome, result.detail = "hang", f"still running after {bound:.1f} s"
            thread.join(60)  # let it end before its cache is audited (and not pile up)
            if thread.is_alive():
                result.detail += "; still running 60 s later"
                return result
        elif "error" in box:
            exc = box["error"]
            if (isinstance(exc, ModelDownloadError) and exc.transient and exc.attempts == max_retries
                    and not isinstance(exc, model_loader.ModelLoadError)):
                result.outcome = "failed cleanly"
                result.detail = str(exc.last_error)
            else:
                result.outcome = "unexpected error"
                result.detail = (f"{type(exc).__name__} (transient={getattr(exc, 'transient', None)}, "
                                 f"attempts={getattr(exc, 'attempts', None)}): {str(exc)[:400]}")
        else:
            result.outcome = "succeeded"
            result.corrupt += check_folder(spec, box["folder"])
        result.corrupt += audit_cache(cache, lambda repo, rel, s=spec: truth.get((repo, rel)))
        return result

    def run_group(group: int, items: list[tuple[int, LoadSpec, int]]) -> int:
        cache = work / "caches" / f"cache-{group:04d}"
        for index, spec, max_retries in items:
            result = run_one(index, spec, cache, max_retries)
            with results_lock:
                results.append(result)
                done = len(results)
            if result.outcome not in ("succeeded", "failed cleanly") or result.corrupt:
                log(f"PROBLEM: load {index} {spec.name}: {result.outcome}; {result.detail}; {result.corrupt}")
            if done % 50 == 0:
                log(f"{done}/{config.loads} loads")
        files = set()
        for _, spec, _ in items:
            files |= needed_by_spec[spec]
        if not config.keep:
            shutil.rmtree(cache, ignore_errors=True)
        return sum(sizes[(items[0][1].repo, f)] for f in files)

    started = time.monotonic()
    with environment(env), LocalHub(root, faults=plan) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        api.load_snapshot = recording_load
        loader_logger.addHandler(counter)
        loader_logger.setLevel(logging.INFO)
        loader_logger.propagate = False
        try:
            # Reference loads, no faults: what each spec needs, and a check of the set-up.
            for n, spec in enumerate(SPECS):
                folder = one_load(spec, work / "reference" / str(n), 1)
                needed_by_spec[spec] = set(snapshot_files(Path(folder)))
                problems = check_folder(spec, folder)
                if problems:
                    raise RuntimeError(f"reference load of {spec.name} is wrong: {problems}")
            shutil.rmtree(work / "reference", ignore_errors=True)
            counter.resumes = counter.failed_attempts = 0
            hub.reset_stats()
            plan.enabled = True
            hub.set_faults(plan)  # (a disabled plan is falsy: the hub would have replaced it)

            rng = random.Random(config.seed)
            groups: list[list[tuple[int, LoadSpec, int]]] = []
            index = 0
            while index < config.loads:
                repo = rng.choice(sorted({s.repo for s in SPECS}))
                choices = [s for s in SPECS if s.repo == repo]
                group = []
                for _ in range(min(config.loads_per_cache, config.loads - index)):
                    group.append((index, rng.choice(choices), rng.choice(config.retries)))
                    index += 1
                groups.append(group)
            log(f"{config.loads} loads in {len(groups)} cache folders, {config.workers} workers ...")
            with ThreadPoolExecutor(config.workers, thread_name_prefix="chaos-worker") as pool:
                needed = sum(pool.map(lambda g: run_group(*g), enumerate(groups)))
            plan.enabled = False
            served = hub.bytes_sent("/resolve/")
        finally:
            api.load_snapshot = real_load
            loader_logger.removeHandler(counter)
            loader_logger.setLevel(saved_logger[0])
            loader_logger.propagate = saved_logger[1]
    results.sort(key=lambda r: r.index)
    return ChaosReport(config, results, Counter(plan.labels), served, needed, counter.resumes,
                       counter.failed_attempts, time.monotonic() - started)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phaita.testing.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the long run (also PHAITA_FULL=1): 1000 loads, "
                        "more faults, longer stalls, an 8 MB raw file")
    parser.add_argument("--loads", type=int, default=None, help="number of loads (default 200, full 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="loads running at once (default 3)")
    parser.add_argument("--rate", type=float, default=None, help="fault probability per file GET")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one; "
                        "the published models in it are reused by the next run)")
    parser.add_argument("--quiet", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    full = args.full or os.environ.get("PHAITA_FULL", "").strip() in ("1", "true", "yes")
    overrides: dict[str, Any] = {"seed": args.seed, "keep": args.keep}
    for key in ("loads", "workers", "rate"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = ChaosConfig.full(**overrides) if full else ChaosConfig.short(**overrides)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run_chaos(config, workdir=args.workdir, log=log)
    print(report.table())
    for line in report.problems():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
