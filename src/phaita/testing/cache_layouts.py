"""Cache layouts other clients make, built with their own code, for tests of code that reads caches.

:func:`share_blobs` gives a repository huggingface_hub 2.x's shared-blob layout: each LFS blob moves
to ``<cache>/blobs/<2 hex>/<xet hash>`` and ``blobs/<sha256>`` becomes a relative symlink to it.
huggingface_hub does this for files it fetched over Xet, which the local hub does not speak; the
layout (made by huggingface_hub's own function) and the Xet hash (from ``hf_xet``) are the real ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

__all__ = ["share_blobs"]


def share_blobs(cache_dir: str | os.PathLike[str], repo_id: str) -> list[Path]:
    """Move ``repo_id``'s LFS (sha256-named) blobs into the shared store; returns the repo blob paths."""
    import hf_xet
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    cache_dir = Path(cache_dir)
    blobs = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"
    shared = []
    for blob in sorted(blobs.iterdir()):
        if len(blob.name) != 64 or blob.is_symlink():  # LFS blobs only, as huggingface_hub does
            continue
        (info,) = hf_xet.hash_files([str(blob)])
        if not publish_blob_to_shared_store(blob_path=str(blob), xet_hash=info.hash, cache_dir=str(cache_dir),
                                            expected_size=blob.stat().st_size):
            raise OSError(f"huggingface_hub did not move {blob} into the shared store")
        shared.append(blob)
    return shared
