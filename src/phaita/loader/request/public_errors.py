"""The one boundary where a failure becomes a public error: its class and its advice, by kind.

:func:`phaita.loader.http.failures.classify` names the kind of any exception raised while fetching;
:data:`ERRORS` maps each kind to the public exception class and the message (with advice) it
carries. Kinds not in the table (transient ones: network, http ...) become a plain
``ModelDownloadError`` saying the retries ran out.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable

from .. import advice, config, errors
from ..http import tls
from ..transfer.endpoints import purge_advice
from ..errors import ModelDownloadError
from ..http.failures import Failure, FailureKind, classify
from .load_request import LoadRequest



@dataclass(frozen=True)
class _Case:
    """One failed fetch, with what the messages need."""

    exc: BaseException
    failure: Failure
    repo_id: str
    req: "LoadRequest"
    endpoint: str
    has_token: bool


Advice = Callable[[_Case], str]

ERRORS: dict[FailureKind, tuple[type[ModelDownloadError], Advice]] = {
    FailureKind.NOT_FOUND: (
        errors.ModelNotFoundError,
        lambda c: advice.not_found_message(c.repo_id, c.endpoint, c.has_token, c.req.revision)),
    FailureKind.REVISION_NOT_FOUND: (
        errors.RevisionNotFoundError,
        lambda c: advice.revision_not_found_message(c.repo_id, c.req.revision, c.endpoint)),
    FailureKind.ACCESS_DENIED: (
        errors.AccessDeniedError,
        lambda c: advice.access_denied_message(c.repo_id, c.endpoint, c.failure.status_code, c.has_token)),
    FailureKind.DISK_FULL: (
        errors.DiskFullError, lambda c: advice.disk_full_message(c.repo_id, c.req.cache_dir, c.failure.reason)),
    FailureKind.CACHE_IO: (errors.CacheNotWritableError, lambda c: _cache_not_writable(c)),
    FailureKind.OFFLINE: (
        errors.OfflineModeError,
        lambda c: advice.offline_miss_message(c.repo_id, c.req.cache_dir, c.req.revision, c.failure.reason)),
    FailureKind.BAD_LISTING: (
        errors.BadListingError,
        lambda c: advice.bad_listing_message(c.repo_id, c.endpoint, c.req.revision, c.failure.reason)),
    FailureKind.UNSAFE: (errors.UnsafeModelError, lambda c: advice.unsafe_message(c.repo_id, c.failure.reason)),
    FailureKind.UNSUPPORTED: (errors.UnsafeModelError, lambda c: advice.unsafe_message(c.repo_id, c.failure.reason)),
    FailureKind.BAD_ENVIRONMENT: (
        ModelDownloadError, lambda c: advice.bad_environment_message(c.repo_id, c.failure.reason)),
    FailureKind.UNTRUSTED_CERTIFICATE: (
        errors.UntrustedCertificateError,
        lambda c: tls.certificate_advice(c.exc, c.repo_id, c.endpoint, c.failure.reason)),
    FailureKind.BROKEN_SERVER: (
        errors.BrokenServerError, lambda c: advice.broken_server_message(c.repo_id, c.endpoint, c.failure.reason)),
    FailureKind.UNSAFE_LISTING: (
        errors.UnsafeListingError,
        lambda c: advice.unsafe_listing_message(c.repo_id, c.endpoint, c.failure.reason)),
    FailureKind.PROXY_AUTH: (
        errors.ProxyAuthenticationError,
        lambda c: advice.proxy_auth_message(c.repo_id, c.endpoint, tls.shown_proxies())),
}


def _cache_not_writable(case: _Case) -> str:
    """The cache advice, with the part of the path that exists and the free space on its disk."""
    cache_dir = case.req.cache_dir
    blocked = next((p for p in (cache_dir, *cache_dir.parents) if os.path.lexists(p)), None)
    try:
        free = shutil.disk_usage(blocked).free if blocked is not None and blocked.is_dir() else None
    except OSError:
        free = None
    detail = errors.redact(f"{type(case.exc).__name__}: {' '.join(str(case.exc).split())}")
    return advice.cache_not_writable_message(case.repo_id, cache_dir, detail, blocked=blocked,
                                             free_bytes=free)


def public_error(exc: BaseException, repo_id: str, req: "LoadRequest", attempts: int = 0) -> ModelDownloadError:
    """The public error, with advice, for a failure while fetching ``repo_id``."""
    if isinstance(exc, ModelDownloadError):
        return exc
    failure = classify(exc)
    try:
        endpoints = req.endpoint_list()
    except ValueError:  # a malformed HF_ENDPOINT / PHAITA_ENDPOINTS: name it as given
        endpoints = (config.endpoint_as_set() or config.DEFAULT_ENDPOINT,)
    has_token = bool(req.token) or (req.token is None and config.env_token() is not None)
    common = dict(model_name=repo_id, models_attempted=[repo_id], attempts=attempts, cache_dir=req.cache_dir,
                  last_error=errors.UnderlyingError(type(exc).__name__, failure.reason, failure.status_code,
                                                    failure.transient),
                  transient=failure.transient)
    case = _Case(exc, failure, repo_id, req, endpoints[0], has_token)
    if getattr(exc, "advice", None) and failure.kind in ERRORS:  # a registry's error says what to do itself
        return ERRORS[failure.kind][0](exc.advice, **common)  # type: ignore[attr-defined]
    if failure.kind in ERRORS:
        cls, message = ERRORS[failure.kind]
        err = cls(message(case), **common)
        err.failure_kind = failure.kind.value  # type: ignore[attr-defined]  # for telemetry
        return err
    notes = getattr(exc, "endpoint_notes", [])
    err = ModelDownloadError(
        advice.retries_exhausted_message(
            repo_id, attempts=attempts,
            last_error=failure.reason + (f" (before that: {'; '.join(notes)})" if notes else ""),
            models_attempted=[repo_id], cache_dir=req.cache_dir, endpoint=endpoints[0],
            revision=req.revision, max_retries=req.max_retries, timeout=req.timeout,
            first_steps=purge_advice(exc, repo_id, endpoints)),
        **common)
    err.failure_kind = failure.kind.value  # type: ignore[attr-defined]
    return err
