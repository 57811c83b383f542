"""What the benchmark serves and breaks: generated models, a large file, dead endpoints."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from harness import REPO_LARGE, WEIGHTS, child_env, run_child


def make_model(models_dir: Path, mb: float, home: Path) -> Path:
    """A BERT-like model of about ``mb`` MB, generated once and kept in ``models_dir``."""
    dest = models_dir / f"bert-{mb:g}mb"
    if (dest / "config.json").is_file() and (dest / WEIGHTS).is_file():
        return dest
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=models_dir))
    run = run_child({"op": "make_model", "out": str(tmp), "mb": mb}, child_env("http://127.0.0.1:9", home, home),
                    600, tmp.with_suffix(".log"))
    if not run.ok:
        raise RuntimeError(f"could not generate the benchmark model: {run.error}")
    try:
        os.replace(tmp, dest)  # atomic: a concurrent run may have won; then keep theirs
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(tmp.with_suffix(".log"), ignore_errors=True)
    return dest


def make_large(models_dir: Path, size: int) -> Path:
    from phaita.testing import publish_large_file

    path = models_dir / f"large-{size}" / REPO_LARGE / WEIGHTS
    if path.is_file() and path.stat().st_size == size:
        return path
    tmp_root = Path(tempfile.mkdtemp(prefix="large.", dir=models_dir))
    made = publish_large_file(tmp_root, REPO_LARGE, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(made, path)
    shutil.rmtree(tmp_root, ignore_errors=True)
    return path


def publish(root: Path, repo_id: str, files: dict[str, Path]) -> None:
    from phaita.testing.models import link_or_copy

    for name, src in files.items():
        link_or_copy(src, root / repo_id / name)


class Blackhole:
    """A server that accepts TCP connections and never answers anything (nor reads)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="Blackhole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in [self._sock, *self._conns]:
            conn.close()


def refusing_endpoint() -> tuple[str, socket.socket]:
    """A bound, never-listening port: every connection attempt is refused (RST) at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock
