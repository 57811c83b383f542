"""What kind of failure an exception is: the one place foreign errors are translated.

:func:`classify` turns any exception from the fetch layer (httpx transport errors,
huggingface_hub's HTTP errors, OS errors, the loader's own ``FetchProblem`` kinds) into a
:class:`Failure`: a kind, whether it is transient, and a one-line reason a person can read. The retry
policy (:mod:`phaita.loader.request.retry`), the endpoint fallback and the public errors all decide
from it.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from enum import Enum

import httpx2
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import parse_ratelimit_headers

from ..errors import (
    BadEnvironment,
    BadResponse,
    ChecksumMismatch,
    DeadlineExceeded,
    DiskFull,
    EncodedBody,
    LockTimeout,
    MalformedListing,
    NoProgress,
    OfflineMiss,
    RegistryError,
    TransferIncomplete,
    UnsafeListing,
    UnsafeRepository,
    UnsupportedWeights,
    printable,
    redact,
)
from .tls import describe_verification_error, verification_error

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class FailureKind(str, Enum):
    """What kind of failure an exception is: decides retrying, the next endpoint, the public error."""

    NOT_FOUND = "not_found"
    REVISION_NOT_FOUND = "revision_not_found"
    ACCESS_DENIED = "access_denied"
    DISK_FULL = "disk_full"
    OFFLINE = "offline"
    BAD_LISTING = "bad_listing"
    UNSAFE = "unsafe"
    UNSUPPORTED = "unsupported"
    BAD_ENVIRONMENT = "bad_environment"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    PROXY_AUTH = "proxy_auth"
    BROKEN_SERVER = "broken_server"  # answers that never give the file (no progress, compressed bodies)
    UNSAFE_LISTING = "unsafe_listing"  # a listed name the loader will not write (hub.names)
    HTTP = "http"
    NETWORK = "network"
    CACHE_IO = "cache_io"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Failure:
    """What went wrong, as the retry policy sees it."""

    kind: FailureKind
    transient: bool
    reason: str  # one line, token-free
    status_code: int | None = None
    retry_after: float | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return redact(printable(text, 400))  # server text cannot fake a log line or reorder a terminal


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _model_api(exc: BaseException) -> bool:
    """True when ``exc`` answers the model or revision API (``/api/models/{repo}[/revision/{rev}]``).

    A 404 there means "no such model (or revision)", whatever the headers say: the Hub adds
    ``X-Error-Code: RepoNotFound``, mirrors and a name without an organisation often do not. The
    tree and paths-info APIs are not included: a mirror without them answers 404 for every model.
    """
    try:
        path = exc.response.request.url.path  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # no response, or one built without a request
        return False
    _, sep, rest = path.partition("/api/models/")
    if not sep:
        return False
    parts = [p for p in rest.split("/") if p]
    return len(parts) in (1, 2) or (len(parts) >= 3 and "revision" in parts[1:3])


def _retry_after(headers: httpx2.Headers) -> float | None:
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP-date: rare from the Hub; fall back to our own backoff


def _rate_limited(exc: BaseException) -> tuple[str, float | None]:
    """A 429's note for the reason line, and the wait the hub asked for (None: use the backoff).

    The Hub sends ``RateLimit: "resolvers";r=0;t=55`` (nothing left, reset in 55 s) and
    ``RateLimit-Policy: "fixed window";"resolvers";q=3000;w=300``; other servers send
    ``Retry-After``. The longer of the two wins.
    """
    response = getattr(exc, "response", None)
    if response is None:
        return "", None
    waits = []
    note = ""
    info = parse_ratelimit_headers(response.headers)
    if info is not None:
        quota = (f", {info.limit} per {info.window_seconds} s" if info.limit is not None
                 and info.window_seconds is not None else "")
        note = f" (rate limited: '{info.resource_type}' quota{quota}, resets in {info.reset_in_seconds} s)"
        if info.remaining == 0:
            waits.append(float(info.reset_in_seconds))
    retry_after = _retry_after(response.headers)
    if retry_after is not None:
        waits.append(retry_after)
    return note, max(waits) if waits else None


def _redirected_to(exc: BaseException) -> str | None:
    """The host that gave an error answer, when the hub had redirected the request to another host."""
    response = getattr(exc, "response", None)
    history = getattr(response, "history", None) or []
    try:
        first, last = history[0].request.url, response.url  # type: ignore[union-attr]
    except (IndexError, AttributeError, RuntimeError):
        return None
    if (first.host, first.port) == (last.host, last.port):
        return None
    return _origin(last)


def _origin(url: httpx2.URL) -> str:
    port = f":{url.port}" if url.port else ""
    return printable(f"{url.scheme}://{url.host}{port}", 200)


def note_redirect_target(exc: BaseException, asked: str, answered: httpx2.URL | None) -> None:
    """Mark a network failure that happened at another host than the one asked (the hub redirected the
    download there: a CDN, object storage), so that its reason names that host, not the hub."""
    failed = answered
    if failed is None:
        try:
            failed = exc.request.url  # type: ignore[attr-defined]  # httpx2: the request that failed
        except (AttributeError, RuntimeError):
            return
    try:
        first = httpx2.URL(asked)
    except (TypeError, ValueError, httpx2.InvalidURL):
        return
    if (failed.host, failed.port) != (first.host, first.port):
        exc.redirect_target = _origin(failed)  # type: ignore[attr-defined]


def _at_redirect_target(exc: BaseException) -> str:
    target = getattr(exc, "redirect_target", None)
    return f" at {target}, where the hub redirected the download" if target else ""


def classify(exc: BaseException) -> Failure:
    """Map any exception raised while fetching to a :class:`Failure`."""
    name = type(exc).__name__
    if isinstance(exc, RegistryError):  # an OCI registry's answer, already judged where it was read
        return Failure(FailureKind(exc.kind), exc.transient, _one_line(exc), exc.status, exc.retry_after)
    if isinstance(exc, hf_errors.GatedRepoError):
        return Failure(FailureKind.ACCESS_DENIED, False, f"gated repository ({_status(exc) or 'denied'})", _status(exc))
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return Failure(FailureKind.REVISION_NOT_FOUND, False, "revision not found (HTTP 404)", 404)
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return Failure(FailureKind.NOT_FOUND, False, "repository not found (HTTP 404)", _status(exc) or 404)
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return Failure(FailureKind.OFFLINE, False, "offline mode is enabled (HF_HUB_OFFLINE)")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = _status(exc)
        target = _redirected_to(exc)
        if target is not None and status:  # not the hub's answer: the host it sent us to
            reason = f"HTTP {status} from {target}, where the hub redirected the download"
            transient = status in TRANSIENT_STATUS or status == 404
            return Failure(FailureKind.HTTP, transient, reason, status, _rate_limited(exc)[1] if status == 429 else None)
        reason = f"HTTP {status} from the hub" if status else _one_line(exc)
        if status in (401, 403):
            return Failure(FailureKind.ACCESS_DENIED, False, reason, status)
        if status == 404 and _model_api(exc):  # mirrors answer "no such model" without X-Error-Code
            return Failure(FailureKind.NOT_FOUND, False, "not found (HTTP 404 from the model API)", 404)
        if status == 404:  # a file the listing announced is missing: the repo may be mid-push
            return Failure(FailureKind.HTTP, True, f"{reason} (file announced but missing)", status)
        if status == 429:
            note, wait = _rate_limited(exc)
            return Failure(FailureKind.HTTP, True, reason + note, status, wait)
        if status in TRANSIENT_STATUS:
            return Failure(FailureKind.HTTP, True, reason, status)
        return Failure(FailureKind.HTTP, False, reason, status)
    if isinstance(exc, BadEnvironment):
        return Failure(FailureKind.BAD_ENVIRONMENT, False, _one_line(exc))
    cert_error = verification_error(exc)
    if cert_error is not None:  # an unknown CA or a wrong host name does not pass by itself
        return Failure(FailureKind.UNTRUSTED_CERTIFICATE, False,
                       f"untrusted TLS certificate: {describe_verification_error(cert_error)}")
    if isinstance(exc, httpx2.ProxyError) and "407" in str(exc):
        return Failure(FailureKind.PROXY_AUTH, False, "the proxy refused the credentials (HTTP 407)", 407)
    if isinstance(exc, httpx2.TimeoutException):
        return Failure(FailureKind.NETWORK, True, f"network timeout ({name}){_at_redirect_target(exc)}")
    if isinstance(exc, httpx2.TransportError):
        return Failure(FailureKind.NETWORK, True,
                       f"connection error ({name}){_at_redirect_target(exc)}: {_one_line(exc)}")
    if isinstance(exc, (NoProgress, EncodedBody)):
        return Failure(FailureKind.BROKEN_SERVER, False, _one_line(exc))
    if isinstance(exc, UnsafeListing):
        return Failure(FailureKind.UNSAFE_LISTING, False, _one_line(exc))
    if isinstance(exc, MalformedListing):
        return Failure(FailureKind.BAD_LISTING, False, _one_line(exc))
    if isinstance(exc, (TransferIncomplete, ChecksumMismatch, DeadlineExceeded, LockTimeout, BadResponse)):
        return Failure(FailureKind.NETWORK, True, _one_line(exc))
    if isinstance(exc, DiskFull):
        return Failure(FailureKind.DISK_FULL, False, _one_line(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure(FailureKind.DISK_FULL, False, f"no space left on device ({_one_line(exc)})")
    if isinstance(exc, (socket.timeout, ConnectionError)):
        return Failure(FailureKind.NETWORK, True,
                       f"connection error ({name}){_at_redirect_target(exc)}: {_one_line(exc)}")
    if isinstance(exc, UnsafeRepository):
        return Failure(FailureKind.UNSAFE, False, _one_line(exc))
    if isinstance(exc, UnsupportedWeights):
        return Failure(FailureKind.UNSUPPORTED, False, _one_line(exc))
    if isinstance(exc, OfflineMiss):
        return Failure(FailureKind.OFFLINE, False, _one_line(exc))
    if isinstance(exc, OSError):
        return Failure(FailureKind.CACHE_IO, False, f"cannot write the cache ({name}): {_one_line(exc)}")
    return Failure(FailureKind.OTHER, False, f"{name}: {_one_line(exc)}")
