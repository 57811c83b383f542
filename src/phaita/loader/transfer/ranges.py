"""Several byte-range streams for one file (the part of :class:`.transfer.FileTransfer` that runs them).

The file's missing ranges are queued as window-sized segments, in file order (so the contiguous
prefix, and the hash over it, grow with the download); up to the link's streams-per-file take them,
each on its own connection (the first is the file worker's, more only while the snapshot's
connection budget has room). A coordinator loop (the file worker's thread) starts streams, hashes
the growing prefix, cuts a stream silent for :func:`takeover_after` seconds (its range goes back to
the queue), and, when a stream is free and the queue is empty, gives part of the slowest stream's
range to a new one, in proportion to their speeds. A request that fails after progress resumes; one
that fails without progress, while others work, ends its stream and lowers the streams per file
(429, resets when many connections are open, a wrong ``Content-Range``); the last stream's failure
ends the attempt, as with one stream.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from . import sidecar
from .stream_growth import StreamGrowth
from ..errors import BadResponse, NoProgress, TransferIncomplete
from ..http.links import crowded
from ..http.deadline import interrupt
from ..http.failures import classify

logger = logging.getLogger("phaita.model_loader")


class RangesIgnored(Exception):
    """The hub answered a range request with the whole file."""


class Stopped(Exception):
    """The transfer is ending (error elsewhere, deadline, cancelled): stop writing."""


@dataclass(eq=False)
class Segment:
    start: int
    end: int  # exclusive; lowered when another stream takes over the rest
    pos: int = -1
    began: float = field(default_factory=time.monotonic)
    last_byte: float = field(default_factory=time.monotonic)
    gained: int = 0  # bytes of the current request
    asked_end: int = 0  # end of the current request's range
    response: Any = None
    advanced: bool = False  # the last request wrote bytes no earlier one of this attempt wrote
    cut: bool = False  # interrupted on purpose (stalled): not the stream's fault

    def __post_init__(self) -> None:
        if self.pos < 0:
            self.pos = self.start

    def heard(self) -> None:
        """Bytes arrived (not yet written): the stream is not silent."""
        self.last_byte = time.monotonic()

    def rate(self, now: float) -> float:
        return (self.pos - self.start) / max(now - self.began, 1e-3)


def takeover_after(stall: float) -> float:
    """Silence after which a stream is cut and its range re-queued (well before the read timeout)."""
    return min(max(stall / 4, 0.5), 3.0)


class ParallelRanges:
    """Mixed into FileTransfer: the attributes and ``_fetch``/``_checkpoint``/... it uses are defined there."""

    def _run_many(self, streams: int) -> None:
        gaps = sidecar.missing(self.done, self.size)
        # Window-sized pieces taken in file order (stream k has the k-th window in flight), so the
        # contiguous prefix, and the hash over it, keep up with the download instead of waiting for
        # the first of a few long segments; smaller pieces when the file has fewer windows than streams.
        piece = min(self.window, max(self.min_split, -(-sum(b - a for a, b in gaps) // streams)))
        for a, b in gaps:
            for start in range(a, b, piece):
                self.pending.append(Segment(start, min(b, start + piece)))
        threads: list[tuple[threading.Thread, bool]] = []  # (thread, holds an extra connection)
        takeover = takeover_after(self.ctx.timeouts.stall)
        growth = StreamGrowth(streams, self.ctx.budget.connections, path=self.file.path)
        try:
            while True:
                alive = [(t, extra) for t, extra in threads if t.is_alive()]
                with self.cond:
                    if self.error is not None and (not self.active or not classify(self.error).transient):
                        break  # (after a transient error the others end their window: no bytes thrown away)
                    if self.error is None and not self.pending and not self.active:
                        break
                    ranges_ok = self.ctx.links.ranges_ok
                    base = self.ctx.links.streams_per_file if ranges_ok else 1
                    if not growth.done:
                        received = sum(b - a for a, b in self.done) + sum(s.pos - s.start for s in self.active)
                        growth.observe(time.monotonic(), received, len(alive), base)
                    limit = self._stream_limit = growth.limit(base)
                    want = len(alive) < limit and (bool(self.pending) or self._split_slowest(dry_run=True))
                if limit <= 1 and not alive:
                    break  # down to one stream: _run_one carries on
                if ranges_ok and want and self.error is None:
                    # this file's worker holds one connection of the budget; more streams need room in it
                    extra = any(not e for _, e in alive)
                    if not extra or self.ctx.budget.try_extra():
                        with self.cond:
                            if not self.pending:
                                self._split_slowest()
                        t = threading.Thread(target=self._stream_main, args=(extra,), daemon=True,
                                             name=f"phaita-range:{self.file.path}")
                        threads.append((t, extra))
                        t.start()
                        continue
                self._cut_stalled(takeover)
                self.background.poke()
                self._check()
                with self.cond:
                    self.cond.wait(0.05)
        finally:
            self._stop([t for t, _ in threads])
        if self.error is not None:
            raise self.error

    def _stop(self, threads: list[threading.Thread]) -> None:
        with self.lock:
            self.stopped = True
            responses = [s.response for s in self.active if s.response is not None]
        for response in responses:
            interrupt(response)
        for t in threads:  # each is unblocked (socket shut) or ends at its next chunk
            t.join()
        with self.lock:
            self.stopped = False
            for seg in self.active:
                self.done = sidecar.merge(self.done + [(seg.start, seg.pos)])
            self.active.clear()
            self.pending.clear()

    def _stream_main(self, extra: bool) -> None:
        try:
            while True:
                with self.cond:
                    if self.stopped or self.error is not None or not self.pending:
                        return
                    if not self.ctx.links.ranges_ok:
                        return
                    seg = self._take()
                try:
                    self._fetch(seg, alone=False)
                    self._settle(seg)
                except Stopped:
                    self._settle(seg, requeue=True)
                    return
                except RangesIgnored:
                    self._settle(seg, requeue=True)
                    self.ctx.links.fewer_streams(self.file.path, 1, "the hub ignores Range requests", ranges_ok=False)
                    return
                except (httpx2.TransportError, TransferIncomplete, BadResponse, HfHubHTTPError) as exc:
                    self._settle(seg, requeue=True)
                    if not self._carry_on(seg, exc):
                        return
                except BaseException as exc:
                    self._settle(seg, requeue=True)
                    self._fail(exc)
                    return
        finally:
            if extra:
                self.ctx.budget.leave()
            with self.cond:
                self.cond.notify_all()

    def _take(self) -> Segment:
        """The next queued range (caller holds the lock), cut to a fair share of what is left, so that
        the streams finish together instead of a few long last ranges holding the file."""
        seg = self.pending.popleft()
        streams = max(1, self._stream_limit)
        share = max(self.min_split, sum(s.end - s.start for s in self.pending) // streams)
        cut = -(-(seg.start + share) // (64 << 10)) * (64 << 10)
        if cut + self.min_split < seg.end:
            self.pending.appendleft(Segment(cut, seg.end))
            seg.end = cut
        self.active.add(seg)
        return seg

    def _carry_on(self, seg: Segment, exc: BaseException) -> bool:
        """After a failed request: True to take the next range, False to end this stream."""
        if isinstance(exc, HfHubHTTPError) and not crowded(exc):
            self._fail(exc)  # 401/403/404, 5xx, a rate limit: classified as always, by the retry policy
            return False
        if seg.cut and self._cuts <= 20:
            return True  # we cut it (stalled): its range is queued again
        if isinstance(exc, BadResponse):
            self._fail(exc)  # a wrong Content-Range: this attempt ends (nothing wrong was written)
            return False
        if seg.gained > 0 and not self.deadline.expired() and not crowded(exc):
            try:
                self.guard.after_break(seg.advanced, seg.pos, exc)  # progress, or a pause, or stop
            except (NoProgress, TransferIncomplete) as stop:
                self._fail(stop)
                return False
            self._resumed(seg, exc)
            return True
        with self.lock:
            others = sum(1 for s in self.active if s is not seg)
        if others == 0 or self.deadline.expired():
            if crowded(exc) and not self.deadline.expired():
                # other files hold the connections: one stream, which waits for room (see _run_one)
                self.ctx.links.fewer_streams(self.file.path, 1, "HTTP 429 with other files open")
                return False
            self._fail(exc)  # the only stream, and no progress: this attempt ends as it always did
            return False
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"{f'HTTP {status}' if status else type(exc).__name__} with {others + 1} connections open"
        self.ctx.links.fewer_streams(self.file.path, others, reason)
        return False

    def _settle(self, seg: Segment, requeue: bool = False) -> None:
        with self.cond:
            self.active.discard(seg)
            if seg.pos > seg.start:
                self.done = sidecar.merge(self.done + [(seg.start, seg.pos)])
            if requeue and seg.pos < seg.end:
                self.pending.appendleft(Segment(seg.pos, seg.end))
            self.cond.notify_all()
        if self.use_sidecar and seg.pos > seg.start:
            self.background.poke(checkpoint=True)

    def _fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cond.notify_all()

    def _split_slowest(self, dry_run: bool = False) -> bool:
        """Give part of the range with the longest time to go to a new stream (caller holds the lock).

        The cut is at least at the end of the window the stream is fetching, so nothing in flight is
        wasted, unless the stream is much slower than the others (a trickle): then it keeps about a
        second's worth. The new range gets a share in proportion to the two speeds.
        """
        now = time.monotonic()
        best, best_eta = None, 0.0
        for seg in self.active:
            left = seg.end - seg.pos
            if left < 2 * self.min_split or seg.response is None:
                continue
            eta = left / max(seg.rate(now), 1.0)
            if eta > best_eta:
                best, best_eta = seg, eta
        if best is None:
            return False
        rates = [s.rate(now) for s in self.active if s is not best]
        mine, typical = best.rate(now), max(rates, default=best.rate(now))
        slow = typical > 0 and mine < typical / 4
        low = best.pos + max(self.min_split, int(mine)) if slow else max(best.asked_end, best.pos + self.min_split)
        share = 0.5 if mine <= 0 or typical <= 0 else min(0.5, mine / (mine + typical))
        cut = max(low, best.pos + int((best.end - best.pos) * share))
        cut = -(-cut // (64 << 10)) * (64 << 10)
        if cut > best.end - self.min_split:
            return False
        if not dry_run:
            self.pending.append(Segment(cut, best.end))
            best.end = cut
        return True

    def _cut_stalled(self, takeover: float) -> None:
        now = time.monotonic()
        with self.lock:
            stalled = [s for s in self.active if s.response is not None and not s.cut and now - s.last_byte > takeover]
            for seg in stalled:
                seg.cut = True
                self._cuts += 1
        for seg in stalled:
            response = seg.response
            if response is not None:
                logger.info("%s: no data for %.1f s on the stream at byte %d; handing its range to another stream",
                            self.file.path, now - seg.last_byte, seg.pos)
                interrupt(response)
