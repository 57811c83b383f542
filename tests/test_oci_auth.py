"""Registry auth as registries do it: Basic over TLS (htpasswd), the Bearer token flow, docker config."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import AccessDeniedError, ModelDownloadError, UntrustedCertificateError, prefetch_model
from phaita.loader.http.deadline import Deadline
from phaita.loader.oci.client import Registry
from phaita.loader.oci.push import Pusher
from phaita.loader.oci.reference import parse

PASSWORD = "s3cret-pass"


@pytest.fixture
def trust(tls_ca, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca / "ca.pem"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tls_ca))  # no ~/.docker/config.json of the machine's


def test_basic_over_tls_with_credentials_from_the_environment(basic_registry, trust, cached_model, fresh_cache,
                                                              monkeypatch, caplog):
    target = f"oci://{basic_registry.host}/site"
    cache = Path(cached_model).parents[2]
    with pytest.raises(AccessDeniedError) as info:
        Pusher(cache).push(MODEL, "main", target)
    assert "no credentials (anonymous)" in str(info.value)
    monkeypatch.setenv("PHAITA_OCI_USERNAME", "alice")
    monkeypatch.setenv("PHAITA_OCI_PASSWORD", "wrong-password")
    with pytest.raises(AccessDeniedError) as info:
        Pusher(cache).push(MODEL, "main", target)
    assert "PHAITA_OCI_USERNAME" in str(info.value) and "wrong-password" not in str(info.value)
    monkeypatch.setenv("PHAITA_OCI_PASSWORD", PASSWORD)
    assert Pusher(cache).push(MODEL, "main", target).bytes_uploaded > 0
    monkeypatch.setenv("PHAITA_ENDPOINTS", target)
    path = Path(prefetch_model(MODEL, max_retries=1, timeout=30))
    assert snapshot_bytes(path) == snapshot_bytes(Path(cached_model))
    encoded = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert not any(PASSWORD in r.getMessage() or encoded in r.getMessage() for r in caplog.records)


def test_docker_config_auths_and_a_credential_helper_named(basic_registry, trust, cached_model, tmp_path,
                                                           monkeypatch):
    folder = tmp_path / "docker"
    folder.mkdir()
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    result = Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{basic_registry.host}/site")
    assert result.blobs_uploaded > 0
    (folder / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.host: "secretservice"}}))
    with pytest.raises(AccessDeniedError) as info:
        Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{basic_registry.host}/site")
    assert "docker-credential-secretservice" in str(info.value)
    assert PASSWORD not in str(info.value) and auth not in str(info.value)


def test_a_registry_whose_certificate_is_not_trusted_is_refused(basic_registry, cached_model, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{basic_registry.host}/site")
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model("phaita-test/tiny-gpt2", max_retries=1, timeout=10)
    assert "certificate" in str(info.value).lower()


def test_the_bearer_token_flow_and_renewal(token_registry, cached_model, fresh_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    target = f"oci://{token_registry.host}/site"
    cache = Path(cached_model).parents[2]
    with pytest.raises(AccessDeniedError):
        Pusher(cache).push(MODEL, "main", target)
    monkeypatch.setenv("PHAITA_OCI_USERNAME", "bob")
    monkeypatch.setenv("PHAITA_OCI_PASSWORD", "t0ken-pass")
    pushed = Pusher(cache).push(MODEL, "main", target)
    assert token_registry.tokens.issued >= 1
    monkeypatch.setenv("PHAITA_ENDPOINTS", target)
    path = Path(prefetch_model(MODEL, max_retries=1, timeout=30))
    assert snapshot_bytes(path) == snapshot_bytes(Path(cached_model))
    # a token the registry refuses (revoked, expired early) is renewed once, not reported as denied
    reg = Registry(token_registry.host)
    ref = parse(f"{target}/{MODEL}:main")
    reg.get_manifest(ref, Deadline.after(10))
    before = token_registry.tokens.issued
    realm = f"{token_registry.tokens.url}/token"
    reg.tokens.put(realm, f"repository:{ref.repository}:pull", "not-a-valid-token", 300)
    body, _, digest = reg.get_manifest(ref, Deadline.after(10))
    assert digest == pushed.digest and token_registry.tokens.issued == before + 1


def test_a_docker_identitytoken_is_traded_at_the_token_endpoint_and_never_shown(token_registry, cached_model,
                                                                                 fresh_cache, monkeypatch, tmp_path):
    """docker's config.json ``identitytoken`` (what ``docker login`` keeps for registries with OAuth2):
    a refresh token sent in the OAuth2 form, ``grant_type=refresh_token``, never as Basic credentials."""
    tokens = token_registry.tokens
    tokens.refresh_tokens["rt-7f3a9c2e51"] = "bob"
    folder = tmp_path / "docker"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": "rt-7f3a9c2e51"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.delenv("PHAITA_OCI_USERNAME", raising=False)
    monkeypatch.delenv("PHAITA_OCI_PASSWORD", raising=False)
    target = f"oci://{token_registry.host}/site"
    Pusher(Path(cached_model).parents[2]).push(MODEL, "main", target)
    assert tokens.requests and all(user == "bob" for _, user in tokens.requests)  # granted to the token's user
    assert any(scope.endswith(":pull,push") for scope, _ in tokens.requests)
    monkeypatch.setenv("PHAITA_ENDPOINTS", target)
    assert snapshot_bytes(Path(prefetch_model(MODEL, max_retries=1, timeout=30))) == snapshot_bytes(Path(cached_model))

    # a refresh token the endpoint no longer honours: denied, saying where the credentials came from
    (folder / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": "rt-revoked-0d1e"}}}))
    with pytest.raises(AccessDeniedError) as info:
        prefetch_model(MODEL, max_retries=1, timeout=30, cache_dir=tmp_path / "other-cache")
    text = str(info.value)
    assert "refused access" in text and "config.json" in text and "rt-revoked-0d1e" not in text
