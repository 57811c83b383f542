"""``phaita models doctor`` tells the truth about an endpoint: does it list sizes and hashes (or
offer a fallback the loader uses), does a resolve honour Range? Against LocalHubs with features
left out, one ignoring Range, two endpoints, and olah.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from phaita.cli.main import app
from phaita.testing import LocalHub
from phaita.testing.olah import OlahMirror, find_olah_cli

PROBE = "phaita-test/tiny-bert"


def doctor(*args: str, profile: str | None = "small") -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["models", "doctor", "--json", *(["--profile", profile] if profile else []),
                                      *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    data = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in data["checks"]}


@pytest.fixture
def endpoint(hub_root, hf_env, monkeypatch):
    """``endpoint(*lacks, faults=None)``: a LocalHub without those features, as HF_ENDPOINT."""
    hubs = []

    def start(*lacks: str, faults: str | None = None) -> LocalHub:
        hub = LocalHub(hub_root, faults=faults, lacks=lacks).start()
        hubs.append(hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


def test_a_full_hub_passes_with_a_model_of_the_manifest(endpoint):
    hub = endpoint()
    _, checks = doctor(profile=None)  # no --model, no --profile: the smallest default-profile model the hub carries
    listing, resume = checks["mirror listing"], checks["mirror resume"]
    assert listing["ok"] and "revision listing with sizes and hashes" in listing["detail"]
    assert ("probe model microsoft/deberta-v3-base, the smallest model of the manifest's default profile this "
            "endpoint carries") in listing["detail"]  # biobert is smaller but not on this hub
    assert resume["ok"] and "Range honoured (206, bytes 1-" in resume["detail"]
    assert hub.requests("/resolve/", method="GET")[0].range == "bytes=1-"


def test_a_revision_answer_without_sizes_is_reported_with_the_fallback_used(endpoint):
    endpoint("revision-blobs")
    _, checks = doctor("--model", PROBE)
    listing = checks["mirror listing"]
    assert listing["ok"]
    assert "WITHOUT sizes or hashes (missing feature: ?blobs=true)" in listing["detail"]
    assert "tree API: sizes and hashes of 6 of 6 files" in listing["detail"]
    assert "the loader uses the tree API" in listing["detail"]


def test_an_endpoint_with_no_hashes_anywhere_fails(endpoint):
    endpoint("revision-blobs", "tree", "paths-info", "etags")
    code, checks = doctor("--model", PROBE)
    listing = checks["mirror listing"]
    assert code == 1 and not listing["ok"]
    assert "tree API: not offered (HTTP 404)" in listing["detail"]
    assert "paths-info: not offered (HTTP 404)" in listing["detail"]
    assert "HEAD: sizes of 6 of 6 files, no hashes" in listing["detail"]
    assert "checked by size only" in listing["detail"] and "PHAITA_ENDPOINTS" in listing["advice"]


def test_an_endpoint_that_ignores_range_fails_the_resume_check(endpoint):
    endpoint(faults="ignore_range")
    code, checks = doctor("--model", PROBE)
    resume = checks["mirror resume"]
    assert code == 1 and not resume["ok"]
    assert "got HTTP 200" in resume["detail"] and "missing feature: Range" in resume["detail"]


def test_every_endpoint_of_phaita_endpoints_is_checked(endpoint, monkeypatch):
    full, partial = endpoint(), endpoint("revision-blobs")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{partial.url},{full.url}")
    _, checks = doctor("--model", PROBE)
    detail = checks["mirror listing"]["detail"]
    assert detail.index(partial.url) < detail.index(full.url)
    assert partial.requests("/tree/") and full.requests("/revision/")


def test_an_unreachable_endpoint_gets_reachability_advice_not_feature_advice(endpoint, monkeypatch):
    """A dead endpoint's features are unknown: the advice points at reaching it, and names only the
    endpoint whose feature is really missing."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    no_range = endpoint(faults="ignore_range")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{dead},{no_range.url}")
    code, checks = doctor("--model", PROBE, "--timeout", "3")
    listing, resume = checks["mirror listing"], checks["mirror resume"]
    assert code == 1 and not listing["ok"] and not resume["ok"]
    assert f"{dead} could not be probed: make it reachable first" in listing["advice"]
    assert "lacks Hub listing features" not in listing["advice"]  # the live one lists fine
    assert f"{dead} could not be probed" in resume["advice"]
    assert f"{no_range.url} does not honour Range" in resume["advice"]
    assert f"{dead} does not honour Range" not in resume["advice"]


def test_doctor_through_olah(hub_root, hf_env, tmp_path, monkeypatch):
    cli = find_olah_cli()
    if cli is None:
        pytest.skip("olah-cli not installed (make setup creates .venv-olah)")
    with LocalHub(hub_root) as upstream, OlahMirror(upstream.url, tmp_path / "olah", cli=cli) as olah:
        monkeypatch.setenv("HF_ENDPOINT", olah.url)
        _, checks = doctor("--model", PROBE, "--timeout", "20")
    listing, resume = checks["mirror listing"], checks["mirror resume"]
    assert listing["ok"] and "WITHOUT sizes or hashes" in listing["detail"] and "tree API" in listing["detail"]
    assert resume["ok"], resume["detail"]
