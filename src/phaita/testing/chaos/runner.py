"""One chaos run: reference loads, then many loads through a faulty hub, each judged.

Two seams, both injected: a :class:`LoadRecorder` says which snapshot folder a load handed to
``from_pretrained`` (the default reads it back from the loaded objects: nothing in the loader is
patched), and an attempt counter counts resumed transfers, failed attempts and fallbacks to fewer
streams (the default, :class:`EventCounter`, is an observer of the loader's events, passed to every
load as ``events=``).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Protocol

from ..env import environment
from .audit import audit_cache, sha256_file, snapshot_files
from .plan import ChaosConfig, ChaosPlan
from .report import ChaosReport, LoadResult
from .sources import HubSource, RegistrySource
from .specs import RAW, SPECS, LoadSpec, publish_chaos_models

Group = list[tuple[int, LoadSpec, int]]  # (load index, spec, max_retries), sharing one cache folder


class LoadRecorder(Protocol):
    def folders(self, spec: LoadSpec, returned: Any) -> set[str]:
        """The snapshot folders a load used, given what the public function returned."""


class LoadedFrom:
    """Reads the folder back from what was loaded: ``from_pretrained`` records the path it was given
    (``name_or_path``); the fetch phase returns the folder itself."""

    def folders(self, spec: LoadSpec, returned: Any) -> set[str]:
        if spec.how == "fetch":
            return {str(returned)}
        objects = returned if isinstance(returned, tuple) else (returned,)
        return {str(getattr(obj, "name_or_path", "")) for obj in objects}


class AttemptCounter(Protocol):
    resumes: int
    failed_attempts: int

    def __call__(self, event: Any) -> None: ...
    def attach(self) -> None: ...
    def detach(self) -> None: ...
    def reset(self) -> None: ...


class EventCounter:
    """Counts the loader's ``Resumed``, ``Retried`` and ``Fallback`` events; keeps its log quiet meanwhile."""

    def __init__(self) -> None:
        self._count_lock = threading.Lock()
        self._quiet = logging.NullHandler()
        self._saved: bool | None = None
        self.reset()

    def reset(self) -> None:
        self.resumes = 0
        self.failed_attempts = 0
        self.fallbacks = 0

    def __call__(self, event: Any) -> None:
        from phaita.loader import events

        with self._count_lock:
            if isinstance(event, events.Resumed):
                self.resumes += 1
            elif isinstance(event, events.Retried):
                self.failed_attempts += 1
            elif isinstance(event, events.Fallback):
                self.fallbacks += 1

    def attach(self) -> None:
        logger = logging.getLogger("phaita.model_loader")
        self._saved = logger.propagate
        logger.addHandler(self._quiet)
        logger.propagate = False

    def detach(self) -> None:
        logger = logging.getLogger("phaita.model_loader")
        logger.removeHandler(self._quiet)
        if self._saved is not None:
            logger.propagate = self._saved


def _environment(config: ChaosConfig, source: dict[str, str | None]) -> dict[str, str | None]:
    return {
        "HF_ENDPOINT": "http://127.0.0.1:9",  # the source's entries below point at what serves the models
        "PHAITA_ENDPOINTS": None,
        **source,
        "PHAITA_BACKOFF_BASE": f"{config.backoff_base:g}",
        "PHAITA_STALL_TIMEOUT": f"{config.stall_timeout:g}",
        "PHAITA_CONNECT_TIMEOUT": "2",
        "PHAITA_PARALLEL_THRESHOLD": str(config.parallel_threshold),
        "PHAITA_STREAMS_PER_FILE": str(config.streams_per_file),
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


class ChaosRunner:
    """A chaos run in a work folder (see :mod:`phaita.testing.chaos`). ``run()`` returns the report;
    the caller's environment and the loader's logger are as before afterwards."""

    def __init__(self, config: ChaosConfig, work: Path, log: Callable[[str], None] | None = None,
                 recorder: LoadRecorder | None = None, counter: AttemptCounter | None = None,
                 registry: Any = None) -> None:
        self.config = config
        self.registry = registry  # a started LocalRegistry: the loads come from it (sources.RegistrySource)
        self.work = Path(work)
        self.log = log or (lambda s: None)
        self.recorder = recorder or LoadedFrom()
        self.counter = counter or EventCounter()
        self.root = self.work / "hub"
        self.truth: dict[tuple[str, str], str] = {}  # (repo, path) -> the hub's sha256
        self.sizes: dict[tuple[str, str], int] = {}
        self.needed: dict[LoadSpec, set[str]] = {}  # the files each kind of load needs
        self.results: list[LoadResult] = []
        self._results_lock = threading.Lock()

    # -- the run
    def run(self) -> ChaosReport:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._publish()
        plan = ChaosPlan(self.config)
        plan.enabled = False
        started = time.monotonic()
        source = (RegistrySource(self.root, plan, self.registry, self.work) if self.registry is not None
                  else HubSource(self.root, plan))
        try:
            pointed = source.start()
            with environment(_environment(self.config, pointed)):
                self.counter.attach()
                try:
                    self._reference_loads()
                    self.counter.reset()
                    source.faults_on()
                    groups = self._groups()
                    self.log(f"{self.config.loads} loads from {source.name} in {len(groups)} cache folders, "
                             f"{self.config.workers} workers ...")
                    with ThreadPoolExecutor(self.config.workers, thread_name_prefix="chaos-worker") as pool:
                        needed = sum(pool.map(lambda g: self._run_group(*g), enumerate(groups)))
                    plan.enabled = False
                    served, segments = source.served(), source.segments()
                finally:
                    self.counter.detach()
        finally:
            source.stop()
        self.results.sort(key=lambda r: r.index)
        return ChaosReport(self.config, self.results, Counter(plan.labels), served, needed, self.counter.resumes,
                           self.counter.failed_attempts, time.monotonic() - started, segments,
                           getattr(self.counter, "fallbacks", 0), self._owed_to_corruption(plan))

    def _owed_to_corruption(self, plan: ChaosPlan) -> int:
        """The size of the file of each corrupted answer: what fetching it whole once more costs."""
        by_digest = {digest: self.sizes[key] for key, digest in self.truth.items()}
        owed = 0
        for fault in plan.fired:
            if fault.kind != "corrupt":
                continue
            path = fault.path.split("?", 1)[0]
            if "/resolve/" in path:  # the hub: /<org>/<name>/resolve/<revision>/<file>
                repo, _, rest = path.lstrip("/").partition("/resolve/")
                owed += self.sizes.get((repo, rest.partition("/")[2]), 0)
            elif "sha256:" in path:  # a registry blob: /v2/<name>/blobs/sha256:<hex>
                owed += by_digest.get(path.rsplit("sha256:", 1)[1], 0)
        return owed  # (a corrupted listing or manifest is asked for again: small, not counted)

    def _publish(self) -> None:
        if not (self.root / RAW / "config.json").exists():
            self.log("publishing the chaos models ...")
            publish_chaos_models(self.root, self.config.raw_size)
        for spec in SPECS:
            for path in (self.root / spec.repo).rglob("*"):
                if path.is_file() and path.name != ".hub.json":
                    key = (spec.repo, path.relative_to(self.root / spec.repo).as_posix())
                    self.truth[key], self.sizes[key] = sha256_file(path), path.stat().st_size

    def _reference_loads(self) -> None:
        """No faults: what each spec needs, and a check of the set-up."""
        for n, spec in enumerate(SPECS):
            # a set-up check, not a load under test: a hiccup of the in-process hub (the stall limit is
            # 0.25 s and the hub shares the GIL with the loader's threads) gets retries and time
            folder = self._load(spec, self.work / "reference" / str(n), 3, timeout=max(30.0, self.config.timeout))
            self.needed[spec] = set(snapshot_files(Path(folder)))
            problems = self._check_folder(spec, folder)
            if problems:
                raise RuntimeError(f"reference load of {spec.name} is wrong: {problems}")
        shutil.rmtree(self.work / "reference", ignore_errors=True)

    def _groups(self) -> list[Group]:
        config = self.config
        rng = random.Random(config.seed)
        groups: list[Group] = []
        index = 0
        while index < config.loads:
            repo = rng.choice(sorted({s.repo for s in SPECS}))
            choices = [s for s in SPECS if s.repo == repo]
            group = []
            for _ in range(min(config.loads_per_cache, config.loads - index)):
                group.append((index, rng.choice(choices), rng.choice(config.retries)))
                index += 1
            groups.append(group)
        return groups

    def _run_group(self, group: int, items: Group) -> int:
        """The loads of one cache folder, in order; returns the bytes a fault-free client would fetch."""
        cache = self.work / "caches" / f"cache-{group:04d}"
        for index, spec, max_retries in items:
            result = self._run_one(index, spec, cache, max_retries)
            with self._results_lock:
                self.results.append(result)
                done = len(self.results)
            if result.outcome not in ("succeeded", "failed cleanly") or result.corrupt:
                self.log(f"PROBLEM: load {index} {spec.name}: {result.outcome}; {result.detail}; {result.corrupt}")
            if done % 50 == 0:
                self.log(f"{done}/{self.config.loads} loads")
        files: set[str] = set()
        for _, spec, _ in items:
            files |= self.needed[spec]
        if not self.config.keep:
            shutil.rmtree(cache, ignore_errors=True)
        return sum(self.sizes[(items[0][1].repo, f)] for f in files)

    # -- one load
    def _load(self, spec: LoadSpec, cache: Path, max_retries: int, timeout: float | None = None) -> str:
        """Run one load through the public functions; return the snapshot folder it used."""
        from phaita.loader import load_model_and_tokenizer, prefetch_model, robust_model_download

        kwargs = dict(cache_dir=str(cache), max_retries=max_retries, timeout=timeout or self.config.timeout,
                      events=self.counter)
        if spec.how == "model":
            returned = robust_model_download(spec.repo, model_type=spec.model_type, **kwargs)
        elif spec.how == "pair":
            returned = load_model_and_tokenizer(spec.repo, model_type=spec.model_type, **kwargs)
        else:
            returned = prefetch_model(spec.repo, model_type=spec.model_type, **kwargs)
        folders = self.recorder.folders(spec, returned)
        if len(folders) != 1:
            raise AssertionError(f"expected one snapshot folder to be loaded, got {sorted(folders)}")
        return folders.pop()

    def _run_one(self, index: int, spec: LoadSpec, cache: Path, max_retries: int) -> LoadResult:
        bound = self.config.bound(max_retries)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["folder"] = self._load(spec, cache, max_retries)
            except BaseException as exc:  # noqa: BLE001 - judged below
                box["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=target, name=f"chaos-load-{index}", daemon=True)
        thread.start()
        thread.join(bound)
        result = LoadResult(index, spec.name, max_retries, "", time.monotonic() - started, bound)
        if thread.is_alive():
            result.outcome, result.detail = "hang", f"still running after {bound:.1f} s"
            thread.join(60)  # let it end before its cache is audited (and not pile up)
            if thread.is_alive():
                result.detail += "; still running 60 s later"
                return result
        elif "error" in box:
            self._judge_error(result, box["error"], max_retries)
        else:
            result.outcome = "succeeded"
            result.corrupt += self._check_folder(spec, box["folder"])
        result.corrupt += audit_cache(cache, lambda repo, rel: self.truth.get((repo, rel)))
        return result

    @staticmethod
    def _judge_error(result: LoadResult, exc: BaseException, max_retries: int) -> None:
        from phaita.loader import ModelDownloadError, ModelLoadError

        if (isinstance(exc, ModelDownloadError) and exc.transient and exc.attempts == max_retries
                and not isinstance(exc, ModelLoadError)):
            result.outcome = "failed cleanly"
            result.detail = str(exc.last_error)
        else:
            result.outcome = "unexpected error"
            result.detail = (f"{type(exc).__name__} (transient={getattr(exc, 'transient', None)}, "
                             f"attempts={getattr(exc, 'attempts', None)}): {str(exc)[:400]}")

    def _check_folder(self, spec: LoadSpec, folder: str) -> list[str]:
        present = snapshot_files(Path(folder))
        problems = [f"missing {p}" for p in sorted(self.needed.get(spec, set()) - set(present))]
        for rel, path in present.items():
            expected = self.truth.get((spec.repo, rel))
            try:
                actual = sha256_file(path)
            except OSError as exc:
                problems.append(f"{rel}: unreadable ({exc})")
                continue
            if actual != expected:
                problems.append(f"{rel}: loaded bytes differ from the hub's")
        return problems


def run_chaos(config: ChaosConfig | None = None, workdir: str | Path | None = None,
              log: Callable[[str], None] | None = None, registry: Any = None) -> ChaosReport:
    """Run the chaos suite (see :mod:`phaita.testing.chaos`); returns the report. With ``registry`` (a
    started ``LocalRegistry``) the models are pushed there and every load comes from it."""
    config = config or ChaosConfig.short()
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="phaita-chaos-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return ChaosRunner(config, work, log, registry=registry).run()
    finally:
        if own and not config.keep:
            shutil.rmtree(work, ignore_errors=True)
