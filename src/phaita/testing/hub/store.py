"""Where a :class:`~phaita.testing.hub.LocalHub` finds its repositories: a repository store.

The hub asks a store four things per request (does the repository exist, its ``.hub.json``
settings, its files, its commit); :class:`FolderStore` answers from ``root/<org>/<name>/``
folders. Another store (a Hugging Face cache, say) only has to implement :class:`RepoStore`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from phaita.hubserver.store import RepoFile, RepoStore

from ..digests import git_blob_id, git_sha1_file, sha256_file

__all__ = ["RepoFile", "RepoStore", "FolderStore", "repo_files", "commit_sha", "valid_repo_id"]

LFS_EXTENSIONS = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".onnx", ".msgpack", ".ckpt")
LFS_THRESHOLD = 1_000_000
CONFIG_NAME = ".hub.json"
_SKIP_DIRS = {".git", ".cache"}


def valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return len(parts) == 2 and not any(p in ("", ".", "..") or p.startswith(".") for p in parts)


class FolderStore:
    """Repositories as folders ``root/<org>/<name>/``; ``.hub.json`` in one holds its settings."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def exists(self, repo_id: str) -> bool:
        return valid_repo_id(repo_id) and self.repo_dir(repo_id).is_dir()

    def config(self, repo_id: str) -> dict:
        try:
            return json.loads((self.repo_dir(repo_id) / CONFIG_NAME).read_text())
        except FileNotFoundError:
            return {}

    def files(self, repo_id: str) -> list[RepoFile]:
        return repo_files(self.repo_dir(repo_id))

    def snapshot(self, repo_id: str, revision: str) -> tuple[list[RepoFile], str] | None:
        """One commit per folder (its files' hash); "main" and the ``branches`` of ``.hub.json`` name it."""
        files = self.files(repo_id)
        sha = commit_sha(files)
        if revision not in ("main", sha, *self.config(repo_id).get("branches", [])):
            return None
        return files, sha

    def commit(self, repo_id: str) -> str:
        return commit_sha(self.files(repo_id))


_hash_cache: dict[tuple[str, int, int], tuple[str, str | None, int | None]] = {}
_hash_lock = threading.Lock()


def _is_lfs(path: str, size: int) -> bool:
    return size >= LFS_THRESHOLD or path.lower().endswith(LFS_EXTENSIONS)


def _hash_file(abspath: str, rel: str, st: os.stat_result) -> tuple[str, str | None, int | None]:
    key = (abspath, st.st_mtime_ns, st.st_size)
    with _hash_lock:
        hit = _hash_cache.get(key)
    if hit is not None:
        return hit
    if _is_lfs(rel, st.st_size):
        sha = sha256_file(abspath)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {st.st_size}\n".encode()
        result: tuple[str, str | None, int | None] = (git_blob_id(pointer), sha, len(pointer))
    else:
        result = (git_sha1_file(abspath, st.st_size), None, None)
    with _hash_lock:
        _hash_cache[key] = result
    return result


def repo_files(repo_dir: Path) -> list[RepoFile]:
    """All served files of a repository folder, sorted by path (hashes cached by path+mtime+size)."""
    out: list[RepoFile] = []
    base = str(repo_dir)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            abspath = os.path.join(dirpath, name)
            rel = os.path.relpath(abspath, base).replace(os.sep, "/")
            if rel == CONFIG_NAME:
                continue
            try:
                st = os.stat(abspath)
            except OSError:
                continue
            oid, sha, psize = _hash_file(abspath, rel, st)
            out.append(RepoFile(rel, abspath, st.st_size, oid, sha, psize))
    out.sort(key=lambda f: f.path)
    return out


def commit_sha(files: list[RepoFile]) -> str:
    h = hashlib.sha1()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.oid}\n".encode())
    return h.hexdigest()
