"""More range streams for one file while each one added raises its throughput: a per-connection cap.

A site proxy, a CDN or a server's per-request rate limit (nginx ``limit_rate``) caps each connection,
not the link: there eight streams get eight caps and sixteen get sixteen. On a link that is full
(or a machine whose CPU is) more streams only share the same bytes. So a file starts with the
link's streams per file and, once that many have run for a whole window, adds ``step`` more; after
the next window it keeps growing only if the added streams brought at least ``gain`` of what one
stream carried before, up to ``ceiling`` (the snapshot's connection budget bounds them too). A
window in which fewer streams ran than allowed (the file's last ranges, a stream that failed)
measures nothing and starts again. Once the link lowers its streams per file (429, resets, a wrong
``Content-Range``), growth ends for good: the server has said what it can take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("phaita.model_loader")


@dataclass
class StreamGrowth:
    start: int  # the link's streams per file when the file began
    ceiling: int
    step: int = 4
    window: float = 1.0  # seconds of all allowed streams running, per measurement
    gain: float = 0.6  # of one stream's rate, per added stream, to count as "it helped"
    path: str = ""

    def __post_init__(self) -> None:
        self.added = 0
        self.done = self.start <= 1 or self.ceiling <= self.start
        self._since: tuple[float, int] | None = None  # (time, bytes) when the current window began
        self._before: tuple[int, float] | None = None  # (streams, bytes/s) of the last window

    def limit(self, base: int) -> int:
        """The streams this file may run now, given the link's current streams per file."""
        if base < self.start:  # the link lowered it: the server's limit, not a cap per connection
            self.done, self.added = True, 0
            return base
        return base + self.added

    def observe(self, now: float, received: int, running: int, base: int) -> None:
        """Called by the coordinator with the file's bytes so far and the streams running now."""
        if self.done:
            return
        allowed = self.limit(base)
        if self.done or running < allowed:
            self._since = None  # not every allowed stream ran: this window says nothing
            return
        if self._since is None:
            self._since = (now, received)
            return
        began, at = self._since
        if now - began < self.window:
            return
        rate = (received - at) / (now - began)
        self._since = None
        if self._before is not None:
            streams, before = self._before
            helped = (rate - before) / max(allowed - streams, 1) >= self.gain * before / streams
            if not helped:
                self.done = True
                logger.debug("%s: %d streams carry %.1f MB/s, %d carried %.1f MB/s: no more streams",
                             self.path, allowed, rate / 1e6, streams, before / 1e6)
                return
        self._before = (allowed, rate)
        grown = min(self.ceiling - base, self.added + self.step)
        if grown <= self.added:
            self.done = True
            return
        self.added = grown
        logger.debug("%s: %d streams carry %.1f MB/s; trying %d", self.path, allowed, rate / 1e6, base + grown)
