"""Fault plans for :class:`phaita.testing.hub.LocalHub`.

A :class:`FaultPlan` is a list of :class:`FaultRule` objects (checked in order, first match wins)
plus an optional seeded random fault rate. The hub asks the plan for a fault for every request;
by default only ``GET`` bodies of ``/resolve/`` URLs are affected (``api=True`` extends a rule to
``/api/...`` requests, ``methods=("GET", "HEAD")`` extends it to HEAD).

Fault kinds
-----------
``reset``          send ``after`` bytes of the body, then a real TCP RST (SO_LINGER 0 + close).
``close``          send ``after`` bytes, then a clean FIN before the announced Content-Length.
``status``         answer ``status`` (500/502/503/429...) instead of the file; ``retry_after`` adds
                   a ``Retry-After`` header; ``ratelimit_reset`` adds the Hub's rate-limit headers
                   ``RateLimit: "resolvers";r=0;t=N`` and ``RateLimit-Policy`` (see
                   :meth:`FaultRule.status_headers`).
``stall``          send headers and ``after`` bytes, then nothing for ``seconds`` (``None``: until
                   the server stops), then the rest of the body.
``stall_headers``  read the request and never answer (for ``seconds``, or until the server stops),
                   then close.
``trickle``        after ``after`` bytes, send the rest at ``rate_bps`` bytes per second.
``corrupt``        flip (XOR 0xFF) ``corrupt_bytes`` bytes starting at offset ``after``; same length.
``ignore_range``   answer a Range request with ``200`` and the whole file (a server without ranges).
``wrong_range``    answer a Range request with ``206`` and the same number of bytes, but taken from
                   offset ``after_bytes`` (default 0), with a ``Content-Range`` that says so.

Plan-wide settings (not rules; they apply to every request while the plan is set)
----------------------------------------------------------------------------------
``connection_rate``  bytes per second per TCP connection (``cap:20m``): stands for a real link,
                     where one TCP stream carries only so much (a CDN edge, a proxy, a long path).
``max_transfers``    file GETs served at once (``maxconn:4``); one more is answered ``429``, like a
                     server that forbids many parallel connections.

``after`` is ``after_bytes`` or, when ``after_fraction`` is set, that fraction of the body length
of *this* response (so a resumed Range request that hits the same rule fails later again). An
offset at or past the end of the body is moved to its last byte, so the fault stays observable.

Rule selection: ``path`` is an fnmatch pattern on the (unquoted) URL path, ``methods`` the HTTP
methods. Each rule counts the requests it matches; ``nth`` (1-based) makes the rule fire first on
that ordinal (and, unless ``times`` says otherwise, only once); ``times`` caps how often it fires
(``None`` = unlimited). Every firing is appended to ``plan.fired``.

Text spec grammar (``parse_faults``)
------------------------------------
::

    spec    := item ("," item)*
    item    := head (":" arg)*
    head    := KIND ["@" POS] ["x" TIMES] ["#" NTH]
    KIND    := reset | close | stall | stall_headers | trickle | corrupt | status
             | ignore_range | wrong_range
             | a 3-digit HTTP status (500, 502, 503, 429, ...) | random | cap | maxconn
    POS     := NUMBER "%"          (after_fraction)  | NUMBER [k|m]   (after_bytes, k=1e3, m=1e6)
    arg     := VALUE               (positional, meaning depends on the kind, see below)
             | key "=" VALUE       (path, nth, times, after, status, retry, ratelimit, seconds,
                                    rate, bytes, methods (e.g. GET+HEAD), api, seed, kinds)
             | "api"               (also apply to /api requests)

Positional argument: status codes -> ``retry_after`` seconds (``429:5``); ``stall`` and
``stall_headers`` -> seconds (``stall:1``); ``trickle`` -> rate in bytes/s with k/m suffix
(``trickle:50k``); ``corrupt`` -> number of flipped bytes; ``random`` -> rate (``random:0.2``).
``random:RATE[:seed=S][:kinds=reset+close+status]`` sets the plan's random faults.
``cap:RATE`` (k/m suffix) sets ``connection_rate``; ``maxconn:N`` sets ``max_transfers``.

Examples: ``reset@30%``, ``503x2``, ``429:5``, ``429:ratelimit=55`` (the Hub's headers: reset in 55 s),
``stall:1``, ``trickle:50k``, ``close@50%``, ``corrupt@10%``, ``random:0.2:seed=7``,
``reset@1m:path=*.safetensors#2``, ``cap:20m``, ``maxconn:4``, ``ignore_range:path=*.bin``.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import time
from dataclasses import dataclass, field

KINDS = ("reset", "close", "status", "stall", "stall_headers", "trickle", "corrupt", "ignore_range", "wrong_range")
BODY_KINDS = ("reset", "close", "stall", "trickle", "corrupt")
RANGE_KINDS = ("ignore_range", "wrong_range")

__all__ = ["KINDS", "FaultRule", "FaultPlan", "FiredFault", "Pacer", "parse_faults", "parse_size"]


@dataclass
class FaultRule:
    """One fault; see the module docstring for the meaning of each field."""

    kind: str
    path: str = "*"
    nth: int | None = None
    times: int | None = None
    after_bytes: int = 0
    after_fraction: float | None = None
    status: int = 503
    retry_after: float | None = None
    ratelimit_reset: int | None = None  # whole seconds, as the Hub sends them
    seconds: float | None = None
    rate_bps: float = 50_000.0
    corrupt_bytes: int = 16
    methods: tuple[str, ...] = ("GET",)
    api: bool = False
    # bookkeeping (owned by FaultPlan)
    matched: int = field(default=0, compare=False)
    fired_count: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        self.methods = tuple(m.upper() for m in self.methods)
        if self.after_fraction is not None and not 0.0 <= self.after_fraction <= 1.0:
            raise ValueError("after_fraction must be within [0, 1]")

    def offset_for(self, body_length: int) -> int:
        """Byte offset inside a body of ``body_length`` bytes where the fault starts."""
        at = int(body_length * self.after_fraction) if self.after_fraction is not None else self.after_bytes
        return max(0, min(at, body_length - 1))  # never past the last byte: the fault stays observable

    def status_headers(self) -> dict[str, str]:
        """Headers of a ``status`` fault's answer: ``Retry-After`` and/or the Hub's rate-limit pair."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
        if self.ratelimit_reset is not None:
            headers["RateLimit"] = f'"resolvers";r=0;t={self.ratelimit_reset:d}'
            headers["RateLimit-Policy"] = '"fixed window";"resolvers";q=3000;w=300'
        return headers

    def describe(self) -> str:
        where = f"@{self.after_fraction:.0%}" if self.after_fraction is not None else f"@{self.after_bytes}"
        extra = {"status": f"{self.status}", "stall": f"{self.seconds}s", "trickle": f"{self.rate_bps}B/s"}
        return f"{self.kind}{where}" + (f"({extra[self.kind]})" if self.kind in extra else "")


@dataclass
class FiredFault:
    kind: str
    method: str
    path: str
    rule_index: int | None  # None for random faults
    at: float


class FaultPlan:
    """Rules plus seeded random faults; thread-safe. ``fired`` lists the faults that were applied."""

    def __init__(
        self,
        rules: list[FaultRule] | None = None,
        random_rate: float = 0.0,
        random_kinds: tuple[str, ...] = ("reset", "close", "status"),
        seed: int = 0,
        random_path: str = "*",
        connection_rate: float | None = None,
        max_transfers: int | None = None,
    ) -> None:
        self.rules = list(rules or [])
        if connection_rate is not None and not connection_rate > 0:
            raise ValueError("connection_rate must be > 0 bytes per second")
        if max_transfers is not None and max_transfers < 1:
            raise ValueError("max_transfers must be >= 1")
        self.connection_rate = connection_rate
        self.max_transfers = max_transfers
        self.random_rate = float(random_rate)
        self.random_kinds = tuple(random_kinds)
        for k in self.random_kinds:
            if k not in KINDS:
                raise ValueError(f"unknown random fault kind {k!r}")
        self.seed = seed
        self.random_path = random_path
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fired: list[FiredFault] = []

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v:g}" for k, v in (("connection_rate", self.connection_rate),
                                                        ("max_transfers", self.max_transfers)) if v)
        return f"FaultPlan(rules={[r.describe() for r in self.rules]}, random_rate={self.random_rate}{extra})"

    def __bool__(self) -> bool:
        return bool(self.rules) or self.random_rate > 0 or bool(self.connection_rate) or bool(self.max_transfers)

    def select(self, method: str, path: str, api: bool = False) -> FaultRule | None:
        """Return the fault to apply to this request (and record it), or None."""
        method = method.upper()
        with self._lock:
            chosen: tuple[int, FaultRule] | None = None
            # Every matching rule counts the request, even when an earlier rule fires: ``nth`` is
            # the ordinal among all requests that match the rule's pattern.
            for index, rule in enumerate(self.rules):
                if method not in rule.methods or (api and not rule.api):
                    continue
                if not fnmatch.fnmatchcase(path, rule.path):
                    continue
                rule.matched += 1
                if chosen is not None:
                    continue
                if rule.nth is not None and rule.matched < rule.nth:
                    continue
                limit = rule.times if rule.times is not None else (1 if rule.nth is not None else None)
                if limit is not None and rule.fired_count >= limit:
                    continue
                chosen = (index, rule)
            if chosen is not None:
                index, rule = chosen
                rule.fired_count += 1
                self.fired.append(FiredFault(rule.kind, method, path, index, time.time()))
                return rule
            if self.random_rate > 0 and not api and method == "GET" and self.random_kinds:
                if fnmatch.fnmatchcase(path, self.random_path) and self._rng.random() < self.random_rate:
                    kind = self._rng.choice(self.random_kinds)
                    rule = FaultRule(
                        kind,
                        after_fraction=round(self._rng.uniform(0.05, 0.95), 3),
                        status=self._rng.choice((500, 502, 503)),
                        seconds=1.0,
                    )
                    self.fired.append(FiredFault(kind, method, path, None, time.time()))
                    return rule
        return None

    def fired_kinds(self) -> list[str]:
        with self._lock:
            return [f.kind for f in self.fired]

    def reset_counters(self) -> None:
        with self._lock:
            for rule in self.rules:
                rule.matched = rule.fired_count = 0
            self.fired.clear()
            self._rng = random.Random(self.seed)


class Pacer:
    """Holds one connection to ``rate_bps`` bytes per second, as a real link's per-stream limit does.

    The sender asks :meth:`wait_before` before each piece (at most :attr:`piece` bytes, 1/50 s worth)
    and sleeps that long. No credit builds up while the connection is idle, so a new request on a
    kept-alive connection is not sent in one burst.
    """

    PIECE_SECONDS = 0.02

    def __init__(self, rate_bps: float, clock=time.monotonic) -> None:
        if not rate_bps > 0:
            raise ValueError("rate_bps must be > 0")
        self.rate = float(rate_bps)
        self.piece = max(1, int(self.rate * self.PIECE_SECONDS))
        self._clock = clock
        self._free_at = 0.0  # when the bytes already sent have left at ``rate``

    def wait_before(self, n: int) -> float:
        """Seconds to wait before sending ``n`` more bytes."""
        now = self._clock()
        start = max(now, self._free_at)
        self._free_at = start + n / self.rate
        return start - now


_SIZE_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>[kKmMgG]?)[bB]?$")
_HEAD_RE = re.compile(
    r"^(?P<kind>[a-z_]+?|\d{3})(?:@(?P<pos>[0-9.]+%|[0-9.]+[kKmMgG]?[bB]?))?"
    r"(?:x(?P<times>\d+))?(?:#(?P<nth>\d+))?$"
)
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_size(text: str) -> int:
    """``"50k"`` -> 50000, ``"2m"`` -> 2000000, ``"123"`` -> 123 (decimal units)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(float(m.group("num")) * _UNITS[m.group("unit").lower()])


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on", "")


def _parse_item(item: str, plan: FaultPlan) -> None:
    parts = item.split(":")
    head = _HEAD_RE.match(parts[0].strip())
    if not head:
        raise ValueError(f"bad fault item {item!r}")
    kind = head.group("kind")
    args = [p.strip() for p in parts[1:] if p.strip()]
    if kind in ("cap", "maxconn"):
        if len(args) != 1 or "=" in args[0]:
            raise ValueError(f"{kind} takes one value, e.g. cap:20m or maxconn:4 ({item!r})")
        if kind == "cap":
            plan.connection_rate = float(parse_size(args[0]))
            if plan.connection_rate <= 0:
                raise ValueError(f"cap must be > 0 bytes per second ({item!r})")
        else:
            plan.max_transfers = int(args[0])
            if plan.max_transfers < 1:
                raise ValueError(f"maxconn must be >= 1 ({item!r})")
        return
    if kind == "random":
        plan.random_rate = float(args[0]) if args and "=" not in args[0] else 0.1
        for arg in args:
            key, _, value = arg.partition("=")
            if key == "seed":
                plan.seed = int(value)
                plan._rng = random.Random(plan.seed)
            elif key == "kinds":
                plan.random_kinds = tuple(value.replace("+", " ").split())
                for k in plan.random_kinds:
                    if k not in KINDS:
                        raise ValueError(f"unknown random fault kind {k!r}")
            elif key == "path":
                plan.random_path = value
            elif "=" in arg:
                raise ValueError(f"unknown option {key!r} in {item!r}")
        return
    kw: dict = {}
    if kind.isdigit():
        kw["status"] = int(kind)
        kind = "status"
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r} in {item!r}")
    if head.group("pos"):
        pos = head.group("pos")
        if pos.endswith("%"):
            kw["after_fraction"] = float(pos[:-1]) / 100.0
        else:
            kw["after_bytes"] = parse_size(pos)
    if head.group("times"):
        kw["times"] = int(head.group("times"))
    if head.group("nth"):
        kw["nth"] = int(head.group("nth"))
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            if arg == "api":
                kw["api"] = True
            elif kind == "status":
                kw["retry_after"] = float(arg)
            elif kind in ("stall", "stall_headers"):
                kw["seconds"] = float(arg)
            elif kind == "trickle":
                kw["rate_bps"] = float(parse_size(arg))
            elif kind == "corrupt":
                kw["corrupt_bytes"] = int(arg)
            else:
                raise ValueError(f"{kind} takes no positional argument ({item!r})")
            continue
        if key == "path":
            kw["path"] = value
        elif key in ("nth", "times"):
            kw[key] = int(value)
        elif key == "after":
            if value.endswith("%"):
                kw["after_fraction"] = float(value[:-1]) / 100.0
            else:
                kw["after_bytes"] = parse_size(value)
        elif key == "status":
            kw["status"] = int(value)
        elif key == "retry":
            kw["retry_after"] = float(value)
        elif key == "ratelimit":
            kw["ratelimit_reset"] = int(value)
        elif key == "seconds":
            kw["seconds"] = float(value)
        elif key == "rate":
            kw["rate_bps"] = float(parse_size(value))
        elif key == "bytes":
            kw["corrupt_bytes"] = int(value)
        elif key == "methods":
            kw["methods"] = tuple(value.upper().replace("+", " ").split())
        elif key == "api":
            kw["api"] = _truthy(value)
        else:
            raise ValueError(f"unknown option {key!r} in {item!r}")
    plan.rules.append(FaultRule(kind, **kw))


def parse_faults(spec: str | None) -> FaultPlan:
    """Parse a fault spec such as ``"reset@30%,503x2,429:5,random:0.2:seed=7"`` (see module doc)."""
    plan = FaultPlan()
    if not spec or not spec.strip():
        return plan
    for item in spec.split(","):
        if item.strip():
            _parse_item(item.strip(), plan)
    return plan
