"""Mirror first, origin second (``PHAITA_ENDPOINTS`` / ``endpoints=``): a file missing, failing or
corrupt on the first endpoint is fetched from the next; a mirror serving a corrupt copy is named in
the warning and in the final error, with one endpoint too. Two LocalHubs here (one corrupt), and
olah caching a corrupted upstream transfer.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from loader_fixtures import sha256_of, warnings_of
from phaita.testing import LocalHub
from phaita.testing.olah import OlahMirror, find_olah_cli
from phaita.utils.model_loader import ModelDownloadError, prefetch_model

REPO = "phaita-test/tiny-bert"
WEIGHTS = "*model.safetensors"


def _sentence(url: str) -> str:
    return f"the mirror at {url} serves a copy of model.safetensors whose sha256 does not match; " \
           "purge it from the mirror's cache"


@pytest.fixture
def two_hubs(hub_root, loader_env):
    """(mirror, origin): two LocalHubs on the same repositories."""
    with LocalHub(hub_root) as mirror, LocalHub(hub_root) as origin:
        yield mirror, origin


def _weights(hub_root: Path) -> tuple[int, str]:
    path = hub_root / REPO / "model.safetensors"
    return path.stat().st_size, sha256_of(path)


def test_a_corrupt_copy_on_the_mirror_comes_from_the_origin(two_hubs, hub_root, caplog):
    mirror, origin = two_hubs
    mirror.set_faults(f"corrupt@1000:path={WEIGHTS}")  # every copy of the weights it serves is damaged
    snapshot = prefetch_model(REPO, max_retries=1, endpoints=[mirror.url, origin.url])
    size, sha = _weights(hub_root)
    assert sha256_of(Path(snapshot) / "model.safetensors") == sha
    assert warnings_of(caplog) == [f"{REPO}: {_sentence(mirror.url)}; fetching it from {origin.url}"]
    # the origin sent only what the mirror could not: no listing, no other file
    assert origin.requests("/api/") == []
    assert origin.bytes_sent("/resolve/") == size and origin.requests("/resolve/") == \
        origin.requests("model.safetensors")


def test_a_file_missing_on_the_mirror_comes_from_the_origin(two_hubs, hub_root, monkeypatch, caplog):
    mirror, origin = two_hubs
    mirror.set_faults(f"404:path={WEIGHTS}")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{mirror.url}, {origin.url}/")  # spaces and slashes are fine
    snapshot = prefetch_model(REPO, max_retries=1)
    assert sha256_of(Path(snapshot) / "model.safetensors") == _weights(hub_root)[1]
    (warning,) = warnings_of(caplog)
    assert f"the mirror at {mirror.url} failed (HTTP 404" in warning and f"trying {origin.url}" in warning


def test_a_mirror_that_is_down_hands_over_to_the_origin(two_hubs, monkeypatch, caplog):
    _, origin = two_hubs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{dead},{origin.url}")
    prefetch_model(REPO, max_retries=1)
    assert origin.requests("/revision/")  # the listing came from the origin too
    assert any(f"the mirror at {dead} failed" in w for w in warnings_of(caplog))


def test_one_corrupt_endpoint_is_named_in_the_error(two_hubs, monkeypatch, caplog):
    mirror, _ = two_hubs
    mirror.set_faults(f"corrupt@1000:path={WEIGHTS}")
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(REPO, max_retries=2)
    text = str(info.value)
    assert f"Last error: {_sentence(mirror.url)}" in text
    assert f"1. Purge {REPO} from the cache of the mirror at {mirror.url}" in text
    assert f"PHAITA_ENDPOINTS={mirror.url},https://huggingface.co" in text
    assert all(_sentence(mirror.url) in w for w in warnings_of(caplog))  # each failed attempt names it too


def test_every_endpoint_corrupt_names_each(two_hubs):
    mirror, origin = two_hubs
    for hub in two_hubs:
        hub.set_faults(f"corrupt@1000:path={WEIGHTS}")
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(REPO, max_retries=1, endpoints=[mirror.url, origin.url])
    assert _sentence(mirror.url) in str(info.value) and _sentence(origin.url) in str(info.value)


@pytest.mark.parametrize("bad", [[], ["ftp://mirror"], "not a url", [None]])
def test_endpoints_argument_is_checked_before_any_io(loader_env, bad):
    with pytest.raises(ValueError, match="endpoints"):
        prefetch_model(REPO, endpoints=bad)


def test_olah_caching_a_corrupted_transfer(hub_root, tmp_path, loader_env, monkeypatch, caplog):
    """olah keeps a transfer that was damaged upstream and serves it to every client: the loader
    refuses it and names the mirror; with the origin listed after olah, it loads."""
    cli = find_olah_cli()
    if cli is None:
        pytest.skip("olah-cli not installed (make setup creates .venv-olah)")
    monkeypatch.setenv("PHAITA_STALL_TIMEOUT", "15")
    with LocalHub(hub_root, faults=f"corrupt@1000x1:path={WEIGHTS}") as upstream, \
            OlahMirror(upstream.url, tmp_path / "olah-repos", cli=cli) as olah:
        monkeypatch.setenv("HF_ENDPOINT", olah.url)
        with pytest.raises(ModelDownloadError) as info:
            prefetch_model(REPO, max_retries=2, cache_dir=tmp_path / "alone")
        assert _sentence(olah.url) in str(info.value)  # attempt 2 got olah's cached bad copy again
        size, sha = _weights(hub_root)
        assert upstream.bytes_sent("model.safetensors") == size  # the upstream itself was asked once

        caplog.clear()
        snapshot = prefetch_model(REPO, max_retries=1, cache_dir=tmp_path / "with-origin",
                                  endpoints=[olah.url, upstream.url])
        assert sha256_of(Path(snapshot) / "model.safetensors") == sha
        assert any(_sentence(olah.url) in w for w in warnings_of(caplog))

        # the advice works: purge the repository from olah's file cache, and olah alone serves it whole
        assert f"delete the folder <repos-path>/files/models/{REPO}" in str(info.value)
        shutil.rmtree(olah.repos_path / "files" / "models" / REPO)
        snapshot = prefetch_model(REPO, max_retries=1, cache_dir=tmp_path / "after-purge")
        assert sha256_of(Path(snapshot) / "model.safetensors") == sha


def test_phaita_models_pull_with_a_corrupt_mirror_then_the_origin(two_hubs, hub_root, monkeypatch):
    from typer.testing import CliRunner

    from phaita.cli.main import app

    mirror, origin = two_hubs
    mirror.set_faults(f"corrupt@1000:path={WEIGHTS}")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{mirror.url},{origin.url}")
    result = CliRunner().invoke(app, ["models", "pull", REPO, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["ok"] is True
    assert _sentence(mirror.url) in result.stderr
    assert origin.bytes_sent("model.safetensors") == _weights(hub_root)[0]
