"""Retry policy: what is worth another attempt, and how long to wait before it.

:func:`classify` turns any exception from the fetch layer (httpx transport errors,
huggingface_hub's HTTP errors, OS errors, the loader's own ``FetchProblem`` kinds) into a
:class:`Failure`: a kind, whether it is transient, and a one-line reason a person can read.

:class:`RetryPolicy` is a small object on top of tenacity: at most ``max_attempts`` attempts,
``backoff_base * 2**k`` seconds between them on average (10 s, 20 s, 40 s by default), each wait
drawn uniformly within +-``jitter`` (50 %) of that value so that a fleet of clients that failed
together does not retry together; a longer hub-given wait (``Retry-After``, or the reset time of
a ``RateLimit`` header on a 429) honoured as a floor, capped, and spread upwards by the same
jitter; a hook called before each wait, and an injectable ``sleep``. Set
``PHAITA_BACKOFF_BASE=0`` (or pass ``backoff_base=0``) to make retries instant in tests, and
``PHAITA_BACKOFF_JITTER=0`` (or ``jitter=0``) for the exact schedule.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, TypeVar

import httpx2
import tenacity
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import parse_ratelimit_headers

from . import config
from .errors import (
    BadEnvironment,
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
from .tls import describe_verification_error, verification_error

logger = logging.getLogger("phaita.model_loader")
T = TypeVar("T")

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
    return redact(text)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


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


def classify(exc: BaseException) -> Failure:
    """Map any exception raised while fetching to a :class:`Failure`."""
    name = type(exc).__name__
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
        reason = f"HTTP {status} from the hub" if status else _one_line(exc)
        if status in (401, 403):
            return Failure(FailureKind.ACCESS_DENIED, False, reason, status)
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
        return Failure(FailureKind.NETWORK, True, f"network timeout ({name})")
    if isinstance(exc, httpx2.TransportError):
        return Failure(FailureKind.NETWORK, True, f"connection error ({name}): {_one_line(exc)}")
    if isinstance(exc, MalformedListing):
        return Failure(FailureKind.BAD_LISTING, False, _one_line(exc))
    if isinstance(exc, (TransferIncomplete, ChecksumMismatch, DeadlineExceeded, LockTimeout, BadResponse)):
        return Failure(FailureKind.NETWORK, True, _one_line(exc))
    if isinstance(exc, DiskFull):
        return Failure(FailureKind.DISK_FULL, False, _one_line(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure(FailureKind.DISK_FULL, False, f"no space left on device ({_one_line(exc)})")
    if isinstance(exc, (socket.timeout, ConnectionError)):
        return Failure(FailureKind.NETWORK, True, f"connection error ({name}): {_one_line(exc)}")
    if isinstance(exc, UnsafeRepository):
        return Failure(FailureKind.UNSAFE, False, _one_line(exc))
    if isinstance(exc, UnsupportedWeights):
        return Failure(FailureKind.UNSUPPORTED, False, _one_line(exc))
    if isinstance(exc, OfflineMiss):
        return Failure(FailureKind.OFFLINE, False, _one_line(exc))
    if isinstance(exc, OSError):
        return Failure(FailureKind.CACHE_IO, False, f"cannot write the cache ({name}): {_one_line(exc)}")
    return Failure(FailureKind.OTHER, False, f"{name}: {_one_line(exc)}")


@dataclass(frozen=True)
class RetryEvent:
    """Passed to ``on_retry`` hooks after each failed attempt."""

    what: str
    attempt: int
    max_attempts: int
    failure: Failure
    wait: float | None  # None: no further attempt


def log_retry(event: RetryEvent) -> None:
    """Default hook: one WARNING line per failed attempt on logger ``phaita.model_loader``.

    The record also carries ``retry_wait`` (seconds, None when giving up) and ``attempt``, for
    log pipelines that want the numbers rather than the text.
    """
    tail = f"retrying in {event.wait:.1f} s" if event.wait is not None else "giving up"
    logger.warning(
        "%s: attempt %d/%d failed: %s; %s",
        event.what, event.attempt, event.max_attempts, event.failure.reason, tail,
        extra={"retry_wait": event.wait, "attempt": event.attempt},
    )


def _finite_non_negative(value: object) -> bool:
    try:
        return 0 <= float(value) < float("inf")  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):  # 10**400, None-like junk, "abc"
        return False


def valid_jitter(value: object) -> bool:
    return _finite_non_negative(value) and float(value) <= 1  # type: ignore[arg-type]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The one check of each retry argument: the facade runs them before any I/O, RetryPolicy on creation.
def check_max_retries(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_retries must be an integer >= 1; got {value!r}")
    return value


def check_backoff_base(value: object) -> float | None:
    if value is not None and not (_number(value) and _finite_non_negative(value)):
        raise ValueError(f"backoff_base must be a number of seconds >= 0; got {value!r}")
    return value  # type: ignore[return-value]


def check_jitter(value: object) -> float | None:
    if value is not None and not (_number(value) and valid_jitter(value)):
        raise ValueError(f"backoff_jitter must be a fraction within [0, 1] (0.5: each wait +-50 %); got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` attempts with jittered exponential backoff between them.

    ``backoff_base=None`` reads ``PHAITA_BACKOFF_BASE`` (default 10 s) and ``jitter=None`` reads
    ``PHAITA_BACKOFF_JITTER`` (default 0.5) when the policy runs. ``rng`` draws the jitter: by
    default the OS's randomness, so that ``random.seed(42)`` (which ``transformers.set_seed`` does
    on every device of a fleet) cannot put the fleet back in step.
    """

    max_attempts: int = 3
    backoff_base: float | None = None
    max_backoff: float | None = None
    jitter: float | None = None
    on_retry: Callable[[RetryEvent], None] = log_retry
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.SystemRandom, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_max_retries(self.max_attempts)
        check_backoff_base(self.backoff_base)
        check_jitter(self.jitter)

    def wait_before(self, retry_index: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 = before the 2nd attempt).

        The scheduled wait ``w`` is drawn uniformly in ``[w(1-j), w(1+j)]`` (mean ``w``), never above
        the cap. A hub-given wait ``r`` (capped) is a floor: drawn in ``[r, r(1+j)]``, since coming back
        before the hub's reset only earns another 429.
        """
        base = config.backoff_base() if self.backoff_base is None else float(self.backoff_base)
        cap = config.max_backoff() if self.max_backoff is None else self.max_backoff
        spread = config.backoff_jitter() if self.jitter is None else float(self.jitter)
        # 2**k as a float, its exponent bounded: from k = 1024 on, an int 2**k overflows a float.
        wait = min(base * 2.0 ** min(retry_index, 1000), cap)
        if spread:
            wait = min(wait * self.rng.uniform(1 - spread, 1 + spread), cap)
        if retry_after is not None:
            floor = min(retry_after, config.max_retry_after())
            wait = max(wait, floor * self.rng.uniform(1, 1 + spread) if spread else floor)
        return wait

    def run(self, attempt: Callable[[int], T], *, what: str) -> T:
        """Call ``attempt(n)`` (n = 1, 2, ...) until it returns or fails permanently.

        Raises the last exception with ``attempts_made`` set on it.
        """

        drawn: dict[int, float] = {}  # one draw per failed attempt: the wait logged is the wait slept

        def wait(state: tenacity.RetryCallState) -> float:
            if state.attempt_number not in drawn:
                exc = state.outcome.exception() if state.outcome else None
                failure = classify(exc) if exc else None
                drawn[state.attempt_number] = self.wait_before(state.attempt_number - 1,
                                                               failure.retry_after if failure else None)
            return drawn[state.attempt_number]

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
