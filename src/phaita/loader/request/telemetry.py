"""OpenTelemetry from the loader's event stream: one span per load and per file fetch, and metrics.

Built on :mod:`phaita.loader.events` (never on log text): :func:`observer` returns an observer
that :func:`~phaita.loader.request.load_request.prepare` adds to every load request, or None, in
which case nothing at all is done per event. It is None when ``opentelemetry-api`` is not installed
(``pip install 'phaita[otel]'``) or when the application configured neither a tracer provider nor a
meter provider (the SDK, an exporter and ``OTEL_*`` variables are the application's choice, e.g.
``opentelemetry-instrument``; see docs/FLEETS.md).

Spans (tracer ``phaita.loader``):

* ``phaita.load``: one per model loaded (each candidate tried is one). Attributes ``phaita.model``,
  ``phaita.revision``, ``phaita.commit``, ``phaita.endpoint`` (redacted: no token, no user:password),
  ``phaita.outcome`` (ok / failed), ``phaita.source`` (cache: no file transferred; network),
  ``phaita.bytes_fetched`` (every byte that arrived), ``phaita.bytes_discarded`` (of those, thrown
  away: a corrupt copy, a restart), ``phaita.bytes_reused`` (already in the cache), ``phaita.attempts``, ``phaita.retries``,
  ``phaita.fallbacks.endpoint``, ``phaita.fallbacks.streams``, ``phaita.resumes``; failed:
  ``error.type`` and ``phaita.failure_kind`` (a ``FailureKind`` value) and the status ERROR.
* ``phaita.fetch_file``: one per file transfer (per attempt), child of its load. ``phaita.file``,
  ``phaita.file.size``, ``phaita.endpoint``, ``phaita.attempt``, ``phaita.bytes_fetched``,
  ``phaita.bytes_reused`` (already on disk when it started), ``phaita.requests``, ``phaita.resumes``,
  ``phaita.outcome`` (ok / failed / abandoned), failed: ``error.type``.

Metrics (meter ``phaita.loader``): ``phaita.loader.loads`` {outcome, source, phaita.model},
``phaita.loader.bytes`` (By) {direction=fetched|reused, phaita.model}, ``phaita.loader.load.duration``
(s, histogram) {outcome, phaita.model}, ``phaita.loader.retries`` {phaita.failure_kind},
``phaita.loader.failures`` {phaita.failure_kind, phaita.model}, ``phaita.loader.fallbacks`` {type}.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..errors import redact

NAME = "phaita.loader"
_instruments: dict[int, dict[str, Any]] = {}  # id(meter provider) -> its instruments (created once)
_instruments_lock = threading.Lock()


def _api() -> tuple[Any, Any] | None:
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        return None
    return trace, metrics


def configured() -> bool:
    """True when opentelemetry-api is installed and a tracer or meter provider was set."""
    api = _api()
    if api is None:
        return False
    trace, metrics = api
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    unset = ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider")
    return type(tracer_provider).__name__ not in unset or type(meter_provider).__name__ not in unset


def observer() -> "LoadTelemetry | None":
    """A new observer for one load request, or None when telemetry is off (see the module's text)."""
    return LoadTelemetry() if configured() else None


def _meter_instruments(metrics: Any) -> dict[str, Any]:
    provider = metrics.get_meter_provider()
    with _instruments_lock:
        found = _instruments.get(id(provider))
        if found is not None and found["provider"] is provider:
            return found
        from phaita import __version__

        meter = provider.get_meter(NAME, __version__)
        found = {
            "provider": provider,
            "loads": meter.create_counter("phaita.loader.loads", unit="{load}", description="Model loads"),
            "bytes": meter.create_counter("phaita.loader.bytes", unit="By",
                                          description="Bytes of model files fetched over the network or reused"),
            "duration": meter.create_histogram("phaita.loader.load.duration", unit="s",
                                               description="Duration of one model load (fetch, verify, load)"),
            "retries": meter.create_counter("phaita.loader.retries", unit="{retry}",
                                            description="Failed attempts followed by another"),
            "failures": meter.create_counter("phaita.loader.failures", unit="{load}",
                                             description="Loads that failed, by failure kind"),
            "fallbacks": meter.create_counter("phaita.loader.fallbacks", unit="{fallback}",
                                              description="Hand-overs to the next endpoint; fewer parallel streams"),
        }
        _instruments[id(provider)] = found
        return found


@dataclass
class _Load:
    span: Any
    model: str
    revision: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    fetched: int = 0  # bytes that arrived (those discarded too: the network carried them)
    discarded: int = 0
    reused: int | None = None  # from the first plan
    attempts: int = 0
    retries: int = 0
    endpoint_fallbacks: int = 0
    stream_fallbacks: int = 0
    resumes: int = 0
    transferred: bool = False


@dataclass
class _File:
    span: Any
    fetched: int = 0
    requests: int = 0
    resumes: int = 0


class LoadTelemetry:
    """An observer of one load request's events (see the module's text). Thread-safe."""

    def __init__(self) -> None:
        trace, metrics = _api()  # type: ignore[misc]
        from phaita import __version__

        self._trace = trace
        self._tracer = trace.get_tracer(NAME, __version__)
        self._metrics = _meter_instruments(metrics)
        self._lock = threading.Lock()
        self._load: _Load | None = None
        self._last_context: Any = None  # files of a background refresh hang under the load that started it
        self._files: dict[str, _File] = {}

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            with self._lock:
                handler(event)

    # ------------------------------------------------------------------ loads
    def _on_LoadStarted(self, e: ev.LoadStarted) -> None:
        span = self._tracer.start_span("phaita.load", attributes={
            "phaita.model": e.repo_id, "phaita.revision": e.revision, "phaita.endpoint": redact(e.endpoint)})
        self._load = _Load(span, e.repo_id, e.revision, redact(e.endpoint))
        self._last_context = self._trace.set_span_in_context(span)

    def _on_Attempt(self, e: ev.Attempt) -> None:
        if self._load is not None:
            self._load.attempts = max(self._load.attempts, e.number)

    def _on_Plan(self, e: ev.Plan) -> None:
        load = self._load
        if load is not None:
            if load.reused is None:
                load.reused = e.cached_bytes
            load.span.set_attribute("phaita.commit", e.commit)

    def _on_Retried(self, e: ev.Retried) -> None:
        if e.wait is None:
            return  # the last attempt failed: counted as the load's failure
        if self._load is not None:
            self._load.retries += 1
        self._metrics["retries"].add(1, {"phaita.failure_kind": e.kind or "other"})

    def _on_EndpointFallback(self, e: ev.EndpointFallback) -> None:
        if self._load is not None:
            self._load.endpoint_fallbacks += 1
            self._load.span.add_event("endpoint fallback", {"phaita.endpoint": redact(e.endpoint),
                                                            "phaita.next_endpoint": redact(e.next_endpoint),
                                                            "phaita.reason": redact(e.reason)})
        self._metrics["fallbacks"].add(1, {"type": "endpoint"})

    def _on_Fallback(self, e: ev.Fallback) -> None:
        if self._load is not None:
            self._load.stream_fallbacks += 1
        self._metrics["fallbacks"].add(1, {"type": "streams"})

    def _on_LoadFinished(self, e: ev.LoadFinished) -> None:
        load, self._load = self._load, None
        if load is None:
            return
        for path in list(self._files):
            self._end_file(path, "abandoned", None, None)
        attempts = max(load.attempts, e.attempts or 0)
        reused = load.reused if load.reused is not None else (e.snapshot_bytes or 0)
        source = "network" if load.transferred or load.fetched else "cache"
        attrs = {"phaita.outcome": e.outcome, "phaita.source": source, "phaita.bytes_fetched": load.fetched,
                 "phaita.bytes_reused": reused, "phaita.attempts": attempts, "phaita.retries": load.retries,
                 "phaita.fallbacks.endpoint": load.endpoint_fallbacks,
                 "phaita.fallbacks.streams": load.stream_fallbacks, "phaita.resumes": load.resumes,
                 "phaita.bytes_discarded": load.discarded}
        if e.commit:
            attrs["phaita.commit"] = e.commit
        span = load.span
        span.set_attributes(attrs)
        model = {"phaita.model": load.model}
        if e.outcome != "ok":
            kind = e.kind or "other"
            span.set_attributes({"error.type": kind, "phaita.failure_kind": kind})
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, redact(e.reason or kind)))
            self._metrics["failures"].add(1, {**model, "phaita.failure_kind": kind})
        span.end()
        m = self._metrics
        m["loads"].add(1, {**model, "outcome": e.outcome, "source": source})
        m["duration"].record(time.monotonic() - load.started, {**model, "outcome": e.outcome})
        if load.fetched:
            m["bytes"].add(load.fetched, {**model, "direction": "fetched"})
        if reused:
            m["bytes"].add(reused, {**model, "direction": "reused"})

    # ------------------------------------------------------------------ files
    def _on_FileStarted(self, e: ev.FileStarted) -> None:
        if e.path in self._files:
            self._end_file(e.path, "abandoned", None, None)
        attrs = {"phaita.file": e.path, "phaita.file.size": e.size, "phaita.endpoint": redact(e.endpoint),
                 "phaita.bytes_reused": e.initial}
        if self._load is not None:
            self._load.transferred = True
            attrs.update({"phaita.model": self._load.model, "phaita.attempt": max(1, self._load.attempts)})
        span = self._tracer.start_span("phaita.fetch_file", context=self._last_context, attributes=attrs)
        self._files[e.path] = _File(span)

    def _on_Requested(self, e: ev.Requested) -> None:
        f = self._files.get(e.path)
        if f is not None:
            f.requests += 1

    def _on_Progress(self, e: ev.Progress) -> None:
        f = self._files.get(e.path)
        arrived, dropped = max(e.n, 0), max(-e.n, 0)
        if f is not None:
            f.fetched += arrived
        if self._load is not None:
            self._load.fetched += arrived
            self._load.discarded += dropped

    def _on_Resumed(self, e: ev.Resumed) -> None:
        f = self._files.get(e.path)
        if f is not None:
            f.resumes += 1
        if self._load is not None:
            self._load.resumes += 1

    def _on_FileDone(self, e: ev.FileDone) -> None:
        self._end_file(e.path, "ok", None, None)

    def _on_FileFailed(self, e: ev.FileFailed) -> None:
        self._end_file(e.path, "failed", e.kind, e.reason)

    def _end_file(self, path: str, outcome: str, kind: str | None, reason: str | None) -> None:
        f = self._files.pop(path, None)
        if f is None:
            return
        f.span.set_attributes({"phaita.outcome": outcome, "phaita.bytes_fetched": f.fetched,
                               "phaita.requests": f.requests, "phaita.resumes": f.resumes})
        if outcome == "failed":
            f.span.set_attributes({"error.type": kind or "other", "phaita.failure_kind": kind or "other"})
            f.span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, redact(reason or "")))
        f.span.end()
