"""Fixtures for the OCI tests: a real docker-registry (open, Basic over TLS, token), a cached model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phaita.testing.registry import LocalRegistry, TokenServer, registry_missing

MODEL = "phaita-test/tiny-bert"


def _need_registry() -> None:
    missing = registry_missing()
    if missing:
        pytest.skip(f"no OCI registry here: {missing}")


@pytest.fixture
def registry(tmp_path):
    """An open docker-registry on 127.0.0.1 (plain http: loopback), storage under tmp_path."""
    _need_registry()
    with LocalRegistry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def tls_ca(tmp_path, monkeypatch):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path / "tls"
    folder.mkdir()
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    for pem in cert.cert_chain_pems[1:]:
        with open(folder / "cert.pem", "ab") as fh:
            fh.write(pem.bytes())
    cert.private_key_pem.write_to_path(folder / "key.pem")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    return folder


@pytest.fixture
def basic_registry(tmp_path, tls_ca):
    """docker-registry with htpasswd Basic auth over TLS (trustme CA in ``tls_ca / 'ca.pem'``)."""
    _need_registry()
    with LocalRegistry(tmp_path / "registry-basic", users={"alice": "s3cret-pass"},
                       tls=(tls_ca / "cert.pem", tls_ca / "key.pem")) as reg:
        yield reg


@pytest.fixture
def token_registry(tmp_path):
    """docker-registry delegating auth to a token server (Bearer challenge), short-lived tokens."""
    _need_registry()
    with TokenServer(tmp_path / "token", {"bob": "t0ken-pass"}, expires_in=3) as tokens:
        with LocalRegistry(tmp_path / "registry-token", token=tokens) as reg:
            reg.tokens = tokens
            yield reg


@pytest.fixture
def cached_model(loader_env):
    """``phaita-test/tiny-bert`` fetched from the local hub into the test's cache; its snapshot path."""
    from phaita.loader import prefetch_model

    return Path(prefetch_model(MODEL, max_retries=1, timeout=60))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Point the loader (and huggingface_hub) at a new empty cache; returns it."""
    cache = tmp_path / "cache2"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return cache


def snapshot_bytes(folder: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            out[path.relative_to(folder).as_posix()] = path.read_bytes()
    return out
