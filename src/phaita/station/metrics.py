"""The station's numbers, as Prometheus text (``GET /metrics``, exposition format 0.0.4).

Hand-written rather than with ``prometheus_client``: a dozen counters and gauges and one histogram,
in a format that is a few lines of text, are not worth a dependency on every station. Names:

* ``phaita_station_requests_total{method,code}``, ``phaita_station_sent_bytes_total``,
  ``phaita_station_request_duration_seconds`` (histogram, headers read to last byte sent)
* ``phaita_station_connections_open``, ``phaita_station_connections_total``,
  ``phaita_station_connections_rejected_total{reason="max_connections|per_client"}``
* ``phaita_station_timeouts_total{phase="handshake|headers|idle|body"}``,
  ``phaita_station_tls_handshake_failures_total``, ``phaita_station_auth_failures_total{code}``
* ``phaita_station_snapshots{state="served|refused"}``, ``phaita_station_rescans_total``,
  ``phaita_station_verified_bytes_total``
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from typing import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v)}"'.replace("\\", "\\\\").replace("\n", "\\n") for k, v in labels.items())
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters; :meth:`render` writes them out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.sent_bytes = 0
        self.connections_open = 0
        self.connections_total = 0
        self.rejected: Counter[str] = Counter()
        self.timeouts: Counter[str] = Counter()
        self.tls_failures = 0
        self.auth_failures: Counter[int] = Counter()
        self.rescans = 0
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self.snapshots: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)  # served, refused, bytes hashed

    def add(self, name: str, key: object = None, n: int = 1) -> None:
        with self._lock:
            value = getattr(self, name)
            if isinstance(value, Counter):
                value[key] += n
            else:
                setattr(self, name, value + n)

    def request(self, method: str, code: int, seconds: float, sent: int) -> None:
        with self._lock:
            self.requests[(method, code)] += 1
            self.sent_bytes += sent
            self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._duration_sum += seconds

    def render(self) -> str:
        served, refused, hashed = self.snapshots()
        with self._lock:
            out: list[str] = []

            def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
                out.append(f"# HELP {name} {text}")
                out.append(f"# TYPE {name} {kind}")
                out.extend(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
                           for labels, value in samples)

            metric("phaita_station_requests_total", "counter", "HTTP requests answered",
                   [(_labels(method=m, code=str(c)), n) for (m, c), n in sorted(self.requests.items())])
            metric("phaita_station_sent_bytes_total", "counter", "Bytes of answers sent (headers excluded)",
                   [("", self.sent_bytes)])
            cumulative, samples = 0, []
            for bound, count in zip(BUCKETS + (float("inf"),), self._buckets):
                cumulative += count
                samples.append((_labels(le="+Inf" if bound == float("inf") else f"{bound:g}"), cumulative))
            metric("phaita_station_request_duration_seconds", "histogram",
                   "Seconds from a request's headers read to its last byte sent", [])
            out.extend(f"phaita_station_request_duration_seconds_bucket{labels} {value}" for labels, value in samples)
            out.append(f"phaita_station_request_duration_seconds_sum {self._duration_sum:.6f}")
            out.append(f"phaita_station_request_duration_seconds_count {cumulative}")
            metric("phaita_station_connections_open", "gauge", "Connections open now", [("", self.connections_open)])
            metric("phaita_station_connections_total", "counter", "Connections accepted",
                   [("", self.connections_total)])
            metric("phaita_station_connections_rejected_total", "counter",
                   "Connections closed at once: over --max-connections or --max-per-client",
                   [(_labels(reason=r), n) for r, n in sorted(self.rejected.items())])
            metric("phaita_station_timeouts_total", "counter",
                   "Connections closed for a TLS handshake, request headers or body, or keep-alive idle past its limit",
                   [(_labels(phase=p), n) for p, n in sorted(self.timeouts.items())])
            metric("phaita_station_tls_handshake_failures_total", "counter",
                   "TLS handshakes that failed (a client certificate of another CA, a client refusing ours...)",
                   [("", self.tls_failures)])
            metric("phaita_station_auth_failures_total", "counter", "Requests refused for want of a token or certificate",
                   [(_labels(code=str(c)), n) for c, n in sorted(self.auth_failures.items())])
            metric("phaita_station_snapshots", "gauge", "Snapshots served, and refused (partial, failed verification)",
                   [(_labels(state="served"), served), (_labels(state="refused"), refused)])
            metric("phaita_station_rescans_total", "counter", "Looks at the cache for imported models",
                   [("", self.rescans)])
            metric("phaita_station_verified_bytes_total", "counter", "Bytes hashed to verify snapshots before serving them",
                   [("", hashed)])
        return "\n".join(out) + "\n"
