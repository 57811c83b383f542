"""One function per Hub endpoint: ``handler(request) -> Response``. Routes live in :mod:`.routes`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs

from .protocol import HubError, HubRequest, Response
from .store import RepoFile


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def file_entry(f: RepoFile) -> dict:
    """One file as the tree and paths-info APIs describe it."""
    entry: dict = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
    if f.is_lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return entry


def _dir_entry(path: str, oids: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(oids.encode()).hexdigest(), "size": 0, "path": path}


# --------------------------------------------------------------------------- checks every endpoint makes


def check_access(req: HubRequest, api: bool) -> dict:
    """The repository's settings, after the Hub's existence, privacy and gating answers."""
    store, repo_id = req.hub.store, req.repo_id
    if not store.exists(repo_id):
        raise HubError(404, "RepoNotFound", f"Repository Not Found for {repo_id}.")
    cfg = store.config(repo_id)
    token = _bearer(req.headers.get("Authorization"))
    valid = token is not None and token in cfg.get("allowed_tokens", [])
    if cfg.get("private") and not valid:
        raise HubError(404, "RepoNotFound", f"Repository Not Found for {repo_id}.")
    if cfg.get("gated") and (not api or cfg.get("gate_api")) and not valid:
        status = 401 if token is None else 403
        raise HubError(status, "GatedRepo", f"Access to model {repo_id} is restricted.")
    return cfg


def check_revision(req: HubRequest) -> tuple[list[RepoFile], str]:
    """The files and the commit the request's revision names, as the store resolves it."""
    found = req.hub.store.snapshot(req.repo_id, req.revision)
    if found is None:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {req.revision}")
    return found


# --------------------------------------------------------------------------- API endpoints


def model_info(req: HubRequest) -> Response:
    """``GET /api/models/{repo}[/revision/{rev}]``: the commit and the files (sizes, hashes with ?blobs=1)."""
    cfg = check_access(req, api=True)
    files, sha = check_revision(req)
    blobs = req.flag("blobs") and "revision-blobs" not in req.hub.lacks
    siblings = []
    for f in files:
        sib: dict = {"rfilename": f.path}
        if blobs:
            sib.update(blobId=f.oid, size=f.size)
            if f.is_lfs:
                sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(sib)
    mtime = max((os.stat(f.abspath).st_mtime for f in files), default=time.time())
    gated = cfg.get("gated", False)
    return Response.json({
        "_id": sha[:24], "id": req.repo_id, "modelId": req.repo_id, "author": req.repo_id.split("/")[0], "sha": sha,
        "lastModified": _iso(mtime), "createdAt": _iso(mtime), "private": bool(cfg.get("private")),
        "gated": ("manual" if gated == "manual" else "auto") if gated else False, "disabled": False,
        "downloads": 0, "likes": 0, "tags": list(cfg.get("tags", [])),
        "library_name": cfg.get("library_name", "transformers"),
        "siblings": siblings + list(cfg.get("extra_siblings", [])),
    })


def tree(req: HubRequest) -> Response:
    """``GET /api/models/{repo}/tree/{rev}/{path}``: the entries under ``path`` (?recursive, ?expand)."""
    cfg = check_access(req, api=True)
    files, sha = check_revision(req)
    path = req.path
    prefix = f"{path}/" if path else ""
    under = [f for f in files if f.path.startswith(prefix)]
    if path and not under:
        raise HubError(404, "EntryNotFound", f"{path} does not exist on {req.revision}", {"X-Repo-Commit": sha})
    recursive = req.flag("recursive")
    entries: list[dict] = []
    dirs: dict[str, list[str]] = {}
    for f in under:
        rest = f.path[len(prefix):]
        if not recursive and "/" in rest:
            dirs.setdefault(prefix + rest.split("/")[0], []).append(f.oid)
            continue
        entries.append(file_entry(f))
    for d, oids in sorted(dirs.items()):
        entries.append(_dir_entry(d, "".join(oids)))
    if not path:
        for sib in cfg.get("extra_siblings", []):
            entries.append({"type": "file", "oid": "0" * 40, "size": sib.get("size", 0), "path": sib["rfilename"]})
    if req.flag("expand"):
        for e in entries:
            e["lastCommit"] = {"id": sha, "title": "Local commit", "date": _iso(time.time())}
    return Response.json(entries)


def paths_info(req: HubRequest) -> Response:
    """``POST paths-info/{rev}``: entries for the named paths (form or JSON ``paths``), like the Hub."""
    cfg = check_access(req, api=True)
    files, _ = check_revision(req)
    raw = req.read_body()
    if "json" in (req.headers.get("Content-Type") or ""):
        try:
            paths = json.loads(raw or b"{}").get("paths")
        except (ValueError, AttributeError):
            raise HubError(400, None, "paths-info: the body is not a JSON object") from None
    else:
        paths = parse_qs(raw.decode("utf-8", "replace")).get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise HubError(400, None, "paths-info: give the paths as a form or JSON field 'paths'")
    by_path = {f.path: f for f in files}
    entries = []
    for path in dict.fromkeys(p.strip("/") for p in paths):  # unknown paths are left out, as on the Hub
        if path in by_path:
            entries.append(file_entry(by_path[path]))
        elif any(f.startswith(path + "/") for f in by_path):
            entries.append(_dir_entry(path, "".join(f.oid for f in files if f.path.startswith(path + "/"))))
    return Response.json(entries)


# --------------------------------------------------------------------------- files


def resolve(req: HubRequest) -> Response:
    """``GET|HEAD /{repo}/resolve/{rev}/{path}``: the file (Range requests, LFS headers, redirects)."""
    cfg = check_access(req, api=False)
    files, sha = check_revision(req)
    path = req.path
    f = next((x for x in files if x.path == path), None)
    if f is None:
        raise HubError(404, "EntryNotFound", f"{path} does not exist on {req.revision}", {"X-Repo-Commit": sha})
    override = cfg.get("content_length_override", {}).get(path)
    size = f.size if override is None else int(override)
    headers = {
        "X-Repo-Commit": sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream", "Content-Disposition": f'inline; filename="{Path(path).name}"',
    }
    if f.is_lfs:
        headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(size)})
    if "etags" in req.hub.lacks:
        headers.pop("ETag")
        headers.pop("X-Linked-Etag", None)
    target = cfg.get("redirect_to")
    if target and (req.method == "GET" or cfg.get("redirect_head")):
        headers["Location"] = target.rstrip("/") + req.raw_path
        return Response(302, headers, b"", 0, faultable=False)
    fault = req.fault
    start, length, status = 0, size, 200
    rng = req.headers.get("Range")
    if rng and not (fault is not None and fault.kind == "ignore_range"):
        start, end = parse_range(rng, size)
        if fault is not None and fault.kind == "wrong_range":  # same length, another place
            start, end = min(fault.after_bytes, start), min(fault.after_bytes, start) + end - start
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    # never read past the real file; a larger announced length is a hostile-hub knob
    available = max(0, min(length, f.size - start))
    return Response(status, headers, (f.abspath, start, available), length)


def parse_range(value: str, size: int) -> tuple[int, int]:
    spec = value.strip()
    try:
        unit, _, ranges = spec.partition("=")
        first = ranges.split(",")[0].strip()
        a, _, b = first.partition("-")
        if unit.strip().lower() != "bytes":
            raise ValueError
        if a == "":  # suffix range: last N bytes
            n = int(b)
            start, end = max(0, size - n), size - 1
            if n == 0:
                raise ValueError
        else:
            start = int(a)
            end = min(int(b), size - 1) if b else size - 1
        if start >= size or end < start:
            raise ValueError
        return start, end
    except ValueError:
        raise HubError(416, "RangeNotSatisfiable", f"Range {value!r} not satisfiable",
                       {"Content-Range": f"bytes */{size}"}) from None
