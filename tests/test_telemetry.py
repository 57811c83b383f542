"""OpenTelemetry from real loads: the SDK's in-memory span exporter and metric reader, the local hub with faults.

The providers are the application's (as ``opentelemetry-instrument`` or an app's own set-up makes
them): set here as the global ones for one test (monkeypatch restores the unset state), and the
loader's spans and numbers must say what the hub saw happen.
"""

from __future__ import annotations

import sys

import pytest

from phaita.loader import events as ev
from phaita.loader.request import telemetry
from phaita.utils.model_loader import ModelNotFoundError, ModelDownloadError, prefetch_model

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace  # noqa: E402
from opentelemetry.metrics import _internal as metrics_internal  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

BERT = "phaita-test/tiny-bert"
WEIGHTS = "model.safetensors"
TOKEN = "hf_TelemetryNeverSeesThis0123456789"


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str) -> list:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[tuple[dict, float]]:
        """(attributes, value) of every data point of ``metric`` (sums: the value; histograms: the count)."""
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        for p in m.data.data_points:
                            out.append((dict(p.attributes), getattr(p, "value", None) if hasattr(p, "value")
                                        else p.count))
        return out

    def total(self, metric: str, **attrs) -> float:
        return sum(v for a, v in self.points(metric) if all(a.get(k) == w for k, w in attrs.items()))


@pytest.fixture
def otel(monkeypatch):
    o = Otel()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", o.tracer_provider)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", o.meter_provider)
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def file_bytes(hub, path: str) -> int:
    """Bytes of ``path``'s body the hub sent in answers that carried the file (200/206)."""
    return sum(r.bytes_sent for r in hub.requests("/resolve/") if r.path.endswith("/" + path) and r.status in (200, 206))


def all_attributes(otel: Otel) -> list[str]:
    values = []
    for span in otel.exporter.get_finished_spans():
        values += [str(v) for v in span.attributes.values()]
        values += [str(span.status.description or "")]
        for event in span.events:
            values += [str(v) for v in event.attributes.values()]
    for attrs, _ in [p for m in ("phaita.loader.loads", "phaita.loader.bytes", "phaita.loader.failures",
                                 "phaita.loader.retries", "phaita.loader.fallbacks") for p in otel.points(m)]:
        values += [str(v) for v in attrs.values()]
    return values


def test_off_unless_installed_and_configured(loader_env, local_hub, monkeypatch):
    assert telemetry.configured() is False  # the API is installed, no provider was set
    seen: list = []
    prefetch_model(BERT, events=seen.append)
    assert any(isinstance(e, ev.LoadFinished) and e.outcome == "ok" for e in seen)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if phaita[otel] were not installed
    assert telemetry.configured() is False and telemetry.observer() is None


def test_a_cold_load_through_503s_then_a_warm_one(loader_env, local_hub, otel):
    local_hub.set_faults(f"503x2:path=*{WEIGHTS}")
    folder = prefetch_model(BERT, max_retries=3)
    size = {p.name: p.stat().st_size for p in __import__("pathlib").Path(folder).iterdir()}

    (load,) = otel.spans("phaita.load")
    a = load.attributes
    assert a["phaita.model"] == BERT and a["phaita.revision"] == "main" and a["phaita.outcome"] == "ok"
    assert a["phaita.commit"] == local_hub.commit_sha(BERT) and a["phaita.endpoint"] == local_hub.url
    assert a["phaita.attempts"] == 3 and a["phaita.retries"] == 2 and a["phaita.source"] == "network"
    assert a["phaita.bytes_fetched"] == local_hub.bytes_sent("/resolve/") - sum(
        r.bytes_sent for r in local_hub.requests("/resolve/") if r.status not in (200, 206)) == sum(size.values())
    assert a["phaita.bytes_reused"] == 0 and load.status.is_ok
    weights = [s for s in otel.spans("phaita.fetch_file") if s.attributes["phaita.file"] == WEIGHTS]
    assert [s.attributes["phaita.outcome"] for s in weights] == ["failed", "failed", "ok"]
    assert [s.attributes["phaita.attempt"] for s in weights] == [1, 2, 3]
    assert weights[0].attributes["error.type"] == "http" and not weights[0].status.is_ok
    assert weights[-1].attributes["phaita.bytes_fetched"] == size[WEIGHTS] == file_bytes(local_hub, WEIGHTS)
    assert all(s.parent.span_id == load.context.span_id for s in otel.spans("phaita.fetch_file"))
    assert otel.total("phaita.loader.retries", **{"phaita.failure_kind": "http"}) == 2
    assert otel.total("phaita.loader.bytes", direction="fetched") == sum(size.values())

    otel.exporter.clear()
    local_hub.set_faults(None)
    prefetch_model(BERT)  # warm: a commit check, no file
    (load,) = otel.spans("phaita.load")
    assert load.attributes["phaita.source"] == "cache" and load.attributes["phaita.bytes_fetched"] == 0
    assert load.attributes["phaita.bytes_reused"] == sum(size.values())
    assert otel.spans("phaita.fetch_file") == []
    assert otel.total("phaita.loader.bytes", direction="reused") == sum(size.values())
    assert otel.total("phaita.loader.loads", outcome="ok") == 2
    assert otel.total("phaita.loader.load.duration", outcome="ok") == 2  # two recorded durations


def test_a_reset_mid_file_is_one_resume_in_one_attempt(loader_env, local_hub, otel):
    local_hub.set_faults(f"reset@50%:path=*{WEIGHTS}:times=1")
    prefetch_model(BERT)
    (load,) = otel.spans("phaita.load")
    assert load.attributes["phaita.attempts"] == 1 and load.attributes["phaita.resumes"] == 1
    (weights,) = [s for s in otel.spans("phaita.fetch_file") if s.attributes["phaita.file"] == WEIGHTS]
    assert weights.attributes["phaita.requests"] == 2 and weights.attributes["phaita.resumes"] == 1
    assert weights.attributes["phaita.outcome"] == "ok"


def test_failures_by_kind(loader_env, local_hub, otel):
    with pytest.raises(ModelNotFoundError):
        prefetch_model("phaita-test/no-such-model", max_retries=3)
    local_hub.set_faults(f"503:path=*{WEIGHTS}")
    with pytest.raises(ModelDownloadError):
        prefetch_model(BERT, max_retries=2)
    missing, flaky = otel.spans("phaita.load")
    assert missing.attributes["phaita.failure_kind"] == "not_found" and missing.attributes["phaita.attempts"] == 1
    assert flaky.attributes["phaita.failure_kind"] == "http" and flaky.attributes["phaita.attempts"] == 2
    assert flaky.attributes["error.type"] == "http" and not flaky.status.is_ok and not missing.status.is_ok
    assert otel.total("phaita.loader.failures", **{"phaita.failure_kind": "not_found"}) == 1
    assert otel.total("phaita.loader.failures", **{"phaita.failure_kind": "http"}) == 1
    assert otel.total("phaita.loader.loads", outcome="failed") == 2


def test_mirror_down_then_origin_is_one_endpoint_fallback(loader_env, local_hub, otel):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the mirror is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    prefetch_model(BERT, endpoints=[dead, local_hub.url])
    (load,) = otel.spans("phaita.load")
    assert load.attributes["phaita.endpoint"] == dead and load.attributes["phaita.fallbacks.endpoint"] == 1
    assert [e.attributes["phaita.next_endpoint"] for e in load.events] == [local_hub.url]
    assert {s.attributes["phaita.endpoint"] for s in otel.spans("phaita.fetch_file")} == {local_hub.url}
    assert otel.total("phaita.loader.fallbacks", type="endpoint") == 1


def test_the_token_is_in_no_attribute(loader_env, local_hub, otel, monkeypatch):
    host = local_hub.url.split("//", 1)[1]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    local_hub.set_faults(f"503x1:path=*{WEIGHTS}")
    prefetch_model(BERT, token=TOKEN, endpoints=[f"http://site:{TOKEN}@{host}", local_hub.url])
    with pytest.raises(ModelDownloadError):
        prefetch_model("phaita-test/no-such-model", token=TOKEN, max_retries=1)
    assert any(r.authorization == f"Bearer {TOKEN}" for r in local_hub.stats)  # it was sent...
    values = all_attributes(otel)
    assert len(otel.spans("phaita.load")) == 2 and values
    assert not [v for v in values if TOKEN in v or "hf_Tele" in v]  # ...and is nowhere in the telemetry
