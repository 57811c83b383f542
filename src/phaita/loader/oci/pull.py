"""A ModelPack artifact into the standard Hugging Face cache, with every guarantee of a Hub fetch.

:func:`fetch_from_registry` is one attempt (the caller's retry policy runs it again after a transient
failure): read the manifest (a tag or a digest), refuse what is not a model, compare a lock file's
hashes with the manifest before any byte is fetched, then bring the files in. Small (non-LFS) files
are read whole and named by their git blob id; tar layers are fetched, checked and unpacked; every
LFS file goes through the loader's own :class:`~phaita.loader.transfer.file.FileTransfer` (parallel
ranges, resume from ``.incomplete``, stall and deadline handling, the crash sidecar), its sha256
checked against the layer digest before ``blobs/<sha256>`` exists. Only then is the snapshot linked
and ``refs/<revision>`` written (:func:`~phaita.loader.transfer.snapshot.fetch_snapshot`), so
``hf cache ls``, ``local_files_only`` loads and lock files see an ordinary Hub snapshot.

A snapshot folder needs a commit: the manifest's ``org.opencontainers.image.revision`` (phaita writes
the Hub commit there), else the tag when it is a commit hash, else the first 40 hex digits of the
manifest digest (an artifact another tool pushed).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import filelock
from huggingface_hub.utils import WeakFileLock

from .. import config
from ..cache.layout import RepoCache
from ..cache.lockfile import LockedModel
from ..errors import LockMismatch, LockTimeout
from ..http.deadline import Deadline
from ..hub.listing import RemoteFile, RepoListing, is_commit_hash
from ..hub.selection import Needs
from ..transfer.file import FileTransfer
from ..transfer.snapshot import FetchContext, fetch_snapshot
from . import blobs, modelpack, signatures
from .client import LiveHeaders, Registry
from .reference import Reference, for_model

logger = logging.getLogger("phaita.model_loader")


def read_model(registry: Registry, ref: Reference, deadline: Deadline) -> modelpack.ModelManifest:
    body, _, digest = registry.get_manifest(ref, deadline)
    return modelpack.parse(body, digest, str(ref), config.max_file_size())


def commit_of(manifest: modelpack.ModelManifest, ref: Reference) -> str:
    if manifest.commit:
        return manifest.commit
    if ref.tag and is_commit_hash(ref.tag):
        return ref.tag
    return manifest.digest.split(":", 1)[1][:40]


def lock_problems(locked: LockedModel, manifest: modelpack.ModelManifest, commit: str) -> list[str]:
    """How the manifest disagrees with the lock (checked before any byte is fetched)."""
    out = [] if commit == locked.commit else [f"the registry's manifest is commit {commit}, the lock pins "
                                              f"{locked.commit}"]
    raw = {l.path: l for l in manifest.layers if l.fmt == "raw"}
    for f in locked.files:
        layer = raw.get(f.path)
        if layer is None:
            if not any(l.fmt != "raw" for l in manifest.layers):
                out.append(f"{f.path}: not in the registry's manifest")
        elif layer.size != f.size:
            out.append(f"{f.path}: {layer.size} bytes in the registry, {f.size} in the lock")
        elif f.sha256 and layer.sha256 != f.sha256:
            out.append(f"{f.path}: sha256 {layer.sha256[:12]}... in the registry, {f.sha256[:12]}... in the lock")
        elif not f.sha256 and layer.git_oid and layer.git_oid != f.git_oid:
            out.append(f"{f.path}: git oid {layer.git_oid[:12]}... in the registry, {f.git_oid[:12]}... in the lock")
    return out


def _lfs(layer: modelpack.Layer) -> bool:
    return layer.lfs if layer.lfs is not None else modelpack.is_lfs(layer.path, layer.size)


def fetch_model(ref: Reference, repo_id: str, revision: str, needs: Needs, ctx: FetchContext, deadline: Deadline,
                *, locked: LockedModel | None = None) -> Path:
    """One attempt: the model at ``ref`` into the cache as ``repo_id`` at ``revision``; the snapshot folder."""
    registry = Registry(ref.host, ctx.timeouts)
    manifest = read_model(registry, ref, deadline)
    commit = commit_of(manifest, ref)
    if locked is not None:
        problems = lock_problems(locked, manifest, commit)
        if problems:
            raise LockMismatch(f"the registry's files of {ref} differ from the lock file: " + "; ".join(problems[:5]))
    repo = RepoCache(ctx.cache_dir, repo_id)
    reg_ctx = dataclasses.replace(ctx, headers=LiveHeaders(registry, ref.repository),
                                  blob_url=lambda f: registry.blob_url(ref.repository, "sha256:" + (f.sha256 or ""),
                                                                       deadline))
    files: list[RemoteFile] = []
    for layer in manifest.layers:
        if layer.fmt != "raw":
            files.extend(_tar_layer(registry, ref, repo, layer, reg_ctx, deadline))
        elif _lfs(layer):
            files.append(RemoteFile(layer.path, layer.size, layer.git_oid, layer.sha256))
        else:
            files.append(_small(ref, repo, layer, reg_ctx, deadline, locked))
    listing = RepoListing(repo_id, commit, tuple(files))
    try:
        path = fetch_snapshot(repo_id, revision, needs, reg_ctx, deadline, listing=listing)
    finally:
        ctx.count(reg_ctx.bytes_received)
    _fetch_signature(registry, ref, manifest.digest, repo, commit, deadline)
    return path


def _small(ref: Reference, repo: RepoCache, layer: modelpack.Layer, ctx: FetchContext, deadline: Deadline,
           locked: LockedModel | None) -> RemoteFile:
    """A small (non-LFS) file: fetched like any other (resume, digest check), then named by its git blob id."""
    if layer.git_oid and repo.blob_path(layer.git_oid).is_file() and \
            repo.blob_path(layer.git_oid).stat().st_size == layer.size:
        return RemoteFile(layer.path, layer.size, layer.git_oid, None)
    remote = RemoteFile(layer.path, layer.size, None, layer.sha256)
    want = locked.get(layer.path) if locked is not None else None
    with _transfer(repo, remote, ctx, deadline) as part:
        return blobs.name_small_file(repo, layer, part, str(ref), deadline.remaining(),
                                     want.git_oid if want is not None and not want.sha256 else None)


@contextmanager
def _transfer(repo: RepoCache, remote: RemoteFile, ctx: FetchContext, deadline: Deadline) -> Iterator[Path]:
    """``remote`` (by its sha256) into ``blobs/oci-<sha256>.incomplete`` with the loader's transfer, under
    the per-blob lock other processes take too; yields the verified part (gone afterwards)."""
    name = f"oci-{remote.sha256}"
    part = repo.incomplete_path(name)
    lock = repo.lock_path(name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with WeakFileLock(lock, timeout=max(deadline.remaining(), 0.01)):
            ctx.budget.enter(deadline, remote.path)
            try:
                FileTransfer(ctx.blob_url(remote), remote, part, ctx, deadline).run()  # type: ignore[misc]
            finally:
                ctx.budget.leave()
            try:
                yield part
            finally:
                part.unlink(missing_ok=True)
    except filelock.Timeout:
        raise LockTimeout(f"{remote.path}: another process is downloading it; waited {deadline.seconds:g} s") from None


def _tar_layer(registry: Registry, ref: Reference, repo: RepoCache, layer: modelpack.Layer, ctx: FetchContext,
               deadline: Deadline) -> list[RemoteFile]:
    """A tar layer: fetched like a large file (ranges, resume, digest), unpacked, then deleted."""
    archive = RemoteFile(layer.path + ".tar", layer.size, None, layer.sha256)
    with _transfer(repo, archive, ctx, deadline) as part:
        return blobs.unpack_tar(repo, layer, part, str(ref), deadline.remaining())


def _fetch_signature(registry: Registry, ref: Reference, digest: str, repo: RepoCache, commit: str,
                     deadline: Deadline) -> None:
    """The model's signature referrer, if the registry holds one, into ``signatures/<commit>/model.sig``."""
    try:
        sig = signatures.fetch_signature(ref, digest, registry=registry, deadline=deadline)
    except Exception as exc:  # a signature is an extra: its absence or a broken one is checked by the verifier
        logger.info("%s: no signature fetched from %s (%s)", repo.repo_id, ref, type(exc).__name__)
        return
    if sig is not None:
        path = repo.signature_path(commit)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(sig)
        tmp.replace(path)


def fetch_from_registry(repo_id: str, revision: str, needs: Needs, ctx: FetchContext, deadline: Deadline,
                        endpoint: str, *, listing: RepoListing | None = None,
                        locked: LockedModel | None = None) -> Path:
    """An ``oci://registry/prefix`` endpoint: ``repo_id`` at ``revision`` (or at ``listing``'s commit)."""
    tag = listing.commit if listing is not None else (locked.commit if locked is not None else revision)
    return fetch_model(for_model(endpoint, repo_id, tag), repo_id, revision, needs, ctx, deadline, locked=locked)


def resolve_commit(endpoint: str, repo_id: str, revision: str, timeouts: config.Timeouts, deadline: Deadline) -> str:
    """The commit a registry's tag for ``revision`` names now (a warm load's freshness check)."""
    ref = for_model(endpoint, repo_id, revision)
    return commit_of(read_model(Registry(ref.host, timeouts), ref, deadline), ref)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def repo_id_of(manifest: modelpack.ModelManifest, ref: Reference) -> str:
    """The cache name of a model read by reference: the repo id it carries, else its registry path."""
    named = manifest.repo_id
    if named and _REPO_ID.match(named) and ".." not in named:
        return named
    return ref.repository
