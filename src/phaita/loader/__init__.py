"""The model loader's public surface. Everything a caller needs is importable from here.

* Loading (the specification's names, from :mod:`phaita.loader.request.facade`): ``robust_model_download``,
  ``load_model_and_tokenizer``, ``prefetch_model``, ``is_model_cached``, ``ModelDownloadError`` and
  its subclasses, ``RetryPolicy``, ``MODEL_TYPES``; ``LoaderOptions`` (the options as one value).
* Tools on top of the loader (the ``phaita`` CLI, the chaos runner, the demo): the cache
  (``RepoCache``, ``scan_cache``, ``verify_model``, ``bytes_to_verify``, ``repair``), what a load
  needs (``Needs``), progress (``default_progress``, ``no_progress``, ``TqdmProgress``), ``redact``.
* Public modules: ``phaita.loader.config`` (every environment variable) and
  ``phaita.loader.events`` (what observers receive).

The rest is the loader's inside, one subpackage per layer; an import goes to its own layer or a
lower one, never up (``tools/check_architecture.py`` checks it; docs/ARCHITECTURE.md says why):

* the foundation, the modules at this level: ``config`` (environment), ``errors`` (the exception
  hierarchy, redaction), ``advice`` (every message), ``events``, ``hashing``;
* ``http``: HTTP with a deadline, TLS and proxies, connection links, what a failure is;
* ``hub``: what a hub or mirror says a commit holds, and which files a load needs;
* ``cache``: the cache layout, lock files, status, verify and repair;
* ``transfer``: fetching a snapshot, one file's transfer, ranges, resume, several endpoints;
* ``request``: one load end to end (options, validation, retries, public errors, ``from_pretrained``)
  and the facade.

Names are resolved on first use, so importing one submodule (e.g. ``phaita.loader.config``) does
not import the whole loader.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_FACADE_NAMES = frozenset({
    "robust_model_download", "load_model_and_tokenizer", "prefetch_model", "is_model_cached", "_check_cached_model",
    "ModelDownloadError", "ModelNotFoundError", "RevisionNotFoundError", "AccessDeniedError",
    "DiskFullError", "CacheNotWritableError", "OfflineModeError", "UnsafeModelError", "ModelLoadError",
    "BadListingError", "RetryPolicy", "UntrustedCertificateError", "ProxyAuthenticationError", "UnsafeListingError",
    "BrokenServerError", "CorruptCacheError",
})
# name -> the module (under phaita.loader) that defines it
_TOOL_NAMES = {
    "MODEL_TYPES": "request.load",  # (the facade re-exports it too; from here it costs no heavy import)
    "LoaderOptions": "request.options",
    "RepoCache": "cache.layout",
    "Needs": "hub.selection",
    "scan_cache": "cache.scan",
    "verify_model": "cache.verify",
    "bytes_to_verify": "cache.verify",
    "repair": "cache.repair",
    "default_progress": "request.progress",
    "no_progress": "request.progress",
    "TqdmProgress": "request.progress",
    "redact": "errors",
    "SignatureError": "errors",
}

__all__ = sorted(_FACADE_NAMES - {"_check_cached_model"}) + sorted(_TOOL_NAMES)


def __getattr__(name: str) -> Any:
    if name in _FACADE_NAMES:
        return getattr(import_module("phaita.loader.request.facade"), name)
    if name in _TOOL_NAMES:
        return getattr(import_module(f"phaita.loader.{_TOOL_NAMES[name]}"), name)
    raise AttributeError(f"module 'phaita.loader' has no attribute {name!r}")
