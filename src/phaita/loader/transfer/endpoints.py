"""Mirror first, origin second: one attempt tries the endpoints in order.

``PHAITA_ENDPOINTS=http://mirror.site:8090,https://huggingface.co`` (or ``endpoints=[...]``) lists
them. The listing comes from the first endpoint that gives one, and fixes the commit; then the
snapshot is fetched from the first endpoint, and whatever it could not give (a file missing, a
copy whose hash does not match, a refused or broken transfer) from the next, at the same commit.
Files already whole in the cache are not fetched again, so the next endpoint only sends what is
missing. A mirror that serves a corrupt copy is named in the warning and in the final error, with
what to do (purge it from the mirror's cache): a mirror like olah keeps a bad transfer in its
cache and serves it to every client, so retrying it alone never helps.

With one endpoint the same words name it: "the mirror at ... serves a copy of model.safetensors
whose sha256 does not match; purge it from the mirror's cache".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .. import config
from ..errors import ChecksumMismatch, ContentChanged, redact
from ..events import EndpointFallback
from .snapshot import FetchContext, fetch_snapshot
from ..hub.listing import RepoListing, fetch_listing
from ..http.deadline import Deadline
from ..http.failures import FailureKind, classify
from ..hub.selection import Needs
from ..cache.lockfile import LockedModel
from ..oci.pull import fetch_from_registry

logger = logging.getLogger("phaita.model_loader")

# Failures another endpoint may not have. Not: a full disk, the cache itself, unsafe content.
NEXT_ENDPOINT_KINDS = frozenset({FailureKind.NETWORK, FailureKind.HTTP, FailureKind.NOT_FOUND, FailureKind.BROKEN_SERVER,
                                 FailureKind.REVISION_NOT_FOUND, FailureKind.BAD_LISTING, FailureKind.ACCESS_DENIED})


def describe(endpoint: str) -> str:
    if endpoint.startswith("oci://"):
        return f"the registry at {endpoint}"
    return f"the hub at {endpoint}" if endpoint == config.DEFAULT_ENDPOINT else f"the mirror at {endpoint}"


def corrupt_copy(endpoint: str, path: str, listing: RepoListing | None) -> str:
    remote = listing.get(path) if listing is not None else None
    check = "sha256" if remote is not None and remote.sha256 else ("git sha1" if remote and remote.blob_id else "size")
    if endpoint.startswith("oci://"):
        return (f"{describe(endpoint)} serves a copy of {path} whose sha256 does not match its layer digest; "
                f"ask its administrator to check the registry's storage, or push the model again")
    text = f"{describe(endpoint)} serves a copy of {path} whose {check} does not match"
    if endpoint != config.DEFAULT_ENDPOINT:
        text += "; purge it from the mirror's cache"
    return text


def _bad_path(exc: ChecksumMismatch, listing: RepoListing | None) -> str | None:
    path = getattr(exc, "path", None)
    if path is None and listing is not None:  # messages start with the file's path
        head = str(exc).split(":", 1)[0]
        path = head if listing.get(head) is not None else None
    return path


def fetch_from_endpoints(repo_id: str, revision: str, needs: Needs, ctx: FetchContext, deadline: Deadline,
                         listing: RepoListing | None, endpoints: Sequence[str],
                         locked: LockedModel | None = None) -> Path:
    """One attempt: the snapshot from ``endpoints`` in order (see the module's text)."""
    endpoints = tuple(endpoints) or (ctx.endpoint,)
    corrupt: list[str] = []
    others: list[str] = []
    try:
        for i, endpoint in enumerate(endpoints):
            ctx.endpoint = endpoint
            following = endpoints[i + 1] if i + 1 < len(endpoints) else None
            try:
                if endpoint.startswith("oci://"):  # a registry: its manifest is the listing (oci.pull)
                    return fetch_from_registry(repo_id, revision, needs, ctx, deadline, endpoint, listing=listing,
                                               locked=locked)
                if listing is None:
                    listing = fetch_listing(repo_id, revision, headers=ctx.headers, deadline=deadline,
                                            timeouts=ctx.timeouts, endpoint=endpoint)
                return fetch_snapshot(repo_id, revision, needs, ctx, deadline, listing=listing)
            except Exception as exc:
                failure = classify(exc)
                path = _bad_path(exc, listing) if isinstance(exc, ChecksumMismatch) else None
                if path is not None:
                    # pieces that did not add up (changed while fetched) are not a copy to purge
                    corrupt.append(f"{describe(endpoint)}: {exc}" if isinstance(exc, ContentChanged)
                                   else corrupt_copy(endpoint, path, listing))
                    if following:
                        logger.warning("%s: %s; fetching it from %s", repo_id, corrupt[-1], following)
                        ctx.events.emit(EndpointFallback(repo_id, redact(endpoint), redact(following),
                                                         redact(corrupt[-1])))
                elif following and failure.kind in NEXT_ENDPOINT_KINDS:
                    others.append(f"{describe(endpoint)}: {failure.reason}")
                    logger.warning("%s: %s failed (%s); trying %s", repo_id, describe(endpoint), failure.reason,
                                   following)
                    ctx.events.emit(EndpointFallback(repo_id, redact(endpoint), redact(following),
                                                     redact(failure.reason)))
                if following is None or failure.kind not in NEXT_ENDPOINT_KINDS:
                    if corrupt and isinstance(exc, ChecksumMismatch):
                        raise ChecksumMismatch("; ".join(corrupt), path) from exc
                    if corrupt or others:
                        exc.endpoint_notes = corrupt + others  # type: ignore[attr-defined]
                    raise
    finally:
        ctx.endpoint = endpoints[0]
    raise AssertionError("unreachable")  # pragma: no cover


def purge_advice(exc: BaseException, repo_id: str, endpoints: Sequence[str]) -> list[str]:
    """Troubleshooting steps for a final error that a corrupt mirror copy caused (else none)."""
    text = str(exc) + " ".join(getattr(exc, "endpoint_notes", []))
    mirrors = [e for e in endpoints if f"the mirror at {e} serves a copy" in text]
    if not mirrors:
        return []
    steps = [f"Purge {repo_id} from the cache of the mirror at {m} (olah: delete the folder "
             f"<repos-path>/files/models/{repo_id}), then try again." for m in mirrors]
    if config.DEFAULT_ENDPOINT not in endpoints:
        steps.append(f"Or list the origin after the mirror: PHAITA_ENDPOINTS={','.join(endpoints)},"
                     f"{config.DEFAULT_ENDPOINT}")
    return steps
