"""A small hostile hub for the tests: ``http.server`` on 127.0.0.1, one handler per file.

It answers the revision listing (``/api/models/<repo>/revision/<rev>``) from a dict of files, and
each ``/<repo>/resolve/<commit>/<path>`` with the file's *behaviour*: a function that gets the
request handler, the file's bytes and the parsed ``Range`` and writes whatever it likes (a short
body, a wrong encoding, changed bytes...). Every request is recorded (path, method, Range, status),
so a test can count the requests per file. Nothing here patches the loader: it talks HTTP to it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote, urlsplit

COMMIT = "c0ffee" + "0" * 34
Behaviour = Callable[["Handler", bytes, "tuple[int, int] | None"], None]


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Seen:
    path: str
    method: str
    range: str | None
    accept_encoding: str | None
    status: int = 0


def serve_normally(h: "Handler", data: bytes, rng: "tuple[int, int] | None") -> None:
    """What a good hub does: 200 with the file, or 206 with the asked range."""
    if rng is None:
        h.reply(200, data, {"Content-Length": str(len(data))})
        return
    start, end = rng
    end = min(end, len(data) - 1)
    if start >= len(data):
        h.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        return
    h.reply(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}",
                                       "Content-Length": str(end - start + 1)})


@dataclass
class HostileFile:
    data: bytes
    behaviour: Behaviour = serve_normally
    lfs: bool = True
    listed_size: int | None = None  # None: the real size
    listed_name: str | None = None  # the name the listing gives (default: the dict key)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("ETag", '"etag"')
        for k, v in headers.items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.server.hub.seen[-1].status = status
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def cut(self) -> None:
        """Shut the connection (after a short body)."""
        self.close_connection = True
        self.wfile.flush()

    def do_GET(self) -> None:
        hub = self.server.hub
        path = unquote(urlsplit(self.path).path)
        with hub.lock:
            hub.seen.append(Seen(path, "GET", self.headers.get("Range"), self.headers.get("Accept-Encoding")))
        m = re.match(r"^/api/models/([^/]+/[^/]+)/revision/(.+)$", path)
        if m:
            self.reply(200, json.dumps(hub.listing()).encode(), {"Content-Type": "application/json"})
            return
        m = re.match(rf"^/([^/]+/[^/]+)/resolve/{COMMIT}/(.+)$", path)
        file = hub.files.get(m.group(2)) if m else None
        if file is None:
            self.reply(404, b"not found", {"X-Error-Code": "EntryNotFound"})
            return
        rng = None
        header = self.headers.get("Range")
        if header:
            r = re.match(r"^bytes=(\d+)-(\d*)$", header)
            rng = (int(r.group(1)), int(r.group(2)) if r.group(2) else len(file.data) - 1)
        file.behaviour(self, file.data, rng)

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HostileHub"

    def handle_error(self, request, client_address) -> None:  # a client that hangs up is expected here
        pass


@dataclass
class HostileHub:
    """``files``: {path: HostileFile}; ``repo``: the repository id the listing answers for."""

    files: dict[str, HostileFile]
    repo: str = "acme/hostile"
    extra_siblings: list[dict] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def listing(self) -> dict:
        siblings = []
        for path, f in self.files.items():
            size = f.listed_size if f.listed_size is not None else len(f.data)
            entry: dict = {"rfilename": f.listed_name or path, "size": size, "blobId": git_oid(f.data)}
            if f.lfs:
                entry["lfs"] = {"size": size, "sha256": hashlib.sha256(f.data).hexdigest()}
            siblings.append(entry)
        return {"id": self.repo, "sha": COMMIT, "siblings": siblings + self.extra_siblings}

    def start(self) -> "HostileHub":
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.hub = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HostileHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self, name: str) -> list[Seen]:
        """The file requests for ``name`` (its resolve URL)."""
        with self.lock:
            return [s for s in self.seen if "/resolve/" in s.path and s.path.endswith("/" + name)]

    def file_requests(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if "/resolve/" in s.path]
