"""Set environment variables for a block and restore the caller's values after it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Mapping


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set each variable (``None`` unsets it) inside the block; restore every previous value after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def point_huggingface_hub_at(patch, url: str, *, home: str | None = None, cache: str | None = None) -> None:
    """Aim an already imported huggingface_hub at ``url`` (and optionally a home and cache folder).

    huggingface_hub reads its environment once, at import (``constants.py``), and derives the
    download URL template from the endpoint then: setting ``HF_ENDPOINT`` later is not enough for
    it (the phaita loader reads the environment at call time and needs no help). ``patch`` is a
    pytest ``MonkeyPatch``, so everything is undone after the test.
    """
    import huggingface_hub.constants as constants

    patch.setattr(constants, "ENDPOINT", url)
    patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    if home is not None:
        patch.setattr(constants, "HF_HOME", str(home))
        patch.setattr(constants, "HF_TOKEN_PATH", str(Path(home) / "token"))
    if cache is not None:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
