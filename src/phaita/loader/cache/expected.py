"""What each file of a cached snapshot must hash to, and how that is known: with no network.

Three sources, best first; each file is checked by the first that says something about it:

* ``listing``: a listing recorded at fetch time: phaita's own (``.phaita/<commit>.json``) or
  huggingface_hub's tree cache (``trees/<commit>.json``, written by ``snapshot_download`` and
  ``hf download`` since huggingface_hub 2.x). It gives the size and the sha256 (LFS files) or the
  git blob id (others).
* ``blob name``: the cache names each blob by that same hash (``blobs/<sha256>`` for LFS files,
  ``blobs/<git sha1>`` otherwise), so a snapshot link says what its content must hash to. The
  name is read from the link's **first hop** (``snapshots/<c>/<path> -> ../../blobs/<etag>``):
  huggingface_hub 2.x's shared-blob store makes ``blobs/<etag>`` itself a relative symlink to
  ``<cache>/blobs/<2 hex>/<xet hash>``, and a Xet hash is not a content sha256.
* ``size only``: a listing gives the size but no hash of the usable shape (or none: a mirror that
  serves neither, see :mod:`phaita.loader.hub.listing`).

A file with none of these (a copied snapshot without links and without a listing) is not judged.
The same rule serves ``phaita models verify``, the station mirror and bundle export/import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnsafeRepository
from ..hashing import GIT, SHA256, SHA256_RE, algorithm_of
from ..hub.listing import RemoteFile, RepoListing, check_relative_path

LISTING, BLOB_NAME, SIZE_ONLY = "listing", "blob name", "size only"
HF_TREES_DIR = "trees"


@dataclass(frozen=True)
class Expected:
    """One file of a snapshot and what it must match."""

    path: str  # inside the snapshot
    entry: Path  # the snapshot entry (normally a symlink)
    content: Path  # the file that holds the bytes (the blob, or its shared-store target)
    etag: str | None  # the name of the repository blob the entry links to, when it does
    check: str | None  # LISTING, BLOB_NAME, SIZE_ONLY, or None (nothing recorded)
    algorithm: str | None = None
    digest: str | None = None
    size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.algorithm == SHA256


def blob_name(entry: Path, repo: Path) -> str | None:
    """The name of ``repo/blobs/<name>`` that a snapshot entry links to (one hop only), or None."""
    try:
        target = os.readlink(entry)
    except OSError:
        return None  # a regular file (copied snapshot) or unreadable
    hop = os.path.normpath(os.path.join(os.path.dirname(entry), target))
    if os.path.realpath(os.path.dirname(hop)) != os.path.realpath(repo / "blobs"):
        return None
    return os.path.basename(hop)


def load_hf_tree(repo: Path, commit: str) -> RepoListing | None:
    """huggingface_hub's own listing of ``commit`` (``trees/<commit>.json``), or None.

    Read here rather than through ``huggingface_hub.get_cached_repo_tree``, which drops the LFS
    sha256; the format (``format_version`` 1) is documented in ``huggingface_hub/_tree_cache.py``.
    """
    try:
        data = json.loads((repo / HF_TREES_DIR / f"{commit}.json").read_text(encoding="utf-8"))
        if data.get("format_version") != 1:
            return None
        files = []
        for path, info in sorted(data["files"].items()):
            sha = info.get("lfs_sha256")
            files.append(RemoteFile(check_relative_path(path), int(info["size"]), str(info["blob_id"]),
                                    sha if isinstance(sha, str) and SHA256_RE.match(sha) else None))
        return RepoListing(repo.name, commit, tuple(files))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnsafeRepository):
        # absent, unreadable or malformed: as if not recorded
        return None


def recorded_listing(repo: Path, commit: str, own: RepoListing | None) -> RepoListing | None:
    """phaita's listing when there is one, else huggingface_hub's."""
    return own if own is not None else load_hf_tree(repo, commit)


def expected_file(path: str, entry: Path, repo: Path, listing: RepoListing | None) -> Expected:
    content = Path(os.path.realpath(entry))
    etag = blob_name(entry, repo)
    remote = listing.get(path) if listing is not None else None
    if remote is not None:
        if remote.sha256:
            return Expected(path, entry, content, etag, LISTING, SHA256, remote.sha256, remote.size)
        if remote.blob_id and algorithm_of(remote.blob_id) == GIT:
            return Expected(path, entry, content, etag, LISTING, GIT, remote.blob_id, remote.size)
        return Expected(path, entry, content, etag, SIZE_ONLY, size=remote.size)
    algorithm = algorithm_of(etag) if etag else None
    if algorithm is not None:
        return Expected(path, entry, content, etag, BLOB_NAME, algorithm, etag)
    return Expected(path, entry, content, etag, None)


def expected_files(repo: Path, commit: str, linked: dict[str, Path], own: RepoListing | None) -> list[Expected]:
    """What each linked file of ``snapshots/<commit>`` must match, sorted by path."""
    listing = recorded_listing(repo, commit, own)
    return [expected_file(path, entry, repo, listing) for path, entry in sorted(linked.items())]
