"""olah (PyPI ``olah``, the common self-hosted Hugging Face mirror) as a real process, for tests and
benchmarks: ``with OlahMirror(upstream_url, repos_path) as mirror: ... mirror.url``.

olah reads every setting from a TOML file when given ``-c``; the same file is how a site runs it
(docs/FLEETS.md). ``offline=True`` is olah's ``[accessibility] offline``: serve only what its cache
holds, never ask upstream (in online mode it asks upstream first and answers 504 when it cannot).
:meth:`OlahMirror.restart` keeps the cache folder, so a test can fill the cache online and then
serve it offline with the upstream stopped.

olah lives in its own virtual environment (``.venv-olah``, made by the Makefile): its pins would
change packages of the project's own environment (psutil, and it adds httpx).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

__all__ = ["OlahMirror", "find_olah_cli", "olah_config"]

_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_olah_cli() -> str | None:
    """``olah-cli`` of the project's ``.venv-olah`` (beside the sources), else one on PATH."""
    local = _REPO_ROOT / ".venv-olah" / "bin" / "olah-cli"
    if local.exists():
        return str(local)
    return shutil.which("olah-cli")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def olah_config(upstream_url: str, repos_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8090,
                offline: bool = False) -> str:
    """The TOML a site would write: where upstream is, where olah is reached, where it caches."""
    up = urlsplit(upstream_url)
    return (
        "[basic]\n"
        f'host = "{host}"\n'
        f"port = {port}\n"
        f'hf-scheme = "{up.scheme}"\n'
        f'hf-netloc = "{up.netloc}"\n'
        f'hf-lfs-netloc = "{up.netloc}"\n'
        'mirror-scheme = "http"\n'
        f'mirror-netloc = "{host}:{port}"\n'
        f'mirror-lfs-netloc = "{host}:{port}"\n'
        f'repos-path = "{Path(repos_path).as_posix()}"\n'
        "\n[accessibility]\n"
        f"offline = {'true' if offline else 'false'}\n"
    )


class OlahMirror:
    """One olah process in front of ``upstream_url``, caching in ``repos_path``."""

    def __init__(self, upstream_url: str, repos_path: str | os.PathLike, *, offline: bool = False,
                 cli: str | None = None, host: str = "127.0.0.1", start_timeout: float = 60.0) -> None:
        self.upstream_url = upstream_url
        self.repos_path = Path(repos_path)
        self.offline = offline
        self.cli = cli or find_olah_cli()
        if self.cli is None:
            raise FileNotFoundError("olah-cli not found: run `make setup` (it creates .venv-olah)")
        self.host = host
        self.port = 0
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self.workdir = self.repos_path.parent / f"{self.repos_path.name}-olah-run"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "olah.out"

    def start(self) -> "OlahMirror":
        if self._proc is not None:
            return self
        self.repos_path.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port(self.host)  # a restart keeps the address clients use
        config = self.workdir / "olah.toml"
        config.write_text(olah_config(self.upstream_url, self.repos_path, host=self.host, port=self.port,
                                      offline=self.offline))
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([self.cli, "-c", str(config), "--log-path", str(self.workdir / "logs")],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=self.workdir)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        until = time.monotonic() + self.start_timeout
        while time.monotonic() < until:
            if self._proc is not None and self._proc.poll() is not None:
                break
            try:
                httpx2.get(self.url + "/", timeout=1.0)
                return
            except httpx2.TransportError:
                time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"olah did not start on {self.url}:\n{tail}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, *, offline: bool | None = None) -> "OlahMirror":
        """Stop and start again (same cache folder), optionally switching olah's offline setting."""
        self.stop()
        if offline is not None:
            self.offline = offline
        return self.start()

    def __enter__(self) -> "OlahMirror":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
