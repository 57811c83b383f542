"""The Hugging Face cache, as this loader reads and writes it.

The layout is huggingface_hub's own, so ``hf``, ``transformers`` and ``scan_cache_dir`` see the
same models::

    <cache>/models--org--name/
        refs/main                       -> commit hash
        blobs/<sha256 or git oid>       whole, verified files
        blobs/<etag>.incomplete         partial downloads (resumed, never loaded)
        snapshots/<commit>/<path>       symlinks to blobs
        .phaita/<commit>.json           the hub's listing at that commit (names, sizes, hashes)
        signatures/<commit>/model.sig   an OpenSSF model-signing bundle over that snapshot (never inside it)
        signatures/<commit>/verified.json   the last check of that signature (``phaita.loader.signing``)
    <cache>/.phaita/lock-signatures/<id>.json  checks of signed lock files (``lock_signature_record``)
    <cache>/.phaita/gguf/<sha256>-<class>-<dtype>-transformers<v>/  a GGUF model converted once
                                    (``gguf_copies_dir``; ``PHAITA_GGUF_CACHE`` moves it)

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
from typing import Iterable

from huggingface_hub.file_download import repo_folder_name

from ..errors import UnsupportedWeights
from ..hub.listing import RemoteFile, RepoListing, is_commit_hash
from ..hub.selection import Needs, is_weight, select_files

LISTING_DIR = ".phaita"
_MODEL_PREFIX = "models--"


def repo_dir(cache_dir: Path, repo_id: str) -> Path:
    return RepoCache(cache_dir, repo_id).path


def repo_id_of(folder_name: str) -> str | None:
    """``models--org--name`` -> ``org/name`` (None for anything else: datasets, locks...)."""
    if not folder_name.startswith(_MODEL_PREFIX):
        return None
    parts = folder_name[len(_MODEL_PREFIX):].split("--")
    return "/".join(parts) if all(parts) else None


def cached_repos(cache_dir: Path) -> list["RepoCache"]:
    """Every model repository in ``cache_dir``, sorted by folder name."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = []
    for folder in sorted(cache_dir.iterdir()):
        repo_id = repo_id_of(folder.name)
        if repo_id is not None and folder.is_dir():
            found.append(RepoCache(cache_dir, repo_id))
    return found


def lock_signature_record(cache_dir: Path, lock: Path) -> Path:
    """Where the check of a signed lock file is recorded: ``<cache>/.phaita/lock-signatures/<sha256 of its path>.json``."""
    import hashlib

    name = hashlib.sha256(str(Path(lock).resolve()).encode()).hexdigest()[:32]
    return Path(cache_dir) / LISTING_DIR / "lock-signatures" / f"{name}.json"


def gguf_copies_dir(cache_dir: Path) -> Path:
    """Where converted GGUF models are kept by default: ``<cache>/.phaita/gguf`` (``PHAITA_GGUF_CACHE`` moves it)."""
    return Path(cache_dir) / LISTING_DIR / "gguf"


def open_uploads_dir(cache_dir: Path) -> Path:
    """Where a push keeps its open OCI blob uploads between processes: ``<cache>/.phaita/oci-uploads``."""
    return Path(cache_dir) / LISTING_DIR / "oci-uploads"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a reader never sees half); no temp file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two threads of one process writing the same file must not share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RepoCache:
    """One repository in the cache: the single owner of its layout (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike[str], repo_id: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.repo_id = repo_id
        self.path = self.cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")

    def __repr__(self) -> str:
        return f"RepoCache({str(self.cache_dir)!r}, {self.repo_id!r})"

    # -- paths
    @property
    def blobs_dir(self) -> Path:
        return self.path / "blobs"

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @property
    def refs_dir(self) -> Path:
        return self.path / "refs"

    def snapshot_dir(self, commit: str) -> Path:
        return self.snapshots_dir / commit

    def blob_path(self, etag: str) -> Path:
        return self.blobs_dir / etag

    def incomplete_path(self, etag: str) -> Path:
        return self.blobs_dir / f"{etag}.incomplete"

    def lock_path(self, etag: str) -> Path:
        """Same lock file as huggingface_hub, so both clients coordinate on one blob."""
        return self.cache_dir / ".locks" / self.path.name / f"{etag}.lock"

    def listing_path(self, commit: str) -> Path:
        return self.path / LISTING_DIR / f"{commit}.json"

    def signature_path(self, commit: str, name: str = "model.sig") -> Path:
        """Where a commit's OpenSSF model-signing bundle lives: outside ``snapshots/``, so that a
        signature never becomes one of the files it signs (``signatures/<commit>/model.sig``)."""
        return self.path / "signatures" / commit / name

    def signature_record_path(self, commit: str) -> Path:
        """Where the last successful check of that signature is recorded (``signatures/<commit>/verified.json``)."""
        return self.signature_path(commit).with_name("verified.json")

    # -- refs
    def read_ref(self, revision: str) -> str | None:
        if is_commit_hash(revision):
            return revision
        try:
            commit = (self.refs_dir / revision).read_text().strip()
        except (OSError, ValueError):
            return None
        return commit if is_commit_hash(commit) else None

    def write_ref(self, revision: str, commit: str) -> None:
        if is_commit_hash(revision):
            return
        path = self.refs_dir / revision
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text().strip() != commit:
            atomic_write(path, commit)

    def refs(self) -> dict[str, list[str]]:
        """``{commit: [ref names]}`` from ``refs/`` (branches, tags, ``pr/1``...)."""
        out: dict[str, list[str]] = {}
        if self.refs_dir.is_dir():
            for path in sorted(p for p in self.refs_dir.rglob("*") if p.is_file()):
                try:
                    commit = path.read_text().strip()
                except OSError:
                    continue
                out.setdefault(commit, []).append(path.relative_to(self.refs_dir).as_posix())
        return out

    # -- the saved listing
    def save_listing(self, listing: RepoListing) -> None:
        atomic_write(self.listing_path(listing.commit), listing.to_json())

    def load_listing(self, commit: str) -> RepoListing | None:
        try:
            return RepoListing.from_json(self.listing_path(commit).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def listings_since(self, t0: float) -> list[str]:
        """Commits whose listing was saved at or after ``t0`` (epoch seconds), newest last."""
        try:
            found = [(p.stat().st_mtime, p.stem) for p in (self.path / LISTING_DIR).glob("*.json")]
        except OSError:
            return []
        return [commit for mtime, commit in sorted(found) if mtime >= t0]

    # -- snapshots
    def commits(self) -> list[str]:
        """The snapshot folders present, sorted (normally commit hashes)."""
        if not self.snapshots_dir.is_dir():
            return []
        return sorted(p.name for p in self.snapshots_dir.iterdir() if p.is_dir())

    def linked_files(self, commit: str) -> dict[str, Path]:
        """``{relative posix path: entry}`` for every file or link (dangling too) in a snapshot."""
        snapshot = self.snapshot_dir(commit)
        out: dict[str, Path] = {}
        if not snapshot.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(snapshot):
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                entry = Path(dirpath) / name
                out[entry.relative_to(snapshot).as_posix()] = entry
        return out

    def link_into_snapshot(self, commit: str, file: RemoteFile) -> Path:
        """Point ``snapshots/<commit>/<path>`` at the blob, refusing anything that escapes the snapshot."""
        from huggingface_hub.file_download import _create_symlink  # handles platforms without symlinks

        snapshot = self.snapshot_dir(commit).resolve()
        pointer = self.snapshot_dir(commit) / file.path
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if not str(pointer.parent.resolve()).startswith(str(snapshot)):
            raise OSError(f"refusing to write {file.path!r} outside the snapshot folder")
        blob = self.blob_path(file.etag)
        if pointer.is_symlink() and os.path.realpath(pointer) == os.path.realpath(blob):
            return pointer
        try:
            _create_symlink(str(blob), str(pointer), new_blob=False)
        except FileExistsError:  # another process linked it between our remove and our symlink
            if os.path.realpath(pointer) != os.path.realpath(blob):
                raise
        return pointer

    # -- blobs
    def blob_entries(self) -> list[Path]:
        """Everything in ``blobs/``: whole blobs and ``.incomplete`` partial downloads."""
        return sorted(self.blobs_dir.iterdir()) if self.blobs_dir.is_dir() else []

    def discard_partials(self) -> list[Path]:
        """Delete this model's partial downloads (when the caller turns resume_download off)."""
        removed = []
        for path in self.blobs_dir.glob("*.incomplete"):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
        return removed

    # -- completeness
    def status(self, revision: str, needs: Needs, listing: RepoListing | None = None) -> "SnapshotStatus":
        """Check, with no network, whether ``revision`` is wholly in the cache.

        ``listing``: the one the caller holds for that commit (else the saved one is read).
        """
        commit = self.read_ref(revision)
        if commit is None:
            return SnapshotStatus(self.repo_id, None, None, False, missing=["(revision not cached)"])
        snapshot = self.snapshot_dir(commit)
        if not snapshot.is_dir():
            return SnapshotStatus(self.repo_id, commit, None, False, missing=["(snapshot folder)"])
        if listing is None or listing.commit != commit:
            listing = self.load_listing(commit)
        if listing is None:
            return self._status_without_listing(commit, needs)
        try:
            wanted = select_files(listing.files, needs, read_index=lambda f: (snapshot / f.path).read_bytes())
        except (OSError, ValueError):
            return SnapshotStatus(self.repo_id, commit, snapshot, False, missing=["(index)"], verified_listing=True)
        except UnsupportedWeights as exc:  # e.g. pickle-only weights without allow_pickle: not usable as is
            return SnapshotStatus(self.repo_id, commit, snapshot, False, missing=[f"(usable weights: {exc})"],
                                  verified_listing=True)
        return self.check_files(commit, wanted)

    def check_files(self, commit: str, wanted: list[RemoteFile]) -> "SnapshotStatus":
        """Are these files (already selected from the listing) all linked, with the hub's sizes?"""
        snapshot = self.snapshot_dir(commit)
        status = SnapshotStatus(self.repo_id, commit, snapshot, True, verified_listing=True, files=wanted)
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

    def _status_without_listing(self, commit: str, needs: Needs) -> "SnapshotStatus":
        """A snapshot another client made (no saved listing): judged by what is there."""
        snapshot = self.snapshot_dir(commit)
        names = set(self.linked_files(commit))
        status = SnapshotStatus(self.repo_id, commit, snapshot, True)
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

    def infer_needs(self, commit: str, listing: RepoListing | None = None,
                    linked: Iterable[str] | None = None) -> tuple[Needs, str]:
        """What the fetch that made this snapshot asked for, judged from what is (or is being) there.

        A GGUF file present or partly downloaded means a GGUF load; any weight file means a full load;
        otherwise the snapshot was pulled without weights (``--type tokenizer``).
        """
        names = set(self.linked_files(commit) if linked is None else linked)
        if listing is not None:  # files still arriving count as asked for
            names |= {f.path for f in listing.files if self.incomplete_path(f.etag).exists()}
        root = sorted(n for n in names if "/" not in n)
        gguf = [n for n in root if n.endswith(".gguf")]
        if gguf:
            return Needs(weights=True, gguf_file=gguf[0], allow_pickle=True), f"gguf:{gguf[0]}"
        if any(is_weight(n) for n in root):
            return Needs(weights=True, allow_pickle=True), "weights"
        return Needs(weights=False, allow_pickle=True), "no weights"


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
    return RepoCache(cache_dir, repo_id).status(revision, needs)


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
