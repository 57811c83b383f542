"""Fetch: bring one commit of a repository into the cache, whole and verified, within a deadline.

One call of :func:`fetch_snapshot` is one *attempt*. Inside it, a transfer that breaks after
making progress (TCP reset, early close, stall) resumes at once with an HTTP Range request; only
a break with no progress, or the attempt's deadline, ends the attempt (the retry policy then
decides about the next one). Bytes land in ``blobs/<etag>.incomplete``, are hashed as they
arrive, and become ``blobs/<etag>`` only after size and hash match the hub's listing and the data
is on disk (fsync), so a crash or power cut never leaves a complete-looking wrong file.
One file lock per blob (huggingface_hub's) makes concurrent processes transfer each file once.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol
from urllib.parse import quote

import filelock
import httpx2
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import WeakFileLock

from .cache import RepoCache
from .config import Timeouts
from .empty_break import EmptyBreaks
from .errors import BadResponse, ChecksumMismatch, DiskFull, LockTimeout, TransferIncomplete
from .hashing import StreamHasher, feed
from .listing import RemoteFile, RepoListing, fetch_listing
from .net import Deadline, stream
from .selection import Needs, select_files

logger = logging.getLogger("phaita.model_loader")
DISK_MARGIN = 64 << 20  # leave room for the filesystem itself (less for small downloads, see below)


class Progress(Protocol):
    """Receives byte counts as files arrive (a progress bar, a counter in a test)."""

    def start(self, name: str, total: int, initial: int) -> None: ...
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, name: str, total: int, initial: int) -> None: pass
    def update(self, n: int) -> None: pass
    def close(self) -> None: pass


@dataclass
class FetchContext:
    """Everything an attempt needs besides the repository and the deadline."""

    cache_dir: Path
    endpoint: str
    headers: Mapping[str, str] = field(repr=False)  # holds the token
    timeouts: Timeouts
    progress: Progress = field(default_factory=NoProgress)
    bytes_received: int = 0  # counted across attempts, for reports


def fetch_snapshot(
    repo_id: str,
    revision: str,
    needs: Needs,
    ctx: FetchContext,
    deadline: Deadline,
    listing: RepoListing | None = None,
) -> Path:
    """Fetch what ``needs`` asks for at ``revision``; return the snapshot folder."""
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
    for file in wanted:
        download_blob(repo_id, listing.commit, file, ctx, deadline)
        repo.link_into_snapshot(listing.commit, file)
    repo.write_ref(revision, listing.commit)
    status = repo.check_files(listing.commit, wanted)
    if not status.complete:
        raise ChecksumMismatch(f"snapshot incomplete after fetch ({'; '.join(status.problems)})")
    return repo.snapshot_dir(listing.commit)


def check_disk_space(repo: RepoCache, files: list[RemoteFile]) -> None:
    needed = 0
    for f in files:
        if repo.blob_path(f.etag).exists():
            continue
        part = repo.incomplete_path(f.etag)
        needed += f.size - (part.stat().st_size if part.exists() else 0)
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
        return blob
    lock = repo.lock_path(file.etag)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with WeakFileLock(lock, timeout=max(deadline.remaining(), 0.01)):
            if _whole(blob, file):  # another process finished it while we waited
                return blob
            blob.unlink(missing_ok=True)  # wrong size: never trust it
            # Built here, not with hf_hub_url: its template is fixed when huggingface_hub is imported,
            # and HF_ENDPOINT may be set later.
            url = f"{ctx.endpoint}/{repo_id}/resolve/{commit}/{quote(file.path)}"
            _transfer(url, file, repo, ctx, deadline)
    except filelock.Timeout:
        raise LockTimeout(f"{file.path}: another process is downloading it; waited {deadline.seconds:g} s") from None
    return blob


def _whole(blob: Path, file: RemoteFile) -> bool:
    try:
        return blob.stat().st_size == file.size
    except OSError:
        return False


def _transfer(url: str, file: RemoteFile, repo: RepoCache, ctx: FetchContext, deadline: Deadline) -> None:
    part = repo.incomplete_path(file.etag)
    part.parent.mkdir(parents=True, exist_ok=True)
    hasher = StreamHasher.for_blob(file.sha256, file.size)
    with open(part, "ab") as out:
        offset = out.tell()
        if offset > file.size:
            out.truncate(0)
            offset = 0
        if offset:
            feed(hasher, part, limit=offset)
        ctx.progress.start(file.path, file.size, offset)
        empty = EmptyBreaks(deadline)
        try:
            while offset < file.size:
                deadline.check(file.path)
                gained = 0
                try:
                    offset, gained = _one_request(url, file, out, offset, hasher, ctx, deadline)
                    if offset < file.size:
                        raise TransferIncomplete(f"{file.path}: connection closed at byte {offset} of {file.size}")
                except (httpx2.TransportError, TransferIncomplete) as exc:
                    offset = out.tell()
                    gained = gained or getattr(exc, "gained", 0)
                    if gained <= 0 and not deadline.expired() and empty.retry(exc, file.path):
                        continue
                    if gained <= 0 or deadline.expired():
                        raise
                    empty.progressed()
                    logger.info("%s: transfer broke at byte %d of %d (%s); resuming", file.path, offset,
                                file.size, type(exc).__name__)
            out.flush()
            os.fsync(out.fileno())
        finally:
            ctx.progress.close()
    # (a file no source gave a hash for was checked by size only; that is logged once, in listing)
    if file.hash_known and not hasher.matches(file.etag):
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{file.path}: content does not match the hub's hash; the file was discarded",
                               file.path)
    os.replace(part, repo.blob_path(file.etag))


def _one_request(url: str, file: RemoteFile, out, offset: int, hasher: StreamHasher,
                 ctx: FetchContext, deadline: Deadline) -> tuple[int, int]:
    """One GET from ``offset``; returns (new offset, bytes gained). Raises on transport errors."""
    headers = {**ctx.headers, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    gained, answered = 0, False
    try:
        with stream("GET", url, headers=headers, deadline=deadline, timeouts=ctx.timeouts, what=file.path) as response:
            answered = True
            if offset and response.status_code == 200:  # server ignored Range: start over
                out.truncate(0)
                hasher.reset()
                ctx.progress.update(-offset)
                offset = 0
            elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise BadResponse(f"{file.path}: asked for bytes from {offset}, got "
                                  f"{response.headers.get('Content-Range')!r}")
            for chunk in response.iter_raw():  # unbuffered: a break loses no received bytes
                if offset + len(chunk) > file.size:
                    raise ChecksumMismatch(f"{file.path}: the hub sent more than the {file.size} bytes it announced",
                                           file.path)
                out.write(chunk)
                hasher.update(chunk)
                offset += len(chunk)
                gained += len(chunk)
                ctx.bytes_received += len(chunk)
                ctx.progress.update(len(chunk))
                deadline.check(file.path)
    except (httpx2.TransportError, TransferIncomplete) as exc:
        exc.gained = gained  # type: ignore[attr-defined]
        exc.answered = answered  # type: ignore[attr-defined]
        raise
    except HfHubHTTPError as exc:
        if getattr(exc.response, "status_code", None) == 416:  # our partial file is not theirs
            out.truncate(0)
            hasher.reset()
            raise TransferIncomplete(f"{file.path}: the hub refused the resume range; restarting") from None
        raise
    return offset, gained
