"""One stream of loader events: the plan, progress, resumes, retries and fallbacks of a fetch.

An observer is any callable taking one event (``events=`` on the loader's calls); the CLI's
progress bar, the chaos runner's counters and a test's list are all observers. Events come from
several download threads; :class:`Emitter` calls observers one event at a time, so an observer
needs no locking of its own. An observer that raises is logged and dropped: a broken progress bar
must not fail a download.

=================  ==========================================================================
Event              When
=================  ==========================================================================
``LoadStarted``    a load of one model begins (one per candidate tried)
``Attempt``        the ``number``-th network attempt of that load begins (listing, then files)
``Plan``           once per attempt, before transferring: the files, total bytes, bytes cached
``FileStarted``    a file's transfer begins (``initial`` bytes were already on disk)
``Requested``      the ``count``-th request for ``path`` in this attempt, for bytes
                   ``offset``-``end`` (bounded per file per attempt: ``transfer.progress_guard``)
``Progress``       ``n`` more bytes of ``path`` arrived (negative: bytes discarded)
``FileDone``       a file is whole and verified (or was already)
``FileFailed``     a file's transfer failed (``kind``: a ``FailureKind`` value)
``Resumed``        a broken stream continues at ``offset`` (same attempt)
``Retried``        an attempt failed; another follows after ``wait`` s (None: giving up)
``Fallback``       fewer parallel streams from now on (server ignores ranges, 429, resets)
``EndpointFallback`` the next endpoint is asked (the listing, or what this one could not give)
``LoadFinished``   the load of one model ended: ``outcome`` "ok" or "failed" (with ``kind``)
=================  ==========================================================================

Endpoints in events are already redacted (no credentials), reasons are one token-free line.
:mod:`phaita.loader.request.telemetry` turns this stream into OpenTelemetry spans and metrics.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Union

logger = logging.getLogger("phaita.model_loader")


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int
    cached: int  # bytes already on disk (whole blob, or a resumable part)


@dataclass(frozen=True)
class Plan:
    repo_id: str
    commit: str
    files: tuple[PlannedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def cached_bytes(self) -> int:
        return sum(f.cached for f in self.files)


@dataclass(frozen=True)
class LoadStarted:
    repo_id: str
    revision: str
    endpoint: str  # the first endpoint asked (redacted)


@dataclass(frozen=True)
class Attempt:
    repo_id: str
    number: int  # 1, 2, ...
    max_attempts: int


@dataclass(frozen=True)
class LoadFinished:
    repo_id: str
    revision: str
    outcome: str  # "ok" or "failed"
    commit: str | None = None
    kind: str | None = None  # failed: a FailureKind value (or the public error's kind)
    reason: str | None = None  # failed: one line, token-free
    attempts: int | None = None  # failed: attempts made (None: counted from Attempt events)
    snapshot_bytes: int | None = None  # ok: bytes of the snapshot's files on disk


@dataclass(frozen=True)
class FileStarted:
    path: str
    size: int
    initial: int
    endpoint: str = ""  # where the bytes come from (redacted)


@dataclass(frozen=True)
class FileFailed:
    path: str
    kind: str  # a FailureKind value
    reason: str


@dataclass(frozen=True)
class Requested:
    path: str
    count: int  # requests for this file in this attempt, this one included
    offset: int
    end: int  # exclusive


@dataclass(frozen=True)
class Progress:
    path: str
    n: int


@dataclass(frozen=True)
class FileDone:
    path: str
    size: int


@dataclass(frozen=True)
class Resumed:
    path: str
    offset: int
    reason: str


@dataclass(frozen=True)
class Retried:
    what: str
    attempt: int
    max_attempts: int
    reason: str
    wait: float | None
    kind: str = ""  # a FailureKind value


@dataclass(frozen=True)
class Fallback:
    path: str
    streams: int
    reason: str


@dataclass(frozen=True)
class EndpointFallback:
    repo_id: str
    endpoint: str  # the one that failed (redacted)
    next_endpoint: str  # the one asked now (redacted)
    reason: str


Event = Union[LoadStarted, Attempt, Plan, FileStarted, Requested, Progress, FileDone, FileFailed, Resumed, Retried,
              Fallback, EndpointFallback, LoadFinished]


class Observer(Protocol):
    def __call__(self, event: Event) -> None: ...


class Emitter:
    """Fans events out to observers, one event at a time (thread-safe)."""

    def __init__(self, observers: Iterable[Callable[[Event], Any]] = ()) -> None:
        self._observers = [o for o in observers if o is not None]
        self._lock = threading.RLock()  # an observer may emit (or log through one) while called

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: Callable[[Event], Any]) -> None:
        with self._lock:
            self._observers.append(observer)

    def __call__(self, event: Event) -> None:  # an Emitter is an observer too (one request's, shared)
        self.emit(event)

    def emit(self, event: Event) -> None:
        if not self._observers:
            return
        with self._lock:
            for observer in list(self._observers):
                try:
                    observer(event)
                except Exception as exc:  # never let a progress bar fail a download
                    logger.warning("progress observer %r failed (%s); it gets no more events", observer, exc)
                    self._observers.remove(observer)


class LegacyProgress:
    """Adapts an object with ``start(name, total, initial)/update(n)/close()`` (the older ``progress=``).

    It sees the snapshot as one transfer: ``start`` with the plan's total and cached bytes, every
    file's bytes as ``update``, ``close`` when the plan's files are all done.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self._left: set[str] = set()
        self._open = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Plan):
            self._close()
            self._left = {f.path for f in event.files if f.cached < f.size}
            self.target.start(event.repo_id, event.total_bytes, event.cached_bytes)
            self._open = True
        elif isinstance(event, Progress) and self._open:
            self.target.update(event.n)
        elif isinstance(event, FileDone):
            self._left.discard(event.path)
            if not self._left:
                self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self.target.close()


def as_observer(progress: Any) -> Callable[[Event], Any] | None:
    """``progress=`` may be an observer (callable) or an older start/update/close object."""
    if progress is None:
        return None
    if all(hasattr(progress, m) for m in ("start", "update", "close")):
        return LegacyProgress(progress)
    if callable(progress):
        return progress
    raise ValueError("progress must be a callable taking loader events, or an object with start/update/close")
