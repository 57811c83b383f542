"""The knobs of a chaos run and the seeded random fault plan they drive."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..faults import FaultPlan, FaultRule, FiredFault

# Fault labels drawn by ChaosPlan (a label names a kind plus its parameters).
CHAOS_KINDS = ("reset", "close", "5xx", "429", "stall", "stall_headers", "trickle", "corrupt")


@dataclass
class ChaosConfig:
    """Knobs of one run. ``short()`` is the CI mode; ``full()`` the long one."""

    loads: int = 200
    seed: int = 0
    rate: float = 0.12  # fault probability per file GET
    api_rate: float = 0.06  # fault probability per listing request
    kinds: tuple[str, ...] = CHAOS_KINDS
    timeout: float = 2.0  # per attempt
    stall_timeout: float = 0.25  # PHAITA_STALL_TIMEOUT
    backoff_base: float = 0.01  # PHAITA_BACKOFF_BASE
    retry_after: tuple[float, ...] = (0.1, 0.3)  # Retry-After values of injected 429s
    stall_seconds: tuple[float, float] = (0.5, 1.5)
    trickle_rates: tuple[float, ...] = (20_000.0, 100_000.0, 500_000.0)
    retries: tuple[int, ...] = (1, 2, 3, 4)
    workers: int = 3
    loads_per_cache: int = 2
    raw_size: int = 2_000_000
    # Files from this size on come over several range streams (PHAITA_PARALLEL_THRESHOLD): the raw
    # weights file, in up to ``streams_per_file`` segments at once, each drawing its own faults.
    parallel_threshold: int = 1_000_000
    streams_per_file: int = 4
    slack: float = 6.0
    keep: bool = False  # keep the work folder (caches of failed loads) for inspection

    @classmethod
    def short(cls, **overrides: Any) -> "ChaosConfig":
        return cls(**overrides)

    @classmethod
    def full(cls, **overrides: Any) -> "ChaosConfig":
        values: dict[str, Any] = dict(loads=1000, rate=0.2, api_rate=0.1, timeout=4.0, stall_timeout=0.5,
                                      stall_seconds=(0.5, 3.0), retries=(1, 2, 3, 4, 5), raw_size=8_000_000,
                                      loads_per_cache=3, slack=10.0)
        values.update(overrides)
        return cls(**values)

    def longest_wait(self, attempts: int) -> float:
        backoff = self.backoff_base * 2 ** max(attempts - 2, 0)
        return max([backoff, *self.retry_after]) * 1.5  # PHAITA_BACKOFF_JITTER's default spread, +50 %

    def bound(self, attempts: int) -> float:
        """Longest a load with ``attempts`` attempts may take before it counts as a hang."""
        return attempts * (self.timeout + self.longest_wait(attempts)) + self.slack


class ChaosPlan(FaultPlan):
    """Random faults with random parameters, drawn from a seeded generator.

    With one worker the sequence of faults is reproducible for a seed; with several, which
    request draws which fault depends on thread timing (the rates and parameters do not).
    Kinds are dealt from a shuffled deck, not drawn one by one: every kind fires once in each
    ``len(kinds)`` faults, so a short run (the registry's 80 loads, ~35 faults) never misses one.
    """

    def __init__(self, config: ChaosConfig) -> None:
        super().__init__(seed=config.seed)
        self.config = config
        self.enabled = True
        self.labels: Counter[str] = Counter()
        self._deck: list[str] = []

    def _deal(self) -> str:
        if not self._deck:
            self._deck = list(self.config.kinds)
            self._rng.shuffle(self._deck)
        return self._deck.pop()

    def __bool__(self) -> bool:
        return self.enabled

    def select(self, method: str, path: str, api: bool = False) -> FaultRule | None:
        cfg = self.config
        with self._lock:
            if not self.enabled or method.upper() != "GET":
                return None
            if self._rng.random() >= (cfg.api_rate if api else cfg.rate):
                return None
            rng = self._rng
            label = self._deal()
            at = round(rng.uniform(0.05, 0.95), 3)
            if label == "5xx":
                rule = FaultRule("status", status=rng.choice((500, 502, 503, 504)))
            elif label == "429":
                rule = FaultRule("status", status=429, retry_after=rng.choice(cfg.retry_after))
            elif label == "stall":
                rule = FaultRule("stall", after_fraction=at, seconds=round(rng.uniform(*cfg.stall_seconds), 2))
            elif label == "stall_headers":
                rule = FaultRule("stall_headers", seconds=round(rng.uniform(*cfg.stall_seconds), 2))
            elif label == "trickle":
                rule = FaultRule("trickle", after_fraction=at, rate_bps=rng.choice(cfg.trickle_rates))
            elif label == "corrupt":
                rule = FaultRule("corrupt", after_fraction=at, corrupt_bytes=rng.randint(1, 16))
            else:  # reset, close
                rule = FaultRule(label, after_fraction=at)
            self.labels[label] += 1
            self.fired.append(FiredFault(rule.kind, method, path, None, time.time()))
            return rule
