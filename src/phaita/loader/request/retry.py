"""Retry policy: how many attempts, and how long to wait before each.

:class:`RetryPolicy` is a small object on top of tenacity: at most ``max_attempts`` attempts,
``backoff_base * 2**k`` seconds between them on average (10 s, 20 s, 40 s by default), each wait
drawn uniformly within +-``jitter`` (50 %) of that value so that a fleet of clients that failed
together does not retry together; a longer hub-given wait (``Retry-After``, or the reset time of
a ``RateLimit`` header on a 429) honoured as a floor, capped, and spread upwards by the same
jitter; a hook called before each wait, and an injectable ``sleep``. Set
``PHAITA_BACKOFF_BASE=0`` (or pass ``backoff_base=0``) to make retries instant in tests, and
``PHAITA_BACKOFF_JITTER=0`` (or ``jitter=0``) for the exact schedule. What is transient is
decided by :func:`phaita.loader.http.failures.classify`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import tenacity

from .. import config
from ..http.failures import Failure, classify

logger = logging.getLogger("phaita.model_loader")
T = TypeVar("T")

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
