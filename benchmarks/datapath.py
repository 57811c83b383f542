#!/usr/bin/env python
"""Where a download's time goes, per GiB: each step of the data path alone, against nginx (issue 20).

    .venv/bin/python benchmarks/datapath.py              # a 256 MiB file (default), 3 runs per step
    .venv/bin/python benchmarks/datapath.py --mb 1024 --runs 3

Every step is timed in this process (wall and CPU seconds, scaled to one GiB; median of the runs),
one at a time, over the same file served by ``phaita.testing.NginxHub`` on 127.0.0.1:

==========================  ====================================================================
body through httpx          ``response.iter_raw()`` (h11's 64 KiB pieces): the old loader's reads
body via recv_into          ``socket.recv_into`` a reused 1 MiB buffer (``transfer/body.py``)
sha256, 4 MiB pieces        ``hashlib`` over the bytes in memory, one core
pwrite 1 MiB                ``os.pwrite`` into a new file, no fsync (the page cache only)
pwrite + fdatasync / 4 MiB  the same, fdatasync after every 4 MiB in the writing thread (the old
                            loader's checkpoints, every ``PHAITA_PARALLEL_THRESHOLD / 4``)
pwrite + one fsync          the same, one fsync at the end
pwrite + write-back + fsync the same, ``posix_fadvise(DONTNEED)`` after each write (starts the
                            disk at once), one fsync at the end (what the loader does now)
==========================  ====================================================================

The file lives in ``--out`` (default ``benchmarks/out/datapath``), written there once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = "datapath/one"
MIB = 1 << 20


def _timed(fn) -> tuple[float, float]:
    os.sync()
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _httpx(url: str) -> None:
    import httpx2

    with httpx2.Client() as client, client.stream("GET", url) as response:
        for _ in response.iter_raw():
            pass


def _recv_into(url: str) -> None:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port)) as sock:
        sock.sendall(f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        buf = memoryview(bytearray(MIB))
        while sock.recv_into(buf):
            pass


def _sha256(data: bytes, size: int) -> None:
    h = hashlib.sha256()
    view = memoryview(data)
    for _ in range(size // len(data)):
        for i in range(0, len(data), 4 * MIB):
            h.update(view[i:i + 4 * MIB])


def _pwrite(path: Path, data: bytes, size: int, sync_every: int = 0, fsync: bool = False,
            write_back: bool = False) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view, pos, since = memoryview(data), 0, 0
        while pos < size:
            for i in range(0, len(data), MIB):
                os.pwrite(fd, view[i:i + MIB], pos)
                if write_back:
                    os.posix_fadvise(fd, pos, MIB, os.POSIX_FADV_DONTNEED)
                pos += MIB
                since += MIB
                if sync_every and since >= sync_every:
                    os.fdatasync(fd)
                    since = 0
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "datapath")
    args = parser.parse_args(argv)
    from phaita.testing import publish_large_file
    from phaita.testing.nginx_hub import MISSING, NginxHub, nginx_binary

    if nginx_binary() is None:
        print(MISSING, file=sys.stderr)
        return 2
    size = args.mb * MIB
    root = args.out / "root"
    path = root / REPO / "model.safetensors"
    if not (path.is_file() and path.stat().st_size == size):
        publish_large_file(root, REPO, size)
    data = path.read_bytes()[:64 * MIB] if size >= 64 * MIB else path.read_bytes()
    scratch = args.out / "scratch.bin"
    with NginxHub(root) as hub:
        url = f"{hub.url}/{REPO}/resolve/main/model.safetensors"
        steps = [
            ("body through httpx (64 KiB pieces)", lambda: _httpx(url)),
            ("body via recv_into (1 MiB buffer)", lambda: _recv_into(url)),
            ("sha256, 4 MiB pieces, one core", lambda: _sha256(data, size)),
            ("pwrite 1 MiB, no fsync", lambda: _pwrite(scratch, data, size)),
            ("pwrite + fdatasync every 4 MiB", lambda: _pwrite(scratch, data, size, sync_every=4 * MIB, fsync=True)),
            ("pwrite + one fsync", lambda: _pwrite(scratch, data, size, fsync=True)),
            ("pwrite + write-back + one fsync", lambda: _pwrite(scratch, data, size, fsync=True, write_back=True)),
        ]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in steps}
        for _ in range(args.runs):  # interleaved: noise on a shared machine spreads over every step
            for name, fn in steps:
                results[name].append(_timed(fn))
    per = (1 << 30) / size
    print(f"data path, per GiB (a {args.mb} MiB file, nginx on loopback, median of {args.runs}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(f"{'step':<40} {'wall s/GiB':>11} {'CPU s/GiB':>10}")
    for name, runs in results.items():
        print(f"{name:<40} {statistics.median(w for w, _ in runs) * per:>11.2f} "
              f"{statistics.median(c for _, c in runs) * per:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
