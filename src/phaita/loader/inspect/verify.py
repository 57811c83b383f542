"""Re-hash cached files and compare sizes. No network.

sha256 for LFS files, git's blob sha1 (``sha1(b"blob <size>\\0" + content)``) otherwise. The
expected values come from the stored listing, or from the blob's own name (the cache names blobs
by that hash). Each blob is hashed once, however many snapshots link it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..cache import RepoCache
from ..hashing import GIT, SHA256, Hashed, algorithm_for, hash_file
from ..listing import RepoListing
from .scan import CachedModel, scan_cache, stat_or_none


@dataclass
class BadFile:
    repo_id: str
    commit: str
    path: str  # inside the snapshot
    blob: str  # the file the link points at
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.repo_id, "commit": self.commit, "path": self.path, "blob": self.blob,
                "reason": self.reason}


@dataclass
class VerifyReport:
    repo_id: str
    files_checked: int = 0
    bytes_checked: int = 0
    unverifiable: list[str] = field(default_factory=list)  # no listing and no hash-shaped blob name
    bad: list[BadFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.repo_id, "ok": self.ok, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "unverifiable": self.unverifiable,
                "bad": [b.to_dict() for b in self.bad]}


def _expected(path: str, target: Path, repo: RepoCache,
              listing: RepoListing | None) -> tuple[str, str, int | None] | None:
    """(algorithm, digest, size or None) a file must match, or None when nothing says."""
    remote = listing.get(path) if listing is not None else None
    if remote is not None:
        return (SHA256, remote.sha256, remote.size) if remote.sha256 else (GIT, remote.blob_id, remote.size)
    if target.parent == repo.blobs_dir:
        algorithm = algorithm_for(target.name)
        if algorithm is not None:
            return (algorithm, target.name, None)
    return None


def verify_model(cache_dir: Path, repo_id: str, on_bytes: Hashed | None = None,
                 on_file: Callable[[str], None] | None = None) -> VerifyReport:
    """Re-hash every file of every cached snapshot of ``repo_id`` (each blob once)."""
    repo = RepoCache(cache_dir, repo_id)
    report = VerifyReport(repo_id)
    verdicts: dict[str, str | None] = {}  # real path -> reason it is bad, or None
    for commit in repo.commits():
        listing = repo.load_listing(commit)
        for path, entry in sorted(repo.linked_files(commit).items()):
            target = Path(os.path.realpath(entry))
            if str(target) not in verdicts:
                verdicts[str(target)] = _check(path, target, repo, listing, report, on_bytes, on_file)
            reason = verdicts[str(target)]
            if reason == "unverifiable":
                report.unverifiable.append(f"{commit[:12]}/{path}")
            elif reason is not None:
                report.bad.append(BadFile(repo_id, commit, path, str(target), reason))
    return report


def _check(path: str, target: Path, repo: RepoCache, listing: RepoListing | None, report: VerifyReport,
           on_bytes: Hashed | None, on_file: Callable[[str], None] | None) -> str | None:
    st = stat_or_none(target)
    if st is None:
        return "missing: the link points at a blob that is not there"
    expected = _expected(path, target, repo, listing)
    if expected is None:
        return "unverifiable"
    algorithm, digest, size = expected
    report.files_checked += 1
    if size is not None and st.st_size != size:
        if on_bytes:
            on_bytes(st.st_size)
        return f"wrong size: {st.st_size} bytes, the hub announced {size}"
    if on_file:
        on_file(path)
    try:
        actual = hash_file(target, algorithm, st.st_size, on_bytes)
    except OSError as exc:
        return f"unreadable: {exc}"
    report.bytes_checked += st.st_size
    if actual != digest:
        kind = "sha256" if algorithm == SHA256 else "git sha1"
        return f"{kind} mismatch: {actual[:12]}..., expected {digest[:12]}..."
    return None


def verify(cache_dir: Path, names: Iterable[str] | None = None, on_bytes: Hashed | None = None,
           on_file: Callable[[str], None] | None = None) -> list[VerifyReport]:
    """Verify every cached model (or only ``names``)."""
    return [verify_model(cache_dir, m.repo_id, on_bytes, on_file) for m in scan_cache(cache_dir, names)]


def bytes_to_verify(models: Iterable[CachedModel]) -> int:
    """Total bytes :func:`verify` reads (for a progress bar)."""
    return sum(m.size_on_disk for m in models)
