"""A fast static Hugging Face hub: nginx serving a generated tree of files on 127.0.0.1.

The in-repo :class:`~phaita.testing.LocalHub` is Python and saturates near 300 MB/s, before most
clients do. :class:`NginxHub` serves the same folder layout (``root/<org>/<name>/...``, as
:class:`~phaita.testing.hub.store.FolderStore` reads it) from nginx (a C server with sendfile), so
that the client is what a benchmark measures:

* ``GET /api/models/<repo>[/revision/<rev>]``: the model info as a JSON file (siblings with sizes
  and LFS hashes, as ``?blobs=1`` gives them; the query is ignored);
* ``GET /api/models/<repo>/tree/<rev>``: the recursive tree listing as a JSON file;
* ``GET|HEAD /<repo>/resolve/<rev>/<path>``: the file itself, by an ``alias`` to the published file
  (no copy), with ``X-Repo-Commit``, ``ETag`` (the sha256 of an LFS file, else its git blob id),
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files; Range requests are nginx's own.

``<rev>`` is ``main`` or the commit. ``rate=`` caps every connection with nginx's ``limit_rate``
(bytes per second), which is what makes parallel streams matter on loopback. Everything nginx writes
(configuration, pid, logs, temp folders, the JSON answers) lives in a temporary folder; nginx runs
as a child process in the foreground (``daemon off; master_process off``), as root or not, on a
port the OS chose free. It is Debian's ``nginx-light`` (``scripts/system-packages.sh``):
:func:`nginx_binary` says where, or None.

>>> with NginxHub(root, rate=20e6) as hub:             # doctest: +SKIP
...     snapshot_download("org/name", endpoint=hub.url)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .hub.store import RepoFile, commit_sha, repo_files, valid_repo_id

NGINX = "/usr/sbin/nginx"
MISSING = ("nginx is not installed (Debian package nginx-light: scripts/system-packages.sh, run by `make setup`, "
           "installs it)")


def nginx_binary() -> str | None:
    """The nginx executable (``PATH`` first, then /usr/sbin/nginx), or None."""
    found = shutil.which("nginx") or (NGINX if os.access(NGINX, os.X_OK) else None)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _q(value: str) -> str:
    """A string as an nginx configuration token (double-quoted, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _repos(root: Path) -> list[str]:
    out = []
    for org in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for name in sorted(p for p in org.iterdir() if p.is_dir() and not p.name.startswith(".")):
            repo = f"{org.name}/{name.name}"
            if valid_repo_id(repo):
                out.append(repo)
    return out


def _info(repo: str, sha: str, files: list[RepoFile]) -> dict:
    siblings = []
    for f in files:
        sib: dict = {"rfilename": f.path, "blobId": f.oid, "size": f.size}
        if f.is_lfs:
            sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(sib)
    return {"_id": sha[:24], "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": sha,
            "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "library_name": "transformers", "siblings": siblings}


def _tree(files: list[RepoFile]) -> list[dict]:
    out = []
    for f in files:
        entry: dict = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
        if f.is_lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        out.append(entry)
    return out


class NginxHub:
    """nginx serving ``root``'s repositories as a Hugging Face hub; a context manager (start/stop)."""

    def __init__(self, root: str | os.PathLike, rate: float | None = None, binary: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.rate = rate
        self.binary = binary or nginx_binary()
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.commits: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ the generated tree
    def _write_tree(self, base: Path) -> list[str]:
        """The JSON answers under ``base/api`` and one nginx ``location`` per URL; returns the locations."""
        locs: list[str] = []

        def json_answer(url: str, obj: object, name: str) -> None:
            path = base / "api" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(obj))
            locs.append(f"location = {_q(url)} {{ default_type application/json; alias {_q(str(path))}; }}")

        for n, repo in enumerate(_repos(self.root)):
            files = repo_files(self.root / repo)
            sha = commit_sha(files)
            self.commits[repo] = sha
            info, tree = _info(repo, sha, files), _tree(files)
            json_answer(f"/api/models/{repo}", info, f"{n}/info.json")
            for rev in ("main", sha):
                json_answer(f"/api/models/{repo}/revision/{rev}", info, f"{n}/info.json")
                json_answer(f"/api/models/{repo}/tree/{rev}", tree, f"{n}/tree.json")
                for f in files:
                    headers = [("X-Repo-Commit", sha), ("ETag", f'"{f.etag}"')]
                    if f.is_lfs:
                        headers += [("X-Linked-Etag", f'"{f.sha256}"'), ("X-Linked-Size", str(f.size))]
                    adds = " ".join(f"add_header {k} {_q(v)} always;" for k, v in headers)
                    for prefix in ("", "/models"):
                        locs.append(f"location = {_q(f'{prefix}/{repo}/resolve/{rev}/{f.path}')} "
                                    f"{{ alias {_q(f.abspath)}; {adds} }}")
        return locs

    def _config(self, base: Path, locations: list[str]) -> str:
        temp = "\n".join(f"    {k}_temp_path {_q(str(base / 'tmp' / k))};"
                         for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        rate = f"limit_rate {int(self.rate)};" if self.rate else ""
        body = "\n".join(f"        {loc}" for loc in locations)
        return f"""daemon off;
master_process off;
worker_processes 1;
pid {_q(str(base / 'nginx.pid'))};
error_log {_q(str(base / 'error.log'))} warn;
events {{ worker_connections 1024; }}
http {{
    log_format phaita '$msec $status $body_bytes_sent $request_time "$request" "$http_range"';
    access_log {_q(str(base / 'access.log'))} phaita;
{temp}
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    etag off;
    server_tokens off;
    server {{
        listen 127.0.0.1:{self.port};
        {rate}
{body}
        location / {{ return 404; }}
    }}
}}
"""

    # ------------------------------------------------------------------ running
    def start(self) -> "NginxHub":
        if self.binary is None:
            raise RuntimeError(MISSING)
        self.dir = Path(tempfile.mkdtemp(prefix="phaita-nginx-"))
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / k).mkdir(parents=True)
        locations = self._write_tree(self.dir)
        last = ""
        for _ in range(5):  # the port chosen free may be taken before nginx binds it: choose again
            self.port = _free_port()
            conf = self.dir / "nginx.conf"
            conf.write_text(self._config(self.dir, locations))
            log = open(self.dir / "stderr.log", "wb")
            self.proc = subprocess.Popen([self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                          "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            if self._wait_ready():
                return self
            last = (self.dir / "error.log").read_text(errors="replace")[-500:]
            self._kill()
        self.stop()
        raise RuntimeError(f"nginx did not start: {last.strip()}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def requests(self) -> list[dict]:
        """The requests nginx answered so far, from its access log: time (epoch s, at the end), status,
        body bytes sent, seconds taken, request line, Range header ("-" for none)."""
        if self.dir is None or not (self.dir / "access.log").exists():
            return []
        out = []
        for line in (self.dir / "access.log").read_text(errors="replace").splitlines():
            try:
                head, request, _, rng = line.split('"')[:4]
                at, status, sent, took = head.split()
                out.append({"at": float(at), "status": int(status), "bytes": int(sent), "seconds": float(took),
                            "request": request, "range": rng})
            except ValueError:
                continue
        return out

    def bytes_sent(self, path_part: str = "/resolve/") -> int:
        """Body bytes nginx sent for requests whose URL contains ``path_part``."""
        return sum(r["bytes"] for r in self.requests() if path_part in r["request"])

    def __enter__(self) -> "NginxHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
