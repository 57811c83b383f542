"""A real, local Hugging Face Hub server for tests, demos and benchmarks.

Repositories are folders ``root/<org>/<name>/``; an optional ``.hub.json`` in a repository sets
``gated``, ``private``, ``allowed_tokens``, ``branches``, ``gate_api`` and hostile-hub knobs
(``redirect_to``, ``redirect_head``, ``extra_siblings``, ``content_length_override``).
The unmodified ``huggingface_hub`` client and ``transformers`` work against it with
``HF_ENDPOINT=hub.url``. Faults (see :mod:`phaita.testing.faults`) are applied to response bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import time
from typing import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import FaultPlan, FaultRule, Pacer, parse_faults

__all__ = ["LocalHub", "MIRROR_FEATURES", "RequestRecord", "RepoFile", "LFS_EXTENSIONS", "LFS_THRESHOLD", "repo_files", "commit_sha"]

LFS_EXTENSIONS = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".onnx", ".msgpack", ".ckpt")
LFS_THRESHOLD = 1_000_000
CONFIG_NAME = ".hub.json"
# Hub features a mirror may lack (LocalHub(lacks=...)): the sizes and hashes of the revision answer
# (olah drops its ?blobs=true), the tree API, POST paths-info, the ETag / X-Linked-Etag headers.
MIRROR_FEATURES = ("revision-blobs", "tree", "paths-info", "etags")
_SKIP_DIRS = {".git", ".cache"}
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class RepoFile:
    path: str  # posix path inside the repository
    abspath: str
    size: int
    oid: str  # git blob oid (of the LFS pointer for LFS files)
    sha256: str | None  # set for LFS files
    pointer_size: int | None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        return self.sha256 or self.oid


_hash_cache: dict[tuple[str, int, int], tuple[str, str | None, int | None]] = {}
_hash_lock = threading.Lock()


def _is_lfs(path: str, size: int) -> bool:
    return size >= LFS_THRESHOLD or path.lower().endswith(LFS_EXTENSIONS)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hash_file(abspath: str, rel: str, st: os.stat_result) -> tuple[str, str | None, int | None]:
    key = (abspath, st.st_mtime_ns, st.st_size)
    with _hash_lock:
        hit = _hash_cache.get(key)
    if hit is not None:
        return hit
    if _is_lfs(rel, st.st_size):
        h = hashlib.sha256()
        with open(abspath, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        sha = h.hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {st.st_size}\n".encode()
        result: tuple[str, str | None, int | None] = (_git_oid(pointer), sha, len(pointer))
    else:
        h = hashlib.sha1(b"blob %d\0" % st.st_size)
        with open(abspath, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        result = (h.hexdigest(), None, None)
    with _hash_lock:
        _hash_cache[key] = result
    return result


def repo_files(repo_dir: Path) -> list[RepoFile]:
    """All served files of a repository folder, sorted by path (hashes cached by path+mtime+size)."""
    out: list[RepoFile] = []
    base = str(repo_dir)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            abspath = os.path.join(dirpath, name)
            rel = os.path.relpath(abspath, base).replace(os.sep, "/")
            if rel == CONFIG_NAME:
                continue
            try:
                st = os.stat(abspath)
            except OSError:
                continue
            oid, sha, psize = _hash_file(abspath, rel, st)
            out.append(RepoFile(rel, abspath, st.st_size, oid, sha, psize))
    out.sort(key=lambda f: f.path)
    return out


def commit_sha(files: list[RepoFile]) -> str:
    h = hashlib.sha1()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.oid}\n".encode())
    return h.hexdigest()


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    client: str
    authorization: str | None
    range: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    status: int | None = None
    bytes_sent: int = 0
    fault: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def auth_present(self) -> bool:
        return bool(self.authorization)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: LocalHub

    def finish_request(self, request, client_address) -> None:
        tls = self.hub.tls
        if tls is None:
            return super().finish_request(request, client_address)
        try:  # the TLS handshake runs in this connection's thread, not in the accept loop
            conn = tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that refused the certificate: what the TLS tests provoke
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address) -> None:
        import sys

        exc = sys.exc_info()[1]
        # Clients vanishing is normal, and so is a write to a connection a fault has just reset;
        # anything else is a bug in the hub and is shown.
        if isinstance(exc, OSError) or (isinstance(exc, ValueError) and "closed file" in str(exc)):
            return
        super().handle_error(request, client_address)


class LocalHub:
    """Serve ``root/<org>/<name>/`` folders as Hugging Face model repositories over HTTP/1.1.

    ``with LocalHub(root) as hub: ...`` -> ``hub.url``. ``hub.requests()``, ``hub.bytes_sent()``,
    ``hub.reset_stats()`` for counting; ``hub.set_faults(plan)`` to change faults while running.
    ``connection_rate`` caps every TCP connection at that many bytes per second (as the fault
    plan's ``cap:RATE`` does; this argument wins when both are set).
    ``lacks`` names Hub features to leave out, to behave like a partial mirror (see
    :data:`MIRROR_FEATURES`): ``lacks=("revision-blobs",)`` answers the revision API as olah does.
    ``tls`` (a server-side ``ssl.SSLContext``) serves HTTPS instead of HTTP.
    """

    def __init__(
        self, root: str | os.PathLike, faults: FaultPlan | str | None = None, host: str = "127.0.0.1", port: int = 0,
        connection_rate: float | None = None, lacks: Iterable[str] = (), tls: ssl.SSLContext | None = None,
    ) -> None:
        if connection_rate is not None and not connection_rate > 0:
            raise ValueError("connection_rate must be > 0 bytes per second")
        self.lacks = frozenset(lacks)
        if not self.lacks <= set(MIRROR_FEATURES):
            raise ValueError(f"lacks: unknown features {sorted(self.lacks - set(MIRROR_FEATURES))}; "
                             f"choose from {', '.join(MIRROR_FEATURES)}")
        self.root = Path(root)
        self.tls = tls  # a server-side context: serve HTTPS with its certificate
        self.connection_rate = connection_rate
        self._transfers = 0
        self.faults = parse_faults(faults) if isinstance(faults, str) else (faults or FaultPlan())
        self.host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._conns: set[socket.socket] = set()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LocalHub:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self.host, self._port), HubHandler)
        server.hub = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.name = f"LocalHub:{self._port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()  # wakes stalls and trickles
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # drop keep-alive and stalled connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    def set_faults(self, plan: FaultPlan | str | None) -> FaultPlan:
        """Replace the fault plan (a FaultPlan or a text spec) while running; returns the new plan."""
        self.faults = parse_faults(plan) if isinstance(plan, str) else (plan or FaultPlan())
        return self.faults

    # ----------------------------------------------------------------- stats
    def _add_record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    @property
    def stats(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def requests(self, path_contains: str | None = None, method: str | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self.stats
            if (path_contains is None or path_contains in r.path) and (method is None or r.method == method.upper())
        ]

    def bytes_sent(self, path_contains: str | None = None) -> int:
        return sum(r.bytes_sent for r in self.requests(path_contains))

    def reset_stats(self) -> None:
        with self._lock:
            self._records.clear()

    # ----------------------------------------------------------------- repositories
    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def repo_exists(self, repo_id: str) -> bool:
        parts = repo_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return False
        return self.repo_dir(repo_id).is_dir()

    def repo_config(self, repo_id: str) -> dict:
        path = self.repo_dir(repo_id) / CONFIG_NAME
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}

    def files(self, repo_id: str) -> list[RepoFile]:
        return repo_files(self.repo_dir(repo_id))

    def commit_sha(self, repo_id: str) -> str:
        """The current commit sha of ``repo_id`` (changes whenever its files change)."""
        return commit_sha(self.files(repo_id))

    def revision(self, repo_id: str, revision: str, cfg: dict) -> tuple[list[RepoFile], str] | None:
        """``(files, commit)`` that ``revision`` names, or None (a subclass may serve another store)."""
        files = self.files(repo_id)
        sha = commit_sha(files)
        return (files, sha) if revision in ("main", sha, *cfg.get("branches", [])) else None

    def file_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.url}/{repo_id}/resolve/{revision}/{path}"

    def wait_stop(self, seconds: float | None) -> bool:
        """Sleep up to ``seconds`` (None: forever) or until the hub stops; True if stopped."""
        return self._stop.wait(seconds)

    def rate_limit(self) -> float | None:
        """Bytes per second allowed per connection now (None: no cap)."""
        return self.connection_rate or self.faults.connection_rate

    def admit_transfer(self) -> bool:
        """Count one file GET in; False (and not counted) when the plan's ``max_transfers`` are busy."""
        limit = self.faults.max_transfers
        with self._lock:
            if limit is not None and self._transfers >= limit:
                return False
            self._transfers += 1
            return True

    def end_transfer(self) -> None:
        with self._lock:
            self._transfers -= 1

    def select_fault(self, method: str, path: str, api: bool) -> FaultRule | None:
        plan = self.faults
        return plan.select(method, path, api=api) if plan else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _reset_socket(conn: socket.socket) -> None:
    """Abort the connection with a TCP RST (SO_LINGER (1, 0) then a real close of the fd)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass




def _file_entry(f: RepoFile) -> dict:
    """One file as the tree and paths-info APIs describe it."""
    entry: dict = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
    if f.is_lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return entry


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def _flag(value: list[str] | None) -> bool:
    return bool(value) and value[0].lower() in ("1", "true", "yes")


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.hub._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # silence stderr logging
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    do_PUT = do_DELETE = do_PATCH = do_POST

    # ----------------------------------------------------------------- routing
    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        self._upath = "/" + "/".join(segs)
        self._query = parse_qs(split.query)
        self._rec = rec = RequestRecord(
            method, self._upath, split.query, self.client_address[0], self.headers.get("Authorization"),
            range=self.headers.get("Range"),
        )
        hub._add_record(rec)
        try:
            route = self._route(segs)
            if method not in ("GET", "HEAD") and not (method == "POST" and route and route[0] == "paths-info"):
                self._drain_body()
                raise _HubError(405, None, f"Method {method} not allowed")
            if route is None or route[0] in hub.lacks:
                self._drain_body()
                raise _HubError(404, None, f"Not found: {self._upath}")
            kind, repo_id, revision, path = route
            rec.repo_id, rec.revision = repo_id, revision
            fault = hub.select_fault(method, self._upath, api=kind != "resolve")
            if fault is not None:
                rec.fault = fault.kind
                if fault.kind == "stall_headers":
                    hub.wait_stop(fault.seconds)
                    self.close_connection = True
                    return
                if fault.kind == "status":
                    raise _HubError(fault.status, None, f"Injected fault: HTTP {fault.status}", fault.status_headers())
                if method == "HEAD" and fault.kind in ("reset", "close"):  # no body: fail before answering
                    return self._abort(fault.kind == "reset")
                if method == "HEAD" and fault.kind == "stall" and hub.wait_stop(fault.seconds):
                    return self._abort(False)
            if kind == "resolve" and method == "GET":
                if not hub.admit_transfer():
                    raise _HubError(429, None, "Too many parallel downloads", {"Connection": "close"})
                try:
                    self._resolve(method, repo_id, revision, path, fault)
                finally:
                    hub.end_transfer()
            elif kind == "resolve":
                self._resolve(method, repo_id, revision, path, fault)
            else:
                body = self._api(kind, repo_id, revision, path)
                data = json.dumps(body).encode()
                self._respond(200, {"Content-Type": "application/json"}, method, data, len(data), fault)
        except _HubError as err:
            data = json.dumps({"error": err.message}).encode()
            headers = {"Content-Type": "application/json", **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
                headers["X-Error-Message"] = err.message
            self._respond(err.status, headers, method, data, len(data), None)
        except (BrokenPipeError, ConnectionError, TimeoutError, ValueError, OSError):
            self.close_connection = True  # the client went away (or the hub is stopping)
        except Exception as exc:  # a bug: answer 500 when nothing was sent yet, then drop the connection
            self.close_connection = True
            if rec.status is None:
                data = json.dumps({"error": f"LocalHub internal error: {exc!r}"}).encode()
                self._respond(500, {"Content-Type": "application/json"}, method, data, len(data), None)
            raise
        finally:
            rec.finished = time.time()

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _route(self, segs: list[str]):
        if segs[:2] == ["api", "models"] and len(segs) >= 4:
            repo_id, rest = "/".join(segs[2:4]), segs[4:]
            if not rest:
                return ("info", repo_id, "main", "")
            if rest[0] == "revision" and len(rest) >= 2:
                return ("info", repo_id, "/".join(rest[1:]), "")
            if rest[0] == "tree" and len(rest) >= 2:
                return ("tree", repo_id, rest[1], "/".join(rest[2:]).strip("/"))
            if rest[0] == "paths-info" and len(rest) >= 2:
                return ("paths-info", repo_id, "/".join(rest[1:]), "")
            return None
        if segs[:1] == ["models"]:
            segs = segs[1:]
        if len(segs) >= 5 and segs[2] == "resolve":
            return ("resolve", "/".join(segs[:2]), segs[3], "/".join(segs[4:]))
        return None

    def _access(self, repo_id: str, api: bool) -> dict:
        hub = self.server.hub
        if not hub.repo_exists(repo_id):
            raise _HubError(404, "RepoNotFound", f"Repository Not Found for {repo_id}.")
        cfg = hub.repo_config(repo_id)
        token = _bearer(self.headers.get("Authorization"))
        valid = token is not None and token in cfg.get("allowed_tokens", [])
        if cfg.get("private") and not valid:
            raise _HubError(404, "RepoNotFound", f"Repository Not Found for {repo_id}.")
        if cfg.get("gated") and (not api or cfg.get("gate_api")) and not valid:
            status = 401 if token is None else 403
            raise _HubError(status, "GatedRepo", f"Access to model {repo_id} is restricted.")
        return cfg

    def _revision(self, repo_id: str, revision: str, cfg: dict) -> tuple[list[RepoFile], str]:
        found = self.server.hub.revision(repo_id, revision, cfg)
        if found is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return found

    # ----------------------------------------------------------------- API
    def _api(self, kind: str, repo_id: str, revision: str, path: str):
        cfg = self._access(repo_id, api=True)
        files, sha = self._revision(repo_id, revision, cfg)
        extra = list(cfg.get("extra_siblings", []))
        if kind == "paths-info":
            return self._paths_info(files, sha)
        if kind == "info":
            blobs = _flag(self._query.get("blobs")) and "revision-blobs" not in self.server.hub.lacks
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
            return {
                "_id": sha[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                "lastModified": _iso(mtime), "createdAt": _iso(mtime), "private": bool(cfg.get("private")),
                "gated": ("manual" if gated == "manual" else "auto") if gated else False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": list(cfg.get("tags", [])),
                "library_name": cfg.get("library_name", "transformers"), "siblings": siblings + extra,
            }
        recursive = _flag(self._query.get("recursive"))
        expand = _flag(self._query.get("expand"))
        prefix = f"{path}/" if path else ""
        under = [f for f in files if f.path.startswith(prefix)]
        if path and not under:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", {"X-Repo-Commit": sha})
        entries: list[dict] = []
        dirs: dict[str, list[str]] = {}
        for f in under:
            rest = f.path[len(prefix):]
            if not recursive and "/" in rest:
                dirs.setdefault(prefix + rest.split("/")[0], []).append(f.oid)
                continue
            entries.append(_file_entry(f))
        for d, oids in sorted(dirs.items()):
            entries.append({"type": "directory", "oid": hashlib.sha1("".join(oids).encode()).hexdigest(), "size": 0, "path": d})
        if not path:
            for sib in extra:
                entries.append({"type": "file", "oid": "0" * 40, "size": sib.get("size", 0), "path": sib["rfilename"]})
        if expand:
            for e in entries:
                e["lastCommit"] = {"id": sha, "title": "Local commit", "date": _iso(time.time())}
        return entries

    def _paths_info(self, files: list[RepoFile], sha: str) -> list[dict]:
        """``POST paths-info/{rev}``: entries for the named paths (form or JSON ``paths``), like the Hub."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "json" in (self.headers.get("Content-Type") or ""):
            try:
                paths = json.loads(raw or b"{}").get("paths")
            except (ValueError, AttributeError):
                raise _HubError(400, None, "paths-info: the body is not a JSON object") from None
        else:
            paths = parse_qs(raw.decode("utf-8", "replace")).get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise _HubError(400, None, "paths-info: give the paths as a form or JSON field 'paths'")
        by_path = {f.path: f for f in files}
        entries = []
        for path in dict.fromkeys(p.strip("/") for p in paths):  # unknown paths are left out, as on the Hub
            if path in by_path:
                entries.append(_file_entry(by_path[path]))
            elif any(f.startswith(path + "/") for f in by_path):
                oids = "".join(f.oid for f in files if f.path.startswith(path + "/"))
                entries.append({"type": "directory", "oid": hashlib.sha1(oids.encode()).hexdigest(), "size": 0,
                                "path": path})
        return entries

    # ----------------------------------------------------------------- files
    def _resolve(self, method: str, repo_id: str, revision: str, path: str, fault: FaultRule | None) -> None:
        cfg = self._access(repo_id, api=False)
        files, sha = self._revision(repo_id, revision, cfg)
        f = next((x for x in files if x.path == path), None)
        if f is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", {"X-Repo-Commit": sha})
        override = cfg.get("content_length_override", {}).get(path)
        size = f.size if override is None else int(override)
        headers = {
            "X-Repo-Commit": sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream", "Content-Disposition": f'inline; filename="{Path(path).name}"',
        }
        if f.is_lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(size)})
        if "etags" in self.server.hub.lacks:
            headers.pop("ETag")
            headers.pop("X-Linked-Etag", None)
        target = cfg.get("redirect_to")
        if target and (method == "GET" or cfg.get("redirect_head")):
            headers["Location"] = target.rstrip("/") + self.path
            self._respond(302, headers, method, b"", 0, None)
            return
        start, length, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng and not (fault is not None and fault.kind == "ignore_range"):
            start, end = self._parse_range(rng, size)
            if fault is not None and fault.kind == "wrong_range":  # same length, another place
                start, end = min(fault.after_bytes, start), min(fault.after_bytes, start) + end - start
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        # never read past the real file; a larger announced length is a hostile-hub knob
        available = max(0, min(length, f.size - start))
        self._respond(status, headers, method, (f.abspath, start, available), length, fault)

    def _parse_range(self, value: str, size: int) -> tuple[int, int]:
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
            raise _HubError(416, "RangeNotSatisfiable", f"Range {value!r} not satisfiable",
                             {"Content-Range": f"bytes */{size}"}) from None

    # ----------------------------------------------------------------- sending
    def _respond(self, status: int, headers: dict, method: str, body, length: int, fault: FaultRule | None) -> None:
        self._rec.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "HEAD":
            return
        self._send_body(body, length, fault)

    def _chunks(self, body, length: int):
        if isinstance(body, bytes):
            yield body[:length]
            return
        abspath, start, available = body
        with open(abspath, "rb") as fh:
            fh.seek(start)
            left = available
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def _write(self, data: bytes) -> None:
        rate = self.server.hub.rate_limit()
        if not rate:
            return self._write_now(data)
        pacer = getattr(self, "_pacer", None)
        if pacer is None or pacer.rate != rate:
            pacer = self._pacer = Pacer(rate)  # one per connection: the cap is per TCP stream
        view = memoryview(data)
        for i in range(0, len(view), pacer.piece):
            piece = view[i:i + pacer.piece]
            wait = pacer.wait_before(len(piece))
            if wait > 0 and self.server.hub.wait_stop(wait):
                raise ConnectionAbortedError("hub stopping")
            self._write_now(piece)

    def _write_now(self, data: bytes | memoryview) -> None:
        if data:
            # Counted before the write: a client may read the last byte and look at the stats
            # before this thread runs again. A write that fails counts as nothing sent.
            self._rec.bytes_sent += len(data)
            try:
                self.wfile.write(data)
            except BaseException:
                self._rec.bytes_sent -= len(data)
                raise

    def _send_body(self, body, length: int, fault: FaultRule | None) -> None:
        hub = self.server.hub
        kind = fault.kind if fault is not None else None
        at = fault.offset_for(length) if fault is not None else 0
        sent, triggered = 0, False
        for chunk in self._chunks(body, length):
            end = sent + len(chunk)
            if kind == "corrupt" and at < end and sent < at + fault.corrupt_bytes:
                buf = bytearray(chunk)
                for i in range(max(at, sent), min(at + fault.corrupt_bytes, end)):
                    buf[i - sent] ^= 0xFF
                chunk = bytes(buf)
            elif kind in ("reset", "close", "stall", "trickle") and not triggered and end >= at:
                self._write(chunk[: at - sent])
                chunk, sent, triggered = chunk[at - sent:], at, True
                if kind in ("reset", "close"):
                    return self._abort(kind == "reset")
                if kind == "stall" and hub.wait_stop(fault.seconds):
                    return self._abort(False)
            if kind == "trickle" and triggered:
                piece = max(1, int(fault.rate_bps / 20))
                for i in range(0, len(chunk), piece):
                    self._write(chunk[i:i + piece])
                    if hub.wait_stop(piece / fault.rate_bps):
                        return self._abort(False)
            else:
                self._write(chunk)
            sent += len(chunk)
        if kind in ("reset", "close") and not triggered:
            return self._abort(kind == "reset")
        if sent < length:  # announced more than we have (content_length_override)
            self._abort(False)

    def _abort(self, reset: bool) -> None:
        """End the connection: a TCP RST when ``reset`` else a clean FIN (after a partial body)."""
        self.close_connection = True
        if reset:
            # Let bytes already sent reach the client first: an RST discards the peer's unread
            # receive buffer, and on loopback that buffer holds megabytes, which would make every
            # reset look like a large resend that no real link produces.
            try:
                self.wfile.flush()
            except OSError:
                pass
            time.sleep(0.05)
            _reset_socket(self.connection)
            for f in (self.wfile, self.rfile):
                try:
                    f.close()
                except OSError:
                    pass
            self.connection.close()  # last reference: the fd closes now and the kernel sends RST
