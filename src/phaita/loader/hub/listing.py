"""What a repository holds at one commit, as the hub announces it, checked before it is trusted.

One request (``GET /api/models/{repo}/revision/{rev}?blobs=true``) resolves a branch or tag to a
commit and lists every file with its size, git object id and, for LFS files, sha256. Some mirrors
answer it without sizes or hashes (olah drops the query string); the missing facts are then
learned from the other sources the Hub protocol offers (:mod:`phaita.loader.hub.sources`:
tree API, paths-info, per-file HEAD). A file whose hash no source gives is still checked by size,
and that weaker check is logged once. The listing is validated here: a hostile or broken hub
cannot make the loader write outside the cache (``..``, absolute paths, backslashes), announce
absurd sizes, or send hashes of the wrong shape; names that are unsafe to write or to show are
refused by :mod:`.names`; a listing no retry can fix is a permanent error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import asdict, dataclass
from typing import Any, Mapping
from urllib.parse import quote

from .. import config
from ..config import Timeouts
from ..errors import BadResponse, MalformedListing, UnsafeRepository
from ..hashing import GIT_OID_RE, SHA256_RE
from .names import check_names
from .sources import SOURCES, Endpoint, FileFacts, SourceUnavailable
from ..http.deadline import Deadline, get_json

logger = logging.getLogger("phaita.model_loader")

COMMIT_RE = GIT_OID_RE  # a commit hash is a git object id
_size_only_logged: set[tuple[str, str, str]] = set()
_log_lock = threading.Lock()


def is_commit_hash(revision: str | None) -> bool:
    return bool(revision) and bool(COMMIT_RE.match(revision))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit."""

    path: str
    size: int
    blob_id: str | None  # git object id (sha1 of "blob <size>\\0<content>"); None: no source gave it
    sha256: str | None = None  # set for LFS files
    blob_name: str | None = None  # the cache name of a file whose hash no source gave

    @property
    def hash_known(self) -> bool:
        return bool(self.sha256 or self.blob_id)

    @property
    def etag(self) -> str:
        """The blob's name in the Hugging Face cache (sha256 for LFS files, git oid otherwise)."""
        return self.sha256 or self.blob_id or self.blob_name or ""


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    commit: str
    files: tuple[RemoteFile, ...]

    def get(self, path: str) -> RemoteFile | None:
        for f in self.files:
            if f.path == path:
                return f
        return None

    def to_json(self) -> str:
        return json.dumps({"repo_id": self.repo_id, "commit": self.commit,
                           "files": [asdict(f) for f in self.files]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "RepoListing":
        data = json.loads(text)
        return cls(data["repo_id"], data["commit"], tuple(RemoteFile(**f) for f in data["files"]))


def check_relative_path(path: Any) -> str:
    """Accept only plain relative paths inside the repository."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise UnsafeRepository(f"the hub listed an invalid file name: {path!r}")
    if path.startswith("/") or "\\" in path or "\x00" in path or re.match(r"^[A-Za-z]:", path):
        raise UnsafeRepository(f"the hub listed an absolute or unsafe path: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UnsafeRepository(f"the hub listed a path that leaves the repository: {path!r}")
    return path


@dataclass(frozen=True)
class RevisionAnswer:
    """The revision answer: the commit, and what it says about each file (maybe without sizes)."""

    repo_id: str
    commit: str
    facts: dict[str, FileFacts]

    def missing(self) -> set[str]:
        return {path for path, f in self.facts.items() if not _complete(f)}


def _complete(f: FileFacts) -> bool:
    return f.size is not None and (f.sha256 is not None or f.blob_id is not None)


def parse_revision(repo_id: str, data: Any) -> RevisionAnswer:
    if not isinstance(data, dict):
        raise MalformedListing("the hub's model info is not a JSON object")
    commit = data.get("sha")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise MalformedListing(f"the hub's model info has no valid commit hash (sha={commit!r})")
    siblings = data.get("siblings")
    if not isinstance(siblings, list):
        raise MalformedListing("the hub's model info has no file list (siblings)")
    facts: dict[str, FileFacts] = {}
    for entry in siblings:
        if not isinstance(entry, dict):
            raise MalformedListing("the hub's file list has an entry that is not an object")
        path = check_relative_path(entry.get("rfilename"))
        if path in facts:
            raise UnsafeRepository(f"the hub listed {path!r} twice")
        lfs = entry.get("lfs")
        if lfs is not None and not isinstance(lfs, dict):
            raise MalformedListing(f"the hub gave an 'lfs' entry for {path!r} that is not an object")
        facts[path] = FileFacts(size=lfs.get("size") if lfs else entry.get("size"), blob_id=entry.get("blobId"),
                                sha256=lfs.get("sha256") if lfs else None)
        _check_values(path, facts[path], "the revision listing")
    check_names(facts)  # control/format characters, .git, overlong, clashing names, too many: before any write
    return RevisionAnswer(repo_id, commit, facts)


def _check_values(path: str, f: FileFacts, source: str) -> None:
    """A value that is there must have the right shape (absent ones are looked up elsewhere)."""
    if f.size is not None and (not isinstance(f.size, int) or isinstance(f.size, bool) or f.size < 0):
        raise MalformedListing(f"{source} gave no valid size for {path!r} (size={f.size!r})")
    if f.blob_id is not None and (not isinstance(f.blob_id, str) or not GIT_OID_RE.match(f.blob_id)):
        raise MalformedListing(f"{source} gave no valid object id for {path!r}")
    if f.sha256 is not None and (not isinstance(f.sha256, str) or not SHA256_RE.match(f.sha256)):
        raise MalformedListing(f"{source} gave no valid sha256 for LFS file {path!r}")


def complete_listing(answer: RevisionAnswer, *, endpoint: str, headers: Mapping[str, str], deadline: Deadline,
                     timeouts: Timeouts) -> "RepoListing":
    """Fill in sizes and hashes the revision answer lacks, from the other sources; validate all."""
    facts = dict(answer.facts)
    missing = answer.missing()
    notes: list[str] = []
    if missing:
        ep = Endpoint(endpoint, answer.repo_id, answer.commit, headers, deadline, timeouts)
        for name, source in SOURCES:
            try:
                found = source(ep, set(missing))
            except SourceUnavailable as exc:
                notes.append(f"{name}: {exc}")
                continue
            for path, f in found.items():
                _check_values(path, f, f"the {name}")
                old = facts[path]
                if old.size is None:  # a file's facts come whole from one source: never mix oids
                    facts[path] = f
                elif old.sha256 is None and old.blob_id is None and f.size == old.size:
                    facts[path] = FileFacts(old.size, f.blob_id, f.sha256)
            before, missing = len(missing), {p for p in missing if not _complete(facts[p])}
            notes.append(f"{name}: {before - len(missing)} of {before} completed")
            if not missing:
                break
        logger.info("%s: the revision listing of %s lacked sizes or hashes (a mirror?); %s", answer.repo_id,
                    endpoint, "; ".join(notes))
    files: dict[str, RemoteFile] = {}
    size_only = []
    for path, f in facts.items():
        if f.size is None:
            raise MalformedListing(f"no source gave a size for {path!r} (revision listing: none; {'; '.join(notes)})")
        if f.size > config.max_file_size():
            raise UnsafeRepository(
                f"{path!r} is {f.size} bytes, over the limit of {config.max_file_size()} (PHAITA_MAX_FILE_SIZE)")
        name = None
        if f.sha256 is None and f.blob_id is None:
            size_only.append(path)
            name = "nohash-" + hashlib.sha1(f"{answer.commit}/{path}".encode()).hexdigest()
        files[path] = RemoteFile(path, f.size, f.blob_id, f.sha256, name)
    if size_only:
        _log_size_only(endpoint, answer, size_only)
    # A file may not also be a folder ("a" and "a/b"): that is how a listing smuggles symlinks.
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeRepository(f"the hub listed {'/'.join(parts[:i])!r} both as a file and a folder")
    return RepoListing(answer.repo_id, answer.commit, tuple(sorted(files.values(), key=lambda f: f.path)))


def _log_size_only(endpoint: str, answer: RevisionAnswer, paths: list[str]) -> None:
    key = (endpoint, answer.repo_id, answer.commit)
    with _log_lock:
        if key in _size_only_logged:
            return
        _size_only_logged.add(key)
    logger.warning("%s: %s gives no hash for %d file(s) (%s); they are checked by size only", answer.repo_id,
                   endpoint, len(paths), ", ".join(sorted(paths)[:5]) + (", ..." if len(paths) > 5 else ""))


def fetch_revision(
    repo_id: str,
    revision: str,
    *,
    headers: Mapping[str, str],
    deadline: Deadline,
    timeouts: Timeouts,
    endpoint: str,
) -> RevisionAnswer:
    """Resolve ``revision`` to a commit (one request); sizes and hashes may be missing."""
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}?blobs=true"
    data = get_json(url, headers=headers, deadline=deadline, timeouts=timeouts, what=f"{repo_id}: model info")
    answer = parse_revision(repo_id, data)
    if is_commit_hash(revision) and answer.commit != revision:
        raise BadResponse(f"asked for commit {revision}, the hub answered with {answer.commit}")
    return answer


def fetch_listing(
    repo_id: str,
    revision: str,
    *,
    headers: Mapping[str, str],
    deadline: Deadline,
    timeouts: Timeouts,
    endpoint: str,
) -> RepoListing:
    """Resolve ``revision`` to a commit and list the files there, with sizes and hashes."""
    answer = fetch_revision(repo_id, revision, headers=headers, deadline=deadline, timeouts=timeouts,
                            endpoint=endpoint)
    return complete_listing(answer, endpoint=endpoint, headers=headers, deadline=deadline, timeouts=timeouts)
