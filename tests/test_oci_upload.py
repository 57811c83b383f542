"""Uploads that break resume where the registry has them; redirected blob GETs carry no credentials."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import prefetch_model
from phaita.loader.oci.push import Pusher
from phaita.testing.faults import FaultPlan, FaultRule
from phaita.testing.registry_proxy import FaultProxy


def _sizes(folder: Path) -> int:
    return sum(len(b) for b in snapshot_bytes(folder).values())


def test_a_chunked_push_resumes_after_a_lost_chunk_and_sends_each_byte_once(registry, cached_model, fresh_cache,
                                                                           monkeypatch):
    source = Path(cached_model)
    weights = max(source.iterdir(), key=lambda p: p.stat().st_size)
    assert weights.stat().st_size > 2 * 65536, "the test needs a file of several chunks"
    monkeypatch.setenv("PHAITA_OCI_CHUNK_SIZE", "65536")
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0")
    plan = FaultPlan([FaultRule("reset", path="*/blobs/uploads/*", methods=("PATCH",), nth=3)])
    with FaultProxy(registry.port, plan) as proxy:
        result = Pusher(source.parents[2]).push(MODEL, "main", f"oci://{proxy.host}/models")
    assert plan.fired, "the chunk was never lost"
    config_size = result.bytes_uploaded - _sizes(source)
    assert 0 < config_size < 4096  # every file's bytes sent exactly once (plus the small config blob)
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    assert snapshot_bytes(Path(prefetch_model(MODEL, max_retries=1, timeout=30))) == snapshot_bytes(source)


def test_a_push_killed_halfway_through_a_blob_goes_on_where_the_registry_has_it(registry, cached_model,
                                                                              fresh_cache, monkeypatch):
    """``phaita models push`` killed (SIGKILL) while a blob's chunks go up; the next push, a new process,
    asks the registry where the upload stands and sends only the rest of that blob."""
    source = Path(cached_model)
    cache = source.parents[2]
    files = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size) for p in source.iterdir()}
    weights = max(files, key=lambda n: files[n][1])
    digest, size = files[weights]
    assert size > 2 * 65536, "the test needs a file of several chunks"
    # Blobs go up in digest order, one PATCH per 64 KiB: the weights' third chunk is PATCH number `nth`.
    # Its answer never comes (the proxy reads it and sends nothing on): two chunks confirmed, then a kill.
    nth = sum(-(-s // 65536) for d, s in files.values() if d < digest) + 3
    plan = FaultPlan([FaultRule("stall_headers", path="*/blobs/uploads/*", methods=("PATCH",), nth=nth, seconds=20)])
    env = {**os.environ, "PHAITA_OCI_CHUNK_SIZE": "65536", "HF_HUB_CACHE": str(cache)}
    saved = cache / ".phaita" / "oci-uploads"
    with FaultProxy(registry.port, plan) as proxy:
        target = f"oci://{proxy.host}/models"
        proc = subprocess.Popen([sys.executable, "-m", "phaita.cli.main", "models", "push", MODEL, target],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        limit = time.monotonic() + 60
        records: list[dict] = []
        while not any(r["offset"] >= 2 * 65536 for r in records):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < limit, "the push never got two chunks of the weights in"
            records = [json.loads(p.read_text()) for p in saved.glob("*.json")] if saved.is_dir() else []
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        (kept,) = records
        assert kept["offset"] == 2 * 65536 and kept["blob"].endswith(f"@sha256:{digest}")
        already = {n for n, (d, _) in files.items() if registry.blob_data_path(f"sha256:{d}").is_file()}
        assert weights not in already and already  # killed in the middle: some blobs up, not the weights
        plan.rules.clear()
        monkeypatch.setenv("PHAITA_OCI_CHUNK_SIZE", "65536")
        result = Pusher(cache).push(MODEL, "main", target)
    rest = sum(s for n, (_, s) in files.items() if n not in already) - 2 * 65536
    assert 0 <= result.bytes_uploaded - rest < 4096  # the weights' first two chunks were not sent again
    assert not list(saved.glob("*.json"))  # closed uploads leave no record
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    assert snapshot_bytes(Path(prefetch_model(MODEL, max_retries=1, timeout=30))) == snapshot_bytes(source)


def test_an_upload_offset_the_registry_reports_wrongly_is_confirmed_by_its_status(registry, cached_model, fresh_cache,
                                                                                 monkeypatch):
    source = Path(cached_model)
    monkeypatch.setenv("PHAITA_OCI_CHUNK_SIZE", "65536")
    with FaultProxy(registry.port) as proxy:
        proxy.false_ranges = 2
        result = Pusher(source.parents[2]).push(MODEL, "main", f"oci://{proxy.host}/models")
        assert proxy.false_ranges == 0 and proxy.status_gets >= 2  # each odd answer checked with a status GET
    assert result.bytes_uploaded - _sizes(source) < 4096  # nothing sent twice
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    assert snapshot_bytes(Path(prefetch_model(MODEL, max_retries=1, timeout=30))) == snapshot_bytes(source)


class _ObjectStore:
    """Serves blobs out of the registry's storage, recording the headers of each request."""

    def __init__(self, registry) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                digest = self.path.rsplit("/", 1)[-1].split("?")[0]
                data = registry.blob_data_path(digest).read_bytes()
                start, end = 0, len(data)
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a), (int(b) + 1 if b else len(data))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                self.wfile.write(data[start:end])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_redirected_blob_gets_are_followed_without_the_authorization_header(basic_registry, tls_ca, cached_model,
                                                                            fresh_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca / "ca.pem"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("PHAITA_OCI_USERNAME", "alice")
    monkeypatch.setenv("PHAITA_OCI_PASSWORD", "s3cret-pass")
    Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{basic_registry.host}/site")
    store = _ObjectStore(basic_registry)
    upstream = ssl.create_default_context(cafile=str(tls_ca / "ca.pem"))
    try:
        with FaultProxy(basic_registry.port, upstream_tls=upstream, redirect_to=store.url) as front:
            monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{front.host}/site")
            path = Path(prefetch_model(MODEL, max_retries=1, timeout=30))
    finally:
        store.stop()
    assert snapshot_bytes(path) == snapshot_bytes(Path(cached_model))
    assert store.seen, "no blob was redirected"
    assert all("authorization" not in headers for headers in store.seen)
