"""Models imported into the station's cache while it runs: served once verified, never before.

:func:`rescan` looks at the cache again (no network) and judges only what is new: a snapshot it does
not serve yet, or a refused one whose files changed since it was judged (:func:`~.mirror.fingerprint`:
sizes and mtimes, no hashing). Such a snapshot goes through the same checks as at start (complete,
every file hashing to what the cache recorded); only when it passes is it added to the index, and
only then do its branch names point at it. Until then, a branch that moved to a commit still being
imported keeps naming the commit that was verified before. Served snapshots are not hashed again
(a changed file withdraws its snapshot at the next request, :meth:`~.mirror.CacheIndex.resolve`);
a signature (``model.sig``) imported after its snapshot is added to it (the client verifies it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from phaita.hubserver.store import RepoFile
from phaita.loader.cache.layout import RepoCache
from phaita.loader.cache.scan import inspect_snapshot, scan_cache
from phaita.loader.hashing import GIT, hash_file
from phaita.loader.hub.selection import SIGNATURE_FILE

from .mirror import CacheIndex, RefusedSnapshot, ServedSnapshot, _refusal, _served, fingerprint


@dataclass
class RescanReport:
    added: list[str] = field(default_factory=list)  # "repo commit"
    refused: list[str] = field(default_factory=list)  # "repo commit: reason"
    files_hashed: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [f"# rescan: now serving {a}" for a in self.added] + [f"# rescan: not served: {r}" for r in self.refused]


def rescan(index: CacheIndex) -> RescanReport:
    """Add what was imported into the cache since the last look, once verified (see the module's text)."""
    from phaita.loader.cache.verify import verify_snapshot

    started = time.monotonic()
    report = RescanReport()
    for model in scan_cache(index.cache_dir):
        repo_id = model.repo_id
        for snap in model.snapshots:
            if snap.commit is None:
                continue
            with index.lock:
                served = index.served.get(repo_id, {}).get(snap.commit)
                if served is not None:  # a branch may have been pointed at a commit already served
                    for ref in snap.refs:
                        index.refs.setdefault(repo_id, {})[ref] = snap.commit
                    _add_signature(index, served)
                    continue
                before = index.checked.get((repo_id, snap.commit))
            state = fingerprint(index.cache_dir, repo_id, snap.commit)
            if state == before:
                continue  # refused, and nothing changed since
            # Judge the snapshot as it is now, not as the scan above saw it: a file linked in between
            # would otherwise be judged missing under a fingerprint that already has it, and never again.
            snap = inspect_snapshot(index.cache_dir, repo_id, snap.commit, snap.refs)
            bad: dict[tuple[str, str], str] = {}
            if snap.path is not None and snap.complete:
                for line in verify_snapshot(index.cache_dir, repo_id, snap.path):
                    path, _, reason = line.partition(": ")
                    bad[(snap.commit, path)] = reason
                report.files_hashed += snap.files
                report.bytes_hashed += snap.size_on_disk
            reason = _refusal(index.cache_dir, repo_id, snap, bad)
            result = _served(index.cache_dir, repo_id, snap) if reason is None else reason
            if not isinstance(result, str) and fingerprint(index.cache_dir, repo_id, snap.commit) != state:
                result = "its files changed while they were verified; judged again at the next rescan"
                state = ("changing",)
            with index.lock:
                if isinstance(result, str):
                    index.checked[(repo_id, snap.commit)] = state
                    index.refused = [r for r in index.refused if (r.repo_id, r.commit) != (repo_id, snap.commit)]
                    index.refused.append(RefusedSnapshot(repo_id, snap.commit, snap.refs, result))
                    report.refused.append(f"{repo_id} {snap.commit}: {result}")
                    continue
                index.served.setdefault(repo_id, {})[result.commit] = result
                for f in result.files:
                    st = os.stat(f.abspath)
                    index.stamps[f.abspath] = (st.st_size, st.st_mtime_ns)
                for ref in snap.refs:
                    index.refs.setdefault(repo_id, {})[ref] = result.commit
                index.checked.pop((repo_id, snap.commit), None)
                index.refused = [r for r in index.refused if (r.repo_id, r.commit) != (repo_id, snap.commit)]
                report.added.append(f"{repo_id} {result.commit}")
    index.files_hashed += report.files_hashed
    index.bytes_hashed += report.bytes_hashed
    report.seconds = time.monotonic() - started
    return report


def _add_signature(index: CacheIndex, snap: ServedSnapshot) -> None:
    """A signature imported after its snapshot was served: serve it too (clients check it themselves)."""
    if any(f.path == SIGNATURE_FILE for f in snap.files):
        return
    signature = RepoCache(index.cache_dir, snap.repo_id).signature_path(snap.commit)
    try:
        st = os.stat(signature)
        oid = hash_file(signature, GIT, st.st_size)
    except OSError:
        return
    snap.files = sorted([*snap.files, RepoFile(SIGNATURE_FILE, str(signature), st.st_size, oid, None, None)],
                        key=lambda f: f.path)
    index.stamps[str(signature)] = (st.st_size, st.st_mtime_ns)
