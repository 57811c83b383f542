"""The station's index as the repository store the Hub handlers (:mod:`phaita.hubserver.handlers`) ask."""

from __future__ import annotations

from phaita.hubserver.store import RepoFile

from .mirror import CacheIndex


class StationStore:
    """A :class:`~.mirror.CacheIndex` as a repository store: read-only, no gating, no test knobs."""

    def __init__(self, index: CacheIndex) -> None:
        self.index = index

    def exists(self, repo_id: str) -> bool:
        with self.index.lock:
            return self.index.repo_exists(repo_id)

    def config(self, repo_id: str) -> dict:
        return {}

    def snapshot(self, repo_id: str, revision: str) -> tuple[list[RepoFile], str] | None:
        snap = self.index.resolve(repo_id, revision)
        return (snap.files, snap.commit) if snap else None

    def files(self, repo_id: str) -> list[RepoFile]:
        snap = self.snapshot(repo_id, "main")
        return snap[0] if snap else []

    def commit(self, repo_id: str) -> str:
        snap = self.snapshot(repo_id, "main")
        return snap[1] if snap else ""
