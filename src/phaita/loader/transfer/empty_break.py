"""A break with no bytes is not a lost attempt.

Behind a mirror, an upstream fault reaches the client as ``200`` (the mirror has already answered)
and then a closed connection with 0 bytes: olah relays an upstream reset or 503 that way. Failing
the whole attempt for it costs the full backoff (10 s, then 20 s...), although asking again a
moment later usually works. So inside one attempt, an answer that ended before its first byte is
asked again a few times after a short, growing pause (0.5 s, 1 s, 2 s), never past the attempt's
deadline; only then does the attempt fail. A connection that is refused or never answers is not
this case: the retry policy handles it, with its backoff.
"""

from __future__ import annotations

import logging
import time

from ..errors import TransferIncomplete
from ..http.deadline import Deadline

logger = logging.getLogger("phaita.model_loader")

RETRIES = 3
FIRST_PAUSE = 0.5


class EmptyBreaks:
    """One file transfer's budget of "answered, then closed with no bytes" retries."""

    def __init__(self, deadline: Deadline, retries: int = RETRIES, first_pause: float = FIRST_PAUSE) -> None:
        self.deadline, self.retries, self.first_pause = deadline, retries, first_pause
        self.used = 0

    def progressed(self) -> None:
        """Bytes arrived: a later empty answer gets the whole budget again."""
        self.used = 0

    def retry(self, exc: BaseException, what: str) -> bool:
        """True (after the pause) when ``exc`` ended an answer before its first byte and budget is left."""
        answered = getattr(exc, "answered", isinstance(exc, TransferIncomplete))
        if not answered or self.used >= self.retries:
            return False
        pause = self.first_pause * 2**self.used
        if pause >= self.deadline.remaining():
            return False
        self.used += 1
        logger.info("%s: the answer ended before its first byte (%s; a mirror relaying an upstream failure?); "
                    "asking again in %.1f s (%d/%d)", what, type(exc).__name__, pause, self.used, self.retries)
        time.sleep(pause)
        return True
