"""Cache inspection with no network: what ``phaita models status/verify`` show.

* :mod:`.scan` lists every model in a cache folder, per snapshot: refs, complete or partial
  (judged by :meth:`RepoCache.status <phaita.loader.cache.RepoCache.status>`), size, last use.
* :mod:`.verify` re-hashes cached files against the hub's hashes (or the blob's own name).
* :mod:`.repair` removes bad files and fetches their snapshots again, with the fetch function
  the caller passes (this layer sits below the facade and never imports it).
"""

from __future__ import annotations

from ..hashing import hash_file
from .repair import RefetchJob, RepairReport, remove_bad, repair
from .scan import CachedModel, SnapshotInfo, inspect_model, inspect_snapshot, scan_cache
from .verify import BadFile, VerifyReport, bytes_to_verify, verify, verify_model

__all__ = [
    "BadFile", "CachedModel", "RefetchJob", "RepairReport", "SnapshotInfo", "VerifyReport", "bytes_to_verify",
    "hash_file", "inspect_model", "inspect_snapshot", "remove_bad", "repair", "scan_cache", "verify",
    "verify_model",
]
