"""A signed model through the site's registry: signed in one cache, pushed, pulled, verified in another."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("model_signing", reason="the phaita[signing] extra is not installed")

from oci_fixtures import MODEL  # noqa: E402
from phaita.loader import SignatureError, robust_model_download  # noqa: E402
from phaita.loader.cache.layout import RepoCache  # noqa: E402
from phaita.loader.oci.push import Pusher  # noqa: E402
from phaita.loader.signing.sign import Signer, sign_snapshot  # noqa: E402

from signing_pki import key_pair, trust_toml  # noqa: E402


def test_a_signature_pushed_with_the_model_verifies_after_a_registry_pull(registry, cached_model, fresh_cache,
                                                                          tmp_path, monkeypatch):
    source = RepoCache(Path(cached_model).parents[2], MODEL)
    commit = Path(cached_model).name
    site = key_pair(tmp_path / "keys", "release")
    sign_snapshot(source, commit, Signer(key=site.private))
    result = Pusher(source.cache_dir).push(MODEL, "main", f"oci://{registry.host}/models")
    assert result.signature
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    monkeypatch.setenv("PHAITA_TRUST", str(trust_toml(tmp_path / "trust", keys=[site.public])))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    model = robust_model_download(MODEL, "auto", max_retries=1, timeout=60)
    assert model.config.model_type == "bert"
    pulled = RepoCache(fresh_cache, MODEL)
    assert pulled.signature_path(commit).read_bytes() == source.signature_path(commit).read_bytes()
    # another site's key: the same pulled model is refused before from_pretrained
    other = key_pair(tmp_path / "other", "other")
    monkeypatch.setenv("PHAITA_TRUST", str(trust_toml(tmp_path / "trust2", keys=[other.public])))
    with pytest.raises(SignatureError):
        robust_model_download(MODEL, "auto", max_retries=1, timeout=60)
