"""The two hashes the Hugging Face cache names blobs by, and the shapes of those names.

LFS files are named by their sha256; every other file by its git blob id, which is
``sha1(b"blob <size>\\0" + content)``. Fetch hashes bytes as they arrive and inspect re-hashes
cached files: both use :class:`StreamHasher`. (``phaita.testing`` keeps its own implementation on
purpose: a test oracle must not share the code it checks.)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

CHUNK = 1 << 20
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GIT_OID_RE = re.compile(r"^[0-9a-f]{40}$")  # a git object id; a commit hash has the same shape

SHA256 = "sha256"
GIT = "git"  # git's blob sha1
Hashed = Callable[[int], None]  # called with the bytes hashed since the last call


def algorithm_of(expected: str | None) -> str | None:
    """Which hash a hub hash or blob name is, by its shape (None: neither, or no value)."""
    if not isinstance(expected, str):
        return None
    if SHA256_RE.match(expected):
        return SHA256
    if GIT_OID_RE.match(expected):
        return GIT
    return None


class StreamHasher:
    """sha256, or git's blob sha1 of a file of ``size`` bytes, fed chunk by chunk."""

    def __init__(self, algorithm: str, size: int) -> None:
        if algorithm not in (SHA256, GIT):
            raise ValueError(f"unknown hash algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.size = size
        self.reset()

    @classmethod
    def for_blob(cls, sha256: str | None, size: int) -> "StreamHasher":
        """The hash a hub file is named by: sha256 when it is an LFS file, git's sha1 otherwise."""
        return cls(SHA256 if sha256 else GIT, size)

    def reset(self) -> None:
        if self.algorithm == SHA256:
            self._h = hashlib.sha256()
        else:
            self._h = hashlib.sha1()
            self._h.update(b"blob %d\x00" % self.size)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def matches(self, expected: str) -> bool:
        return self.hexdigest() == expected


def feed(hasher: StreamHasher, path: Path, limit: int | None = None, on_bytes: Hashed | None = None) -> None:
    """Hash ``path`` (its first ``limit`` bytes when given) into ``hasher``."""
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            hasher.update(chunk)
            if left is not None:
                left -= len(chunk)
            if on_bytes:
                on_bytes(len(chunk))


def hash_file(path: Path, algorithm: str, size: int, on_bytes: Hashed | None = None) -> str:
    """Hex digest of ``path``: ``sha256``, or ``git`` (sha1 of ``b"blob <size>\\0"`` + content).

    Hashing is not using: the file's access time (what "last used" reports) is kept.
    """
    hasher = StreamHasher(algorithm, size)
    before = os.stat(path)
    feed(hasher, path, on_bytes=on_bytes)
    try:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError:
        pass
    return hasher.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in git for an LFS file of ``size`` bytes."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_pointer_oid(sha256: str, size: int) -> str:
    """Git blob id of an LFS file's pointer (what the Hub lists as that file's ``blobId``)."""
    pointer = lfs_pointer(sha256, size)
    return hashlib.sha1(b"blob %d\x00" % len(pointer) + pointer).hexdigest()
