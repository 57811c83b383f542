"""A cached branch: ``freshness`` check (the default, tested in test_loader_cache.py), background, never."""

from __future__ import annotations

from pathlib import Path

import pytest

from loader_fixtures import warnings_of
from phaita.loader.request import freshness
from phaita.testing import LocalHub, parse_faults
from phaita.testing.env import point_huggingface_hub_at
from phaita.utils.model_loader import ModelDownloadError, prefetch_model

REPO = "phaita-test/tiny-bert"


@pytest.fixture
def hub(scratch_root, loader_env, monkeypatch):
    with LocalHub(scratch_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        yield hub
    assert freshness.wait_for_background(30), "a background refresh outlived its test"


def _new_commit(hub, scratch_root: Path) -> str:
    readme = scratch_root / REPO / "README.md"
    readme.write_text(readme.read_text() + "\nA new commit.\n")
    return hub.commit_sha(REPO)


def _ref(loader_env) -> str:
    return (Path(loader_env["HF_HUB_CACHE"]) / "models--phaita-test--tiny-bert" / "refs" / "main").read_text()


def test_background_loads_the_cached_commit_and_fetches_the_new_one_for_the_next_load(hub, scratch_root,
                                                                                      loader_env, caplog):
    old = Path(prefetch_model(REPO, model_type="tokenizer")).name
    new = _new_commit(hub, scratch_root)
    hub.reset_stats()
    path = prefetch_model(REPO, model_type="tokenizer", freshness="background")
    assert Path(path).name == old  # this load: the cached commit, whatever the hub says
    assert any("in the background" in r.getMessage() for r in caplog.records)
    assert freshness.wait_for_background(30)
    assert _ref(loader_env) == new  # refs/ moved only after the new snapshot was complete
    assert Path(prefetch_model(REPO, model_type="tokenizer", freshness="never")).name == new


def test_background_returns_while_a_stalled_hub_still_holds_the_check(hub, loader_env, caplog):
    old = Path(prefetch_model(REPO, model_type="tokenizer")).name
    hub.set_faults(parse_faults("stall_headers:3:api:methods=GET"))
    path = prefetch_model(REPO, model_type="tokenizer", freshness="background")
    # Order, not a stopwatch: the load is back while its freshness request is still unanswered.
    assert freshness.running(), "the background check ended before the load returned"
    assert Path(path).name == old and warnings_of(caplog) == []
    assert freshness.wait_for_background(30)
    assert any("could not check the hub" in w for w in warnings_of(caplog))
    assert _ref(loader_env) == old


def test_background_starts_one_refresh_per_branch(hub):
    prefetch_model(REPO, model_type="tokenizer")
    hub.set_faults(parse_faults("stall_headers:2:api:methods=GET"))
    hub.reset_stats()
    for _ in range(3):
        prefetch_model(REPO, model_type="tokenizer", freshness="background")
    assert len(freshness.running()) == 1
    assert freshness.wait_for_background(30)
    assert len([r for r in hub.stats if "/revision/" in r.path]) == 1


def test_never_makes_no_request_on_a_warm_cache(hub, monkeypatch):
    old = Path(prefetch_model(REPO, model_type="tokenizer")).name
    hub.reset_stats()
    monkeypatch.setenv("PHAITA_FRESHNESS", "never")
    assert Path(prefetch_model(REPO, model_type="tokenizer")).name == old
    assert hub.stats == []


def test_never_still_fetches_what_is_not_cached(hub):
    path = prefetch_model(REPO, model_type="tokenizer", freshness="never")
    assert (Path(path) / "tokenizer_config.json").exists() or (Path(path) / "vocab.txt").exists()


def test_a_bad_freshness_is_refused_naming_it(hub, monkeypatch):
    with pytest.raises(ValueError, match="freshness must be one of check, background, never"):
        prefetch_model(REPO, model_type="tokenizer", freshness="sometimes")
    prefetch_model(REPO, model_type="tokenizer")
    monkeypatch.setenv("PHAITA_FRESHNESS", "later")
    with pytest.raises(ModelDownloadError, match="PHAITA_FRESHNESS"):
        prefetch_model(REPO, model_type="tokenizer")
