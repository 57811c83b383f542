"""Cache inspection and verification, with no network: what ``phaita models status/verify`` show.

* :func:`scan_cache` lists every model in a Hugging Face cache folder and, per snapshot (commit):
  the refs pointing at it, whether it is complete (judged by :func:`cache.snapshot_status` against
  the hub listing stored at fetch time, or by its contents for snapshots other clients made), the
  missing or wrong-size files, the size on disk (unique blobs), when it was last used, and the
  bytes of partial (``.incomplete``) downloads.
* :func:`verify` re-hashes cached files: sha256 for LFS files, git's blob sha1
  (``sha1(b"blob <size>\\0" + content)``) otherwise, and compares sizes. The expected values come
  from a recorded listing (phaita's or huggingface_hub's), else from the blob's own name (the cache
  names blobs by that hash), per :mod:`phaita.loader.expected`; the report says which, per file.
* :func:`remove_bad` deletes bad blobs and every snapshot link to them, and returns what to fetch
  again; :func:`repair` does both, fetching through :func:`phaita.utils.model_loader.prefetch_model`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import cache, expected
from .listing import RepoListing, is_commit_hash
from .selection import Needs, is_weight

CHUNK = 1 << 20
Hashed = Callable[[int], None]  # called with the bytes hashed since the last call


@dataclass
class SnapshotInfo:
    repo_id: str
    commit: str | None
    path: Path | None
    refs: list[str] = field(default_factory=list)
    complete: bool = False
    content: str = "weights"  # "weights", "gguf:<file>", or "no weights" (tokenizer/config only)
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    files: int = 0
    size_on_disk: int = 0
    last_used: float | None = None
    has_listing: bool = False

    @property
    def state(self) -> str:
        if not self.complete:
            return "partial"
        return "complete" if self.content == "weights" else f"complete ({self.content})"

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "refs": self.refs, "state": self.state, "complete": self.complete,
                "content": self.content, "missing": self.missing, "wrong_size": self.wrong_size,
                "files": self.files, "size_on_disk": self.size_on_disk, "last_used": self.last_used,
                "has_listing": self.has_listing, "path": str(self.path) if self.path else None}


@dataclass
class CachedModel:
    repo_id: str
    path: Path
    snapshots: list[SnapshotInfo] = field(default_factory=list)
    size_on_disk: int = 0  # every whole blob of the repository, counted once
    incomplete_bytes: int = 0
    incomplete_files: int = 0

    @property
    def complete(self) -> bool:
        return any(s.complete for s in self.snapshots)

    @property
    def last_used(self) -> float | None:
        times = [s.last_used for s in self.snapshots if s.last_used is not None]
        return max(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.repo_id, "path": str(self.path), "complete": self.complete,
                "size_on_disk": self.size_on_disk, "incomplete_bytes": self.incomplete_bytes,
                "incomplete_files": self.incomplete_files, "last_used": self.last_used,
                "snapshots": [s.to_dict() for s in self.snapshots]}


# --------------------------------------------------------------------------- scanning


def repo_id_of(folder_name: str) -> str | None:
    """``models--org--name`` -> ``org/name`` (None for anything else: datasets, locks...)."""
    if not folder_name.startswith("models--"):
        return None
    parts = folder_name[len("models--"):].split("--")
    return "/".join(parts) if all(parts) else None


def linked_files(snapshot: Path) -> dict[str, Path]:
    """``{relative posix path: entry}`` for every file or link (dangling too) in a snapshot."""
    out: dict[str, Path] = {}
    if not snapshot.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(snapshot):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            entry = Path(dirpath) / name
            out[entry.relative_to(snapshot).as_posix()] = entry
    return out


def read_refs(repo: Path) -> dict[str, list[str]]:
    """``{commit: [ref names]}`` from ``refs/`` (branches, tags, ``pr/1``...)."""
    out: dict[str, list[str]] = {}
    refs = repo / "refs"
    if refs.is_dir():
        for path in sorted(p for p in refs.rglob("*") if p.is_file()):
            try:
                commit = path.read_text().strip()
            except OSError:
                continue
            out.setdefault(commit, []).append(path.relative_to(refs).as_posix())
    return out


def infer_needs(repo: Path, commit: str, listing: RepoListing | None, linked: Iterable[str]) -> tuple[Needs, str]:
    """What the fetch that made this snapshot asked for, judged from what is (or is being) there.

    A GGUF file present or partly downloaded means a GGUF load; any weight file means a full load;
    otherwise the snapshot was pulled without weights (``--type tokenizer``).
    """
    names = set(linked)
    if listing is not None:  # files still arriving count as asked for
        names |= {f.path for f in listing.files if cache.incomplete_path(repo, f.etag).exists()}
    root = sorted(n for n in names if "/" not in n)
    gguf = [n for n in root if n.endswith(".gguf")]
    if gguf:
        return Needs(weights=True, gguf_file=gguf[0], allow_pickle=True), f"gguf:{gguf[0]}"
    if any(is_weight(n) for n in root):
        return Needs(weights=True, allow_pickle=True), "weights"
    return Needs(weights=False, allow_pickle=True), "no weights"


def _stat(path: Path, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except OSError:
        return None


def inspect_snapshot(cache_dir: Path, repo_id: str, commit: str, refs: list[str]) -> SnapshotInfo:
    repo = cache.repo_dir(cache_dir, repo_id)
    snapshot = repo / "snapshots" / commit
    listing = cache.load_listing(repo, commit)
    linked = linked_files(snapshot)
    needs, content = infer_needs(repo, commit, listing, linked)
    info = SnapshotInfo(repo_id, commit, snapshot, refs=refs, content=content, files=len(linked),
                        has_listing=listing is not None)
    try:
        status = cache.snapshot_status(cache_dir, repo_id, commit, needs)
        info.complete, info.missing, info.wrong_size = status.complete, status.missing, status.wrong_size
    except Exception as exc:  # an unreadable or odd snapshot is partial, never a crash of `status`
        info.complete, info.missing = False, [f"({type(exc).__name__}: {exc})"]
    seen: set[str] = set()
    times = [st.st_mtime for st in [_stat(snapshot)] if st]
    for entry in linked.values():
        target = os.path.realpath(entry)
        st = _stat(Path(target))
        if st is None:
            continue
        times.append(max(st.st_atime, st.st_mtime))
        if target not in seen:
            seen.add(target)
            info.size_on_disk += st.st_size
    info.last_used = max(times) if times else None
    return info


def inspect_model(cache_dir: Path, repo_id: str) -> CachedModel:
    repo = cache.repo_dir(cache_dir, repo_id)
    model = CachedModel(repo_id, repo)
    refs = read_refs(repo)
    snapshots = repo / "snapshots"
    commits = sorted(p.name for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    for commit in commits:
        model.snapshots.append(inspect_snapshot(cache_dir, repo_id, commit, refs.get(commit, [])))
    if not commits:
        model.snapshots.append(SnapshotInfo(repo_id, None, None, complete=False, missing=["(no snapshot)"]))
    # newest first: what a ref points at, then by last use
    model.snapshots.sort(key=lambda s: (not s.refs, -(s.last_used or 0)))
    counted: set[str] = set()
    blobs = repo / "blobs"
    for path in (blobs.iterdir() if blobs.is_dir() else []):
        st = _stat(path)
        if st is None:
            continue
        if path.name.endswith(".incomplete"):
            model.incomplete_bytes += st.st_size
            model.incomplete_files += 1
        else:
            counted.add(os.path.realpath(path))
            model.size_on_disk += st.st_size
    for snap in model.snapshots:  # files copied into a snapshot (no symlinks) take space too
        for entry in linked_files(snap.path).values() if snap.path else ():
            target = os.path.realpath(entry)
            if target not in counted and (st := _stat(Path(target))) is not None:
                counted.add(target)
                model.size_on_disk += st.st_size
    return model


def scan_cache(cache_dir: Path, names: Iterable[str] | None = None) -> list[CachedModel]:
    """Every model in ``cache_dir`` (or only ``names``), sorted by name. No network."""
    cache_dir = Path(cache_dir)
    wanted = set(names) if names else None
    found: list[CachedModel] = []
    if not cache_dir.is_dir():
        return found
    for folder in sorted(cache_dir.iterdir()):
        repo_id = repo_id_of(folder.name)
        if repo_id is None or not folder.is_dir() or (wanted is not None and repo_id not in wanted):
            continue
        found.append(inspect_model(cache_dir, repo_id))
    return found


# --------------------------------------------------------------------------- verification


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
    checks: list[dict[str, str | None]] = field(default_factory=list)  # per file: commit, path, check

    @property
    def ok(self) -> bool:
        return not self.bad

    def check_counts(self) -> dict[str, int]:
        """How many files got each check (``listing``, ``blob name``, ``size only``, ``none``)."""
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c["check"] or "none"] = counts.get(c["check"] or "none", 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.repo_id, "ok": self.ok, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "unverifiable": self.unverifiable,
                "checks": self.check_counts(), "files": self.checks,
                "bad": [b.to_dict() for b in self.bad]}


def hash_file(path: Path, algorithm: str, size: int, on_bytes: Hashed | None = None) -> str:
    """Hex digest of ``path``: ``sha256``, or ``git`` (sha1 of ``b"blob <size>\\0"`` + content)."""
    if algorithm == "sha256":
        h = hashlib.sha256()
    else:
        h = hashlib.sha1()
        h.update(b"blob %d\x00" % size)
    before = os.stat(path)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    try:  # verifying is not using: keep the access time that "last used" reports
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError:
        pass
    return h.hexdigest()


def verify_model(cache_dir: Path, repo_id: str, on_bytes: Hashed | None = None,
                 on_file: Callable[[str], None] | None = None) -> VerifyReport:
    """Re-hash every file of every cached snapshot of ``repo_id`` (each blob once).

    The expected hash comes from a recorded listing, else from the blob's name (see
    :mod:`phaita.loader.expected`); each file's check is in ``report.checks``.
    """
    repo = cache.repo_dir(Path(cache_dir), repo_id)
    report = VerifyReport(repo_id)
    verdicts: dict[str, str | None] = {}  # content path -> reason it is bad, or None
    snapshots = repo / "snapshots"
    for snapshot in sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []:
        own = cache.load_listing(repo, snapshot.name)
        for exp in expected.expected_files(repo, snapshot.name, linked_files(snapshot), own):
            key = str(exp.content)
            if key not in verdicts:
                verdicts[key] = _check(exp, report, on_bytes, on_file)
            reason = verdicts[key]
            report.checks.append({"commit": snapshot.name, "path": exp.path, "check": exp.check})
            if reason == "unverifiable":
                report.unverifiable.append(f"{snapshot.name[:12]}/{exp.path}")
            elif reason is not None:
                blob = repo / "blobs" / exp.etag if exp.etag else exp.content
                report.bad.append(BadFile(repo_id, snapshot.name, exp.path, str(blob), reason))
    return report


def _check(exp: expected.Expected, report: VerifyReport, on_bytes: Hashed | None,
           on_file: Callable[[str], None] | None) -> str | None:
    st = _stat(exp.content)
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
        kind = "sha256" if exp.algorithm == "sha256" else "git sha1"
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


# --------------------------------------------------------------------------- repair


@dataclass(frozen=True)
class RefetchJob:
    """Fetch one snapshot again, with what it was fetched for the first time."""

    repo_id: str
    commit: str
    model_type: str  # "auto" or "tokenizer" (no weights)
    gguf_file: str | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": self.commit, "allow_pickle": True}
        if self.gguf_file:
            out["gguf_file"] = self.gguf_file
        return out


def remove_bad(cache_dir: Path, bad: Iterable[BadFile]) -> tuple[list[str], list[RefetchJob]]:
    """Delete bad blobs and every snapshot link to them. Returns (removed paths, refetch jobs)."""
    cache_dir = Path(cache_dir)
    by_repo: dict[str, set[str]] = {}
    for b in bad:
        by_repo.setdefault(b.repo_id, set()).add(b.blob)
    removed: list[str] = []
    jobs: list[RefetchJob] = []
    for repo_id, blobs in sorted(by_repo.items()):
        repo = cache.repo_dir(cache_dir, repo_id)
        contents = {os.path.realpath(b) for b in blobs}  # a repo blob may link into the shared store
        snapshots = repo / "snapshots"
        for snapshot in sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []:
            linked = linked_files(snapshot)
            hits = [entry for entry in linked.values() if os.path.realpath(entry) in contents]
            if not hits:
                continue
            needs, _ = infer_needs(repo, snapshot.name, cache.load_listing(repo, snapshot.name), linked)
            for entry in hits:
                entry.unlink(missing_ok=True)
                removed.append(str(entry))
            if is_commit_hash(snapshot.name):
                jobs.append(RefetchJob(repo_id, snapshot.name, "auto" if needs.weights else "tokenizer",
                                       needs.gguf_file))
        for blob in sorted(blobs):
            path = Path(blob)
            # only this repository's entry: a shared-store file may back other repositories' links
            if path.parent == repo / "blobs" and os.path.lexists(path):
                path.unlink()
                removed.append(blob)
    return removed, jobs


@dataclass
class RepairReport:
    removed: list[str] = field(default_factory=list)
    refetched: list[RefetchJob] = field(default_factory=list)
    errors: list[tuple[RefetchJob, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed,
                "refetched": [{"name": j.repo_id, "commit": j.commit} for j in self.refetched],
                "errors": [{"name": j.repo_id, "commit": j.commit, "error": e} for j, e in self.errors]}


def repair(cache_dir: Path, bad: Iterable[BadFile], fetch: Callable[..., Any] | None = None,
           **fetch_kwargs: Any) -> RepairReport:
    """Remove bad files, then fetch each affected snapshot again (default: ``prefetch_model``).

    A fetch failure (``ModelDownloadError``) is recorded in the report, not raised.
    """
    from .errors import ModelDownloadError

    if fetch is None:
        from phaita.utils.model_loader import prefetch_model as fetch
    removed, jobs = remove_bad(cache_dir, bad)
    report = RepairReport(removed=removed)
    for job in jobs:
        try:
            fetch(job.repo_id, job.model_type, cache_dir=str(cache_dir), **job.kwargs(), **fetch_kwargs)
            report.refetched.append(job)
        except (ModelDownloadError, ValueError) as exc:
            report.errors.append((job, str(exc)))
    return report
