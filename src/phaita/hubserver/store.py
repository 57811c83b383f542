"""A served file, and what a server asks its repository store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RepoFile:
    path: str  # posix path inside the repository
    abspath: str
    size: int
    oid: str  # git blob oid (of the LFS pointer for LFS files)
    sha256: str | None  # set for LFS files
    pointer_size: int | None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        return self.sha256 or self.oid


class RepoStore(Protocol):
    """What the hub needs to know about the repositories it serves."""

    def exists(self, repo_id: str) -> bool: ...

    def config(self, repo_id: str) -> dict:
        """The repository's settings (``.hub.json``: gated, private, allowed_tokens, hostile knobs...)."""

    def snapshot(self, repo_id: str, revision: str) -> tuple[list[RepoFile], str] | None:
        """(files, commit) that ``revision`` names; None for an unknown revision."""

    def files(self, repo_id: str) -> list[RepoFile]:
        """The files of the default branch."""

    def commit(self, repo_id: str) -> str:
        """The commit of the default branch."""
