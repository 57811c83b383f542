"""Re-hash cached files and compare sizes. No network.

sha256 for LFS files, git's blob sha1 (``sha1(b"blob <size>\\0" + content)``) otherwise. The
expected values come from a recorded listing (phaita's or huggingface_hub's), else from the blob's
own name (the cache names blobs by that hash), per :mod:`phaita.loader.cache.expected`; the report says
which, per file. Each blob is hashed once, however many snapshots link it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import expected
from .layout import RepoCache
from ..hashing import SHA256, Hashed, hash_file
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


CHECK_KINDS = ("listing", "blob name", "size only", "none")  # the keys of ``verify --json``'s ``checks``


@dataclass
class VerifyReport:
    repo_id: str
    files_checked: int = 0
    bytes_checked: int = 0
    unverifiable: list[str] = field(default_factory=list)  # no listing and no hash-shaped blob name
    bad: list[BadFile] = field(default_factory=list)
    checks: list[dict[str, str | None]] = field(default_factory=list)  # per file: commit, path, check

    @property
    def ok(self) -> bool:
        return not self.bad

    def check_counts(self) -> dict[str, int]:
        """How many files got each check (``listing``, ``blob name``, ``size only``, ``none``)."""
        counts: dict[str, int] = dict.fromkeys(CHECK_KINDS, 0)  # every kind, 0 when none occurred
        for c in self.checks:
            counts[c["check"] or "none"] = counts.get(c["check"] or "none", 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.repo_id, "ok": self.ok, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "unverifiable": self.unverifiable,
                "checks": self.check_counts(), "files": self.checks,
                "bad": [b.to_dict() for b in self.bad]}


def verify_model(cache_dir: Path, repo_id: str, on_bytes: Hashed | None = None,
                 on_file: Callable[[str], None] | None = None) -> VerifyReport:
    """Re-hash every file of every cached snapshot of ``repo_id`` (each blob once).

    The expected hash comes from a recorded listing, else from the blob's name (see
    :mod:`phaita.loader.cache.expected`); each file's check is in ``report.checks``.
    """
    repo = RepoCache(cache_dir, repo_id)
    report = VerifyReport(repo_id)
    verdicts: dict[str, str | None] = {}  # content path -> reason it is bad, or None
    for commit in repo.commits():
        own = repo.load_listing(commit)
        for exp in expected.expected_files(repo.path, commit, repo.linked_files(commit), own):
            key = str(exp.content)
            if key not in verdicts:
                verdicts[key] = _check(exp, report, on_bytes, on_file)
            reason = verdicts[key]
            report.checks.append({"commit": commit, "path": exp.path, "check": exp.check})
            if reason == "unverifiable":
                report.unverifiable.append(f"{commit[:12]}/{exp.path}")
            elif reason is not None:
                blob = repo.blob_path(exp.etag) if exp.etag else exp.content
                report.bad.append(BadFile(repo_id, commit, exp.path, str(blob), reason))
    return report


def _check(exp: expected.Expected, report: VerifyReport, on_bytes: Hashed | None,
           on_file: Callable[[str], None] | None) -> str | None:
    st = stat_or_none(exp.content)
    if st is None:
        return "missing: the link points at a blob that is not there"
    if exp.check is None:
        return "unverifiable"
    report.files_checked += 1
    if exp.size is not None and st.st_size != exp.size:
        if on_bytes:
            on_bytes(st.st_size)
        return f"wrong size: {st.st_size} bytes, the hub announced {exp.size}"
    if exp.algorithm is None or exp.digest is None:  # size only
        if on_bytes:
            on_bytes(st.st_size)
        return None
    if on_file:
        on_file(exp.path)
    try:
        actual = hash_file(exp.content, exp.algorithm, st.st_size, on_bytes)
    except OSError as exc:
        return f"unreadable: {exc}"
    report.bytes_checked += st.st_size
    if actual != exp.digest:
        kind = "sha256" if exp.algorithm == SHA256 else "git sha1"
        source = "blob name" if exp.check == expected.BLOB_NAME else "listing"
        return f"{kind} mismatch: {actual[:12]}..., expected {exp.digest[:12]}... (from the {source})"
    return None


def verify(cache_dir: Path, names: Iterable[str] | None = None, on_bytes: Hashed | None = None,
           on_file: Callable[[str], None] | None = None) -> list[VerifyReport]:
    """Verify every cached model (or only ``names``)."""
    return [verify_model(cache_dir, m.repo_id, on_bytes, on_file) for m in scan_cache(cache_dir, names)]


def bytes_to_verify(models: Iterable[CachedModel]) -> int:
    """Total bytes :func:`verify` reads (for a progress bar)."""
    return sum(m.size_on_disk for m in models)


def verify_snapshot(cache_dir: Path, repo_id: str, snapshot: Path) -> list[str]:
    """Re-hash every linked file of one snapshot folder; ``["path: reason", ...]`` for the bad ones.

    What ``verify_on_load`` runs before ``from_pretrained``. A file with nothing recorded to check
    it against (no listing, no hash-shaped blob name) is not judged, as in :func:`verify_model`.
    """
    repo = RepoCache(cache_dir, repo_id)
    commit = snapshot.name
    report = VerifyReport(repo_id)
    bad = []
    for exp in expected.expected_files(repo.path, commit, repo.linked_files(commit), repo.load_listing(commit)):
        reason = _check(exp, report, None, None)
        if reason is not None and reason != "unverifiable":
            bad.append(f"{exp.path}: {reason}")
    return bad
