"""Retry policy: what is worth another attempt, and how long to wait before it.

:func:`classify` turns any exception from the fetch layer (httpx transport errors,
huggingface_hub's HTTP errors, OS errors, the loader's own ``FetchProblem`` kinds) into a
:class:`Failure`: a kind, whether it is transient, and a one-line reason a person can read.

:class:`RetryPolicy` is a small object on top of tenacity: at most ``max_attempts`` attempts,
``backoff_base * 2**k`` seconds between them (10 s, 20 s, 40 s by default), a longer
``Retry-After`` honoured, a hook called before each wait, and an injectable ``sleep``.
Set ``PHAITA_BACKOFF_BASE=0`` (or pass ``backoff_base=0``) to make retries instant in tests.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import httpx2
import tenacity
from huggingface_hub import errors as hf_errors

from . import config
from .errors import (
    BadResponse,
    ChecksumMismatch,
    DeadlineExceeded,
    DiskFull,
    LockTimeout,
    MalformedListing,
    OfflineMiss,
    TransferIncomplete,
    UnsafeRepository,
    UnsupportedWeights,
    redact,
)

logger = logging.getLogger("phaita.model_loader")
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Failure:
    """What went wrong, as the retry policy sees it."""

    kind: str  # not_found, revision_not_found, access_denied, disk_full, offline, unsafe, http, network, ...
    transient: bool
    reason: str  # one line, token-free
    status_code: int | None = None
    retry_after: float | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return redact(text)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP-date: rare from the Hub; fall back to our own backoff


def classify(exc: BaseException) -> Failure:
    """Map any exception raised while fetching to a :class:`Failure`."""
    name = type(exc).__name__
    if isinstance(exc, hf_errors.GatedRepoError):
        return Failure("access_denied", False, f"gated repository ({_status(exc) or 'denied'})", _status(exc))
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return Failure("revision_not_found", False, "revision not found (HTTP 404)", 404)
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return Failure("not_found", False, "repository not found (HTTP 404)", _status(exc) or 404)
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return Failure("offline", False, "offline mode is enabled (HF_HUB_OFFLINE)")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = _status(exc)
        reason = f"HTTP {status} from the hub" if status else _one_line(exc)
        if status in (401, 403):
            return Failure("access_denied", False, reason, status)
        if status == 404:  # a file the listing announced is missing: the repo may be mid-push
            return Failure("http", True, f"{reason} (file announced but missing)", status)
        if status in TRANSIENT_STATUS:
            return Failure("http", True, reason, status, _retry_after(exc) if status == 429 else None)
        return Failure("http", False, reason, status)
    if isinstance(exc, httpx2.TimeoutException):
        return Failure("network", True, f"network timeout ({name})")
    if isinstance(exc, httpx2.TransportError):
        return Failure("network", True, f"connection error ({name}): {_one_line(exc)}")
    if isinstance(exc, MalformedListing):
        return Failure("bad_listing", False, _one_line(exc))
    if isinstance(exc, (TransferIncomplete, ChecksumMismatch, DeadlineExceeded, LockTimeout, BadResponse)):
        return Failure("network", True, _one_line(exc))
    if isinstance(exc, DiskFull):
        return Failure("disk_full", False, _one_line(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure("disk_full", False, f"no space left on device ({_one_line(exc)})")
    if isinstance(exc, (socket.timeout, ConnectionError)):
        return Failure("network", True, f"connection error ({name}): {_one_line(exc)}")
    if isinstance(exc, UnsafeRepository):
        return Failure("unsafe", False, _one_line(exc))
    if isinstance(exc, UnsupportedWeights):
        return Failure("unsupported", False, _one_line(exc))
    if isinstance(exc, OfflineMiss):
        return Failure("offline", False, _one_line(exc))
    if isinstance(exc, OSError):
        return Failure("cache_io", False, f"cannot write the cache ({name}): {_one_line(exc)}")
    return Failure("other", False, f"{name}: {_one_line(exc)}")


@dataclass(frozen=True)
class RetryEvent:
    """Passed to ``on_retry`` hooks after each failed attempt."""

    what: str
    attempt: int
    max_attempts: int
    failure: Failure
    wait: float | None  # None: no further attempt


def log_retry(event: RetryEvent) -> None:
    """Default hook: one WARNING line per failed attempt on logger ``phaita.model_loader``."""
    tail = f"retrying in {event.wait:.1f} s" if event.wait is not None else "giving up"
    logger.warning(
        "%s: attempt %d/%d failed: %s; %s",
        event.what, event.attempt, event.max_attempts, event.failure.reason, tail,
    )


def _finite_non_negative(value: object) -> bool:
    try:
        return 0 <= float(value) < float("inf")  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):  # 10**400, None-like junk, "abc"
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` attempts with exponential backoff between them.

    ``backoff_base=None`` reads ``PHAITA_BACKOFF_BASE`` (default 10 s) when the policy runs.
    """

    max_attempts: int = 3
    backoff_base: float | None = None
    max_backoff: float | None = None
    on_retry: Callable[[RetryEvent], None] = log_retry
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_retries must be an integer >= 1, got {self.max_attempts!r}")
        if self.backoff_base is not None and not _finite_non_negative(self.backoff_base):
            raise ValueError(f"backoff_base must be a finite number >= 0, got {self.backoff_base!r}")

    def wait_before(self, retry_index: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 = before the 2nd attempt)."""
        base = config.backoff_base() if self.backoff_base is None else float(self.backoff_base)
        cap = config.max_backoff() if self.max_backoff is None else self.max_backoff
        # 2**k as a float, its exponent bounded: from k = 1024 on, an int 2**k overflows a float.
        wait = min(base * 2.0 ** min(retry_index, 1000), cap)
        if retry_after is not None:
            wait = max(wait, min(retry_after, config.max_retry_after()))
        return wait

    def run(self, attempt: Callable[[int], T], *, what: str) -> T:
        """Call ``attempt(n)`` (n = 1, 2, ...) until it returns or fails permanently.

        Raises the last exception with ``attempts_made`` set on it.
        """

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            failure = classify(exc) if exc else None
            return self.wait_before(state.attempt_number - 1, failure.retry_after if failure else None)

        def after(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None:
                return
            failure = classify(exc)
            last = state.attempt_number >= self.max_attempts or not failure.transient
            if failure.transient:  # permanent errors are reported once, by the caller
                self.on_retry(RetryEvent(what, state.attempt_number, self.max_attempts, failure,
                                         None if last else wait(state)))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            retry=tenacity.retry_if_exception(lambda e: classify(e).transient),
            wait=wait,
            after=after,
            sleep=self.sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for call in retrying:
                with call:
                    attempts = call.retry_state.attempt_number
                    return attempt(attempts)
        except BaseException as exc:
            exc.attempts_made = attempts  # type: ignore[attr-defined]
            raise
        raise AssertionError("unreachable")  # pragma: no cover
