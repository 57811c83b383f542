"""The station mirror: a Hugging Face cache served read-only as a Hub, for the machines of one site.

``phaita hub serve --cache [DIR]`` runs it. At start every snapshot of the cache is checked once,
with no network: it is served only when it is complete (judged as ``phaita models status`` does,
and against huggingface_hub's tree listing when that is the only one recorded) and every file in
it hashes to what the cache recorded (``phaita models verify``'s rule: a listing, else the blob's
name). The result is an in-memory index; requests read the index and the verified files, and
nothing is hashed again. Partial snapshots, files without a recorded hash and ``.incomplete``
downloads are invisible. A snapshot's OpenSSF signature (``signatures/<commit>/model.sig``) is
served as the repository's root ``model.sig``, which the loader puts beside the client's snapshot.
Branches and tags resolve through ``refs/`` to the cached commit.

The HTTP side is :mod:`phaita.station.server` (the Hub's routes, headers, Range, HEAD and error
codes of :mod:`phaita.hubserver`, given this index as its repository store). Models imported into
the cache later appear after :func:`phaita.station.rescan.rescan` verified them, without a restart.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from phaita.loader.cache import expected
from phaita.loader.cache.layout import RepoCache
from phaita.loader.cache.scan import SnapshotInfo, scan_cache
from phaita.loader.cache.verify import verify_model
from phaita.loader.hashing import GIT, hash_file, lfs_pointer, lfs_pointer_oid
from phaita.loader.hub.listing import is_commit_hash
from phaita.hubserver.store import RepoFile
from phaita.loader.hub.selection import SIGNATURE_FILE

Hashed = Callable[[int], None]


@dataclass
class ServedSnapshot:
    repo_id: str
    commit: str
    refs: list[str]
    files: list[RepoFile]  # sorted by path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class RefusedSnapshot:
    repo_id: str
    commit: str | None
    refs: list[str]
    reason: str


@dataclass
class CacheIndex:
    """What the mirror serves: built once at start by :func:`build_index`."""

    cache_dir: Path
    served: dict[str, dict[str, ServedSnapshot]] = field(default_factory=dict)  # repo -> commit -> snapshot
    refs: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> ref name -> served commit
    refused: list[RefusedSnapshot] = field(default_factory=list)
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (size, mtime_ns) when verified
    files_hashed: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0
    checked: dict[tuple[str, str], tuple] = field(default_factory=dict)  # refused (repo, commit) -> its state then
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # requests vs rescans

    @property
    def snapshots(self) -> list[ServedSnapshot]:
        return [s for repo in sorted(self.served) for s in self.served[repo].values()]

    # -- the repository store the hub's handlers ask
    def repo_exists(self, repo_id: str) -> bool:
        return repo_id in self.served

    def resolve(self, repo_id: str, revision: str) -> ServedSnapshot | None:
        """The served snapshot a branch, tag or commit names, or None (never a partial one).

        A snapshot whose files changed on disk since they were verified is withdrawn (a few
        ``stat`` calls per request: no re-hashing).
        """
        with self.lock:
            snapshots = self.served.get(repo_id, {})
            commit = revision if revision in snapshots else self.refs.get(repo_id, {}).get(revision)
            snap = snapshots.get(commit) if commit else None
            if snap is not None and not all(self._unchanged(f.abspath) for f in snap.files):
                self.withdraw(snap, "a file changed on disk after it was verified")
                return None
            return snap

    def _unchanged(self, path: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return self.stamps.get(path) == (st.st_size, st.st_mtime_ns)

    def withdraw(self, snap: ServedSnapshot, reason: str) -> None:
        self.checked[(snap.repo_id, snap.commit)] = ("withdrawn",)  # until its files change again
        self.served.get(snap.repo_id, {}).pop(snap.commit, None)
        refs = self.refs.get(snap.repo_id, {})
        for name in [n for n, c in refs.items() if c == snap.commit]:
            del refs[name]
        if not self.served.get(snap.repo_id):
            self.served.pop(snap.repo_id, None)
        self.refused.append(RefusedSnapshot(snap.repo_id, snap.commit, snap.refs, reason))
        print(f"# withdrawn: {snap.repo_id} {snap.commit}: {reason}", file=sys.stderr, flush=True)


def build_index(cache_dir: str | os.PathLike[str], names: Iterable[str] | None = None,
                on_bytes: Hashed | None = None) -> CacheIndex:
    """Check every snapshot of the cache once and index the ones that may be served."""
    started = time.monotonic()
    index = CacheIndex(Path(cache_dir))
    for model in scan_cache(index.cache_dir, names):
        report = verify_model(index.cache_dir, model.repo_id, on_bytes=on_bytes)
        index.files_hashed += report.files_checked
        index.bytes_hashed += report.bytes_checked
        bad = {(b.commit, b.path): b.reason for b in report.bad}
        for snap in model.snapshots:
            reason = _refusal(index.cache_dir, model.repo_id, snap, bad)
            if reason is not None:
                index.refused.append(RefusedSnapshot(model.repo_id, snap.commit, snap.refs, reason))
                if snap.commit:
                    index.checked[(model.repo_id, snap.commit)] = fingerprint(index.cache_dir, model.repo_id,
                                                                              snap.commit)
                continue
            served = _served(index.cache_dir, model.repo_id, snap)
            if isinstance(served, str):
                index.refused.append(RefusedSnapshot(model.repo_id, snap.commit, snap.refs, served))
                continue
            index.served.setdefault(model.repo_id, {})[served.commit] = served
            for f in served.files:
                st = os.stat(f.abspath)
                index.stamps[f.abspath] = (st.st_size, st.st_mtime_ns)
            for ref in snap.refs:
                index.refs.setdefault(model.repo_id, {})[ref] = served.commit
    index.seconds = time.monotonic() - started
    return index


def fingerprint(cache_dir: Path, repo_id: str, commit: str) -> tuple:
    """A snapshot's state on disk (names, sizes, mtimes of its files; listings; partial blobs), to tell
    whether a refused snapshot changed since it was judged: no hashing."""
    repo = RepoCache(cache_dir, repo_id)
    state = []
    for path, link in sorted(repo.linked_files(commit).items()):
        try:
            st = os.stat(link)
            state.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            state.append((path, -1, 0))
    extra = [repo.path / "trees" / f"{commit}.json", *(p for p in repo.blob_entries()
                                                          if p.name.endswith(".incomplete"))]
    listing = repo.load_listing(commit) is not None
    for path in extra:
        try:
            st = os.stat(path)
            state.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            pass
    return (listing, tuple(state))


def _refusal(cache_dir: Path, repo_id: str, snap: SnapshotInfo, bad: dict) -> str | None:
    """Why this snapshot must not be served (None: it may be).

    Complete means: against phaita's listing, every file the load needs (``models status``);
    against huggingface_hub's tree listing, every file it listed; with no listing, judged by the
    contents, refusing anything an interrupted download could have left.
    """
    if snap.commit is None or snap.path is None or not is_commit_hash(snap.commit):
        return "no snapshot" if snap.commit is None else "snapshot folder is not named by a commit"
    wrong = sorted(f"{path}: {reason}" for (commit, path), reason in bad.items() if commit == snap.commit)
    if wrong:
        return "failed verification: " + "; ".join(wrong)
    partial = "partial: " + ", ".join(snap.missing + [f"wrong size: {w}" for w in snap.wrong_size])
    repo = RepoCache(cache_dir, repo_id)
    if repo.load_listing(snap.commit) is not None:
        return None if snap.complete else partial
    linked = repo.linked_files(snap.commit)
    tree = expected.load_hf_tree(repo.path, snap.commit)
    if tree is not None:
        missing = sorted(f.path for f in tree.files if f.path not in linked)
        return "partial: missing " + ", ".join(missing) if missing else None
    if not snap.complete:
        return partial
    if snap.content == "no weights":
        return "partial: no weights and no listing to say that none were asked for"
    missing = missing_shards(snap.path, linked)
    if missing:
        return "partial: missing " + ", ".join(missing)
    if any(p.name.endswith(".incomplete") for p in repo.blob_entries()):
        return "partial: a download into this model did not finish, and no listing says which snapshot it was for"
    return None


def missing_shards(snapshot: Path, linked: dict[str, Path]) -> list[str]:
    """Weight shards a ``*.index.json`` in the snapshot names that are not there."""
    missing: set[str] = set()
    for name in (n for n in linked if n.endswith(".index.json") and "/" not in n):
        try:
            weight_map = json.loads((snapshot / name).read_text())["weight_map"]
            missing |= {shard for shard in weight_map.values() if shard not in linked}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            missing.add(f"(unreadable {name})")
    return sorted(missing)


def _served(cache_dir: Path, repo_id: str, snap: SnapshotInfo) -> ServedSnapshot | str:
    """The snapshot's files with their hashes, or why it cannot be served."""
    repo = RepoCache(cache_dir, repo_id)
    own = repo.load_listing(snap.commit)
    listing = expected.recorded_listing(repo.path, snap.commit, own)
    root = os.path.realpath(cache_dir)
    files = []
    for exp in expected.expected_files(repo.path, snap.commit, repo.linked_files(snap.commit), own):
        if exp.algorithm is None or exp.digest is None:
            return f"{exp.path}: no recorded hash ({exp.check or 'no listing, no hash-named blob'})"
        if os.path.commonpath([root, str(exp.content)]) != root:  # a link out of the cache is never served
            return f"{exp.path}: links outside the cache folder"
        size = os.stat(exp.content).st_size
        if exp.algorithm == expected.SHA256:
            remote = listing.get(exp.path) if listing is not None else None
            oid, pointer_size = lfs_pointer_oid(exp.digest, size), len(lfs_pointer(exp.digest, size))
            if remote is not None and expected.algorithm_of(remote.blob_id) == expected.GIT:
                oid = remote.blob_id  # the Hub's own value
            files.append(RepoFile(exp.path, str(exp.content), size, oid, exp.digest, pointer_size))
        else:
            files.append(RepoFile(exp.path, str(exp.content), size, exp.digest, None, None))
    if not files:
        return "empty snapshot"
    signature = repo.signature_path(snap.commit)  # served at the repository's root, as a publisher ships it
    if signature.is_file() and not any(f.path == SIGNATURE_FILE for f in files):
        size = signature.stat().st_size
        files.append(RepoFile(SIGNATURE_FILE, str(signature), size, hash_file(signature, GIT, size), None, None))
    return ServedSnapshot(repo_id, snap.commit, list(snap.refs), sorted(files, key=lambda f: f.path))


def summary_lines(index: CacheIndex) -> list[str]:
    """What the mirror serves and refuses, as ``# ...`` lines after its URL."""
    lines = [f"# cache: {index.cache_dir}",
             f"# verified: {index.files_hashed} files, {index.bytes_hashed} bytes in {index.seconds:.2f} s",
             f"# serving: {len(index.snapshots)} snapshot(s) of {len(index.served)} model(s), read-only; "
             f"not serving: {len(index.refused)}"]
    for s in index.snapshots:
        refs = f" ({', '.join(s.refs)})" if s.refs else ""
        lines.append(f"# repo: {s.repo_id} {s.commit}{refs}: {len(s.files)} files, {s.size} bytes")
    for r in index.refused:
        lines.append(f"# not served: {r.repo_id} {r.commit or '-'}: {r.reason}")
    return lines
