"""`phaita demo`: the main job (see :mod:`phaita.demo.runner`)."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        short: bool = typer.Option(False, "--short", help="Fewer generations and shorter waits (used by CI)."),
        cache_dir: Optional[str] = typer.Option(
            None, "--cache-dir", help="Keep the downloaded models here instead of a temporary folder."),
    ) -> None:
        """Run PHAITA end to end against a local flaky hub: robust downloads, then triage."""
        from phaita.demo.runner import run_demo

        raise typer.Exit(run_demo(short=short, cache_dir=cache_dir))
