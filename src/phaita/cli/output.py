"""Output helpers shared by the commands: JSON, tables, sizes, errors, logging and progress bars.

Conventions (as ``hf``): results go to stdout, messages and bars to stderr. ``--json`` prints one
JSON document on stdout and nothing else there. Bars are drawn only when both stdout and stderr
are terminals, ``--json`` is off and ``HF_HUB_DISABLE_PROGRESS_BARS`` is not set.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

F = TypeVar("F", bound=Callable[..., Any])
LOGGER = "phaita.model_loader"
STATE = {"verbose": False}  # set by the app callback for each invocation


# --------------------------------------------------------------------------- plain output


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def echo(text: str = "") -> None:
    typer.echo(text)


def err(text: str) -> None:
    typer.echo(text, err=True)


def stdout_console() -> Console:
    """A console for tables: wide enough that a pipe or a log file does not wrap model names."""
    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if tty else 200, highlight=False, soft_wrap=not tty)


def human_size(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def when(ts: float | None) -> str:
    """``2024-05-01 14:03 (3 h ago)``."""
    if ts is None:
        return "-"
    age = max(0.0, time.time() - ts)
    for seconds, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if age >= seconds:
            ago = f"{age / seconds:.0f} {unit} ago"
            break
    else:
        ago = "just now"
    return f"{datetime.fromtimestamp(ts):%Y-%m-%d %H:%M} ({ago})"


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds") if ts is not None else None


# --------------------------------------------------------------------------- failures


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` to stderr; return the Exit to raise (``raise fail(...)``)."""
    err(message)
    return typer.Exit(code)


def expected_failures(func: F) -> F:
    """An expected failure prints the loader's message (no traceback) and exits 1.

    Expected: :class:`ModelDownloadError` (and subclasses), ``ValueError`` from bad input or a
    malformed environment variable, ``OSError`` on the cache folder. Ctrl-C exits 130.
    """
    from phaita.loader import ModelDownloadError, redact

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ModelDownloadError, ValueError, OSError) as exc:
            prefix = "" if isinstance(exc, ModelDownloadError) else "Error: "
            raise fail(prefix + redact(str(exc) or type(exc).__name__)) from None
        except KeyboardInterrupt:
            raise fail("Interrupted.", 130) from None

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- logging and bars


def bars_enabled(json_mode: bool) -> bool:
    if json_mode:
        return False
    from phaita.loader import config

    if config.progress_bars_disabled():
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def loader_logging(console: Console | None = None) -> Iterator[None]:
    """Show the loader's retry warnings (INFO with ``--verbose``) on stderr while a command runs."""
    logger = logging.getLogger(LOGGER)
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    level = logging.INFO if STATE["verbose"] else logging.WARNING
    handler.setLevel(level)
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def make_progress(transfer: bool = True) -> Progress:
    columns = [TextColumn("{task.description}", justify="left"), BarColumn(bar_width=30), DownloadColumn()]
    if transfer:
        columns += [TransferSpeedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True), transient=False)


class PullProgress:
    """The loader's events as rich bars: one per model (its total from the plan), one per file in flight.

    Files and range streams arrive concurrently; the loader hands events over one at a time, and
    each file has its own line, so the bars stay readable.
    """

    MAX_FILE_LINES = 6

    def __init__(self, progress: Progress, cache_dir: Path | None = None) -> None:
        self.progress = progress
        self.overall: TaskID | None = None
        self.files: dict[str, TaskID] = {}
        self.total: int | None = None
        self.completed = 0

    def begin_model(self, label: str, repo_id: str | None = None, needs: Any = None) -> None:
        from rich.markup import escape

        self.label = escape(label)
        self.total, self.completed = None, 0
        self.overall = self.progress.add_task(self.label, total=None)

    def end_model(self, ok: bool) -> None:
        self._close_files()
        if self.overall is not None:
            if ok:
                total = self.total if self.total is not None else self.completed
                self.progress.update(self.overall, total=total, completed=total)
            else:
                self.progress.update(self.overall, description=f"{self.label}  [red]failed[/]",
                                     total=self.total or 1)  # a still bar, not a pulsing one
            self.overall = None

    def __call__(self, event: Any) -> None:
        from phaita.loader import events

        if isinstance(event, events.Plan):
            self._close_files()
            self.total, self.completed = event.total_bytes, event.cached_bytes
        elif isinstance(event, events.FileStarted):
            if len(self.files) < self.MAX_FILE_LINES:
                self.files[event.path] = self.progress.add_task(f"  {event.path}"[-40:], total=event.size,
                                                                completed=event.initial)
        elif isinstance(event, events.Progress):
            self.completed += event.n
            if event.path in self.files:
                self.progress.advance(self.files[event.path], event.n)
        elif isinstance(event, events.FileDone):
            task = self.files.pop(event.path, None)
            if task is not None:
                self.progress.remove_task(task)
        else:
            return
        if self.overall is not None:
            self.progress.update(self.overall, total=self.total, completed=self.completed)

    def _close_files(self) -> None:
        for task in self.files.values():
            self.progress.remove_task(task)
        self.files.clear()
