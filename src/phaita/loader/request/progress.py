"""Progress bars for downloads: tqdm on a terminal, nothing when output is piped or logged.

Both are observers of the loader's events (:mod:`.events`): one bar with the snapshot's total
(known from the plan), and below it one line per file being transferred, at fixed positions, so
files and range streams arriving at once never garble each other.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import config
from ..events import Event, FileDone, FileStarted, LegacyProgress, Plan, Progress

MAX_FILE_LINES = 4


class TqdmProgress:
    """One tqdm bar (a start/update/close target: the loader shows the snapshot's total on it)."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._bar = None

    def start(self, name: str, total: int, initial: int) -> None:
        from tqdm.auto import tqdm

        self.close()
        self._bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=f"{self._prefix}{name}"[-50:], leave=False, file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TerminalProgress:
    """The snapshot's total on one bar, the files in flight on the lines below it."""

    def __init__(self) -> None:
        self._total = LegacyProgress(TqdmProgress())
        self._files: dict[str, Any] = {}
        self._lines: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        self._total(event)
        if isinstance(event, FileStarted) and len(self._files) < MAX_FILE_LINES:
            from tqdm.auto import tqdm

            position = next(p for p in range(1, MAX_FILE_LINES + 2) if p not in self._lines.values())
            self._lines[event.path] = position
            self._files[event.path] = tqdm(total=event.size, initial=event.initial, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=f"  {event.path}"[-40:], leave=False,
                                           position=position, file=sys.stderr)
        elif isinstance(event, Progress) and event.path in self._files:
            self._files[event.path].update(event.n)
        elif isinstance(event, (FileDone, Plan)):
            for path in [event.path] if isinstance(event, FileDone) else list(self._files):
                bar = self._files.pop(path, None)
                self._lines.pop(path, None)
                if bar is not None:
                    bar.close()


def no_progress(event: Event) -> None:
    """An observer that shows nothing."""


def default_progress():
    if config.progress_bars_disabled() or not sys.stderr.isatty():
        return no_progress
    return TerminalProgress()
