"""``python -m phaita.testing.chaos``: run the chaos suite and print its table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from phaita.loader import config as loader_config

from .plan import ChaosConfig
from .runner import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phaita.testing.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the long run (also PHAITA_FULL=1): 1000 loads, "
                        "more faults, longer stalls, an 8 MB raw file")
    parser.add_argument("--loads", type=int, default=None, help="number of loads (default 200, full 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="loads running at once (default 3)")
    parser.add_argument("--rate", type=float, default=None, help="fault probability per file GET")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one; "
                        "the published models in it are reused by the next run)")
    parser.add_argument("--quiet", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    full = args.full or loader_config.full_runs()
    overrides: dict[str, Any] = {"seed": args.seed, "keep": args.keep}
    for key in ("loads", "workers", "rate"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = ChaosConfig.full(**overrides) if full else ChaosConfig.short(**overrides)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run_chaos(config, workdir=args.workdir, log=log)
    print(report.table())
    for line in report.problems():
        print(line)
    return 0 if report.ok else 1
