"""Which byte ranges of a partial download are on disk: a sidecar next to ``<etag>.incomplete``.

A file fetched in parallel ranges has holes until it is whole, so its size says nothing about what
arrived. ``<etag>.ranges.incomplete`` (JSON: size, etag, ``done`` as ``[[start, end), ...]``; named
``*.incomplete`` so every tool that skips partial downloads skips it too)
records ranges only after their bytes were written *and* fsynced, and is replaced atomically, so
after a crash or power cut it claims nothing that is not on disk. Without a readable sidecar only
the contiguous prefix of the ``.incomplete`` file is trusted (its first hole, or its size), which
is exactly what a one-stream download leaves; the file's hash is checked before it is used either
way, so a wrong guess costs a refetch, never a wrong file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BLOCK = 4096
Ranges = list[tuple[int, int]]  # sorted, disjoint, non-empty half-open [start, end)


def sidecar_path(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".incomplete") + ".ranges.incomplete")


def merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def missing(done: Ranges, size: int) -> Ranges:
    """The complement of ``done`` within ``[0, size)``."""
    gaps, at = [], 0
    for start, end in merge(done):
        if start > at:
            gaps.append((at, min(start, size)))
        at = max(at, end)
    if at < size:
        gaps.append((at, size))
    return [g for g in gaps if g[1] > g[0]]


def prefix_end(done: Ranges) -> int:
    """End of the contiguous run of ``done`` that starts at byte 0."""
    merged = merge(done)
    return merged[0][1] if merged and merged[0][0] == 0 else 0


def total(done: Ranges) -> int:
    return sum(end - start for start, end in merge(done))


def load(part: Path, etag: str, size: int) -> Ranges | None:
    """The recorded ranges, or None when the sidecar is missing, unreadable or for another file."""
    try:
        data = json.loads(sidecar_path(part).read_text())
        if data["etag"] != etag or data["size"] != size:
            return None
        ranges = [(int(a), int(b)) for a, b in data["done"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(a < 0 or b > size or b < a for a, b in ranges):
        return None
    length = part.stat().st_size if part.exists() else 0
    return merge([(a, min(b, length)) for a, b in ranges])  # a truncated file cannot hold them


def save(part: Path, etag: str, size: int, done: Ranges) -> None:
    """Record ``done`` (whose bytes the caller has already fsynced); atomic replace."""
    path = sidecar_path(part)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"etag": etag, "size": size, "done": [list(r) for r in merge(done)]}))
    os.replace(tmp, path)


def remove(part: Path) -> None:
    sidecar_path(part).unlink(missing_ok=True)


def trusted_prefix(part: Path) -> int:
    """Without a sidecar: the file's size if it has no holes (what one stream leaves), else the bytes
    before its first hole less one block (a hole is found per block; the block before it may be
    only partly written). A guess: the caller refetches the file once if the hash disagrees."""
    try:
        with open(part, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                hole = os.lseek(fh.fileno(), 0, os.SEEK_HOLE)
            except (OSError, AttributeError):  # no SEEK_HOLE here
                hole = size
            return size if hole >= size else max(0, (hole // BLOCK - 1) * BLOCK)
    except OSError:
        return 0
