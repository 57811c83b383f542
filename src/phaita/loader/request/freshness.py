"""How a warm load of a branch name learns about a newer commit: ``check``, ``background`` or ``never``.

A branch (``main``) already in the cache can be loaded at once; the question is only whether the
hub has moved it since. ``check`` (the default) asks once, within ``PHAITA_FRESHNESS_TIMEOUT``,
before loading; a dead or stalled hub costs that budget on every boot. ``background`` loads the
cached commit at once and asks in a daemon thread, fetching a newer commit for the *next* load
(``refs/`` moves only once that snapshot is complete, so no load ever sees it half-written).
``never`` asks nothing. A lock file (``PHAITA_LOCKFILE``) pins commits and needs no check at all:
the answer for regulated sites.

One refresh per (cache, model, branch) runs at a time; :func:`wait_for_background` lets a caller
(a test, a short-lived tool that wants the newer commit before it exits) wait for them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

MODES = ("check", "background", "never")
logger = logging.getLogger("phaita.model_loader")

_LOCK = threading.Lock()
_RUNNING: dict[tuple[str, str, str], threading.Thread] = {}


def check_mode(value: object, source: str = "freshness") -> str:
    """``value`` as one of :data:`MODES`; a ValueError naming ``source`` otherwise."""
    if not isinstance(value, str) or value.strip().lower() not in MODES:
        raise ValueError(f"{source} must be one of {', '.join(MODES)}; got {value!r}")
    return value.strip().lower()


def start(cache_dir: Path, repo_id: str, revision: str, work: Callable[[], object]) -> bool:
    """Run ``work`` in a daemon thread unless a refresh of the same branch already runs; True if started."""
    key = (str(cache_dir), repo_id, revision)

    def run() -> None:
        try:
            work()
        except Exception as exc:  # a background refresh must never surface in the caller's thread
            logger.warning("%s: background check of '%s' failed: %s", repo_id, revision, exc)
        finally:
            with _LOCK:
                _RUNNING.pop(key, None)

    with _LOCK:
        if key in _RUNNING:
            return False
        thread = threading.Thread(target=run, name=f"phaita-refresh {repo_id}@{revision}", daemon=True)
        _RUNNING[key] = thread
    thread.start()
    return True


def running() -> list[threading.Thread]:
    with _LOCK:
        return list(_RUNNING.values())


def wait_for_background(timeout: float | None = None) -> bool:
    """Wait for the background refreshes running now; True when none is left."""
    for thread in running():
        thread.join(timeout)
    return not running()
