"""Which lock file a command uses (``--lockfile``, else PHAITA_LOCKFILE, else ./phaita.lock).

Shared by ``phaita models pull --locked`` and the air-gap commands (kept apart from both so that
neither command module imports the other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def lock_path(option: Optional[Path]) -> Path:
    """``--lockfile``, else PHAITA_LOCKFILE, else ``phaita.lock`` in the current folder."""
    from phaita.loader import config
    from phaita.loader.cache.lockfile import DEFAULT_NAME

    return Path(option) if option is not None else (config.lockfile() or Path(DEFAULT_NAME))


def read_lock_option(option: Optional[Path]) -> Any:
    from phaita.loader.cache.lockfile import read_lock

    return read_lock(lock_path(option))
