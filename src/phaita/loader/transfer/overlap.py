"""One file's background thread: hashing, write-back and checkpoints overlap the transfer.

The streams of a :class:`~.file.FileTransfer` only receive and write (``os.pwrite``); after each
write they poke this thread, which

* hashes the file's contiguous prefix as it grows (re-read from the page cache into one reused
  buffer; ``hashlib`` releases the GIL on large buffers, so the hash runs on the other core),
* records checkpoints (``fdatasync`` then the sidecar, :meth:`~.file.FileTransfer._checkpoint`)
  when the streams have written enough since the last one, without a stream waiting on the disk.

(The streams start each piece's write-back as they write it, :func:`write_back`, so that the disk
works during the transfer instead of all at the final ``fsync``.)

The thread only ever does what the transfer would otherwise do in its own threads, under the same
locks; the transfer's final synchronous catch-up (hash to the end, ``fsync``) is what decides, so an
error here (logged) changes nothing but speed.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

logger = logging.getLogger("phaita.model_loader")
_FADVISE = getattr(os, "posix_fadvise", None)


def write_back(fd: int, start: int, length: int) -> None:
    """Start writing ``[start, start+length)`` of ``fd`` back to disk now, without waiting (Linux).

    ``posix_fadvise(DONTNEED)`` starts the write-back of the range's dirty pages and drops only pages
    already clean: called right after the write, it drops nothing (the hash re-reads them from memory).
    """
    if _FADVISE is not None and length > 0:
        try:
            _FADVISE(fd, start, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


class Background:
    """The thread; ``poke()`` after a write, ``poke(checkpoint=True)`` when a checkpoint is due."""

    def __init__(self, transfer: Any) -> None:
        self.transfer = transfer
        self._cond = threading.Condition()
        self._wake = self._checkpoint = self._stop = False
        self._thread = threading.Thread(target=self._main, daemon=True, name=f"phaita-hash:{transfer.file.path}")

    def start(self) -> "Background":
        self._thread.start()
        return self

    def poke(self, checkpoint: bool = False) -> None:
        with self._cond:
            self._wake = True
            self._checkpoint = self._checkpoint or checkpoint
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._wake and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                self._wake, checkpoint, self._checkpoint = False, self._checkpoint, False
            try:
                if checkpoint:
                    self.transfer._checkpoint()
                self.transfer._advance_hash(stop=lambda: self._stop)
            except Exception as exc:  # the final synchronous pass redoes it and raises what matters
                logger.debug("%s: background hashing: %s", self.transfer.file.path, exc)
