"""``phaita models push``: a verified, complete cached snapshot into an OCI registry as ModelPack.

Only a snapshot that is whole (every file its load needs linked, no dangling link) is pushed, and every
file is re-hashed first: its sha256 (the layer digest) and git blob id must match the blob name the
cache gave it (the Hub's hash). The manifest is built by :mod:`.modelpack` (the same snapshot gives the
same digest), blobs the registry has are skipped (HEAD), a blob pushed earlier in the same run to
another repository of the registry is mounted from there, others are uploaded in chunks
(:mod:`.upload`, resumed after a break), each under the loader's retry policy with a fresh deadline per
attempt. Tags: the commit and the branch (or the tag given in the target). A signature cached at
``RepoCache.signature_path(commit)`` is pushed as a referrer. Pushing the same snapshot again uploads
nothing.

Target: ``oci://HOST/PREFIX`` puts ``org/name`` at ``PREFIX/org/name`` (the mapping of
:mod:`.reference`, the one ``PHAITA_ENDPOINTS`` reads); ``oci://HOST/PATH:TAG`` puts it at ``PATH``
exactly, tagged ``TAG`` and the commit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import config
from ..cache.layout import RepoCache
from .. import errors
from ..errors import ModelDownloadError
from ..http.failures import classify
from ..hashing import GIT_OID_RE, SHA256_RE, StreamHasher, feed
from ..http.deadline import Deadline
from ..hub.listing import is_commit_hash
from ..request.retry import RetryPolicy
from . import modelpack, signatures, upload
from .client import Registry
from .reference import Reference, parse, repository_for, tag_for


class NotPushable(ValueError):
    """A snapshot that may not be pushed (not cached, incomplete, or a file that fails its hash)."""


@dataclass
class PushResult:
    repo_id: str
    commit: str
    reference: str
    digest: str
    tags: list[str]
    files: int
    bytes_uploaded: int
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int
    signature: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Blob:
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None


def verified_files(repo: RepoCache, commit: str) -> list[modelpack.SnapshotFile]:
    """Every file of the snapshot, re-hashed and checked against its blob name; NotPushable otherwise."""
    needs, _ = repo.infer_needs(commit, repo.load_listing(commit))
    status = repo.status(commit, needs)
    if not status.complete:
        raise NotPushable(f"{repo.repo_id}@{commit[:12]}: the cached snapshot is not complete "
                          f"({', '.join(status.problems[:5])}); pull it again first")
    listing = repo.load_listing(commit)
    out = []
    for name, entry in sorted(repo.linked_files(commit).items()):
        if not entry.exists():
            raise NotPushable(f"{repo.repo_id}@{commit[:12]}: {name} is a dangling link; pull the model again")
        real = Path(os.path.realpath(entry))
        size = real.stat().st_size
        sha, git = StreamHasher("sha256", size), StreamHasher("git", size)
        with open(real, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
                git.update(chunk)
        expected = real.name
        if (SHA256_RE.match(expected) and expected != sha.hexdigest()) or \
                (GIT_OID_RE.match(expected) and expected != git.hexdigest()):
            raise NotPushable(f"{repo.repo_id}@{commit[:12]}: {name} does not match its hash (the cached copy "
                              f"changed); run `phaita models verify --repair` first")
        remote = listing.get(name) if listing is not None else None
        lfs = bool(remote.sha256) if remote is not None else bool(SHA256_RE.match(expected))
        out.append(modelpack.SnapshotFile(name, size, sha.hexdigest(), git.hexdigest(), lfs))
    if not out:
        raise NotPushable(f"{repo.repo_id}@{commit[:12]}: the snapshot holds no files")
    return out


def target_for(target: str, repo_id: str, commit: str, branch: str | None) -> tuple[Reference, list[str]]:
    """The repository and the tags a push writes (see the module's text)."""
    ref = parse(target, what="push target", repository_required=False)
    if ref.digest:
        raise ValueError(f"push target {target!r}: a digest cannot be pushed to; give a repository (and a tag)")
    if ref.tag:
        tags = [ref.tag, commit]
        return ref, list(dict.fromkeys(tags))
    tags = [commit] + ([tag_for(branch)] if branch else [])
    return Reference(ref.host, repository_for(ref.repository, repo_id), None), tags


@dataclass
class Pusher:
    """One push run (several models share its registry clients and mount sources)."""

    cache_dir: Path
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 600.0
    chunk_size: int = field(default_factory=config.oci_chunk_size)
    on_file: Callable[[str, int], None] | None = None
    _registries: dict[str, Registry] = field(default_factory=dict)
    _pushed_in: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> digest -> repository

    def _run(self, what: str, fn: Callable[[Deadline], object]) -> object:
        return self.policy.run(lambda n: fn(Deadline.after(self.timeout)), what=what)

    def push(self, repo_id: str, revision: str, target: str, branch: str | None = None) -> PushResult:
        """Push ``repo_id`` at ``revision`` to ``target`` (``branch``: the branch tag, when ``revision`` is a
        commit, as in a lock file); a public error (with advice) when it fails."""
        try:
            return self._push(repo_id, revision, target, branch)
        except (NotPushable, ValueError, ModelDownloadError):
            raise
        except Exception as exc:
            failure = classify(exc)
            cls = {"access_denied": errors.AccessDeniedError, "not_found": errors.ModelNotFoundError,
                   "revision_not_found": errors.RevisionNotFoundError}.get(failure.kind.value, ModelDownloadError)
            text = getattr(exc, "advice", None) or (
                f"Pushing {repo_id} to {target} failed after {getattr(exc, 'attempts_made', 1)} attempt(s): "
                f"{failure.reason}\nRun the same command again: blobs already in the registry are skipped and an "
                f"upload that broke resumes where the registry has it.")
            raise cls(text, model_name=repo_id, models_attempted=[repo_id], attempts=getattr(exc, "attempts_made", 1),
                      cache_dir=self.cache_dir, transient=failure.transient,
                      last_error=errors.UnderlyingError(type(exc).__name__, failure.reason, failure.status_code,
                                                        failure.transient)) from None

    def _push(self, repo_id: str, revision: str, target: str, branch: str | None) -> PushResult:
        repo = RepoCache(self.cache_dir, repo_id)
        commit = repo.read_ref(revision)
        if commit is None or not repo.snapshot_dir(commit).is_dir():
            raise NotPushable(f"{repo_id}@{revision} is not in the cache ({self.cache_dir}); "
                              f"run `phaita models pull {repo_id}` first")
        branch = branch or (None if is_commit_hash(revision) else revision)
        files = verified_files(repo, commit)
        built = modelpack.build(files, repo_id=repo_id, commit=commit, revision=branch)
        ref, tags = target_for(target, repo_id, commit, branch)
        registry = self._registries.setdefault(ref.host, Registry(ref.host))
        uploads = upload.Uploads()
        by_digest = {f"sha256:{f.sha256}": f for f in files}
        blobs = [_Blob(built.config_digest, len(built.config), data=built.config)] + [
            _Blob(d, f.size, path=repo.snapshot_dir(commit) / f.path) for d, f in sorted(by_digest.items())]
        for blob in blobs:
            self._run(f"{repo_id}: {blob.digest[:19]}", lambda dl, b=blob: self._blob(registry, ref, b, uploads, dl))
        for tag in tags:
            self._run(f"{repo_id}: tag {tag}", lambda dl, t=tag: signatures._put_manifest(
                registry, ref.repository, t, built.manifest, modelpack.MANIFEST_MEDIA_TYPE, dl))
        signed = repo.signature_path(commit).is_file()
        if signed:
            sig = repo.signature_path(commit).read_bytes()
            self._run(f"{repo_id}: signature", lambda dl: signatures.push_signature(
                ref, built.digest, sig, registry=registry, deadline=dl))
        return PushResult(repo_id, commit, str(ref.with_tag(tags[0])), built.digest, tags, len(files),
                          uploads.bytes_sent, uploads.uploaded, uploads.skipped, uploads.mounted, signed)

    def _blob(self, registry: Registry, ref: Reference, blob: _Blob, uploads: upload.Uploads, deadline: Deadline) -> None:
        repo = ref.repository
        known = self._pushed_in.setdefault(registry.host, {})
        opened = None
        if upload.exists(registry, repo, blob.digest, deadline):
            uploads.skipped += 1
            known.setdefault(blob.digest, repo)
            return
        if known.get(blob.digest) not in (None, repo):
            mounted, opened = upload.start(registry, repo, deadline, mount=(blob.digest, known[blob.digest]))
            if mounted:
                uploads.mounted += 1
                return
        if blob.data is not None:
            upload.put_bytes(registry, repo, blob.data, blob.digest, deadline)
            uploads.uploaded += 1
            uploads.bytes_sent += len(blob.data)
        else:
            saved = upload.SavedUploads(self.cache_dir)
            state = uploads.open.get(blob.digest) or saved.load(registry.host, repo, blob.digest)
            uploads.open[blob.digest] = state
            if opened is not None and state.location is None:  # the mount was declined: upload into what it opened
                state.location = opened
            before = state.sent
            try:
                upload.upload_file(registry, repo, blob.path, blob.digest, blob.size, deadline, state,  # type: ignore[arg-type]
                                   self.chunk_size, lambda s: saved.save(registry.host, repo, blob.digest, s))
            finally:
                uploads.bytes_sent += state.sent - before
            uploads.uploaded += 1
            if self.on_file:
                self.on_file(blob.digest, blob.size)
        known.setdefault(blob.digest, repo)
