"""The Hugging Face cache, as this loader reads and writes it.

The layout is huggingface_hub's own, so ``hf``, ``transformers`` and ``scan_cache_dir`` see the
same models::

    <cache>/models--org--name/
        refs/main                       -> commit hash
        blobs/<sha256 or git oid>       whole, verified files
        blobs/<etag>.incomplete         partial downloads (resumed, never loaded)
        snapshots/<commit>/<path>       symlinks to blobs
        .phaita/<commit>.json           the hub's listing at that commit (names, sizes, hashes)

The listing is what makes "complete" checkable offline: a snapshot is complete when every file a
load needs is present with the size the hub announced. Blobs are only ever created by renaming a
verified ``.incomplete`` file, so a size match means a whole file. Snapshots made by other clients
(no listing) are judged by what is there: config, weights, and safetensors headers that agree
with the file sizes.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

from .errors import UnsupportedWeights
from .listing import RemoteFile, RepoListing, is_commit_hash
from .selection import Needs, is_weight, select_files

LISTING_DIR = ".phaita"


def repo_dir(cache_dir: Path, repo_id: str) -> Path:
    return cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")


def lock_path(cache_dir: Path, repo_id: str, etag: str) -> Path:
    """Same lock file as huggingface_hub, so both clients coordinate on one blob."""
    return cache_dir / ".locks" / repo_folder_name(repo_id=repo_id, repo_type="model") / f"{etag}.lock"


def read_ref(repo: Path, revision: str) -> str | None:
    if is_commit_hash(revision):
        return revision
    try:
        commit = (repo / "refs" / revision).read_text().strip()
    except (OSError, ValueError):
        return None
    return commit if is_commit_hash(commit) else None


def write_ref(repo: Path, revision: str, commit: str) -> None:
    if is_commit_hash(revision):
        return
    path = repo / "refs" / revision
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text().strip() != commit:
        _atomic_write(path, commit)


def save_listing(repo: Path, listing: RepoListing) -> None:
    _atomic_write(repo / LISTING_DIR / f"{listing.commit}.json", listing.to_json())


def load_listing(repo: Path, commit: str) -> RepoListing | None:
    try:
        return RepoListing.from_json((repo / LISTING_DIR / f"{commit}.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two threads of one process writing the same file must not share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def blob_path(repo: Path, etag: str) -> Path:
    return repo / "blobs" / etag


def incomplete_path(repo: Path, etag: str) -> Path:
    return repo / "blobs" / f"{etag}.incomplete"


def discard_partials(repo: Path) -> list[Path]:
    """Delete this model's partial downloads (when the caller turns resume_download off)."""
    removed = []
    for path in (repo / "blobs").glob("*.incomplete"):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def link_into_snapshot(repo: Path, commit: str, file: RemoteFile) -> Path:
    """Point ``snapshots/<commit>/<path>`` at the blob, refusing anything that escapes the snapshot."""
    from huggingface_hub.file_download import _create_symlink  # handles platforms without symlinks

    snapshot = (repo / "snapshots" / commit).resolve()
    pointer = repo / "snapshots" / commit / file.path
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if not str(pointer.parent.resolve()).startswith(str(snapshot)):
        raise OSError(f"refusing to write {file.path!r} outside the snapshot folder")
    blob = blob_path(repo, file.etag)
    if pointer.is_symlink() and os.path.realpath(pointer) == os.path.realpath(blob):
        return pointer
    try:
        _create_symlink(str(blob), str(pointer), new_blob=False)
    except FileExistsError:  # another process linked it between our remove and our symlink
        if os.path.realpath(pointer) != os.path.realpath(blob):
            raise
    return pointer


@dataclass
class SnapshotStatus:
    """How complete one cached snapshot is for a given load."""

    repo_id: str
    commit: str | None
    path: Path | None
    complete: bool
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    verified_listing: bool = False  # False: made by another client, judged by its contents
    files: list[RemoteFile] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"missing: {m}" for m in self.missing] + [f"wrong size: {w}" for w in self.wrong_size]


def snapshot_status(cache_dir: Path, repo_id: str, revision: str, needs: Needs) -> SnapshotStatus:
    """Check, with no network, whether ``revision`` of ``repo_id`` is wholly in the cache."""
    repo = repo_dir(cache_dir, repo_id)
    commit = read_ref(repo, revision)
    if commit is None:
        return SnapshotStatus(repo_id, None, None, False, missing=["(revision not cached)"])
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        return SnapshotStatus(repo_id, commit, None, False, missing=["(snapshot folder)"])
    listing = load_listing(repo, commit)
    if listing is None:
        return _status_without_listing(repo_id, commit, snapshot, needs)
    try:
        wanted = select_files(listing.files, needs, read_index=lambda f: (snapshot / f.path).read_bytes())
    except (OSError, ValueError):
        return SnapshotStatus(repo_id, commit, snapshot, False, missing=["(index)"], verified_listing=True)
    except UnsupportedWeights as exc:  # e.g. pickle-only weights without allow_pickle: not usable as is
        return SnapshotStatus(repo_id, commit, snapshot, False, missing=[f"(usable weights: {exc})"],
                              verified_listing=True)
    status = SnapshotStatus(repo_id, commit, snapshot, True, verified_listing=True, files=wanted)
    for f in wanted:
        try:
            size = (snapshot / f.path).stat().st_size  # follows the symlink to the blob
        except OSError:
            status.missing.append(f.path)
            continue
        if size != f.size:
            status.wrong_size.append(f.path)
    status.complete = not status.missing and not status.wrong_size
    return status


def _status_without_listing(repo_id: str, commit: str, snapshot: Path, needs: Needs) -> SnapshotStatus:
    names = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file() or p.is_symlink()}
    status = SnapshotStatus(repo_id, commit, snapshot, True)
    for name in sorted(names):
        if not (snapshot / name).exists():
            status.missing.append(name)  # dangling symlink
    if needs.gguf_file:
        if needs.gguf_file not in names:
            status.missing.append(needs.gguf_file)
    else:
        if "config.json" not in names:
            status.missing.append("config.json")
        if needs.weights:
            weights = [n for n in names if is_weight(n) and "/" not in n]
            if not weights:
                status.missing.append("(weights)")
            for name in weights:
                if name.endswith(".safetensors") and not safetensors_size_ok(snapshot / name):
                    status.wrong_size.append(name)
    status.complete = not status.missing and not status.wrong_size
    return status


def safetensors_size_ok(path: Path) -> bool:
    """A safetensors header declares where its data ends: the file must be exactly that long."""
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > 100 * 2**20:
                return False
            header = json.loads(fh.read(header_len))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return os.path.getsize(path) == 8 + header_len + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False
