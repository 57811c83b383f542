"""The outcome of each load and the summary table of a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .plan import ChaosConfig


@dataclass
class LoadResult:
    index: int
    spec: str
    max_retries: int
    outcome: str  # succeeded | failed cleanly | unexpected error | hang
    seconds: float
    bound: float
    corrupt: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class ChaosReport:
    config: ChaosConfig
    results: list[LoadResult]
    faults: Counter
    bytes_served: int
    bytes_needed: int
    resumes: int
    failed_attempts: int
    wall_seconds: float
    range_segments: int = 0  # GETs of one segment of a file fetched over parallel range streams
    fallbacks: int = 0  # "fewer streams / connections from now on" events
    # A corrupted answer costs its whole file once more, whatever piece was hit: one sha256 covers
    # the file, so only a whole second copy can tell which bytes were wrong (the sizes of those files).
    bytes_owed_to_corruption: int = 0

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def loads(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> int:
        return self.count("succeeded")

    @property
    def failed_cleanly(self) -> int:
        return self.count("failed cleanly")

    @property
    def unexpected(self) -> int:
        return self.count("unexpected error")

    @property
    def hangs(self) -> int:
        return self.count("hang")

    @property
    def corrupt(self) -> int:
        return sum(bool(r.corrupt) for r in self.results)

    @property
    def ratio(self) -> float:
        return self.bytes_served / self.bytes_needed if self.bytes_needed else float("nan")

    @property
    def waste(self) -> float:
        """Bytes served beyond what the loads needed plus what corrupted answers force (1.0: none)."""
        owed = self.bytes_needed + self.bytes_owed_to_corruption
        return self.bytes_served / owed if owed else float("nan")

    @property
    def ok(self) -> bool:
        return self.corrupt == 0 and self.hangs == 0 and self.unexpected == 0

    def problems(self) -> list[str]:
        out = []
        for r in self.results:
            if r.outcome in ("unexpected error", "hang") or r.corrupt:
                out.append(f"load {r.index} {r.spec} (max_retries={r.max_retries}, {r.seconds:.1f} s, "
                           f"bound {r.bound:.1f} s): {r.outcome}; {r.detail}; corrupt: {r.corrupt}")
        return out

    def table(self) -> str:
        cfg = self.config
        slowest = max(self.results, key=lambda r: r.seconds / r.bound, default=None)
        rows = [
            ("loads", f"{self.loads}"),
            ("succeeded (exact bytes)", f"{self.succeeded}"),
            ("failed cleanly (transient, all attempts)", f"{self.failed_cleanly}"),
            ("unexpected errors (must be 0)", f"{self.unexpected}"),
            ("corrupt (must be 0)", f"{self.corrupt}"),
            ("hangs (must be 0)", f"{self.hangs}"),
            ("faults injected", f"{sum(self.faults.values())}  (" + ", ".join(
                f"{k} {self.faults.get(k, 0)}" for k in cfg.kinds) + ")"),
            ("range segments fetched in parallel", f"{self.range_segments}"),
            ("fallbacks to fewer streams", f"{self.fallbacks}"),
            ("transfers resumed inside an attempt", f"{self.resumes}"),
            ("failed attempts (retried or last)", f"{self.failed_attempts}"),
            ("bytes served / bytes needed", f"{self.bytes_served:,} / {self.bytes_needed:,} = {self.ratio:.3f}"),
            ("  / (needed + corrupted files once more)",
             f"{self.bytes_served:,} / {self.bytes_needed + self.bytes_owed_to_corruption:,} = {self.waste:.3f}"),
            ("slowest load vs its hang bound", f"{slowest.seconds:.1f} s / {slowest.bound:.1f} s" if slowest else "-"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        head = (f"Chaos run: seed {cfg.seed}, fault rate {cfg.rate:g} per file GET ({cfg.api_rate:g} per listing), "
                f"timeout {cfg.timeout:g} s, stall timeout {cfg.stall_timeout:g} s, "
                f"backoff base {cfg.backoff_base:g} s, {cfg.workers} workers")
        lines = [head, "-" * len(head)] + [f"{k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines)
