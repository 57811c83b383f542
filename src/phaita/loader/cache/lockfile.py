"""The lock file (``phaita.lock``): the commit, and the files with their hashes, each model is pinned to.

A human-readable JSON document in a stable order (models by repository id, files by path, keys
sorted), so two locks of the same models are byte-identical and a diff shows what moved::

    {
      "models": [
        {
          "commit": "0c1f...40 hex",
          "components": ["DiagnosisDiscriminator/encoder"],
          "files": [
            {"git_oid": "9a8b...", "path": "config.json", "size": 612},
            {"git_oid": "<oid of the LFS pointer>", "path": "model.safetensors", "sha256": "e3b0...", "size": 90868376}
          ],
          "gguf_file": null,
          "model_type": "auto",
          "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
          "revision": "main"
        }
      ],
      "phaita_lock_version": 1,
      "profile": "small"
    }

Each file carries its size and git object id; LFS files (weights) also their sha256, which is
what the cache names their blob by. This module is the format only (parse, validate, write,
look up); :mod:`phaita.airgap.lock` makes locks and the loader's facade honours them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .layout import RepoCache, atomic_write
from ..errors import UnsupportedWeights
from ..hashing import GIT_OID_RE, SHA256_RE
from ..hub.listing import COMMIT_RE, RemoteFile, RepoListing, check_relative_path
from ..hub.selection import Needs, is_weight, select_files

LOCK_VERSION = 1
DEFAULT_NAME = "phaita.lock"


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    git_oid: str  # git object id (of the LFS pointer, for an LFS file)
    sha256: str | None = None  # set for LFS files

    @property
    def etag(self) -> str:
        """The blob's name in the cache: sha256 for LFS files, the git object id otherwise."""
        return self.sha256 or self.git_oid

    def remote(self) -> RemoteFile:
        return RemoteFile(self.path, self.size, self.git_oid, self.sha256)

    @classmethod
    def from_remote(cls, f: RemoteFile) -> "LockedFile":
        return cls(f.path, f.size, f.blob_id, f.sha256)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "git_oid": self.git_oid}
        if self.sha256:
            out["sha256"] = self.sha256
        return out


@dataclass(frozen=True)
class LockedModel:
    repo_id: str
    revision: str  # the branch or tag that was resolved ("main")
    commit: str
    files: tuple[LockedFile, ...]
    model_type: str = "auto"
    gguf_file: str | None = None
    components: tuple[str, ...] = ()

    def needs(self) -> Needs:
        """What to fetch for this entry: weights when it locks weight files; pickles only if locked."""
        root = [f.path for f in self.files if "/" not in f.path]
        return Needs(weights=any(is_weight(p) for p in root), tokenizer=True, gguf_file=self.gguf_file,
                     allow_pickle=any(p.endswith(".bin") for p in root))

    def listing(self) -> RepoListing:
        """The locked files as a listing at the locked commit (what the fetch verifies against)."""
        return RepoListing(self.repo_id, self.commit, tuple(f.remote() for f in self.files))

    def get(self, path: str) -> LockedFile | None:
        return next((f for f in self.files if f.path == path), None)

    def linked_in(self, repo: RepoCache, snapshot: Path, needs: Needs) -> bool:
        """Is every locked file this load needs linked in ``snapshot`` to the blob its locked hash names?

        True also when the lock does not cover the load (other needs): the caller's completeness
        check of the snapshot then decides alone.
        """
        try:
            wanted = select_files(self.listing().files, needs, read_index=lambda f: (snapshot / f.path).read_bytes())
        except (UnsupportedWeights, OSError, ValueError):
            return True
        for f in wanted:
            try:
                if (snapshot / f.path).stat().st_size != f.size or \
                        not os.path.samefile(snapshot / f.path, repo.blob_path(f.etag)):
                    return False
            except OSError:
                return False
        return True

    def mismatches(self, listing: RepoListing) -> list[str]:
        """How the hub's listing at the locked commit disagrees with the lock (empty: it agrees)."""
        out = []
        if listing.commit != self.commit:
            out.append(f"the hub answered with commit {listing.commit}, the lock pins {self.commit}")
        for f in self.files:
            remote = listing.get(f.path)
            if remote is None:
                out.append(f"{f.path}: not in the hub's listing")
            elif remote.size != f.size:
                out.append(f"{f.path}: {remote.size} bytes on the hub, {f.size} in the lock")
            elif remote.etag != f.etag:
                kind = "sha256" if f.sha256 else "git oid"
                out.append(f"{f.path}: {kind} {remote.etag[:12]}... on the hub, {f.etag[:12]}... in the lock")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "model_type": self.model_type, "gguf_file": self.gguf_file,
                "components": sorted(self.components),
                "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)]}


@dataclass(frozen=True)
class LockFile:
    models: tuple[LockedModel, ...]
    profile: str | None = None
    source: str = "<memory>"
    _index: dict[str, LockedModel] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({m.repo_id: m for m in self.models})

    def get(self, repo_id: str) -> LockedModel | None:
        return self._index.get(repo_id)

    def pinned(self, candidates: list[str]) -> list[str]:
        """Of a candidate list, the ones this lock pins (and local folders); all when it pins none.

        A lock says which weights a site runs: an unpinned candidate is not tried before a pinned one.
        """
        pinned = [n for n in candidates if n in self._index or os.path.isdir(n)]
        return pinned or list(candidates)

    def to_json(self) -> str:
        data = {"phaita_lock_version": LOCK_VERSION, "profile": self.profile,
                "models": [m.to_dict() for m in sorted(self.models, key=lambda m: m.repo_id)]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<memory>") -> "LockFile":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise _invalid(source, f"not JSON ({exc})") from None
        return parse_lock(data, source)


def _invalid(source: str, detail: str) -> ValueError:
    return ValueError(f"invalid lock file {source}: {detail}")


def _file(entry: Any, where: str, source: str) -> LockedFile:
    if not isinstance(entry, dict):
        raise _invalid(source, f"{where} is not an object")
    try:
        path = check_relative_path(entry.get("path"))
    except Exception as exc:
        raise _invalid(source, f"{where}.path: {exc}") from None
    size, oid, sha = entry.get("size"), entry.get("git_oid"), entry.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(source, f"{where}.size must be an integer >= 0, got {size!r}")
    if not isinstance(oid, str) or not GIT_OID_RE.match(oid):
        raise _invalid(source, f"{where}.git_oid must be 40 hex digits, got {oid!r}")
    if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
        raise _invalid(source, f"{where}.sha256 must be 64 hex digits, got {sha!r}")
    return LockedFile(path, size, oid, sha)


def _model(entry: Any, where: str, source: str) -> LockedModel:
    if not isinstance(entry, dict):
        raise _invalid(source, f"{where} is not an object")
    repo_id, commit, revision = entry.get("repo_id"), entry.get("commit"), entry.get("revision", "main")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or any(p in ("", ".", "..") for p in repo_id.split("/")):
        raise _invalid(source, f"{where}.repo_id must be 'org/name', got {repo_id!r}")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise _invalid(source, f"{where}.commit must be a 40-hex commit hash, got {commit!r}")
    if not isinstance(revision, str) or not revision:
        raise _invalid(source, f"{where}.revision must be a branch or tag name")
    files = entry.get("files")
    if not isinstance(files, list):
        raise _invalid(source, f"{where}.files must be a list")
    parsed = tuple(_file(f, f"{where}.files[{i}]", source) for i, f in enumerate(files))
    if len({f.path for f in parsed}) != len(parsed):
        raise _invalid(source, f"{where}.files lists a path twice")
    gguf, mtype = entry.get("gguf_file"), entry.get("model_type", "auto")
    if gguf is not None and not isinstance(gguf, str):
        raise _invalid(source, f"{where}.gguf_file must be a file name or null")
    if not isinstance(mtype, str):
        raise _invalid(source, f"{where}.model_type must be a string")
    components = entry.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise _invalid(source, f"{where}.components must be a list of strings")
    return LockedModel(repo_id, revision, commit, parsed, mtype, gguf, tuple(components))


def parse_lock(data: Any, source: str = "<memory>") -> LockFile:
    """Validate a parsed lock document. Raises ``ValueError`` naming the file and the bad entry."""
    if not isinstance(data, dict):
        raise _invalid(source, "expected a JSON object")
    version = data.get("phaita_lock_version")
    if version != LOCK_VERSION:
        raise _invalid(source, f"unsupported phaita_lock_version {version!r} (this phaita reads {LOCK_VERSION})")
    models = data.get("models")
    if not isinstance(models, list):
        raise _invalid(source, "'models' must be a list")
    parsed = tuple(_model(m, f"models[{i}]", source) for i, m in enumerate(models))
    names = [m.repo_id for m in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _invalid(source, f"models listed twice: {', '.join(dupes)}")
    profile = data.get("profile")
    return LockFile(parsed, profile if isinstance(profile, str) else None, source)


def read_lock(path: str | os.PathLike[str]) -> LockFile:
    """Read and validate a lock file; a missing or malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"lock file {path} does not exist (create it with `phaita models lock`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read lock file {path}: {exc}") from None
    return LockFile.from_json(text, str(path))


def write_lock(lock: LockFile, path: str | os.PathLike[str]) -> Path:
    """Write ``lock`` atomically (a reader never sees half a lock file)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write the lock file to {path}: it is a folder (name a file, e.g. {path / 'phaita.lock'})")
    atomic_write(path, lock.to_json())
    return path


def resolve_lock(option: Any, from_env: Path | None) -> LockFile | None:
    """The lock a load uses: ``lockfile=`` (a path, a LockFile, or False for none) or, when that is
    None, the PHAITA_LOCKFILE path ``from_env`` (read by the caller from config)."""
    if option is False:
        return None
    if isinstance(option, LockFile):
        return option
    if option is None:
        return read_lock(from_env) if from_env is not None else None
    if isinstance(option, (str, os.PathLike)) and str(option).strip():
        return read_lock(option)
    raise ValueError(f"lockfile must be a path to a lock file, False or None; got {option!r}")


def merge_models(entries: Iterable[LockedModel]) -> tuple[LockedModel, ...]:
    """One entry per repository: files and components of entries at the same commit are united."""
    merged: dict[str, LockedModel] = {}
    for m in entries:
        have = merged.get(m.repo_id)
        if have is None:
            merged[m.repo_id] = m
            continue
        if have.commit != m.commit:
            raise ValueError(f"{m.repo_id} resolved to two commits ({have.commit}, {m.commit}); lock again")
        files = {f.path: f for f in have.files} | {f.path: f for f in m.files}
        merged[m.repo_id] = LockedModel(
            m.repo_id, have.revision, have.commit, tuple(sorted(files.values(), key=lambda f: f.path)),
            have.model_type, have.gguf_file or m.gguf_file, tuple(sorted(set(have.components) | set(m.components))))
    return tuple(sorted(merged.values(), key=lambda m: m.repo_id))
