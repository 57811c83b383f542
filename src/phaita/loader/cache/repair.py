"""Remove bad cached files and fetch their snapshots again.

The fetch function is the caller's (the CLI passes the facade's ``prefetch_model``): this layer
sits below the facade and never imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .layout import RepoCache
from ..errors import ModelDownloadError
from ..hub.listing import is_commit_hash
from .verify import BadFile

Fetch = Callable[..., Any]  # fetch(repo_id, model_type, *, cache_dir, revision, allow_pickle, [gguf_file], **options)


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
        repo = RepoCache(cache_dir, repo_id)
        contents = {os.path.realpath(b) for b in blobs}  # a repo blob may link into the shared store
        for commit in repo.commits():
            linked = repo.linked_files(commit)
            hits = [entry for entry in linked.values() if os.path.realpath(entry) in contents]
            if not hits:
                continue
            needs, _ = repo.infer_needs(commit, repo.load_listing(commit), linked)
            for entry in hits:
                entry.unlink(missing_ok=True)
                removed.append(str(entry))
            if is_commit_hash(commit):
                jobs.append(RefetchJob(repo_id, commit, "auto" if needs.weights else "tokenizer", needs.gguf_file))
        for blob in sorted(blobs):
            path = Path(blob)
            # only this repository's entry: a shared-store file may back other repositories' links
            if path.parent == repo.blobs_dir and os.path.lexists(path):
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


def repair(cache_dir: Path, bad: Iterable[BadFile], fetch: Fetch, **fetch_kwargs: Any) -> RepairReport:
    """Remove bad files, then fetch each affected snapshot again with ``fetch``.

    A fetch failure (``ModelDownloadError`` or ``ValueError``) is recorded in the report, not raised.
    """
    removed, jobs = remove_bad(cache_dir, bad)
    report = RepairReport(removed=removed)
    for job in jobs:
        try:
            fetch(job.repo_id, job.model_type, cache_dir=str(cache_dir), **job.kwargs(), **fetch_kwargs)
            report.refetched.append(job)
        except (ModelDownloadError, ValueError) as exc:
            report.errors.append((job, str(exc)))
    return report
