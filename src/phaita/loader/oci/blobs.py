"""Files that arrive whole from a registry (small files, members of tar layers) into ``blobs/``.

A small (non-LFS) file is read whole, its sha256 checked against the layer digest, and named by its
git blob id as the Hub names it; a member of a tar layer (the tar checked against its digest first)
is named by sha256 when it is an LFS file by the Hub's rule, else by git blob id. Either way the blob
appears by a rename of a fsynced temporary file, under huggingface_hub's per-blob lock, so a reader
never sees part of one.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import IO

from huggingface_hub.utils import WeakFileLock

from ..cache.layout import RepoCache
from ..errors import ChecksumMismatch, UnsafeRepository
from ..hashing import StreamHasher
from ..hub.listing import RemoteFile, check_relative_path
from .modelpack import Layer, is_lfs


def _place(repo: RepoCache, name: str, data_source, size: int, timeout: float) -> None:
    """Write ``blobs/<name>`` from ``data_source`` (an iterable of bytes) whole or not at all."""
    blob = repo.blob_path(name)
    lock = repo.lock_path(name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock, timeout=max(timeout, 0.01)):
        if blob.is_file() and blob.stat().st_size == size:
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        tmp = blob.with_name(f".{name}.{os.getpid()}.oci.tmp")
        try:
            with open(tmp, "wb") as fh:
                for chunk in data_source:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, blob)
        finally:
            tmp.unlink(missing_ok=True)


def small_file(repo: RepoCache, layer: Layer, body: bytes, ref: str, timeout: float) -> RemoteFile:
    """A small file read whole: checked against its digest (and git id, when the manifest gives one)."""
    if len(body) != layer.size or hashlib.sha256(body).hexdigest() != layer.sha256:
        raise ChecksumMismatch(f"{layer.path}: content does not match the layer digest {layer.digest[:19]}... of "
                               f"{ref}; nothing was kept", layer.path)
    git = StreamHasher("git", len(body))
    git.update(body)
    oid = git.hexdigest()
    if layer.git_oid and oid != layer.git_oid:
        raise ChecksumMismatch(f"{layer.path}: its git blob id differs from the manifest's annotation ({ref})",
                               layer.path)
    _place(repo, oid, [body], len(body), timeout)
    return RemoteFile(layer.path, len(body), oid, None)


def _members(archive: tarfile.TarFile, ref: str):
    for member in archive:
        if member.isdir():
            continue
        if not member.isreg():
            raise UnsafeRepository(f"{ref}: a tar layer holds {member.name!r}, which is not a regular file "
                                   f"(links and devices are refused)")
        yield member


def _chunks(fh: IO[bytes], hashers: list) -> "list[bytes]":
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return
        for h in hashers:
            h.update(chunk)
        yield chunk


def unpack_tar(repo: RepoCache, layer: Layer, archive_path: Path, ref: str, timeout: float) -> list[RemoteFile]:
    """Every file of a verified tar layer, as blobs named the Hub's way; their listing entries."""
    mode = "r:gz" if layer.fmt == "tar+gzip" else "r:"
    out = []
    repo.blobs_dir.mkdir(parents=True, exist_ok=True)
    tmp = repo.blobs_dir / f".tar-member.{os.getpid()}.oci.tmp"
    try:
        with tarfile.open(archive_path, mode) as archive:
            for member in _members(archive, ref):
                path = check_relative_path(member.name[2:] if member.name.startswith("./") else member.name)
                lfs = is_lfs(path, member.size)
                sha, git = hashlib.sha256(), StreamHasher("git", member.size)
                with archive.extractfile(member) as fh, open(tmp, "wb") as dst:  # type: ignore[union-attr]
                    for chunk in _chunks(fh, [sha, git]):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                name = sha.hexdigest() if lfs else git.hexdigest()
                lock = repo.lock_path(name)
                lock.parent.mkdir(parents=True, exist_ok=True)
                with WeakFileLock(lock, timeout=max(timeout, 0.01)):
                    os.replace(tmp, repo.blob_path(name))
                out.append(RemoteFile(path, member.size, git.hexdigest(), sha.hexdigest() if lfs else None))
    except (tarfile.TarError, EOFError) as exc:
        raise UnsafeRepository(f"{ref}: a tar layer of {layer.path!r} cannot be read ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
