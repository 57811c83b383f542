"""A fault-injecting HTTP proxy in front of a registry (:class:`phaita.testing.registry.LocalRegistry`).

Every request is passed on unchanged (its Host header too, so the registry's upload URLs point back
at the proxy); a :class:`phaita.testing.faults.FaultPlan` rule that matches a request (``path``:
fnmatch on the URL path, e.g. ``*/blobs/*``) changes the answer: ``reset``, ``close`` (after
``after_bytes``; an upload request: dropped before it reaches the registry), ``stall`` (``seconds``),
``status`` (``Retry-After`` too), ``corrupt``, ``stall_headers`` (no answer for ``seconds``, then the
connection closed), ``trickle`` (the rest at ``rate_bps``). With ``redirect_to``, every blob GET is answered
307 to that base URL (as a registry with object storage behind it does). With ``api_paths=True`` a request
that is not for a blob is passed to the plan as an API request (a chaos plan draws those at its API rate).
``blob_bytes`` counts the blob body bytes sent, ``range_segments`` the blob GETs for a closed range
(``bytes=a-b``: one stream of several).
"""

from __future__ import annotations

import fnmatch
import http.client
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .faults import FaultPlan

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    def __init__(self, upstream_port: int, plan: FaultPlan | None = None, *, upstream_tls=None,
                 redirect_to: str = "", api_paths: bool = False) -> None:
        self.upstream_port = upstream_port
        self.plan = plan if plan is not None else FaultPlan()  # (a disabled chaos plan is falsy)
        self.api_paths = api_paths
        self.drop_headers: set[str] = set()  # response headers not passed on (lower case), as some registries omit them
        self.blob_bytes = 0
        self.range_segments = 0
        self._count_lock = threading.Lock()
        self.upstream_tls = upstream_tls  # an ssl.SSLContext: the registry speaks TLS
        self.redirect_to = redirect_to  # base URL a ``redirect`` rule sends blob GETs to
        self.false_ranges = 0  # answer this many upload PATCHes with a wrong ``Range`` (the client must ask again)
        self.status_gets = 0  # upload status GETs seen
        self._server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        path = urlsplit(h.path).path
        blob = "/blobs/sha256:" in path
        rule = self.plan.select(h.command, path, api=self.api_paths and not blob)
        if blob and h.command == "GET" and re.fullmatch(r"bytes=\d+-\d+", h.headers.get("Range", "").strip()):
            with self._count_lock:
                self.range_segments += 1
        if rule is not None and rule.kind == "stall_headers":  # the request read, never answered
            time.sleep(rule.seconds or 5)
            h.close_connection = True
            h.connection.close()
            return
        if rule is not None and rule.kind in ("reset", "close") and h.command in ("PATCH", "PUT", "POST"):
            if rule.kind == "reset":  # the request is lost on the way: the registry never sees it
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if self.redirect_to and h.command == "GET" and fnmatch.fnmatch(path, "*/blobs/sha256:*"):  # object storage
            h.send_response(307)
            h.send_header("Location", f"{self.redirect_to}{h.path}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if rule is not None and rule.kind == "status":
            h.send_response(rule.status)
            for k, v in rule.status_headers().items():
                h.send_header(k, v)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        conn = (http.client.HTTPSConnection("127.0.0.1", self.upstream_port, timeout=60, context=self.upstream_tls)
                if self.upstream_tls is not None else http.client.HTTPConnection("127.0.0.1", self.upstream_port,
                                                                                  timeout=60))
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read() if h.command != "HEAD" else b""
        conn.close()
        h.send_response(resp.status)
        lie = h.command == "PATCH" and self.false_ranges > 0 and resp.status == 202
        if lie:
            self.false_ranges -= 1
        if h.command == "GET" and "/blobs/uploads/" in path:
            self.status_gets += 1
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length" and k.lower() not in self.drop_headers:
                h.send_header(k, "0-0" if lie and k.lower() == "range" else v)
        h.send_header("Content-Length", resp.getheader("Content-Length", str(len(data))) if h.command == "HEAD"
                      else str(len(data)))
        h.end_headers()
        def send(piece: bytes) -> None:
            h.wfile.write(piece)
            if blob and h.command == "GET":
                with self._count_lock:
                    self.blob_bytes += len(piece)

        if rule is None or not data:
            send(data)
            return
        cut = min(rule.offset_for(len(data)), max(len(data) - 1, 0))
        if rule.kind == "corrupt":
            flipped = bytes(b ^ 0xFF for b in data[cut:cut + rule.corrupt_bytes])
            send(data[:cut] + flipped + data[cut + len(flipped):])
        elif rule.kind in ("reset", "close"):
            send(data[:cut])
            h.wfile.flush()
            if rule.kind == "reset":
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
        elif rule.kind in ("stall", "trickle"):
            send(data[:cut])
            h.wfile.flush()
            try:
                if rule.kind == "stall":
                    time.sleep(rule.seconds or 5)
                    send(data[cut:])
                else:  # the rest in pieces of 1/20 s at the rule's rate
                    step = max(1, int(rule.rate_bps / 20))
                    for at in range(cut, len(data), step):
                        send(data[at:at + step])
                        h.wfile.flush()
                        time.sleep(0.05)
            except OSError:  # the client gave up on the stalled or slow answer
                h.close_connection = True
        else:
            send(data)

    def start(self) -> "FaultProxy":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, OSError):
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            setattr(Handler, f"do_{method}", lambda self: outer._handle(self))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
