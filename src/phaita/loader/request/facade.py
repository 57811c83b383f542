"""Robust loading of Hugging Face models: retries, resume, deadlines, verification, offline mode.

Public API (stable; PHAITA code calls these names):

- :func:`robust_model_download` -- fetch (with retries) and load one model, tokenizer or candidate list.
- :func:`load_model_and_tokenizer` -- a model and its tokenizer from the same commit.
- :func:`is_model_cached` / :func:`_check_cached_model` -- is a *complete* snapshot in the cache?
- :class:`ModelDownloadError` and its subclasses (see :mod:`phaita.loader.errors`).

``phaita.loader`` (this package) and ``phaita.utils.model_loader`` (the specification's path)
re-export these names; the components import them from ``phaita.loader``. The layers underneath:
``policy`` (what is retried, how long to wait),
``fetch``/``net`` (network, resume, deadline, verification), ``cache`` (what is here, is it whole),
``load`` (``from_pretrained`` on a local snapshot), ``errors`` (messages a person can act on).
"""

from __future__ import annotations

import os
from typing import Any

from . import api, load_request
from ..cache.layout import RepoCache
from ..errors import (
    AccessDeniedError,
    BadListingError,
    BrokenServerError,
    CorruptCacheError,
    CacheNotWritableError,
    DiskFullError,
    ModelDownloadError,
    ModelLoadError,
    ModelNotFoundError,
    OfflineModeError,
    ProxyAuthenticationError,
    RevisionNotFoundError,
    UnsafeListingError,
    UnsafeModelError,
    UntrustedCertificateError,
)
from .load import MODEL_TYPES
from .options import LoaderOptions
from .retry import RetryPolicy

__all__ = [
    "robust_model_download", "load_model_and_tokenizer", "prefetch_model", "is_model_cached", "_check_cached_model",
    "ModelDownloadError", "ModelNotFoundError", "RevisionNotFoundError", "AccessDeniedError",
    "DiskFullError", "CacheNotWritableError", "OfflineModeError", "UnsafeModelError", "ModelLoadError", "BadListingError",
    "UntrustedCertificateError", "ProxyAuthenticationError", "RetryPolicy", "MODEL_TYPES",
    "UnsafeListingError", "BrokenServerError", "CorruptCacheError",
]


def robust_model_download(
    model_name: load_request.ModelName,
    model_type: str = "auto",
    max_retries: int = 3,
    timeout: float = 300,
    allow_offline: bool = False,
    token: str | bool | None = None,
    **kwargs: Any,
) -> Any:
    """Fetch ``model_name`` into the Hugging Face cache (retrying transient failures) and load it.

    Args:
        model_name: a Hub id (``"org/name"``), a local folder, or a list of candidates tried in order.
        model_type: ``"auto"``, ``"causal_lm"``, ``"tokenizer"``, ``"sequence_classification"``,
            ``"masked_lm"``, ``"seq2seq_lm"`` or ``"token_classification"``.
        max_retries: attempts in total (>= 1). Waits ``backoff_base * 2**k`` s between them on
            average, each drawn within +-``backoff_jitter`` (default 0.5: 50 %) of that value.
        timeout: wall-clock limit of one attempt, seconds. Past it the attempt fails (partial
            files are kept and resumed by the next attempt).
        allow_offline: never touch the network; load from the cache or raise.
        token: Hub token; default: ``HF_TOKEN`` or the stored login. Never logged.
        **kwargs: ``from_pretrained`` options (``revision``, ``dtype``, ``device_map``, ``gguf_file``,
            ``trust_remote_code`` -- default False ...), plus loader options: ``backoff_base``, ``backoff_jitter``,
            ``cache_dir``, ``use_4bit``, ``allow_pickle`` (default False), ``resume_download``
            (default True; False discards this model's partial files first; never forwarded),
            ``progress`` (a bar for the whole snapshot: an object with start/update/close, or an
            observer), ``events`` (an observer of :mod:`phaita.loader.events`, or a list of them:
            plan, progress, resumes, retries, fallbacks), ``lockfile`` (a lock file from
            ``phaita models lock``, default ``PHAITA_LOCKFILE``; False for none): a model it pins
            loads at the locked commit, with no request on a warm cache; ``endpoints`` (a list of
            hub URLs tried in order, e.g. the site mirror then the Hub; default ``PHAITA_ENDPOINTS``,
            else ``HF_ENDPOINT``): a file missing or corrupt on one is fetched from the next;
            ``verify_on_load`` (default ``PHAITA_VERIFY_ON_LOAD``, else False): re-hash every file of
            the snapshot before ``from_pretrained``, warm loads too, and refuse a changed one with
            ``CorruptCacheError``. Without it a warm load checks sizes, links and blob names, not bytes.

    Raises:
        ValueError: an invalid argument, before any I/O.
        ModelDownloadError: (or a subclass) when the model cannot be fetched or loaded.
    """
    req = load_request.prepare(model_name, model_type=model_type,
                               options=LoaderOptions(max_retries, timeout, allow_offline, token, kwargs))
    return api.load_candidates(req, (model_type,))[0]


def load_model_and_tokenizer(
    model_name: load_request.ModelName,
    model_type: str = "auto",
    max_retries: int = 3,
    timeout: float = 300,
    allow_offline: bool = False,
    token: str | bool | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load a model and its tokenizer from the same resolved commit (one fetch).

    Arguments as :func:`robust_model_download`; ``model_type`` is the model's type.
    """
    if model_type == "tokenizer":
        raise ValueError("model_type for load_model_and_tokenizer must be a model type, not 'tokenizer'")
    req = load_request.prepare(model_name, model_type=model_type,
                               options=LoaderOptions(max_retries, timeout, allow_offline, token, kwargs))
    model, tokenizer = api.load_candidates(req, (model_type, "tokenizer"))
    return model, tokenizer


def is_model_cached(
    model_name: load_request.ModelName,
    revision: str | None = None,
    *,
    model_type: str = "auto",
    cache_dir: str | None = None,
    gguf_file: str | None = None,
) -> bool:
    """True only when a *complete* snapshot of ``model_name`` (at ``revision``, default main) is cached.

    No network access. For a candidate list: True when any candidate is complete.
    """
    # allow_pickle: this asks whether the files are here, not whether loading them is allowed.
    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir, "allow_pickle": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    req = load_request.prepare(model_name, model_type=model_type, options=LoaderOptions(1, 1, True, False, kwargs))
    needs = load_request.needs_for((model_type,), req)
    for name in req.candidates:
        if os.path.isdir(name):
            return True
        if RepoCache(req.cache_dir, name).status(req.revision or "main", needs).complete:
            return True
    return False


def _check_cached_model(model_name: str, revision: str | None = None) -> bool:
    """Seed name kept for existing PHAITA code: see :func:`is_model_cached`."""
    return is_model_cached(model_name, revision)


def prefetch_model(
    model_name: str,
    model_type: str = "auto",
    max_retries: int = 3,
    timeout: float = 300,
    token: str | bool | None = None,
    **kwargs: Any,
) -> str:
    """Fetch phase only: bring a complete, verified snapshot into the cache; return its folder.

    Same retries, resume, deadline and verification as :func:`robust_model_download`; nothing is
    loaded into memory (what ``phaita models pull`` uses). ``model_type="tokenizer"`` skips weights.
    """
    req = load_request.prepare(model_name, model_type=model_type,
                               options=LoaderOptions(max_retries, timeout, False, token, kwargs))
    if len(req.candidates) != 1:
        raise ValueError("prefetch_model takes one model name, not a list")
    name = req.candidates[0]
    if name.startswith("oci://"):
        return str(api.ensure_oci(name, load_request.needs_for((model_type,), req), req))
    if os.path.isdir(name):
        return name
    return str(api.ensure_snapshot(name, load_request.needs_for((model_type,), req), req))
