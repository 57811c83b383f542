"""The bundle: verified snapshots carried to an air-gapped machine, as a folder or a ``.tar``.

Layout (the Hugging Face cache's own, so a person can read it, plus two documents)::

    phaita-bundle.json                    the manifest: every model, commit, ref and file with its hash
    phaita.lock                           the lock of the bundled models (``phaita.loader.cache.lockfile``)
    models--org--name/blobs/<etag>        the file contents, named by their hash
    models--org--name/snapshots/<commit>/<path> -> ../../blobs/<etag>   (relative symlinks)
    models--org--name/refs/<branch>       commit hash

Import trusts nothing in it: it builds the cache from the manifest alone, refuses any entry whose
name leaves the bundle (absolute, ``..``), any symlink that points outside it and any special
file, and hashes every blob before anything becomes visible (:mod:`phaita.airgap.importing`).
This module is the format: names, the manifest, and one reader for folders and tars.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from huggingface_hub.file_download import repo_folder_name

from phaita.loader.hashing import GIT, SHA256, algorithm_of
from phaita.loader.hub.listing import COMMIT_RE, check_relative_path

BUNDLE_VERSION = 1
MANIFEST = "phaita-bundle.json"
LOCK = "phaita.lock"
_REF_RE = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$")


class BundleError(ValueError):
    """A bundle that cannot be trusted or used; the message names the file and what is wrong."""


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class BundleFile:
    path: str  # inside the snapshot
    size: int
    etag: str  # the blob's name: sha256 (LFS files) or git blob sha1, what its content must hash to

    @property
    def algorithm(self) -> str:
        return SHA256 if algorithm_of(self.etag) == SHA256 else GIT

    def to_dict(self) -> dict[str, Any]:
        key = "sha256" if self.algorithm == SHA256 else "git_oid"
        return {"path": self.path, "size": self.size, key: self.etag}


@dataclass(frozen=True)
class BundleModel:
    repo_id: str
    commit: str
    refs: tuple[str, ...]
    files: tuple[BundleFile, ...]
    listing: dict[str, Any] | None = None  # the hub's listing at that commit, when the cache recorded one

    @property
    def folder(self) -> str:
        return repo_folder_name(repo_id=self.repo_id, repo_type="model")

    def blob_name(self, f: BundleFile) -> str:
        return f"{self.folder}/blobs/{f.etag}"

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "commit": self.commit, "refs": sorted(self.refs),
                "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
                "listing": self.listing}


@dataclass(frozen=True)
class BundleManifest:
    models: tuple[BundleModel, ...]
    created_by: str = ""

    def to_json(self) -> str:
        return json.dumps({"phaita_bundle_version": BUNDLE_VERSION, "created_by": self.created_by,
                           "models": [m.to_dict() for m in sorted(self.models, key=lambda m: (m.repo_id, m.commit))]},
                          indent=2, sort_keys=True) + "\n"

    def blobs(self) -> dict[str, tuple[BundleModel, BundleFile]]:
        """Every blob of the bundle once: ``{name in the bundle: (model, a file with that content)}``."""
        out: dict[str, tuple[BundleModel, BundleFile]] = {}
        for m in self.models:
            for f in m.files:
                out.setdefault(m.blob_name(f), (m, f))
        return out


def _bad(detail: str) -> BundleError:
    return BundleError(f"{MANIFEST}: {detail}")


def _parse_file(entry: Any, where: str) -> BundleFile:
    if not isinstance(entry, dict):
        raise _bad(f"{where} is not an object")
    try:
        path = check_relative_path(entry.get("path"))
    except Exception:  # UnsafeRepository: absolute, "..", backslashes...
        raise _bad(f"{where}.path {entry.get('path')!r} leaves the bundle (absolute or '..' path)") from None
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"{where}.size must be an integer >= 0, got {size!r}")
    sha, oid = entry.get("sha256"), entry.get("git_oid")
    if (sha is None) == (oid is None):
        raise _bad(f"{where} ({path}) needs exactly one of sha256 and git_oid")
    digest = sha if sha is not None else oid
    if not isinstance(digest, str) or algorithm_of(digest) != (SHA256 if sha is not None else GIT):
        raise _bad(f"{where} ({path}): {'sha256' if sha is not None else 'git_oid'} has the wrong shape")
    return BundleFile(path, size, digest)


def _parse_model(entry: Any, where: str) -> BundleModel:
    if not isinstance(entry, dict):
        raise _bad(f"{where} is not an object")
    repo_id, commit = entry.get("repo_id"), entry.get("commit")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or \
            any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in repo_id.split("/")):
        raise _bad(f"{where}.repo_id must be 'org/name', got {repo_id!r}")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise _bad(f"{where}.commit must be a 40-hex commit hash, got {commit!r}")
    refs = entry.get("refs", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) and _REF_RE.match(r) and ".." not in r.split("/")
                                             for r in refs):
        raise _bad(f"{where}.refs must be branch or tag names, got {refs!r}")
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise _bad(f"{where}.files must be a non-empty list")
    parsed = tuple(_parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(files))
    paths = [f.path for f in parsed]
    if len(set(paths)) != len(paths):
        raise _bad(f"{where}.files lists a path twice")
    for p in paths:  # a file that is also a folder is how a listing smuggles a symlink
        parts = p.split("/")
        if any("/".join(parts[:i]) in paths for i in range(1, len(parts))):
            raise _bad(f"{where}.files: {p!r} is below another file")
    listing = entry.get("listing")
    if listing is not None and not isinstance(listing, dict):
        raise _bad(f"{where}.listing must be an object or null")
    return BundleModel(repo_id, commit, tuple(refs), parsed, listing)


def parse_manifest(text: bytes | str) -> BundleManifest:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("phaita_bundle_version") != BUNDLE_VERSION:
        raise _bad(f"not a phaita bundle of version {BUNDLE_VERSION}")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise _bad("'models' must be a non-empty list")
    parsed = tuple(_parse_model(m, f"models[{i}]") for i, m in enumerate(models))
    keys = [(m.repo_id, m.commit) for m in parsed]
    if len(set(keys)) != len(keys):
        raise _bad("a model commit is listed twice")
    return BundleManifest(parsed, str(data.get("created_by", "")))


# --------------------------------------------------------------------------- reading a bundle


@dataclass(frozen=True)
class Entry:
    name: str  # posix path inside the bundle
    kind: str  # "file", "dir" or "symlink"
    size: int = 0
    target: str | None = None  # a symlink's target, as written


def safe_name(name: str) -> str:
    """A bundle entry's name, refused when it leaves the bundle (absolute, ``..``) or is odd."""
    clean = name[2:] if name.startswith("./") else name
    clean = clean.rstrip("/")
    if not clean or clean.startswith("/") or "\\" in clean or "\x00" in clean or \
            any(part in ("..",) for part in clean.split("/")):
        raise BundleError(f"refusing the bundle: the entry {name!r} leaves the bundle (absolute or '..' path)")
    return posixpath.normpath(clean)


def check_symlink(entry: Entry) -> None:
    """A symlink must point at an entry inside the bundle (relative, never above its root)."""
    target = entry.target or ""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../") or "\x00" in target:
        raise BundleError(f"refusing the bundle: the symlink {entry.name} points outside the bundle ({target})")


class BundleReader:
    """Read-only access to a bundle folder or ``.tar``; every entry's name checked when listed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if self.path.is_dir():
            return
        if not self.path.is_file():
            raise BundleError(f"no bundle at {self.path} (a folder or a .tar written by `phaita models export`)")
        try:
            self._tar = tarfile.open(self.path, "r:")
        except (tarfile.TarError, OSError) as exc:
            raise BundleError(f"{self.path} is not a readable .tar bundle: {exc}") from None

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> "BundleReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def entries(self) -> list[Entry]:
        """Every entry, names and symlinks checked; special files (devices, fifos, hard links) refused."""
        try:
            return list(self._tar_entries() if self._tar is not None else self._folder_entries())
        except tarfile.TarError as exc:  # headers are read here: a cut-off .tar fails on the first missing one
            raise BundleError(f"{self.path} is not a readable .tar bundle (truncated or damaged): {exc}") from None

    def _tar_entries(self) -> Iterator[Entry]:
        assert self._tar is not None
        for member in self._tar.getmembers():
            name = safe_name(member.name)
            if member.isdir():
                entry = Entry(name, "dir")
            elif member.issym():
                entry = Entry(name, "symlink", target=member.linkname)
                check_symlink(entry)
            elif member.isreg():
                entry = Entry(name, "file", member.size)
                self._members[name] = member
            else:
                raise BundleError(f"refusing the bundle: {member.name} is not a file, folder or symlink")
            yield entry

    def _folder_entries(self) -> Iterator[Entry]:
        root = os.path.realpath(self.path)
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = safe_name(Path(full).relative_to(self.path).as_posix())
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    entry = Entry(rel, "symlink", target=os.readlink(full))
                    check_symlink(entry)
                    real = os.path.realpath(full)
                    if real != root and not real.startswith(root + os.sep):
                        raise BundleError(f"refusing the bundle: the symlink {rel} points outside the bundle "
                                          f"({entry.target})")
                    yield entry
                elif stat.S_ISDIR(st.st_mode):
                    yield Entry(rel, "dir")
                elif stat.S_ISREG(st.st_mode):
                    yield Entry(rel, "file", st.st_size)
                else:
                    raise BundleError(f"refusing the bundle: {rel} is not a file, folder or symlink")

    def open(self, name: str) -> IO[bytes]:
        """A regular file's bytes (never through a symlink)."""
        if self._tar is not None:
            member = self._members.get(name)
            if member is None:
                raise FileNotFoundError(name)
            fh = self._tar.extractfile(member)
            if fh is None:  # pragma: no cover - regular members always have a file object
                raise FileNotFoundError(name)
            return fh
        full = self.path / name
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")

    def read_manifest(self, entries: list[Entry]) -> tuple[BundleManifest, bytes]:
        if not any(e.name == MANIFEST and e.kind == "file" for e in entries):
            raise BundleError(f"{self.path} is not a phaita bundle: it has no {MANIFEST}")
        with self.open(MANIFEST) as fh:
            raw = fh.read(64 * 2**20 + 1)
        if len(raw) > 64 * 2**20:
            raise BundleError(f"{MANIFEST} is larger than 64 MiB")
        return parse_manifest(raw), raw
