"""The station's HTTP(S) server: bounded connections, deadlines on every phase, rescans, a clean stop.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection), with what it
lacks made explicit here (docs/FLEETS.md says why this and not an ASGI server):

* at most ``max_connections`` connections at once, ``max_per_client`` from one address; past either
  the connection is closed at once (plain HTTP gets a ``503`` with ``Retry-After: 1`` first), so
  threads, and with them memory, stay bounded;
* one deadline per phase, enforced by a watchdog thread that shuts the socket down when it passes
  (a per-read timeout alone lets a client trickle one byte at a time forever): the TLS handshake
  (``handshake_timeout``), the first request's line and headers (``header_timeout``), the wait for
  the next request on a kept-alive connection (``idle_timeout``), a request body; a blocked write
  gives up after ``send_timeout``;
* the TLS handshake runs in the connection's thread, never in the accept loop;
* a rescan thread (every ``rescan`` seconds, and on :meth:`StationServer.rescan_now`) adds models
  imported into the cache once verified (:mod:`.rescan`).
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, TextIO

from .access import Access
from .handler import StationHandler
from .metrics import Metrics
from .mirror import CacheIndex
from .rescan import rescan
from .store import StationStore


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    max_per_client: int = 32
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    send_timeout: float = 60.0
    max_body: int = 1 << 20  # POST paths-info bodies

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_client", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("handshake_timeout", "header_timeout", "idle_timeout", "send_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds")


_REJECT = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
           b"Content-Length: 53\r\nConnection: close\r\n\r\n"
           b'{"error": "too many connections; try again shortly"}\n')


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    station: "StationServer"

    def verify_request(self, request, client_address) -> bool:  # in the accept loop: no blocking here
        return self.station._admit(request, client_address[0])

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.station._release(client_address[0])

    def finish_request(self, request, client_address) -> None:
        station = self.station
        if station.tls is None:
            return super().finish_request(request, client_address)
        limit = station.limits.handshake_timeout
        try:
            request.settimeout(limit)  # the whole handshake (CPython keeps one deadline for it)
            conn = station.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError):
            return
        station.watch(conn, limit, "handshake")
        try:
            conn.do_handshake()
        except (socket.timeout, TimeoutError):
            if not station.expired(conn):
                station.metrics.add("timeouts", "handshake")
            station.forget(conn)
            return self._close(conn)
        except (ssl.SSLError, OSError):
            if not station.expired(conn):
                station.metrics.add("tls_failures")
            station.forget(conn)
            return self._close(conn)
        finally:
            station.unwatch(conn)
        try:
            super().finish_request(conn, client_address)
        finally:
            self._close(conn)
            station.forget(conn)

    @staticmethod
    def _close(conn: socket.socket) -> None:
        try:
            conn.close()
        except OSError:
            pass

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):  # clients vanishing, sockets shut by the watchdog
            return
        super().handle_error(request, client_address)


class StationServer:
    """Serve a :class:`~.mirror.CacheIndex` read-only as a Hub. ``with StationServer(index) as s: s.url``."""

    def __init__(self, index: CacheIndex, host: str = "127.0.0.1", port: int = 0, *,
                 tls: ssl.SSLContext | None = None, limits: Limits | None = None, access: Access | None = None,
                 access_log: TextIO | None = None, rescan_every: float | None = None) -> None:
        self.index = index
        self.store = StationStore(index)
        self.lacks: frozenset = frozenset()  # every Hub feature the routes have
        self.host, self._port = host, port
        self.tls = tls
        self.limits = limits or Limits()
        self.access = access or Access()
        self.access_log = access_log
        self.rescan_every = rescan_every
        self.metrics = Metrics()
        self.metrics.snapshots = lambda: (len(index.snapshots), len(index.refused), index.bytes_hashed)
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._per_client: Counter[str] = Counter()
        self._open = 0
        self._deadlines: dict[Any, tuple[float, str]] = {}
        self._expired: set[int] = set()
        self._stop = threading.Event()
        self._rescan = threading.Event()
        self._server: _Listener | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "StationServer":
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Listener((self.host, self._port), StationHandler)
        server.station = self
        self._server, self._port = server, server.server_address[1]
        self._threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name=f"station:{self._port}", daemon=True),
                         threading.Thread(target=self._watchdog, name="station-watchdog", daemon=True),
                         threading.Thread(target=self._rescanner, name="station-rescan", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()
        self._rescan.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._deadlines)
        for conn in conns:
            _shut(conn)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> "StationServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    # ----------------------------------------------------------------- connection bounds
    def _admit(self, request: socket.socket, client: str) -> bool:
        with self._lock:
            reason = ("max_connections" if self._open >= self.limits.max_connections else
                      "per_client" if self._per_client[client] >= self.limits.max_per_client else None)
            if reason is None:
                self._open += 1
                self._per_client[client] += 1
                self.metrics.connections_open = self._open
        if reason is not None:
            self.metrics.add("rejected", reason)
            if self.tls is None:
                try:
                    request.setblocking(False)
                    request.send(_REJECT)
                except OSError:
                    pass
            return False
        self.metrics.add("connections_total")
        return True

    def _release(self, client: str) -> None:
        with self._lock:
            self._open -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]
            self.metrics.connections_open = self._open

    @property
    def connections(self) -> int:
        with self._lock:
            return self._open

    # ----------------------------------------------------------------- deadlines
    def watch(self, conn: Any, seconds: float, phase: str) -> None:
        with self._lock:
            self._deadlines[conn] = (time.monotonic() + seconds, phase)

    def unwatch(self, conn: Any) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    def expired(self, conn: Any) -> bool:
        with self._lock:
            return id(conn) in self._expired

    def forget(self, conn: Any) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)
            self._expired.discard(id(conn))

    def _watchdog(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                late = [(c, phase) for c, (deadline, phase) in self._deadlines.items() if deadline <= now]
                for conn, _ in late:
                    del self._deadlines[conn]
                    self._expired.add(id(conn))
            for conn, phase in late:
                self.metrics.add("timeouts", phase)
                _shut(conn)

    # ----------------------------------------------------------------- rescans
    def rescan_now(self) -> None:
        self._rescan.set()

    def _rescanner(self) -> None:
        while not self._stop.is_set():
            self._rescan.wait(self.rescan_every)
            if self._stop.is_set():
                return
            if not self._rescan.is_set() and self.rescan_every is None:
                continue
            self._rescan.clear()
            try:
                report = rescan(self.index)
            except Exception as exc:  # a cache being rewritten under us: try again next time
                print(f"# rescan failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            self.metrics.add("rescans")
            for line in report.lines():
                print(line, file=sys.stderr, flush=True)

    # ----------------------------------------------------------------- access log
    def log_access(self, line: str) -> None:
        if self.access_log is None:
            return
        with self._log_lock:
            try:
                self.access_log.write(line + "\n")
                self.access_log.flush()
            except (OSError, ValueError):
                pass


def _shut(conn: Any) -> None:
    """Wake the connection's thread: shut the socket itself down (below TLS: no SSL state is touched)."""
    try:
        socket.socket.shutdown(conn, socket.SHUT_RDWR)
    except (OSError, TypeError):
        pass
