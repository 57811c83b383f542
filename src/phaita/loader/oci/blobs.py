"""Files that arrive whole from a registry (small files, members of tar layers) into ``blobs/``.

A small (non-LFS) file, fetched by the loader's transfer and checked against its layer digest, is
named by its git blob id as the Hub names it; a member of a tar layer (the tar checked against its digest first)
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
from ..errors import ChecksumMismatch, LockMismatch, UnsafeRepository
from ..hashing import StreamHasher
from ..hub.listing import RemoteFile, check_relative_path
from .modelpack import Layer, is_lfs


def name_small_file(repo: RepoCache, layer: Layer, part: Path, ref: str, timeout: float,
                    locked_oid: str | None = None) -> RemoteFile:
    """A small file whose bytes matched the layer digest (``part``): named ``blobs/<git blob id>``.

    Its git id must match the manifest's annotation and the lock file's, when they give one; else the
    part is deleted and nothing is kept.
    """
    git = StreamHasher("git", layer.size)
    with open(part, "rb") as fh:
        for _ in _chunks(fh, [git]):
            pass
    oid = git.hexdigest()
    if layer.git_oid and oid != layer.git_oid:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{layer.path}: its git blob id differs from the manifest's annotation ({ref})",
                               layer.path)
    if locked_oid and oid != locked_oid:
        part.unlink(missing_ok=True)
        raise LockMismatch(f"{layer.path}: the registry's copy ({ref}) is not the locked file (git oid "
                           f"{oid[:12]}..., the lock says {locked_oid[:12]}...)")
    lock = repo.lock_path(oid)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock, timeout=max(timeout, 0.01)):
        os.replace(part, repo.blob_path(oid))
    return RemoteFile(layer.path, layer.size, oid, None)


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
