"""Progress or stop: one file's requests in one attempt, counted and bounded by design.

A break after new bytes resumes at once (:mod:`.file`). But "new" must mean *new*: a hub that
ignores ``Range`` restarts every resume from byte 0, and one that cuts every answer at the same
byte (a size-capping proxy) or announces less than it sends ends each answer where the last one
did. Each such answer moved bytes, so without this guard the transfer resumed at once, forever:
2,854 requests for one file in an 8 s attempt, then "attempt timed out", naming no cause.

Here every request of a file in one attempt is counted (a :class:`~phaita.loader.events.Requested`
event each), and every written range is remembered, discarded ones too. An answer *advances* when
it wrote bytes no earlier answer of this attempt wrote. One that does not is a *stuck* answer:
after it the transfer pauses (0.25 s, then 0.5 s, 1 s), and after ``STUCK_TRIES`` of them the file
fails with :class:`~phaita.loader.errors.NoProgress`, a permanent error naming what was seen ("the
hub ignores Range requests and every answer ends at byte 100000 of 300000"). Answers that advance
are bounded too: at most ``max_breaks(size)`` broken answers per file per attempt (then the attempt
ends, transient: the next one resumes). So one file costs at most
``1 + max_breaks + STUCK_TRIES + EmptyBreaks.RETRIES + 2`` (416 restarts) requests on one stream in
one attempt, whatever the deadline. Answers that end before their first byte are
:mod:`.empty_break`'s (a mirror relaying an upstream fault), not this module's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import sidecar
from ..errors import ChecksumMismatch, ContentChanged, EncodedBody, NoProgress, TransferIncomplete, printable
from ..events import Emitter, Requested
from ..http.deadline import Deadline

logger = logging.getLogger("phaita.model_loader")

STUCK_TRIES = 3  # answers that add nothing, per file per attempt, before it fails for good
FIRST_PAUSE = 0.25  # then doubled
BREAKS_BASE = 32  # broken answers that did advance, per file per attempt (plus one per BREAK_BYTES)
BREAK_BYTES = 4 << 20


def max_breaks(size: int) -> int:
    """Broken-but-advancing answers allowed for a file of ``size`` bytes in one attempt."""
    return BREAKS_BASE + size // BREAK_BYTES


class ProgressGuard:
    """One file's requests in one attempt (thread-safe: parallel range streams share it)."""

    def __init__(self, path: str, size: int, deadline: Deadline, events: Emitter) -> None:
        self.path, self.size, self.deadline, self.events = path, size, deadline, events
        self.requests = 0
        self.breaks = 0
        self.stuck = 0
        self.ever: sidecar.Ranges = []  # every range written in this attempt, discarded ones too
        self.ignored_ranges = 0  # 200 answers to range requests: the body restarted at byte 0
        self.overruns = 0  # bodies longer than announced
        self.short_announced: set[int] = set()  # Content-Length values smaller than the answer should be
        self.stuck_ends: list[int] = []
        self.pieces: list[int] = []  # where each answer that wrote bytes began
        self.initial = 0  # bytes on disk from an earlier attempt, set by the transfer
        self._lock = threading.Lock()

    def answers(self) -> int:
        """Answers that wrote bytes, plus one for bytes kept from an earlier attempt."""
        with self._lock:
            return len(self.pieces) + (1 if self.initial else 0)

    def single_answer(self) -> bool:
        """The file on disk came from one answer, from byte 0."""
        return self.answers() <= 1

    def start_over(self) -> None:
        """The file is fetched again from byte 0: its pieces so far no longer count (the budgets do)."""
        with self._lock:
            self.pieces, self.ever, self.initial = [], [], 0

    # ------------------------------------------------------------------ per request
    def requested(self, offset: int, end: int) -> None:
        with self._lock:
            self.requests += 1
            n = self.requests
        self.events.emit(Requested(self.path, n, offset, end))

    def answered(self, response: Any, ranged: bool, expected: int) -> None:
        """Check an answer's headers before its body is read: encoding, announced length."""
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise EncodedBody(
                f"{self.path}: the server sent the file compressed (Content-Encoding: {printable(encoding, 40)}) "
                "although the loader asked for the bytes as they are (Accept-Encoding: identity); "
                "a compressed body cannot be checked against the hub's hash or resumed")
        if ranged and response.status_code == 200:
            with self._lock:
                self.ignored_ranges += 1
        length = response.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            announced = int(length)
            if response.status_code == 200 and announced < self.size:
                with self._lock:
                    self.short_announced.add(announced)
            elif response.status_code == 206 and announced < expected:
                with self._lock:
                    self.short_announced.add(announced)

    def overran(self, at: int) -> TransferIncomplete:
        """The body went past the file's announced size: a stuck answer (it is asked again)."""
        with self._lock:
            self.overruns += 1
        exc = TransferIncomplete(f"{self.path}: the server sent more than the {self.size} bytes it announced "
                                 f"(past byte {at})")
        exc.overran = True  # type: ignore[attr-defined]
        return exc

    def wrote(self, start: int, end: int) -> bool:
        """Record an answer's written range; True when it held bytes no earlier answer wrote."""
        if end <= start:
            return False
        with self._lock:
            covered = sum(max(0, min(b, end) - max(a, start)) for a, b in self.ever)
            new = (end - start) - covered
            self.pieces.append(start)
            self.ever = sidecar.merge(self.ever + [(start, end)])
        return new > 0

    # ------------------------------------------------------------------ after a broken answer
    def after_break(self, advanced: bool, end: int, exc: BaseException) -> None:
        """A broken answer that moved bytes: resume at once if it advanced, else pause or stop.

        Raises :class:`NoProgress` (permanent) after ``STUCK_TRIES`` stuck answers, or a transient
        ``TransferIncomplete`` once the attempt's break budget is spent.
        """
        if getattr(exc, "overran", False):
            advanced = False
        with self._lock:
            if advanced:
                self.breaks += 1
                if self.breaks > max_breaks(self.size):
                    raise TransferIncomplete(
                        f"{self.path}: {self.breaks} answers broke off in this attempt (at most "
                        f"{max_breaks(self.size)} for a file of {self.size} bytes); the next attempt resumes at "
                        f"byte {end}") from None
                return
            self.stuck += 1
            self.stuck_ends.append(end)
            stuck = self.stuck
        if stuck > STUCK_TRIES:
            raise NoProgress(self.cause()) from None
        pause = FIRST_PAUSE * 2 ** (stuck - 1)
        if pause >= self.deadline.remaining():
            raise TransferIncomplete(f"{self.cause()} (no time left in this attempt to ask again)") from None
        logger.info("%s: the answer added no new bytes (%s); asking again in %.2f s (%d/%d)", self.path,
                    self.cause(), pause, stuck, STUCK_TRIES)
        time.sleep(pause)

    def ends_here(self, at: int, answers: int, exc: BaseException) -> BaseException:
        """The answers to a resume at ``at`` end before their first byte, again and again (the empty-answer
        budget is spent): the attempt ends (transient: a mirror relaying an upstream fault recovers),
        with the byte where every answer stops named."""
        if not getattr(exc, "answered", False):
            return exc  # never answered: the retry policy's case, as it was
        stop = TransferIncomplete(
            f"{self.path}: {answers} answers in a row ended at byte {at} of {self.size} with no byte after it "
            f"(a server or proxy that cuts the file there?); {self.requests} requests in this attempt")
        stop.answered = False  # type: ignore[attr-defined]  # ends the attempt
        return stop

    def cause(self) -> str:
        """What the answers did, in words (from the headers and byte counts seen)."""
        with self._lock:
            ends = sorted(set(self.stuck_ends))
            parts = []
            if self.ignored_ranges:
                parts.append("the hub ignores Range requests (it answers them with the whole file from byte 0)")
            if self.overruns:
                parts.append(f"the hub sends more bytes than the {self.size} it announces")
            if self.short_announced:
                shown = ", ".join(str(n) for n in sorted(self.short_announced)[:3])
                parts.append(f"its answers announce Content-Length {shown}, fewer bytes than the file or the range "
                             "asked for")
            if len(ends) == 1 and not self.overruns:
                parts.append(f"every answer ends at byte {ends[0]} of {self.size}")
            elif ends and not self.overruns:
                parts.append(f"its answers end at bytes {', '.join(str(e) for e in ends[:4])} of {self.size}, "
                             "never past the earlier ones")
            requests, stuck = self.requests, self.stuck
        what = "; ".join(parts) or "its answers add no new bytes"
        return f"{self.path}: {what}; {requests} requests in this attempt, {stuck} of them added no new bytes"


def refused_for_good(exc: BaseException) -> bool:
    """A refusal that the same server repeats: the transfer's partial file is discarded."""
    return isinstance(exc, (NoProgress, EncodedBody))


def unmatched_hash(guard: ProgressGuard, digest: str, pieced: str | None = None) -> ChecksumMismatch:
    """The error for a whole file whose hash is wrong (``digest``), from how its bytes came.

    One answer: that copy is wrong (a corrupt mirror copy: :mod:`.endpoints` says to purge it); when
    pieces fetched before it (``pieced``: their sha256) came to the same wrong bytes, the message says so.
    Several (resumes that broke again, bytes kept from an earlier attempt): the pieces do not add up;
    the file changed on the server between them (new bytes under the same headers), or one was
    corrupted on the way. Either way the file is discarded and the next attempt fetches it anew.
    """
    with guard._lock:
        pieces, initial = list(guard.pieces), guard.initial
    if len(pieces) <= 1 and not initial:
        again = " (in one answer, as in the pieces fetched before it)" if pieced == digest else ""
        return ChecksumMismatch(f"{guard.path}: content does not match the hub's hash{again}; the file was "
                                "discarded", guard.path)
    starts = ", ".join(str(p) for p in sorted(set(pieces))[:4]) + (", ..." if len(set(pieces)) > 4 else "")
    earlier = f" and {initial} bytes kept from an earlier attempt" if initial else ""
    return ContentChanged(
        f"{guard.path}: changed while it was being fetched: its {len(pieces)} answers (from bytes {starts}){earlier} "
        "do not add up to the hash the hub announced (the server sent other bytes under the same headers, or one "
        "answer was corrupted on the way); the file was discarded, the next attempt fetches it anew", guard.path)
