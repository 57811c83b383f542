"""What one snapshot fetch may open at once, and what it learned about the hub's limits.

:class:`ConnectionBudget` is the snapshot's one connection budget: each file being fetched holds
one connection (a file worker enters, possibly waiting for room), and a large file's extra range
streams take more only while there is room, giving them back as they end. :class:`LinkState`
remembers, across the files and attempts of one fetch, how many streams a file may use: it drops
when the hub answers a range request with the whole file, answers 429, or resets connections when
many are open; each drop is one INFO line. A 429 to a file while other files are open lowers the
budget itself (down to one connection) and the file waits for room instead of failing.
"""

from __future__ import annotations

import logging
import threading

from ..errors import DeadlineExceeded
from ..events import Emitter, Fallback
from .deadline import Deadline

logger = logging.getLogger("phaita.model_loader")


class ConnectionBudget:
    def __init__(self, connections: int) -> None:
        self.connections = connections
        self._used = 0
        self._cond = threading.Condition()

    def enter(self, deadline: Deadline, what: str) -> None:
        """Take one connection for a file, waiting (within ``deadline``) while extra streams hold them all."""
        with self._cond:
            while self._used >= self.connections:
                left = deadline.remaining()
                if left <= 0:
                    raise DeadlineExceeded(f"{what}: attempt timed out after {deadline.seconds:g} s")
                self._cond.wait(min(left, 0.5))
            self._used += 1

    def try_extra(self) -> bool:
        """One more connection for a range stream, only if there is room now."""
        with self._cond:
            if self._used >= self.connections:
                return False
            self._used += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._used -= 1
            self._cond.notify_all()

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    def shrink(self) -> int | None:
        """Allow one connection fewer than are open now (at least 1); the new limit, or None if unchanged."""
        with self._cond:
            new = max(1, self._used - 1)
            if new >= self.connections:
                return None
            self.connections = new
            return new

    def wait_for_room(self, deadline: Deadline, what: str) -> None:
        """Give this file's connection back and take one again once the open ones are under the limit."""
        self.leave()
        self.enter(deadline, what)


def crowded(exc: BaseException) -> bool:
    """A 429 that says "too many connections" (no Retry-After / RateLimit: not the hub's rate limit)."""
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) != 429:
        return False
    return not any(h in response.headers for h in ("Retry-After", "RateLimit", "X-RateLimit-Remaining"))


class LinkState:
    def __init__(self, streams_per_file: int, events: Emitter) -> None:
        self.streams_per_file = streams_per_file
        self.ranges_ok = True
        self._events = events
        self._lock = threading.Lock()

    def fewer_connections(self, path: str, budget: ConnectionBudget, reason: str) -> None:
        new = budget.shrink()
        if new is not None:
            logger.info("%s: %s; at most %d connection%s from now on", path, reason, new, "" if new == 1 else "s")
            self._events.emit(Fallback(path, new, reason))

    def fewer_streams(self, path: str, streams: int, reason: str, *, ranges_ok: bool = True) -> None:
        """Lower the streams a file may use from now on (to at least 1) and say so once."""
        streams = max(1, streams)
        with self._lock:
            if not ranges_ok:
                self.ranges_ok = False
            if streams >= self.streams_per_file:
                return
            self.streams_per_file = streams
        logger.info("%s: %s; fetching with %d stream%s per file from now on", path, reason, streams,
                    "" if streams == 1 else "s")
        self._events.emit(Fallback(path, streams, reason))
