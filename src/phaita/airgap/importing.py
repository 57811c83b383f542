"""Import a bundle into the cache: everything verified before anything is visible, each step atomic.

1. **Check the bundle's structure** (nothing written yet): every entry's name stays inside the
   bundle, every symlink points inside it, no special files; the manifest is valid; every blob it
   names is in the bundle as a regular file of the announced size.
2. **Verify and stage**: each blob is copied into ``<cache>/.phaita-import/<bundle id>/`` while it
   is hashed (sha256 or git's blob sha1, per its name), fsynced, and renamed to its final name in
   the staging folder only when it matched. Blobs the cache already holds are hashed in the
   bundle and not copied. The first mismatch stops the import, deletes the staging folder and
   names the file: the cache is as before. A staged blob survives a crash: the next run resumes.
3. **Publish**, each step atomic: blobs (a rename each), the listing, each new snapshot folder
   (built beside the cache and renamed in whole; files added to an existing snapshot are
   replaced one atomic link at a time), then the refs.

The staging folder is outside every ``models--*`` folder, so no cache reader (phaita,
huggingface_hub, transformers) ever sees a partial model.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import contextlib
import fcntl
from typing import Iterator

from phaita.loader.cache.layout import RepoCache
from phaita.loader.hashing import SHA256, Hashed, StreamHasher, algorithm_of, lfs_pointer_oid
from phaita.loader.hub.listing import RemoteFile, RepoListing, check_relative_path

from .bundle import BundleError, BundleFile, BundleManifest, BundleModel, BundleReader, Entry
from . import signatures
from .export import snapshot_link

STAGING = ".phaita-import"
CHUNK = 1 << 20


@dataclass
class ImportReport:
    bundle: Path
    cache_dir: Path
    models: list[dict[str, Any]] = field(default_factory=list)
    blobs_added: int = 0
    blobs_present: int = 0  # already in the cache: verified in the bundle, not copied
    blobs_resumed: int = 0  # staged and verified by an interrupted import
    bytes_added: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "cache_dir": str(self.cache_dir), "models": self.models,
                "blobs_added": self.blobs_added, "blobs_present": self.blobs_present,
                "blobs_resumed": self.blobs_resumed, "bytes_added": self.bytes_added}


@dataclass(frozen=True)
class _Blob:
    name: str  # in the bundle
    model: BundleModel
    file: BundleFile
    repo: RepoCache
    state: str  # "present" (in the cache), "staged" (by an earlier run), "copy"


def import_bundle(path: str | os.PathLike[str], cache_dir: Path, on_bytes: Hashed | None = None,
                  on_file: Callable[[str], None] | None = None) -> ImportReport:
    """Verify ``path`` (a bundle folder or .tar) and add its snapshots to ``cache_dir``."""
    cache_dir = Path(cache_dir)
    report = ImportReport(Path(path), cache_dir)
    with BundleReader(path) as reader:
        entries = reader.entries()
        manifest, raw = reader.read_manifest(entries)
        listings = {(m.repo_id, m.commit): _listing(m) for m in manifest.models}
        staging = cache_dir / STAGING / hashlib.sha256(raw).hexdigest()[:16]
        outer = _missing_parents(cache_dir)  # removed again if the bundle is refused
        cache_dir.mkdir(parents=True, exist_ok=True)
        # One import at a time per cache: a second one waits, then finds everything there.
        with _cache_locked(cache_dir):
            created = _missing_parents(staging) + outer
            staging.parent.mkdir(parents=True, exist_ok=True)
            try:
                by_name = {e.name: e for e in entries}
                blobs = _plan(manifest, by_name, cache_dir, staging)
                _stage(reader, blobs, staging, report, on_bytes, on_file)
                where = {(b.model.repo_id, b.file.etag): b for b in blobs}
                checked = signatures.check_import(reader, by_name, manifest, listings, lambda m, f: _verified_bytes(
                    where[(m.repo_id, f.etag)], staging))  # signatures checked before anything is visible
            except BundleError:
                _discard(staging, created)
                raise
            signatures.publish(cache_dir, checked)
            _publish(manifest, blobs, listings, staging, report)
            _discard(staging, created)
    return report


def _verified_bytes(blob: _Blob, staging: Path) -> Path:
    """Where a blob's verified bytes are now: in the cache (present) or in the staging folder."""
    return blob.repo.blob_path(blob.file.etag) if blob.state == "present" else staging / blob.model.folder / blob.file.etag


def _missing_parents(staging: Path) -> list[Path]:
    """The folders that creating ``staging`` adds (removed again when a bundle is refused)."""
    out, p = [], staging
    while not p.exists():
        out.append(p)
        p = p.parent
    return out


@contextlib.contextmanager
def _cache_locked(cache_dir: Path) -> Iterator[None]:
    """An exclusive lock on the cache folder itself (flock on its descriptor).

    A lock *file* would have to be left in the cache (a refused import must leave the cache as it
    was) or unlinked, and unlinking a lock file that another process waits on lets a third process
    lock a new file while the second holds the old one. The folder always exists and never moves.
    """
    fd = os.open(cache_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _discard(staging: Path, created: list[Path]) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    for folder in [staging.parent, *created]:
        try:
            folder.rmdir()  # only when empty: another bundle's staging stays
        except OSError:
            pass


# --------------------------------------------------------------------------- 1. structure


def _listing(m: BundleModel) -> RepoListing:
    """The listing to record for the snapshot: the bundle's (checked against its files), else its files."""
    own = {f.path: f for f in m.files}
    if m.listing is None:
        files = []
        for f in m.files:
            if algorithm_of(f.etag) == SHA256:
                files.append(RemoteFile(f.path, f.size, lfs_pointer_oid(f.etag, f.size), f.etag))
            else:
                files.append(RemoteFile(f.path, f.size, f.etag))
        return RepoListing(m.repo_id, m.commit, tuple(files))
    try:
        listing = RepoListing.from_json(json.dumps(m.listing))
        for r in listing.files:
            check_relative_path(r.path)
    except Exception as exc:
        raise BundleError(f"{m.repo_id} {m.commit[:12]}: the bundled listing is malformed ({exc})") from None
    if listing.commit != m.commit or listing.repo_id not in (m.repo_id, m.folder):
        raise BundleError(f"{m.repo_id} {m.commit[:12]}: the bundled listing is of another commit or model")
    for r in listing.files:
        f = own.get(r.path)
        if f is not None and (r.size != f.size or (r.hash_known and r.etag != f.etag)):
            raise BundleError(f"{m.repo_id} {m.commit[:12]}: {r.path}: the bundled listing and the manifest disagree")
    return RepoListing(m.repo_id, m.commit, listing.files)


def _plan(manifest: BundleManifest, entries: dict[str, Entry], cache_dir: Path, staging: Path) -> list[_Blob]:
    plan = []
    for name, (model, f) in sorted(manifest.blobs().items()):
        entry = entries.get(name)
        what = f"{name} ({model.repo_id}: {f.path})"
        if entry is None:
            raise BundleError(f"refusing the bundle: {what} is missing from it")
        if entry.kind != "file":
            raise BundleError(f"refusing the bundle: {what} is a {entry.kind}, not a file")
        if entry.size != f.size:
            raise BundleError(f"refusing the bundle: {what} is {entry.size} bytes, the manifest says {f.size} "
                              "(truncated or changed)")
        repo = RepoCache(cache_dir, model.repo_id)
        if _size_is(repo.blob_path(f.etag), f.size):
            state = "present"
        elif _size_is(staging / model.folder / f.etag, f.size):
            state = "staged"
        else:
            state = "copy"
        plan.append(_Blob(name, model, f, repo, state))
    return plan


def _size_is(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


# --------------------------------------------------------------------------- 2. verify and stage


def _stage(reader: BundleReader, blobs: list[_Blob], staging: Path, report: ImportReport,
           on_bytes: Hashed | None, on_file: Callable[[str], None] | None) -> None:
    for blob in blobs:
        if blob.state == "staged":
            report.blobs_resumed += 1
            if on_bytes:
                on_bytes(blob.file.size)
            continue
        if on_file:
            on_file(f"{blob.model.repo_id}/{blob.file.path}")
        hasher = StreamHasher(algorithm_of(blob.file.etag) or SHA256, blob.file.size)
        part = None
        if blob.state == "copy":
            part = staging / blob.model.folder / f"{blob.file.etag}.{os.getpid()}.part"
            part.parent.mkdir(parents=True, exist_ok=True)
        with reader.open(blob.name) as src:
            out = open(part, "wb") if part is not None else None
            try:
                n = 0
                while chunk := src.read(min(CHUNK, blob.file.size - n + 1)):
                    n += len(chunk)
                    hasher.update(chunk)
                    if out is not None:
                        out.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if out is not None:
                    out.close()
        if n != blob.file.size or not hasher.matches(blob.file.etag):
            kind = "sha256" if hasher.algorithm == SHA256 else "git sha1"
            raise BundleError(f"refusing the bundle: {blob.name} ({blob.model.repo_id}: {blob.file.path}) does not "
                              f"match its {kind} in the manifest (a changed or damaged byte); nothing was imported")
        if part is not None:
            os.replace(part, staging / blob.model.folder / blob.file.etag)
        else:
            report.blobs_present += 1


# --------------------------------------------------------------------------- 3. publish


def _publish(manifest: BundleManifest, blobs: list[_Blob], listings: dict[tuple[str, str], RepoListing],
             staging: Path, report: ImportReport) -> None:
    added: dict[tuple[str, str], list[int]] = {}
    for blob in blobs:  # blobs first: a blob without a snapshot link is not a model to anyone
        if blob.state == "present":
            continue
        blob.repo.blobs_dir.mkdir(parents=True, exist_ok=True)
        os.replace(staging / blob.model.folder / blob.file.etag, blob.repo.blob_path(blob.file.etag))
        report.blobs_added += 1
        report.bytes_added += blob.file.size
        added.setdefault((blob.model.repo_id, blob.model.commit), []).append(blob.file.size)
    for m in manifest.models:
        repo = RepoCache(report.cache_dir, m.repo_id)
        if repo.load_listing(m.commit) is None:
            repo.save_listing(listings[(m.repo_id, m.commit)])
        new = _link_snapshot(repo, m, staging)
        refs = {}
        for ref in m.refs:
            refs[ref] = repo.read_ref(ref)
            repo.write_ref(ref, m.commit)
        report.models.append({"repo_id": m.repo_id, "commit": m.commit, "files": len(m.files),
                              "new_snapshot": new, "blobs_added": len(added.get((m.repo_id, m.commit), [])),
                              "refs": {r: {"was": old, "now": m.commit} for r, old in refs.items()}})


def _link_snapshot(repo: RepoCache, m: BundleModel, staging: Path) -> bool:
    """Make ``snapshots/<commit>`` hold a link per file; True when the folder is new (one rename)."""
    final = repo.snapshot_dir(m.commit)
    if not final.exists():
        tmp = staging / f"snapshot-{m.folder}-{m.commit}"
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
        for f in m.files:
            link = tmp / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(snapshot_link(f.path, f.etag), link)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)  # the whole snapshot appears at once
            return True
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process made it meanwhile: add to it
    root = final.resolve()
    for f in m.files:
        link = final / f.path
        blob = repo.blob_path(f.etag)
        if link.is_symlink() and os.path.realpath(link) == os.path.realpath(blob):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        if not str(link.parent.resolve()).startswith(str(root)):
            raise BundleError(f"{m.repo_id}: {f.path} would be written outside the snapshot folder")
        tmp_link = link.with_name(f".{link.name}.{os.getpid()}.import")
        tmp_link.unlink(missing_ok=True)
        os.symlink(snapshot_link(f.path, f.etag), tmp_link)
        os.replace(tmp_link, link)  # an existing entry is replaced by the verified one in one step
    return False
