"""The oracle: is a cache folder, or a loaded snapshot, exactly the hub's bytes?

It hashes with :mod:`phaita.testing.digests`, never with the loader's own code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..digests import git_sha1_file, sha256_file

__all__ = ["audit_cache", "sha256_file", "snapshot_files"]


def snapshot_files(folder: Path) -> dict[str, Path]:
    """Every file (or link) under a snapshot folder, by relative posix path."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_symlink() or p.is_file()}


def audit_cache(cache_dir: Path, truth: Callable[[str, str], str | None]) -> list[str]:
    """Problems in a cache folder: blobs that do not match their name, snapshots linking partial
    files or files whose bytes are not the hub's (``truth(repo, path)`` gives the hub's sha256)."""
    problems: list[str] = []
    for repo_dir in sorted(Path(cache_dir).glob("models--*")):
        repo_id = "/".join(repo_dir.name.split("--")[1:])
        for blob in sorted((repo_dir / "blobs").glob("*")):
            name = blob.name
            if name.endswith(".incomplete"):
                continue
            actual = sha256_file(blob) if len(name) == 64 else git_sha1_file(blob)
            if actual != name:
                problems.append(f"{repo_id}: blob {name} holds other bytes ({blob.stat().st_size} bytes)")
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            for rel, path in snapshot_files(snapshot).items():
                target = os.path.realpath(path)
                if target.endswith(".incomplete"):
                    problems.append(f"{repo_id}: {rel} links a partial file")
                    continue
                if not os.path.exists(target):
                    continue  # dangling: a missing file, never treated as complete
                expected = truth(repo_id, rel)
                if expected is None:
                    problems.append(f"{repo_id}: {rel} is not a file of the hub")
                elif sha256_file(Path(target)) != expected:
                    problems.append(f"{repo_id}: {rel} in snapshot {snapshot.name[:8]} differs from the hub")
    return problems
