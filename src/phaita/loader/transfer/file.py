"""One file into ``blobs/<etag>.incomplete``: one stream, or several byte-range streams at once.

Bytes are written at their offset (``os.pwrite``) into the one ``.incomplete`` file. What is on
disk is known from the sidecar (:mod:`.sidecar`) or, without one, from the file's contiguous
prefix; only the missing ranges are requested. The file is hashed in order as its contiguous
prefix grows (re-read from the page cache, in a background thread: :mod:`.overlap`), so checking the
hash at the end costs no extra pass; a body is read straight from the socket (:mod:`.body`).

A stream that breaks after progress resumes its range at once (a Range request); with one stream,
a break with no progress ends the attempt. Files of at least ``PHAITA_PARALLEL_THRESHOLD`` bytes
use several streams (:mod:`.ranges`). Every 206's ``Content-Range`` must be exactly the range
asked for; a ``200`` to a range request means the hub ignores ranges: one stream, from byte 0.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from . import body, sidecar
from .empty_break import EmptyBreaks
from .overlap import Background, write_back
from .progress_guard import ProgressGuard, refused_for_good, unmatched_hash
from ..errors import BadResponse, TransferIncomplete, redact
from ..events import FileStarted, Progress, Resumed
from ..hashing import StreamHasher
from ..http.links import crowded
from ..hub.listing import RemoteFile
from ..http.deadline import Deadline, stream
from .ranges import ParallelRanges, RangesIgnored, Segment, Stopped

logger = logging.getLogger("phaita.model_loader")
CHUNK = 4 << 20  # bytes hashed per piece (one reused buffer; hashlib releases the GIL on it)
REPORT_EVERY = 1 << 20  # progress events at most once per MiB per file
CHECKPOINT_EVERY = 8 << 20  # fsync + sidecar after this many new bytes (all streams of the file)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class FileTransfer(ParallelRanges):
    """Fetch ``file`` from ``url`` into ``part``; on success ``part`` is whole, fsynced and verified."""

    def __init__(self, url: str, file: RemoteFile, part: Path, ctx: Any, deadline: Deadline) -> None:
        self.url, self.file, self.part, self.ctx, self.deadline = url, file, part, ctx, deadline
        self.size = file.size
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.done: sidecar.Ranges = []
        self.active: set[Segment] = set()
        self.pending: deque[Segment] = deque()
        self.error: BaseException | None = None
        self.stopped = False
        self.fd = -1
        self._hash_lock = threading.Lock()
        self._ckpt_lock = threading.Lock()
        self._unrecorded = 0  # bytes written since the last checkpoint (all streams)
        self._hashed = 0
        self._refused_resumes = 0  # 416s: the second one in a transfer ends the attempt (see _request)
        self._hasher = self._new_hasher()
        self._hash_buf = memoryview(bytearray(CHUNK))
        self._unreported = 0
        self._cuts = 0
        self._stream_limit = ctx.links.streams_per_file  # streams this file may run now (ranges: StreamGrowth)
        self.guard = ProgressGuard(file.path, self.size, deadline, ctx.events)  # this file's requests, this attempt
        self.pieced_digest: str | None = None  # the wrong sha256 of pieces that did not add up (see _recheck_whole)
        threshold = ctx.parallel.threshold
        self.min_split = max(64 << 10, min(threshold // 4, 4 << 20))
        self.window = 4 * self.min_split
        self.use_sidecar = self.size >= threshold
        self.checkpoint_every = min(CHECKPOINT_EVERY, max(64 << 10, threshold // 4))

    def __repr__(self) -> str:  # no headers: they hold the token
        return f"FileTransfer({self.file.path!r}, {self.size} bytes)"

    # ------------------------------------------------------------------ entry point
    def run(self) -> None:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        finished = refused = False
        self.background = Background(self)
        try:
            self._load_state()
            self.background.start()
            self.guard.initial = sidecar.total(self.done)
            self.ctx.events.emit(FileStarted(self.file.path, self.size, sidecar.total(self.done),
                                             redact(self.ctx.endpoint)))
            while True:
                self._fetch_missing()
                self._advance_hash()
                if self._hash_ok():
                    break
                if self.guessed:
                    logger.info("%s: the partial file (no record of its ranges) was not the hub's; fetching it "
                                "again", self.file.path)
                    self.guessed = False
                elif not self._recheck_whole():
                    break
                self._restart()
            os.fsync(self.fd)
            finished = True
        except BaseException as exc:
            refused = refused_for_good(exc)
            raise
        finally:
            self.background.close()
            self._report(flush=True)
            if not finished and self.use_sidecar and not refused:
                self._checkpoint()
            os.close(self.fd)
            if refused:  # the same server answers the same way: its bytes are of no use
                self.discard()
        if not self._hash_ok():
            self.discard()
            raise unmatched_hash(self.guard, self._hasher.hexdigest(), self.pieced_digest)

    def _recheck_whole(self) -> bool:
        """A file whose pieces did not add up to its hash is fetched once more, whole, in one answer.

        Only that tells a copy that is wrong on the server (the one answer brings the same wrong bytes:
        a corrupt mirror copy, to purge) from pieces that disagree (bytes changed between requests, or
        one piece corrupted on the way: then the one answer is usually right, and the load goes on).
        """
        if self.pieced_digest is not None or not self.file.hash_known or self.guard.single_answer():
            return False
        self.pieced_digest = self._hasher.hexdigest()
        logger.info("%s: its %d pieces do not add up to the hub's hash; fetching it once more in one answer",
                    self.file.path, self.guard.answers())
        self.guard.start_over()
        return True

    def _fetch_missing(self) -> None:
        if self.pieced_digest is not None:  # the recheck: one answer, whole
            self._run_one()
            return
        streams = self.ctx.links.streams_per_file if self.ctx.links.ranges_ok else 1
        if streams > 1 and self.size >= self.ctx.parallel.threshold and sidecar.missing(self.done, self.size):
            self._run_many(streams)
        if sidecar.missing(self.done, self.size):
            self._run_one()

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        sidecar.remove(self.part)

    # ------------------------------------------------------------------ state on disk
    def _load_state(self) -> None:
        length = os.fstat(self.fd).st_size
        ranges = sidecar.load(self.part, self.file.etag, self.size)
        self.guessed = False  # True: trusting bytes no sidecar vouches for
        if ranges is not None:
            self.use_sidecar = True
        else:
            prefix = min(sidecar.trusted_prefix(self.part), self.size)
            if prefix < length and not self.file.hash_known:
                prefix = 0  # holes and no hash to catch a wrong guess: trust nothing
            ranges = [(0, prefix)] if prefix else []
            self.guessed = bool(prefix)
            if length > self.size:
                os.ftruncate(self.fd, 0)
                ranges = []
        self.done = sidecar.merge(ranges)

    def _checkpoint(self, wait: bool = True) -> None:
        """fsync what was written, then record it: the sidecar never claims bytes not on disk.

        One at a time (the record is replaced whole, in order); a stream that finds one running
        skips its own (``wait=False``): the next records what it wrote.
        """
        if not self._ckpt_lock.acquire(blocking=wait):
            return
        try:
            with self.lock:
                ranges = self._written()
            os.fdatasync(self.fd)
            sidecar.save(self.part, self.file.etag, self.size, ranges)
        except OSError as exc:  # e.g. disk full: the bytes stay, the next run trusts the prefix only
            logger.debug("%s: could not record progress (%s)", self.file.path, exc)
        finally:
            self._ckpt_lock.release()

    def _written(self) -> sidecar.Ranges:
        return sidecar.merge(self.done + [(s.start, s.pos) for s in self.active])

    # ------------------------------------------------------------------ hashing
    def _new_hasher(self) -> StreamHasher:
        return StreamHasher.for_blob(self.file.sha256, self.size)

    def _advance_hash(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Hash the contiguous prefix written so far (from the page cache); ``stop`` (the background
        thread's) ends it between pieces."""
        with self._hash_lock:
            with self.lock:
                end = sidecar.prefix_end(self._written())
            buf = self._hash_buf
            while self._hashed < end and not stop():
                n = os.preadv(self.fd, [buf[:min(CHUNK, end - self._hashed)]], self._hashed)
                if not n:
                    break
                self._hasher.update(buf[:n])
                self._hashed += n

    def _hash_ok(self) -> bool:
        if self._hashed != self.size:
            return False
        # an endpoint that gave no hash: the size was checked (logged once, by the listing)
        return not self.file.hash_known or self._hasher.matches(self.file.etag)

    def _restart(self) -> None:
        """Forget everything on disk (the hub sent the whole file, or refused our range)."""
        with self._hash_lock, self.lock:
            had = sidecar.total(self._written())
            self.done = []
            for seg in self.active:
                seg.start = seg.pos = 0
            self._hasher, self._hashed = self._new_hasher(), 0
            self._unreported -= had
        os.ftruncate(self.fd, 0)
        sidecar.remove(self.part)

    # ------------------------------------------------------------------ one request
    def _fetch(self, seg: Segment, alone: bool) -> None:
        """Fetch ``seg`` from ``seg.pos`` until its end; raise on anything short of that.

        One stream alone asks for everything up to the end at once. Several ask in windows of
        ``self.window`` bytes on their kept-alive connection, so that another stream can take over
        the rest of a range at a window's end without cutting a transfer (whose bytes in flight
        would be sent twice).
        """
        while seg.pos < seg.end:
            if not alone and self.error is not None:
                raise Stopped()  # another stream failed: finish this window, start no other
            self._request(seg, seg.end if alone else min(seg.end, seg.pos + self.window), alone)

    def _request(self, seg: Segment, end: int, alone: bool) -> None:
        headers = {**self.ctx.headers, "Accept-Encoding": "identity"}  # gzip would defeat ranges
        ranged = not (seg.pos == 0 and end == self.size)
        asked = (seg.pos, end)
        seg.asked_end = end  # (seg.end may move meanwhile: another stream takes over the rest)
        if ranged:
            headers["Range"] = f"bytes={seg.pos}-" + (str(end - 1) if end < self.size else "")
        seg.gained, seg.cut = 0, False
        seg.began = seg.last_byte = time.monotonic()
        answered = False
        began = seg.pos
        self.guard.requested(seg.pos, end)
        try:
            with stream("GET", self.url, headers=headers, deadline=self.deadline, timeouts=self.ctx.timeouts,
                        what=self.file.path) as response:
                seg.response, answered = response, True
                self.guard.answered(response, ranged, end - seg.pos)
                if ranged and response.status_code == 200:
                    if not alone:
                        raise RangesIgnored()
                    self._restart()  # the body starts at byte 0: take all of it
                    self.ctx.links.fewer_streams(self.file.path, 1, "the hub ignores Range requests",
                                                 ranges_ok=False)
                    seg.start = seg.pos = began = 0
                    seg.end = self.size
                elif ranged:
                    self._check_content_range(response, *asked)
                for chunk in body.chunks(response, self._read_timeout, seg.heard):  # a break loses no received bytes
                    if not self._write(seg, chunk):
                        break
        except (httpx2.TransportError, TransferIncomplete) as exc:
            exc.answered = answered  # type: ignore[attr-defined]  # (see EmptyBreaks)
            raise
        except HfHubHTTPError as exc:
            if getattr(exc.response, "status_code", None) == 416:  # our partial file is not theirs
                had = seg.pos
                self._restart()
                self._refused_resumes += 1
                if self._refused_resumes > 1:  # it serves fewer bytes than it announces, every time
                    short = TransferIncomplete(
                        f"{self.file.path}: the hub announces {self.size} bytes but its answers end at byte "
                        f"{had} and it refuses the rest (HTTP 416)")
                    short.answered = False  # type: ignore[attr-defined]  # not an empty break: end the attempt
                    raise short from None
                raise TransferIncomplete(f"{self.file.path}: the hub refused the resume range; restarting") from None
            raise
        finally:
            seg.response = None
            seg.advanced = self.guard.wrote(began, seg.pos)
        if seg.pos < min(seg.end, end):
            exc = TransferIncomplete(f"{self.file.path}: connection closed at byte {seg.pos} of {self.size}")
            exc.answered = True  # type: ignore[attr-defined]
            raise exc

    def _read_timeout(self) -> float:
        return min(self.ctx.timeouts.stall, self.deadline.remaining())

    def _check_content_range(self, response: httpx2.Response, start: int, end: int) -> None:
        value = response.headers.get("Content-Range", "")
        m = _CONTENT_RANGE.match(value.strip())
        ok = (response.status_code == 206 and m is not None and int(m.group(1)) == start
              and int(m.group(2)) == end - 1 and m.group(3) in (str(self.size), "*"))
        if not ok:
            raise BadResponse(f"{self.file.path}: asked for bytes {start}-{end - 1}, got HTTP "
                              f"{response.status_code} with Content-Range {value!r}")

    def _write(self, seg: Segment, chunk: bytes) -> bool:
        """Write what belongs to ``seg``; False once ``seg`` is complete (its end may have moved)."""
        with self.lock:
            if self.stopped:
                raise Stopped()
            if seg.pos + len(chunk) > self.size:
                raise self.guard.overran(seg.pos + len(chunk))
            n = max(0, min(len(chunk), seg.end - seg.pos))
            at = seg.pos
            if n:
                os.pwrite(self.fd, chunk[:n] if n < len(chunk) else chunk, seg.pos)
                seg.pos += n
                seg.gained += n
                seg.last_byte = time.monotonic()
            self._unreported += n
            self._unrecorded += n
            more = seg.pos < seg.end
            checkpoint = self.use_sidecar and self._unrecorded >= self.checkpoint_every
            if checkpoint:
                self._unrecorded = 0
        write_back(self.fd, at, n)  # the disk starts now, not at the final fsync (the pages are dirty: kept)
        self.ctx.count(n)
        self._report()
        self.background.poke(checkpoint)  # hash it, and record a checkpoint, off this stream's thread
        return more

    def _report(self, flush: bool = False) -> None:
        with self.lock:
            n = self._unreported
            if not n or (not flush and abs(n) < REPORT_EVERY):
                return
            self._unreported = 0
        self.ctx.events.emit(Progress(self.file.path, n))

    def _resumed(self, seg: Segment, exc: BaseException) -> None:
        logger.info("%s: transfer broke at byte %d of %d (%s); resuming", self.file.path, seg.pos, self.size,
                    type(exc).__name__)
        self.ctx.events.emit(Resumed(self.file.path, seg.pos, type(exc).__name__))

    # ------------------------------------------------------------------ one stream
    def _run_one(self) -> None:
        """The missing ranges in order over one stream (the only mode for small files)."""
        empty = EmptyBreaks(self.deadline)
        while gaps := sidecar.missing(self.done, self.size):
            seg = Segment(*gaps[0])
            with self.lock:
                self.active.add(seg)
            try:
                while seg.pos < seg.end:
                    self._check()
                    try:
                        self._fetch(seg, alone=True)
                    except (httpx2.TransportError, TransferIncomplete) as exc:
                        if seg.gained <= 0 and not self.deadline.expired() and empty.retry(exc, self.file.path):
                            continue
                        if seg.gained <= 0 and seg.pos > 0 and not self.deadline.expired():
                            raise self.guard.ends_here(seg.pos, empty.used + 1, exc) from exc
                        if seg.gained <= 0 or self.deadline.expired():
                            raise
                        self.guard.after_break(seg.advanced, seg.pos, exc)  # progress, or a pause, or stop
                        empty.progressed()
                        self._resumed(seg, exc)
                    except HfHubHTTPError as exc:
                        if not crowded(exc) or self.ctx.budget.used <= 1:
                            raise
                        self.ctx.links.fewer_connections(self.file.path, self.ctx.budget,
                                                         f"HTTP 429 with {self.ctx.budget.used} connections open")
                        self.ctx.budget.wait_for_room(self.deadline, self.file.path)
                    finally:
                        self.background.poke()
            finally:
                with self.lock:
                    self.active.discard(seg)
                    self.done = sidecar.merge(self.done + [(seg.start, seg.pos)])

    def _check(self) -> None:
        self.deadline.check(self.file.path)
        if self.ctx.cancel.is_set():
            raise Stopped()
