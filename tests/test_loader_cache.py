"""Cache: complete snapshots only, warm loads without the network, offline mode, freshness checks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from loader_fixtures import warnings_of
from phaita.testing import LocalHub, parse_faults
from phaita.testing.env import point_huggingface_hub_at
from phaita.utils.model_loader import (
    OfflineModeError,
    _check_cached_model,
    is_model_cached,
    load_model_and_tokenizer,
    robust_model_download,
)

REPO = "phaita-test/tiny-bert"


def _repo_requests(hub) -> list:
    return [r for r in hub.stats if REPO in r.path]


def _snapshot(cache: Path, commit: str) -> Path:
    return cache / "models--phaita-test--tiny-bert" / "snapshots" / commit


def test_cached_check_is_true_only_for_a_complete_snapshot(loader_env, local_hub):
    cache = Path(loader_env["HF_HUB_CACHE"])
    assert _check_cached_model(REPO) is False
    load_model_and_tokenizer(REPO)
    assert _check_cached_model(REPO) is True
    commit = local_hub.commit_sha(REPO)
    assert _check_cached_model(REPO, revision=commit) is True
    assert _check_cached_model(REPO, revision="0" * 40) is False
    weights = _snapshot(cache, commit) / "model.safetensors"
    blob = weights.resolve()
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])  # a truncated file...
    assert _check_cached_model(REPO) is False  # ...is not a complete snapshot
    blob.unlink()
    assert _check_cached_model(REPO) is False


def test_a_truncated_cached_file_is_fetched_again_never_loaded(loader_env, local_hub):
    cache = Path(loader_env["HF_HUB_CACHE"])
    robust_model_download(REPO)
    blob = (_snapshot(cache, local_hub.commit_sha(REPO)) / "model.safetensors").resolve()
    original = blob.read_bytes()
    blob.write_bytes(original[:100])
    local_hub.reset_stats()
    model = robust_model_download(REPO)
    assert type(model).__name__ == "BertModel"
    assert blob.read_bytes() == original
    assert [r for r in local_hub.requests("/resolve/") if r.path.endswith("model.safetensors")]


def test_pinned_commit_in_cache_loads_with_no_request(loader_env, local_hub):
    commit = local_hub.commit_sha(REPO)
    load_model_and_tokenizer(REPO, revision=commit)
    local_hub.reset_stats()
    model, tokenizer = load_model_and_tokenizer(REPO, revision=commit)
    assert model is not None and tokenizer is not None
    assert _repo_requests(local_hub) == []


def test_cached_branch_makes_one_freshness_check(loader_env, local_hub, caplog):
    load_model_and_tokenizer(REPO)
    local_hub.reset_stats()
    load_model_and_tokenizer(REPO)
    requests = _repo_requests(local_hub)
    assert len(requests) == 1 and "/revision/main" in requests[0].path
    assert warnings_of(caplog) == []


def test_cached_branch_loads_when_the_hub_refuses(loader_env, local_hub, caplog):
    load_model_and_tokenizer(REPO)
    local_hub.stop()  # connection refused from now on
    started = time.monotonic()
    model, _ = load_model_and_tokenizer(REPO, max_retries=5, backoff_base=10)
    assert time.monotonic() - started < 5, "no retry schedule for a freshness check"
    assert type(model).__name__ == "BertModel"
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and "using cached commit" in warnings[0]


def test_cached_branch_loads_when_the_hub_stalls(loader_env, local_hub, caplog, monkeypatch):
    monkeypatch.setenv("PHAITA_FRESHNESS_TIMEOUT", "1.5")
    monkeypatch.setenv("PHAITA_STALL_TIMEOUT", "60")
    load_model_and_tokenizer(REPO)
    local_hub.set_faults(parse_faults("stall_headers:api:methods=GET"))
    started = time.monotonic()
    model, _ = load_model_and_tokenizer(REPO, timeout=300)
    elapsed = time.monotonic() - started
    assert type(model).__name__ == "BertModel"
    assert elapsed < 1.5 + 3, f"took {elapsed:.1f} s"
    assert len(warnings_of(caplog)) == 1


def test_a_branch_that_moved_is_fetched_again(loader_env, scratch_root, monkeypatch):
    with LocalHub(scratch_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        robust_model_download(REPO, model_type="tokenizer")
        old = hub.commit_sha(REPO)
        readme = scratch_root / REPO / "README.md"
        readme.write_text(readme.read_text() + "\nA new commit.\n")
        new = hub.commit_sha(REPO)
        assert new != old
        robust_model_download(REPO, model_type="tokenizer")
        cache = Path(loader_env["HF_HUB_CACHE"])
        assert (cache / "models--phaita-test--tiny-bert" / "refs" / "main").read_text() == new
        assert "A new commit." in (_snapshot(cache, new) / "README.md").read_text()


@pytest.mark.parametrize("how", ["allow_offline", "HF_HUB_OFFLINE"])
def test_offline_mode_loads_from_cache_without_any_request(loader_env, local_hub, monkeypatch, how):
    load_model_and_tokenizer(REPO)
    local_hub.reset_stats()
    kwargs = {"allow_offline": True} if how == "allow_offline" else {}
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_model_and_tokenizer(REPO, **kwargs)
    assert type(model).__name__ == "BertModel"
    assert local_hub.stats == []


@pytest.mark.parametrize("how", ["allow_offline", "HF_HUB_OFFLINE"])
def test_offline_mode_without_cache_explains_what_to_do(loader_env, local_hub, monkeypatch, how):
    kwargs = {"allow_offline": True} if how == "allow_offline" else {}
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineModeError) as info:
        robust_model_download(REPO, **kwargs)
    text = str(info.value)
    assert "not in the cache" in text and loader_env["HF_HUB_CACHE"] in text
    assert f"hf download {REPO}" in text and "HF_HUB_OFFLINE" in text and how in text
    assert local_hub.stats == []


def test_snapshot_made_by_plain_huggingface_hub_is_used_offline(loader_env, local_hub):
    from huggingface_hub import snapshot_download

    snapshot_download(REPO, cache_dir=loader_env["HF_HUB_CACHE"])
    assert is_model_cached(REPO)
    local_hub.reset_stats()
    model = robust_model_download(REPO, allow_offline=True)
    assert type(model).__name__ == "BertModel" and local_hub.stats == []


def test_our_cache_is_read_by_plain_transformers_offline(loader_env, local_hub):
    robust_model_download(REPO)
    code = "from transformers import AutoModel; m = AutoModel.from_pretrained('%s'); print(type(m).__name__)" % REPO
    env = {**loader_env, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("BertModel")


def test_two_processes_loading_at_once_both_succeed_and_bytes_move_once(loader_env, big_root_hub_env):
    hub, env = big_root_hub_env
    hub.set_faults(parse_faults("trickle@1m:4m"))  # slow enough that both are downloading together
    code = ("from phaita.utils.model_loader import prefetch_model; import sys; "
            "print(prefetch_model('acme/big', timeout=60))")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-1500:] for r in results]
    assert results[0][0].strip() == results[1][0].strip()
    size = hub.files("acme/big")[0].size
    assert hub.bytes_sent("/resolve/") == size, "each byte transferred once"


@pytest.fixture
def big_root_hub_env(big_root, loader_env):
    with LocalHub(big_root) as hub:
        yield hub, {**loader_env, "HF_ENDPOINT": hub.url}
