"""``phaita hub serve --cache``: verify the cache once, then serve it until SIGINT/SIGTERM.

The URL is the first line written, then what is served and refused (``# ...`` lines). SIGHUP
looks at the cache again at once (:mod:`.rescan`), as the periodic rescan does.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import threading
from typing import TextIO

from .access import Access
from .mirror import build_index, summary_lines
from .server import Limits, StationServer


def serve_cache(cache_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, *,
                out: TextIO | None = None, stop_event: threading.Event | None = None,
                tls: ssl.SSLContext | None = None, limits: Limits | None = None, access: Access | None = None,
                access_log: TextIO | None = None, rescan_every: float | None = 60.0) -> int:
    """Verify ``cache_dir`` once, then serve it until SIGINT/SIGTERM (or ``stop_event``); returns 0."""
    out = out or sys.stdout
    index = build_index(cache_dir)
    station = StationServer(index, host, port, tls=tls, limits=limits, access=access, access_log=access_log,
                            rescan_every=rescan_every)
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: station.rescan_now())
    try:
        with station:
            print(station.url, file=out, flush=True)
            for line in summary_lines(index):
                print(line, file=out)
            out.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
