"""Make a lock file: resolve each model to a commit and record the files a load needs, with hashes.

One listing request per repository (``/api/models/{repo}/revision/main?blobs=true``: commit, sizes,
git oids, sha256 of LFS files), plus the small ``*.index.json`` of a sharded model, which decides
which shards are needed. The files are chosen by the loader's own selection
(:func:`phaita.loader.hub.selection.select_files`), so a lock names exactly what a load fetches.
Nothing is written to the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from phaita.loader.request import api, load_request
from phaita.loader.errors import ModelDownloadError, UnsafeRepository
from phaita.loader.hub.listing import RemoteFile, RepoListing, fetch_listing
from phaita.loader.cache.lockfile import LockedFile, LockedModel, LockFile, merge_models
from phaita.loader.http.deadline import Deadline, stream
from phaita.loader.request.public_errors import public_error
from phaita.loader.request.options import LoaderOptions
from phaita.loader.request.retry import RetryPolicy, log_retry
from phaita.loader.hub.selection import Needs, select_files

logger = logging.getLogger("phaita.model_loader")
MAX_INDEX_BYTES = 16 * 2**20


@dataclass(frozen=True)
class LockTarget:
    """One model to lock: candidates tried in order (as the components do), what it is loaded as."""

    candidates: tuple[str, ...]
    model_type: str = "auto"
    gguf_file: str | None = None
    component: str | None = None  # "Component/role" for a manifest entry

    def needs(self) -> Needs:
        return Needs(weights=self.model_type != "tokenizer", tokenizer=True, gguf_file=self.gguf_file)


@dataclass
class LockFailure:
    """A model (its candidates) that could not be locked, once, with every component that uses it."""

    target: LockTarget
    error: ModelDownloadError
    components: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": list(self.target.candidates), "component": self.target.component,
                "components": list(self.components), "error": str(self.error),
                "error_type": type(self.error).__name__}


def manifest_targets(profile: str | None = None) -> list[LockTarget]:
    """Every entry of a manifest profile (the same repository may appear for several components)."""
    from phaita.data.manifest import load_manifest

    return [LockTarget(tuple(s.candidates), s.model_type, s.gguf_file, f"{s.component}/{s.role}")
            for s in load_manifest().models(profile)]


def lock_models(targets: Sequence[LockTarget], *, revision: str = "main", profile: str | None = None,
                max_retries: int = 3, timeout: float = 300, token: str | bool | None = None,
                ) -> tuple[LockFile, list[LockFailure]]:
    """Resolve every target; returns the lock of those that resolved and the failures of the others."""
    listings: dict[str, RepoListing] = {}
    entries: list[LockedModel] = []
    failures: dict[tuple[str, ...], LockFailure] = {}
    failed: dict[str, ModelDownloadError] = {}  # a repository is asked once: its error stands for every entry
    for target in targets:
        errors: list[ModelDownloadError] = []
        for name in target.candidates:  # in order, as the components' candidate chain tries them
            if name in failed:
                errors.append(failed[name])
                continue
            req = load_request.prepare(name, model_type=target.model_type, options=LoaderOptions(
                max_retries, timeout, False, token, {"revision": revision, "progress": None}))
            try:
                entries.append(_resolve(name, revision, target, req, listings))
                break
            except ModelDownloadError as exc:
                errors.append(exc)
                failed[name] = exc
                if name != target.candidates[-1]:
                    logger.warning("%s could not be locked (%s); trying the next candidate",
                                   name, exc.last_error or str(exc).splitlines()[0])
        else:
            have = failures.get(target.candidates)
            component = (target.component,) if target.component else ()
            if have is None:
                failures[target.candidates] = LockFailure(target, errors[-1], component)
            else:
                have.components = tuple(dict.fromkeys(have.components + component))
    return LockFile(merge_models(entries), profile), list(failures.values())


def _resolve(repo_id: str, revision: str, target: LockTarget, req: load_request.LoadRequest,
             listings: dict[str, RepoListing]) -> LockedModel:
    try:
        ctx = api.fetch_context(req)
    except Exception as exc:
        raise public_error(exc, repo_id, req) from None
    if ctx.endpoint.startswith("oci://"):  # a lock records the Hub's listing: made where the Hub answers
        raise ValueError(f"a lock file is made from a Hub (or a Hub mirror), not from the registry {ctx.endpoint}: "
                         f"run `phaita models lock` where the Hub is reachable (PHAITA_ENDPOINTS unset or a Hub URL "
                         f"first), then push with `phaita models push --locked`")

    def attempt(n: int) -> LockedModel:
        deadline = Deadline.after(req.timeout)
        listing = listings.get(repo_id)
        if listing is None:
            listing = fetch_listing(repo_id, revision, headers=ctx.headers, deadline=deadline,
                                    timeouts=ctx.timeouts, endpoint=ctx.endpoint)
            listings[repo_id] = listing

        def read_index(f: RemoteFile) -> bytes:
            return _read_small(ctx, repo_id, listing.commit, f, deadline)

        files = select_files(listing.files, target.needs(), read_index)
        unhashed = [f.path for f in files if not f.blob_id]
        if unhashed:  # a mirror that lists sizes only: nothing to pin the content to
            raise UnsafeRepository(f"{ctx.endpoint} gives no hash for {', '.join(unhashed[:5])}: a lock needs "
                                   "each file's git oid or sha256 (lock against the Hub or a mirror that lists them)")
        return LockedModel(repo_id, revision, listing.commit, tuple(LockedFile.from_remote(f) for f in files),
                           target.model_type, target.gguf_file,
                           (target.component,) if target.component else ())

    policy = RetryPolicy(max_attempts=req.max_retries, backoff_base=req.backoff_base, jitter=req.backoff_jitter,
                         on_retry=log_retry)
    try:
        return policy.run(attempt, what=repo_id)
    except Exception as exc:
        raise public_error(exc, repo_id, req, getattr(exc, "attempts_made", 1)) from None


def _read_small(ctx: Any, repo_id: str, commit: str, f: RemoteFile, deadline: Deadline) -> bytes:
    """GET a small file (a shard index) at ``commit``; nothing is written anywhere."""
    if f.size > MAX_INDEX_BYTES:
        raise UnsafeRepository(f"{f.path} is {f.size} bytes: too large for a shard index")
    url = f"{ctx.endpoint}/{repo_id}/resolve/{commit}/{quote(f.path)}"
    chunks: list[bytes] = []
    with stream("GET", url, headers=ctx.headers, deadline=deadline, timeouts=ctx.timeouts, what=f.path) as response:
        for chunk in response.iter_bytes(65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_INDEX_BYTES:
                raise UnsafeRepository(f"{f.path}: the hub sent more than {MAX_INDEX_BYTES} bytes")
    return b"".join(chunks)


def pull_targets(lock: LockFile, names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """What ``phaita models pull --locked`` fetches: every locked model (or only ``names``)."""
    wanted = list(names)
    unknown = [n for n in wanted if lock.get(n) is None]
    if unknown:
        raise ValueError(f"not in the lock file {lock.source}: {', '.join(unknown)}")
    out = []
    for m in lock.models:
        if wanted and m.repo_id not in wanted:
            continue
        needs = m.needs()
        out.append({"candidates": [m.repo_id], "model_type": "auto" if needs.weights else "tokenizer",
                    "gguf_file": m.gguf_file, "extra": {"allow_pickle": needs.allow_pickle}})
    return out
