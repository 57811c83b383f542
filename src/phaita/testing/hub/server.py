"""The local hub server: lifecycle, request records, faults in force, transfer counting.

HTTP handling is in :mod:`.transport`, the URL table in :mod:`.routes`, the endpoints in
:mod:`.handlers`, and where repositories come from in :mod:`.store`.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Iterable, Sequence

from ..faults import FaultPlan, FaultRule, parse_faults
from .protocol import RequestRecord
from phaita.hubserver.routes import ROUTES, Route
from .store import FolderStore, RepoFile, RepoStore
from .transport import HubHandler, _Server

# Hub features a mirror may lack (LocalHub(lacks=...)): the sizes and hashes of the revision answer
# (olah drops its ?blobs=true), the tree API, POST paths-info, the ETag / X-Linked-Etag headers, the
# X-Error-Code header of error answers (a 404 says only its status, as many mirrors answer).
MIRROR_FEATURES = ("revision-blobs", "tree", "paths-info", "etags", "error-codes")


class LocalHub:
    """Serve ``root/<org>/<name>/`` folders as Hugging Face model repositories over HTTP/1.1.

    ``with LocalHub(root) as hub: ...`` -> ``hub.url``. ``hub.requests()``, ``hub.bytes_sent()``,
    ``hub.reset_stats()`` for counting; ``hub.set_faults(plan)`` to change faults while running.
    ``connection_rate`` caps every TCP connection at that many bytes per second (as the fault
    plan's ``cap:RATE`` does; this argument wins when both are set).
    ``lacks`` names Hub features to leave out, to behave like a partial mirror (see
    :data:`MIRROR_FEATURES`): ``lacks=("revision-blobs",)`` answers the revision API as olah does.
    ``store`` serves repositories from elsewhere than ``root/<org>/<name>/`` folders (a
    :class:`~phaita.testing.hub.store.RepoStore`); ``routes`` replaces the route table
    (:data:`~phaita.hubserver.routes.ROUTES`).
    ``tls`` (a server-side ``ssl.SSLContext``) serves HTTPS instead of HTTP.
    """

    def __init__(
        self, root: str | os.PathLike, faults: FaultPlan | str | None = None, host: str = "127.0.0.1", port: int = 0,
        connection_rate: float | None = None, lacks: Iterable[str] = (), store: RepoStore | None = None,
        routes: Sequence[Route] = ROUTES, tls: ssl.SSLContext | None = None,
    ) -> None:
        if connection_rate is not None and not connection_rate > 0:
            raise ValueError("connection_rate must be > 0 bytes per second")
        self.lacks = frozenset(lacks)
        if not self.lacks <= set(MIRROR_FEATURES):
            raise ValueError(f"lacks: unknown features {sorted(self.lacks - set(MIRROR_FEATURES))}; "
                             f"choose from {', '.join(MIRROR_FEATURES)}")
        self.root = Path(root)
        self.tls = tls  # a server-side context: serve HTTPS with its certificate
        self.store: RepoStore = store if store is not None else FolderStore(self.root)
        self.routes = tuple(routes)
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
        return self.store.exists(repo_id)

    def repo_config(self, repo_id: str) -> dict:
        return self.store.config(repo_id)

    def files(self, repo_id: str) -> list[RepoFile]:
        return self.store.files(repo_id)

    def commit_sha(self, repo_id: str) -> str:
        """The current commit sha of ``repo_id`` (changes whenever its files change)."""
        return self.store.commit(repo_id)

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
