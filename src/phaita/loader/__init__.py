"""The model loader. Its public names (``robust_model_download``, ``load_model_and_tokenizer``,
``prefetch_model``, ``is_model_cached``, ``ModelDownloadError`` and its subclasses ...) are
importable from here; they live in :mod:`phaita.loader.facade`. They are resolved on first use,
so importing one submodule (e.g. ``phaita.loader.config``) does not import the whole loader.
"""

from __future__ import annotations

from typing import Any

_FACADE_NAMES = frozenset({
    "robust_model_download", "load_model_and_tokenizer", "prefetch_model", "is_model_cached", "_check_cached_model",
    "ModelDownloadError", "ModelNotFoundError", "RevisionNotFoundError", "AccessDeniedError",
    "DiskFullError", "OfflineModeError", "UnsafeModelError", "ModelLoadError", "BadListingError", "RetryPolicy",
    "MODEL_TYPES", "UntrustedCertificateError", "ProxyAuthenticationError",
})


def __getattr__(name: str) -> Any:
    if name in _FACADE_NAMES:
        from phaita.loader import facade

        return getattr(facade, name)
    raise AttributeError(f"module 'phaita.loader' has no attribute {name!r}")
