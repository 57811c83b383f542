"""Progress bars for downloads: tqdm on a terminal, nothing when output is piped or logged."""

from __future__ import annotations

import os
import sys

from .fetch import NoProgress, Progress


class TqdmProgress:
    """One tqdm bar per file, on stderr."""

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


def default_progress() -> Progress:
    disabled = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in {"1", "true", "yes", "on"}
    if disabled or not sys.stderr.isatty():
        return NoProgress()
    return TqdmProgress()
