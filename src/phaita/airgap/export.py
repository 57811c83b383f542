"""Export: complete, verified snapshots from the cache into a bundle (a folder or a ``.tar``). Offline.

What goes in: with a lock, exactly the locked files of each locked commit; with model names, the
snapshot each name's ``main`` ref points at (``org/name@<branch or commit>`` for another one),
every file of it. A snapshot that is not complete, or a file whose expected hash is unknown, stops
the export with a message naming it. The expected hash of each file comes from the same rule as
``phaita models verify`` (:mod:`phaita.loader.cache.expected`: a recorded listing, else the blob's name,
so caches filled by ``hf download`` or ``snapshot_download`` can be bundled), and every byte is
hashed while it is copied: a bundle holds only content that matched. The bundle is written under
a temporary name next to PATH and renamed at the end: PATH is either whole or absent.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable

from phaita import __version__
from phaita.loader.cache import expected
from phaita.loader.cache.layout import RepoCache
from phaita.loader.hashing import SHA256, Hashed, StreamHasher, algorithm_of, lfs_pointer_oid
from phaita.loader.hub.listing import RemoteFile, is_commit_hash
from phaita.loader.cache.lockfile import LockedFile, LockedModel, LockFile

from .bundle import LOCK, MANIFEST, BundleError, BundleFile, BundleManifest, BundleModel

CHUNK = 1 << 20


class ExportError(BundleError):
    """The cache cannot give a complete, verified snapshot of what was asked for."""


@dataclass
class _Source:
    """One snapshot to bundle, and where each file's bytes are in the cache."""

    model: BundleModel
    content: dict[str, Path]  # file path -> the cache file holding its bytes
    lock_entry: LockedModel


@dataclass
class ExportReport:
    path: Path
    models: list[dict[str, Any]] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "models": self.models, "blobs": self.blobs, "bytes": self.bytes}


# --------------------------------------------------------------------------- what to export


def sources_from_lock(cache_dir: Path, lock: LockFile) -> list[_Source]:
    out = []
    for m in lock.models:
        out.append(_source(RepoCache(cache_dir, m.repo_id), m.commit, [m.revision], m,
                           hint=f"run `phaita models pull --locked` (lock file {lock.source})"))
    return out


def sources_from_names(cache_dir: Path, names: Iterable[str]) -> list[_Source]:
    out = []
    for name in names:
        repo_id, _, revision = name.partition("@")
        repo = RepoCache(cache_dir, repo_id)
        commits = repo.commits()
        if not commits:
            raise ExportError(f"{repo_id} is not in the cache ({cache_dir}): `phaita models pull {repo_id}` first")
        commit = repo.read_ref(revision or "main")
        if commit is None and not revision and len(commits) == 1:
            commit = commits[0]
        if commit is None or commit not in commits:
            raise ExportError(f"{repo_id}: no cached snapshot for '{revision or 'main'}' (cached commits: "
                              f"{', '.join(c[:12] for c in commits)}); name one as {repo_id}@<commit>")
        refs = [r for r in repo.refs().get(commit, []) if not is_commit_hash(r)]
        out.append(_source(repo, commit, refs, None, hint=f"run `phaita models pull {repo_id}` again"))
    return out


def _source(repo: RepoCache, commit: str, refs: list[str], pinned: LockedModel | None, hint: str) -> _Source:
    what = f"{repo.repo_id} {commit[:12]}"
    linked = repo.linked_files(commit)
    if not linked:
        raise ExportError(f"{what} is not in the cache ({repo.cache_dir}): {hint}")
    own = repo.load_listing(commit)
    locked = {f.path: f for f in pinned.files} if pinned is not None else None
    if locked is not None:
        status = repo.check_files(commit, [f.remote() for f in locked.values()])
    else:
        needs, _ = repo.infer_needs(commit, own, linked)
        status = repo.status(commit, needs)
    if not status.complete:
        raise ExportError(f"{what} is not complete in the cache ({', '.join(status.problems[:5])}): {hint}")
    files, content = [], {}
    for exp in expected.expected_files(repo.path, commit, linked, own):
        want = locked.get(exp.path) if locked is not None else None
        if locked is not None and want is None:
            continue  # in the snapshot but not locked: not bundled
        digest = exp.digest if exp.algorithm is not None else None
        if digest is None:
            raise ExportError(f"{what}: {exp.path} cannot be verified (no recorded hash and no hash-named blob); "
                              f"only verified snapshots are exported: {hint}")
        if want is not None and want.etag != digest:
            raise ExportError(f"{what}: {exp.path} in the cache is {digest[:12]}..., the lock says "
                              f"{want.etag[:12]}...; {hint}")
        size = exp.size if exp.size is not None else os.stat(exp.content).st_size
        files.append(BundleFile(exp.path, size, digest))
        content[exp.path] = exp.content
    listing = expected.recorded_listing(repo.path, commit, own)
    model = BundleModel(repo.repo_id, commit, tuple(refs), tuple(files),
                        json.loads(listing.to_json()) if listing is not None else None)
    entry = pinned or LockedModel(repo.repo_id, refs[0] if refs else commit, commit,
                                  tuple(_locked_file(f, listing) for f in files))
    return _Source(model, content, entry)


def _locked_file(f: BundleFile, listing: Any) -> LockedFile:
    remote: RemoteFile | None = listing.get(f.path) if listing is not None else None
    if f.algorithm == SHA256:
        oid = remote.blob_id if remote is not None and remote.blob_id else lfs_pointer_oid(f.etag, f.size)
        return LockedFile(f.path, f.size, oid, f.etag)
    return LockedFile(f.path, f.size, f.etag)


# --------------------------------------------------------------------------- writing


class _Writer:
    """A bundle under construction at a temporary path; ``finish`` renames it to the final one."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")

    def add_bytes(self, name: str, data: bytes) -> None: ...
    def add_symlink(self, name: str, target: str) -> None: ...
    def add_stream(self, name: str, fh: IO[bytes], size: int) -> None: ...
    def finish(self) -> None: ...

    def abort(self) -> None:
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)


class _FolderWriter(_Writer):
    def __init__(self, final: Path) -> None:
        super().__init__(final)
        self.tmp.mkdir(parents=True)

    def _path(self, name: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_symlink(self, name: str, target: str) -> None:
        os.symlink(target, self._path(name))

    def add_stream(self, name: str, fh: IO[bytes], size: int) -> None:
        with open(self._path(name), "wb") as out:
            shutil.copyfileobj(fh, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())

    def finish(self) -> None:
        os.rename(self.tmp, self.final)


class _TarWriter(_Writer):
    def __init__(self, final: Path) -> None:
        super().__init__(final)
        self.fh = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.fh, mode="w", format=tarfile.PAX_FORMAT)
        self.now = int(time.time())

    def _info(self, name: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mtime, info.mode = self.now, 0o644
        return info

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_symlink(self, name: str, target: str) -> None:
        info = self._info(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self.tar.addfile(info)

    def add_stream(self, name: str, fh: IO[bytes], size: int) -> None:
        info = self._info(name)
        info.size = size
        self.tar.addfile(info, fh)

    def finish(self) -> None:
        self.tar.close()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        try:
            self.tar.close()
            self.fh.close()
        except OSError:
            pass
        super().abort()


class _HashingReader(io.RawIOBase):
    """Reads a cache file for the writer while hashing it; stops at ``size`` bytes."""

    def __init__(self, path: Path, size: int, algorithm: str, on_bytes: Hashed | None) -> None:
        self.fh = open(path, "rb")
        self.left = size
        self.hasher = StreamHasher(algorithm, size)
        self.on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        self.hasher.update(data)
        if self.on_bytes and data:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self.fh.close()
        super().close()


def snapshot_link(file_path: str, etag: str) -> str:
    """The relative target of ``snapshots/<commit>/<path>`` -> ``blobs/<etag>``, as huggingface_hub writes it."""
    depth = file_path.count("/") + 2
    return "/".join([".."] * depth + ["blobs", etag])


def export_bundle(sources: list[_Source], path: str | os.PathLike[str], lock: LockFile | None = None,
                  on_bytes: Hashed | None = None, on_file: Callable[[str], None] | None = None,
                  extra: dict[str, bytes] | None = None) -> ExportReport:
    """Write ``sources`` to ``path`` (a folder, or a tar when it ends in ``.tar``); every byte verified.

    ``extra``: more files for the bundle, ``{name: bytes}`` (the models' signatures).
    """
    final = Path(path)
    if final.exists() or final.is_symlink():
        raise ExportError(f"{final} already exists: choose a new path (a bundle is never written over another)")
    if not final.parent.is_dir():
        raise ExportError(f"the folder {final.parent} does not exist")
    writer: _Writer = _TarWriter(final) if final.name.endswith(".tar") else _FolderWriter(final)
    report = ExportReport(final)
    try:
        written: set[str] = set()
        for src in sources:
            m = src.model
            for f in sorted(m.files, key=lambda f: f.path):
                name = m.blob_name(f)
                if name not in written:
                    if on_file:
                        on_file(f"{m.repo_id}/{f.path}")
                    _copy_verified(writer, name, src.content[f.path], f, m, on_bytes)
                    written.add(name)
                    report.blobs += 1
                    report.bytes += f.size
                writer.add_symlink(f"{m.folder}/snapshots/{m.commit}/{f.path}", snapshot_link(f.path, f.etag))
            for ref in m.refs:
                writer.add_bytes(f"{m.folder}/refs/{ref}", m.commit.encode())
            report.models.append({"repo_id": m.repo_id, "commit": m.commit, "refs": list(m.refs),
                                  "files": len(m.files), "bytes": sum(f.size for f in m.files)})
        for name, data in sorted((extra or {}).items()):
            writer.add_bytes(name, data)
        manifest = BundleManifest(tuple(s.model for s in sources), f"phaita {__version__}")
        lock = lock or LockFile(tuple(s.lock_entry for s in sources))
        writer.add_bytes(LOCK, lock.to_json().encode())
        writer.add_bytes(MANIFEST, manifest.to_json().encode())
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return report


def _copy_verified(writer: _Writer, name: str, content: Path, f: BundleFile, m: BundleModel,
                   on_bytes: Hashed | None) -> None:
    try:
        size = os.stat(content).st_size
    except OSError as exc:
        raise ExportError(f"{m.repo_id} {m.commit[:12]}: {f.path} is unreadable in the cache: {exc}") from None
    if size != f.size:
        raise ExportError(f"{m.repo_id} {m.commit[:12]}: {f.path} is {size} bytes in the cache, expected {f.size}; "
                          "run `phaita models verify --repair`")
    algorithm = algorithm_of(f.etag)
    reader = _HashingReader(content, f.size, algorithm or SHA256, on_bytes)
    try:
        writer.add_stream(name, reader, f.size)
    finally:
        reader.close()
    if not reader.hasher.matches(f.etag):
        raise ExportError(f"{m.repo_id} {m.commit[:12]}: {f.path} does not match its hash in the cache "
                          f"({f.etag[:12]}...); run `phaita models verify --repair`")
