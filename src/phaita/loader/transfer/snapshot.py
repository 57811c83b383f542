"""Fetch: bring one commit of a repository into the cache, whole and verified, within a deadline.

One call of :func:`fetch_snapshot` is one *attempt*. Its files are fetched concurrently
(``PHAITA_MAX_WORKERS``, smallest first), a large one over several byte-range streams
(:mod:`.transfer`), all within one connection budget (:mod:`.links`). Inside an attempt, a
transfer that breaks after making progress resumes at once with an HTTP Range request; only a
break with no progress, or the attempt's deadline, ends the attempt (the retry policy then decides
about the next one). The first failure is the attempt's error: a permanent one stops the other
files at once (they keep what they have on disk), a transient one lets them finish first.
Bytes land in ``blobs/<etag>.incomplete``, are hashed in order, and become ``blobs/<etag>`` only
after size and hash match the hub's listing and the data is on disk (fsync), so a crash or power
cut never leaves a complete-looking wrong file. One file lock per blob (huggingface_hub's) makes
concurrent processes transfer each file once. What happens is reported as events (:mod:`.events`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote

import filelock
from huggingface_hub.utils import WeakFileLock

from . import sidecar
from ..cache.layout import RepoCache
from ..config import Parallelism, Timeouts
from ..errors import ChecksumMismatch, DiskFull, LockTimeout
from ..errors import redact
from ..events import Emitter, FileDone, FileFailed, Plan, PlannedFile
from ..http.links import ConnectionBudget, LinkState
from ..hub.listing import RemoteFile, RepoListing, fetch_listing
from ..http.deadline import Deadline
from ..http.failures import classify
from ..hub.selection import SIGNATURE_FILE, Needs, select_files
from .file import FileTransfer

logger = logging.getLogger("phaita.model_loader")
DISK_MARGIN = 64 << 20  # leave room for the filesystem itself (less for small downloads, see below)


@dataclass
class FetchContext:
    """Everything an attempt needs besides the repository and the deadline (shared by its threads)."""

    cache_dir: Path
    endpoint: str
    headers: Mapping[str, str] = field(repr=False)  # holds the token
    timeouts: Timeouts
    events: Emitter = field(default_factory=Emitter, repr=False)
    parallel: Parallelism = field(default_factory=Parallelism)
    bytes_received: int = 0  # counted across attempts, for reports
    # where a file's bytes are (None: the hub's /resolve/ URL); an OCI registry gives its blob URL
    blob_url: Callable[[RemoteFile], str] | None = field(default=None, repr=False)
    links: LinkState = field(init=False, repr=False)
    budget: ConnectionBudget = field(init=False, repr=False)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.links = LinkState(self.parallel.streams_per_file, self.events)
        self.budget = ConnectionBudget(self.parallel.connections)

    def count(self, n: int) -> None:
        with self._count_lock:
            self.bytes_received += n


def fetch_snapshot(
    repo_id: str,
    revision: str,
    needs: Needs,
    ctx: FetchContext,
    deadline: Deadline,
    listing: RepoListing | None = None,
) -> Path:
    """Fetch what ``needs`` asks for at ``revision``; return the snapshot folder."""
    ctx.cancel.clear()
    if listing is None:
        listing = fetch_listing(repo_id, revision, headers=ctx.headers, deadline=deadline,
                                timeouts=ctx.timeouts, endpoint=ctx.endpoint)
    repo = RepoCache(ctx.cache_dir, repo_id)
    repo.save_listing(listing)

    def read_index(file: RemoteFile) -> bytes:
        download_blob(repo_id, listing.commit, file, ctx, deadline)
        return repo.link_into_snapshot(listing.commit, file).read_bytes()

    wanted = select_files(listing.files, needs, read_index)
    check_disk_space(repo, wanted)
    repo.snapshot_dir(listing.commit).mkdir(parents=True, exist_ok=True)
    ctx.events.emit(Plan(repo_id, listing.commit, tuple(
        PlannedFile(f.path, f.size, _on_disk(repo, f)) for f in wanted)))
    _fetch_all(repo, listing.commit, wanted, ctx, deadline)
    signature = next((f for f in listing.files if f.path == SIGNATURE_FILE and not needs.subfolder), None)
    if signature is not None:
        _place_signature(repo, listing.commit, signature, ctx, deadline)
    status = repo.check_files(listing.commit, wanted)
    if not status.complete:
        raise ChecksumMismatch(f"snapshot incomplete after fetch ({'; '.join(status.problems)})")
    # Only now may refs/<revision> name the commit: a failed fetch leaves no ref to a partial snapshot
    # (plain transformers and `hf` offline find a snapshot through refs/ and do not check it is whole).
    repo.write_ref(revision, listing.commit)
    return repo.snapshot_dir(listing.commit)


def _place_signature(repo: RepoCache, commit: str, file: RemoteFile, ctx: FetchContext, deadline: Deadline) -> None:
    """The repository's ``model.sig``, fetched and verified like any file, then moved to the commit's
    signature place (outside the snapshot, where it would sign itself). A signature already there
    (one the site made with ``phaita models sign``) is kept."""
    target = repo.signature_path(commit)
    if target.exists():
        return
    blob = download_blob(repo.repo_id, commit, file, ctx, deadline)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        shutil.copyfile(blob, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("%s: the repository's %s is kept at %s", repo.repo_id, SIGNATURE_FILE, target)


def _fetch_all(repo: RepoCache, commit: str, files: list[RemoteFile], ctx: FetchContext, deadline: Deadline) -> None:
    """Every file whole and linked; several at once. The first failure is raised (see the module's text)."""
    first_error: list[BaseException] = []
    lock = threading.Lock()

    def one(file: RemoteFile) -> None:
        if ctx.cancel.is_set():
            return
        try:
            download_blob(repo.repo_id, commit, file, ctx, deadline)
            repo.link_into_snapshot(commit, file)
        except BaseException as exc:
            with lock:
                if not first_error:
                    first_error.append(exc)
            # A permanent error ends the attempt at once (the others stop at their next chunk and keep
            # what they have). After a transient one the others finish: the retry needs their bytes,
            # and stopping them would throw away what is already in flight.
            if not classify(exc).transient:
                ctx.cancel.set()
            raise

    todo = sorted(files, key=lambda f: f.size)  # small files first: configs are ready early
    if ctx.parallel.workers <= 1 or len(todo) <= 1:
        for file in todo:
            one(file)
        return
    with ThreadPoolExecutor(max_workers=min(ctx.parallel.workers, len(todo)), thread_name_prefix="phaita-fetch") as pool:
        futures = [pool.submit(one, f) for f in todo]
        wait(futures, return_when=FIRST_EXCEPTION)
        if first_error:
            for f in futures:
                f.cancel()
    # (leaving the with block waited for every running file: no thread writes after we return)
    if first_error:
        raise first_error[0]


def _on_disk(repo: RepoCache, file: RemoteFile) -> int:
    """Bytes of ``file`` already in the cache: the whole blob, or what a resume will keep."""
    if _whole(repo.blob_path(file.etag), file):
        return file.size
    part = repo.incomplete_path(file.etag)
    ranges = sidecar.load(part, file.etag, file.size)
    return sidecar.total(ranges) if ranges is not None else min(sidecar.trusted_prefix(part), file.size)


def check_disk_space(repo: RepoCache, files: list[RemoteFile]) -> None:
    needed = sum(f.size - _on_disk(repo, f) for f in files)
    if needed <= 0:
        return
    repo.blobs_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(repo.blobs_dir).free
    # Keep a margin proportional to the download (at most 64 MiB): a 100 kB tokenizer must not
    # be refused on a disk with 50 MB free, but a 5 GB model must not fill the disk to the brim.
    margin = min(DISK_MARGIN, max(1 << 20, needed // 10))
    if needed + margin > free:
        raise DiskFull(f"{_mb(needed)} still to download, {_mb(free)} free", needed=needed, free=free)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def download_blob(repo_id: str, commit: str, file: RemoteFile, ctx: FetchContext, deadline: Deadline) -> Path:
    """Make ``blobs/<etag>`` exist, whole and verified; return its path."""
    repo = RepoCache(ctx.cache_dir, repo_id)
    blob = repo.blob_path(file.etag)
    if _whole(blob, file):
        ctx.events.emit(FileDone(file.path, file.size))
        return blob
    lock = repo.lock_path(file.etag)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with WeakFileLock(lock, timeout=max(deadline.remaining(), 0.01)):
            if not _whole(blob, file):  # another process may have finished it while we waited
                blob.unlink(missing_ok=True)  # wrong size: never trust it
                # Built here, not with hf_hub_url: its template is fixed when huggingface_hub is imported,
                # and HF_ENDPOINT may be set later.
                url = (ctx.blob_url(file) if ctx.blob_url is not None
                       else f"{ctx.endpoint}/{repo_id}/resolve/{commit}/{quote(file.path)}")
                part = repo.incomplete_path(file.etag)
                ctx.budget.enter(deadline, file.path)
                try:
                    FileTransfer(url, file, part, ctx, deadline).run()
                except BaseException as exc:
                    failure = classify(exc)
                    ctx.events.emit(FileFailed(file.path, failure.kind.value, redact(failure.reason)))
                    raise
                finally:
                    ctx.budget.leave()
                os.replace(part, blob)
                sidecar.remove(part)
    except filelock.Timeout:
        raise LockTimeout(f"{file.path}: another process is downloading it; waited {deadline.seconds:g} s") from None
    ctx.events.emit(FileDone(file.path, file.size))
    return blob


def _whole(blob: Path, file: RemoteFile) -> bool:
    try:
        return blob.stat().st_size == file.size
    except OSError:
        return False
