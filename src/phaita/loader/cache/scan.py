"""What is in a Hugging Face cache folder, per model and snapshot. No network.

Per snapshot (commit): the refs pointing at it, whether it is complete (judged against the hub
listing stored at fetch time, or by its contents for snapshots other clients made), the missing
or wrong-size files, the size on disk (unique blobs), when it was last used, and the bytes of
partial (``.incomplete``) downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .layout import RepoCache, cached_repos


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


def stat_or_none(path: Path | str, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except OSError:
        return None


def inspect_snapshot(cache_dir: Path, repo_id: str, commit: str, refs: list[str]) -> SnapshotInfo:
    repo = RepoCache(cache_dir, repo_id)
    snapshot = repo.snapshot_dir(commit)
    listing = repo.load_listing(commit)
    linked = repo.linked_files(commit)
    needs, content = repo.infer_needs(commit, listing, linked)
    info = SnapshotInfo(repo_id, commit, snapshot, refs=refs, content=content, files=len(linked),
                        has_listing=listing is not None)
    try:
        status = repo.status(commit, needs, listing)
        info.complete, info.missing, info.wrong_size = status.complete, status.missing, status.wrong_size
    except Exception as exc:  # an unreadable or odd snapshot is partial, never a crash of `status`
        info.complete, info.missing = False, [f"({type(exc).__name__}: {exc})"]
    seen: set[str] = set()
    times = [st.st_mtime for st in [stat_or_none(snapshot)] if st]
    for entry in linked.values():
        target = os.path.realpath(entry)
        st = stat_or_none(target)
        if st is None:
            continue
        times.append(max(st.st_atime, st.st_mtime))
        if target not in seen:
            seen.add(target)
            info.size_on_disk += st.st_size
    info.last_used = max(times) if times else None
    return info


def inspect_model(cache_dir: Path, repo_id: str) -> CachedModel:
    repo = RepoCache(cache_dir, repo_id)
    model = CachedModel(repo_id, repo.path)
    refs = repo.refs()
    commits = repo.commits()
    for commit in commits:
        model.snapshots.append(inspect_snapshot(cache_dir, repo_id, commit, refs.get(commit, [])))
    if not commits:
        model.snapshots.append(SnapshotInfo(repo_id, None, None, complete=False, missing=["(no snapshot)"]))
    # newest first: what a ref points at, then by last use
    model.snapshots.sort(key=lambda s: (not s.refs, -(s.last_used or 0)))
    counted: set[str] = set()
    for path in repo.blob_entries():
        st = stat_or_none(path)
        if st is None:
            continue
        if path.name.endswith(".incomplete"):
            model.incomplete_bytes += st.st_size
            model.incomplete_files += 1
        else:
            counted.add(os.path.realpath(path))
            model.size_on_disk += st.st_size
    for snap in model.snapshots:  # files copied into a snapshot (no symlinks) take space too
        for entry in repo.linked_files(snap.commit).values() if snap.commit else ():
            target = os.path.realpath(entry)
            if target not in counted and (st := stat_or_none(target)) is not None:
                counted.add(target)
                model.size_on_disk += st.st_size
    return model


def scan_cache(cache_dir: Path, names: Iterable[str] | None = None) -> list[CachedModel]:
    """Every model in ``cache_dir`` (or only ``names``), sorted by name. No network."""
    wanted = set(names) if names else None
    return [inspect_model(Path(cache_dir), repo.repo_id) for repo in cached_repos(Path(cache_dir))
            if wanted is None or repo.repo_id in wanted]
