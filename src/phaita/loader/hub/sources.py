"""Other ways the Hub protocol offers to learn a file's size and hashes, for mirrors whose revision
answer lacks them (olah drops the ``?blobs=true`` query, so its siblings carry only names).

Tried in this order by :mod:`phaita.loader.hub.listing`, each only for the files still unknown:

1. the tree API, ``GET /api/models/{repo}/tree/{commit}?recursive=true`` (one request);
2. ``POST /api/models/{repo}/paths-info/{commit}`` with a form body ``paths=...`` (one request);
3. ``HEAD /{repo}/resolve/{commit}/{path}`` per file: ``X-Linked-Size`` / ``Content-Length`` for
   the size, ``X-Linked-Etag`` (sha256 of an LFS file) or ``ETag`` (git object id) for the hash.

A source the endpoint does not offer (404, 405, 501, an answer of the wrong shape) is skipped and
noted; a transport error or a 5xx propagates, since another attempt may well succeed.
Nothing here trusts a value: :mod:`phaita.loader.hub.listing` validates what is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlencode

from huggingface_hub.errors import HfHubHTTPError

from ..config import Timeouts
from ..errors import BadResponse
from ..http.deadline import Deadline, get_json, stream

NOT_OFFERED = frozenset({400, 404, 405, 410, 422, 501})


@dataclass(frozen=True)
class FileFacts:
    """What one source says about one file (any field may be missing)."""

    size: Any = None
    blob_id: Any = None  # git object id
    sha256: Any = None


class SourceUnavailable(Exception):
    """The endpoint does not offer this source; the reason says how it answered."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask (one attempt's deadline and headers)."""

    url: str
    repo_id: str
    commit: str
    headers: Mapping[str, str]
    deadline: Deadline
    timeouts: Timeouts


def _entries_to_facts(data: Any, wanted: set[str]) -> dict[str, FileFacts]:
    """Tree and paths-info entries: ``{type, path, size, oid, lfs: {oid, size}}``."""
    if not isinstance(data, list):
        raise SourceUnavailable("the answer is not a list of entries")
    out: dict[str, FileFacts] = {}
    for entry in data:
        if not isinstance(entry, dict) or entry.get("type", "file") != "file":
            continue
        path = entry.get("path")
        if path not in wanted:
            continue
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
        out[path] = FileFacts(size=lfs.get("size") if lfs else entry.get("size"), blob_id=entry.get("oid"),
                              sha256=lfs.get("oid") if lfs else None)
    return out


def _json_or_unavailable(ep: Endpoint, url: str, what: str, **kwargs: Any) -> Any:
    try:
        return get_json(url, headers=ep.headers, deadline=ep.deadline, timeouts=ep.timeouts, what=what, **kwargs)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in NOT_OFFERED:
            raise SourceUnavailable(f"HTTP {status}") from None
        raise
    except BadResponse as exc:
        raise SourceUnavailable(f"not JSON ({exc})") from None


def from_tree(ep: Endpoint, wanted: set[str]) -> dict[str, FileFacts]:
    url = f"{ep.url}/api/models/{ep.repo_id}/tree/{ep.commit}?recursive=true"
    return _entries_to_facts(_json_or_unavailable(ep, url, f"{ep.repo_id}: tree API"), wanted)


def from_paths_info(ep: Endpoint, wanted: set[str]) -> dict[str, FileFacts]:
    url = f"{ep.url}/api/models/{ep.repo_id}/paths-info/{ep.commit}"
    body = urlencode({"paths": sorted(wanted), "expand": "false"}, doseq=True).encode()
    headers = {**ep.headers, "Content-Type": "application/x-www-form-urlencoded"}
    data = _json_or_unavailable(Endpoint(ep.url, ep.repo_id, ep.commit, headers, ep.deadline, ep.timeouts), url,
                                f"{ep.repo_id}: paths-info", method="POST", content=body)
    return _entries_to_facts(data, wanted)


def _unquote_etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def head_facts(headers_seen: list[Mapping[str, str]]) -> FileFacts:
    """Size and hashes from the headers of a resolve (the redirect first: the Hub puts them there)."""
    size = linked = etag = None
    for h in headers_seen:
        size = size or h.get("X-Linked-Size")
        linked = linked or _unquote_etag(h.get("X-Linked-Etag"))
        etag = etag or _unquote_etag(h.get("ETag"))
    if size is None:  # no redirect: the answer's own length is the file's
        size = headers_seen[-1].get("Content-Length") if headers_seen else None
    try:
        size = int(size) if size is not None else None
    except ValueError:
        size = None
    if linked:  # an LFS file: ETag may be the CDN's own, never the git object id
        return FileFacts(size=size, sha256=linked if len(linked) == 64 else None)
    return FileFacts(size=size, blob_id=etag if etag and len(etag) == 40 else None,
                     sha256=etag if etag and len(etag) == 64 else None)


def from_head(ep: Endpoint, wanted: set[str]) -> dict[str, FileFacts]:
    out: dict[str, FileFacts] = {}
    for path in sorted(wanted):
        url = f"{ep.url}/{ep.repo_id}/resolve/{ep.commit}/{quote(path)}"
        headers = {**ep.headers, "Accept-Encoding": "identity"}
        try:
            with stream("HEAD", url, headers=headers, deadline=ep.deadline, timeouts=ep.timeouts,
                        what=f"{ep.repo_id}: HEAD {path}") as response:
                seen = [r.headers for r in response.history] + [response.headers]
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status in NOT_OFFERED:
                raise SourceUnavailable(f"HTTP {status} for {path}") from None
            raise
        out[path] = head_facts(seen)
    return out


SOURCES: tuple[tuple[str, Callable[[Endpoint, set[str]], dict[str, FileFacts]]], ...] = (
    ("tree API", from_tree),
    ("paths-info", from_paths_info),
    ("HEAD", from_head),
)
