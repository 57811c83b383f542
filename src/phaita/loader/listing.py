"""What a repository holds at one commit, as the hub announces it, checked before it is trusted.

One request (``GET /api/models/{repo}/revision/{rev}?blobs=true``) resolves a branch or tag to a
commit and lists every file with its size, git object id and, for LFS files, sha256. The listing
is validated here: a hostile or broken hub cannot make the loader write outside the cache
(``..``, absolute paths, backslashes), announce absurd sizes, or send hashes of the wrong shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping
from urllib.parse import quote

from . import config
from .config import Timeouts
from .errors import BadResponse, UnsafeRepository
from .hashing import GIT_OID_RE, SHA256_RE
from .net import Deadline, get_json

COMMIT_RE = GIT_OID_RE  # a commit hash is a git object id


def is_commit_hash(revision: str | None) -> bool:
    return bool(revision) and bool(COMMIT_RE.match(revision))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit."""

    path: str
    size: int
    blob_id: str  # git object id (sha1 of "blob <size>\\0<content>")
    sha256: str | None = None  # set for LFS files

    @property
    def etag(self) -> str:
        """The blob's name in the Hugging Face cache (sha256 for LFS files, git oid otherwise)."""
        return self.sha256 or self.blob_id


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


def parse_listing(repo_id: str, data: Any, *, max_file_size: int) -> RepoListing:
    if not isinstance(data, dict):
        raise BadResponse("the hub's model info is not a JSON object")
    commit = data.get("sha")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise BadResponse(f"the hub's model info has no valid commit hash (sha={commit!r})")
    siblings = data.get("siblings")
    if not isinstance(siblings, list):
        raise BadResponse("the hub's model info has no file list (siblings)")
    files: dict[str, RemoteFile] = {}
    for entry in siblings:
        if not isinstance(entry, dict):
            raise BadResponse("the hub's file list has an entry that is not an object")
        path = check_relative_path(entry.get("rfilename"))
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
        size = lfs.get("size") if lfs else entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadResponse(f"the hub gave no valid size for {path!r} (size={size!r})")
        if size > max_file_size:
            raise UnsafeRepository(
                f"{path!r} is {size} bytes, over the limit of {max_file_size} (PHAITA_MAX_FILE_SIZE)")
        blob_id = entry.get("blobId")
        if not isinstance(blob_id, str) or not GIT_OID_RE.match(blob_id):
            raise BadResponse(f"the hub gave no valid object id for {path!r}")
        sha256 = lfs.get("sha256") if lfs else None
        if lfs is not None and (not isinstance(sha256, str) or not SHA256_RE.match(sha256)):
            raise BadResponse(f"the hub gave no valid sha256 for LFS file {path!r}")
        if path in files:
            raise UnsafeRepository(f"the hub listed {path!r} twice")
        files[path] = RemoteFile(path, size, blob_id, sha256)
    # A file may not also be a folder ("a" and "a/b"): that is how a listing smuggles symlinks.
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeRepository(f"the hub listed {'/'.join(parts[:i])!r} both as a file and a folder")
    return RepoListing(repo_id, commit, tuple(sorted(files.values(), key=lambda f: f.path)))


def fetch_listing(
    repo_id: str,
    revision: str,
    *,
    headers: Mapping[str, str],
    deadline: Deadline,
    timeouts: Timeouts,
    endpoint: str,
) -> RepoListing:
    """Resolve ``revision`` to a commit and list the files there (one request)."""
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}?blobs=true"
    data = get_json(url, headers=headers, deadline=deadline, timeouts=timeouts, what=f"{repo_id}: model info")
    listing = parse_listing(repo_id, data, max_file_size=config.max_file_size())
    if is_commit_hash(revision) and listing.commit != revision:
        raise BadResponse(f"asked for commit {revision}, the hub answered with {listing.commit}")
    return listing
