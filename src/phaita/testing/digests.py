"""File hashes for the test side: the hub's announced hashes and the chaos runner's audits.

Written independently of :mod:`phaita.loader.hashing` on purpose: a test oracle must not share
the code it checks (a bug there would otherwise agree with itself).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def _stream(h: "hashlib._Hash", path: Path | str) -> str:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path | str) -> str:
    return _stream(hashlib.sha256(), path)


def git_sha1_file(path: Path | str, size: int | None = None) -> str:
    """git's blob id of a file: ``sha1(b"blob <size>\\0" + content)``."""
    size = Path(path).stat().st_size if size is None else size
    return _stream(hashlib.sha1(b"blob %d\x00" % size), path)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
