"""Faults between the loader and a real registry: every guarantee holds (through a fault proxy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import prefetch_model
from phaita.loader.oci.push import Pusher
from phaita.testing.faults import FaultPlan, FaultRule
from phaita.testing.registry_proxy import FaultProxy

WEIGHTS = "*/blobs/sha256:*"


@pytest.fixture
def pushed(registry, cached_model):
    result = Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    return result, Path(cached_model)


@pytest.mark.parametrize("rule", [
    FaultRule("reset", path=WEIGHTS, after_fraction=0.5, times=2),
    FaultRule("close", path=WEIGHTS, after_fraction=0.3, times=2),
    FaultRule("status", path=WEIGHTS, status=503, times=2),
    FaultRule("status", path=WEIGHTS, status=429, retry_after=0.2, times=1),
    FaultRule("stall", path=WEIGHTS, after_fraction=0.5, seconds=3, times=1),
    FaultRule("corrupt", path=WEIGHTS, after_bytes=100, times=1),
    # a manifest damaged on the way (found by the chaos suite: it read as "not a model", for good); its
    # bytes no longer match the registry's Docker-Content-Digest, so it is asked for again
    FaultRule("corrupt", path="*/manifests/*", after_bytes=10, corrupt_bytes=3, times=1),
], ids=lambda r: r.kind + (str(r.status) if r.kind == "status" else "") + ("-manifest" if "manifests" in r.path else ""))
def test_a_pull_through_faults_gets_the_whole_verified_model(rule, registry, pushed, fresh_cache, monkeypatch):
    result, source = pushed
    monkeypatch.setenv("PHAITA_PARALLEL_THRESHOLD", "65536")  # the weights over several range streams
    plan = FaultPlan([rule])
    with FaultProxy(registry.port, plan) as proxy:
        monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{proxy.host}/models")
        path = Path(prefetch_model(MODEL, max_retries=4, timeout=30))
    assert plan.fired, "the fault never fired"
    assert snapshot_bytes(path) == snapshot_bytes(source)
    assert not list((fresh_cache / "models--phaita-test--tiny-bert" / "blobs").glob("*.incomplete"))


def test_a_damaged_manifest_from_a_registry_without_content_digests_is_asked_for_again(
        registry, pushed, fresh_cache, monkeypatch):
    """With no Docker-Content-Digest to compare with, a manifest that is not JSON may be an answer damaged
    on the way as well as a broken artifact: transient, asked again (the second answer loads)."""
    result, source = pushed
    plan = FaultPlan([FaultRule("corrupt", path="*/manifests/*", after_bytes=0, corrupt_bytes=1, times=1)])
    with FaultProxy(registry.port, plan) as proxy:
        proxy.drop_headers = {"docker-content-digest"}
        monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{proxy.host}/models")
        seen: list = []
        path = Path(prefetch_model(MODEL, max_retries=3, timeout=30, events=seen.append))
    assert plan.fired and snapshot_bytes(path) == snapshot_bytes(source)
    retried = [e for e in seen if type(e).__name__ == "Retried"]
    assert retried and "sent no Docker-Content-Digest" in str(retried[0].reason), retried


def test_a_blob_corrupted_in_the_registrys_storage_is_never_visible_and_the_hub_serves_it(
        registry, pushed, fresh_cache, monkeypatch, local_hub, caplog):
    result, source = pushed
    weights = max(source.iterdir(), key=lambda p: p.stat().st_size)
    digest = "sha256:" + Path(weights.resolve()).name
    data = registry.blob_data_path(digest)
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    from phaita.loader import ModelDownloadError
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(MODEL, max_retries=2, timeout=30)
    assert f"the registry at oci://{registry.host}/models serves a copy of {weights.name}" in str(info.value)
    blobs = fresh_cache / "models--phaita-test--tiny-bert" / "blobs"
    assert not (blobs / digest.split(":")[1]).exists()
    assert not (fresh_cache / "models--phaita-test--tiny-bert" / "refs" / "main").exists()
    # registry first, then the Hub: the corrupt copy is named, the Hub's copy used
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models,{local_hub.url}")
    path = Path(prefetch_model(MODEL, max_retries=2, timeout=30))
    assert snapshot_bytes(path) == snapshot_bytes(source)
    assert any("serves a copy of " + weights.name in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", ["*/manifests/*", WEIGHTS])
def test_a_registrys_retry_after_is_waited_for(path, registry, pushed, fresh_cache, monkeypatch):
    from phaita.loader.events import Retried

    _, source = pushed
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0")
    seen: list = []
    plan = FaultPlan([FaultRule("status", path=path, methods=("GET", "HEAD"), status=429, retry_after=1, times=1)])
    with FaultProxy(registry.port, plan) as proxy:
        monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{proxy.host}/models")
        got = Path(prefetch_model(MODEL, max_retries=3, timeout=30, events=seen.append))
    assert snapshot_bytes(got) == snapshot_bytes(source)
    waits = [e.wait for e in seen if isinstance(e, Retried)]
    assert waits and waits[0] >= 1.0, waits
