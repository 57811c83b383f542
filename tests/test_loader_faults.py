"""Retries, resume, deadlines and verification under injected faults (real client, real sockets)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loader_fixtures import BIG, BIG_SIZE, sha256_of, warnings_of
from phaita.testing import FaultPlan, FaultRule, parse_faults
from phaita.utils.model_loader import (
    AccessDeniedError,
    DiskFullError,
    ModelDownloadError,
    ModelNotFoundError,
    RevisionNotFoundError,
    prefetch_model,
    robust_model_download,
)


def _blob_hash(snapshot: str) -> str:
    return sha256_of(Path(snapshot) / "model.safetensors")


def _served(hub) -> int:
    return hub.bytes_sent("/resolve/")


def test_503_twice_then_success_logs_each_failed_attempt(loader_env, local_hub, caplog, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0")  # the exact schedule
    local_hub.set_faults(parse_faults("503x2:path=*/config.json"))
    model = robust_model_download("phaita-test/tiny-bert", backoff_base=0.05)
    assert type(model).__name__ == "BertModel"
    warnings = warnings_of(caplog)
    assert len(warnings) == 2
    assert "phaita-test/tiny-bert" in warnings[0] and "attempt 1/3" in warnings[0] and "503" in warnings[0]
    assert "retrying in 0.1 s" in warnings[0] or "retrying in 0.0 s" not in warnings[0]
    assert "attempt 2/3" in warnings[1] and "retrying in 0.1 s" in warnings[1]


def test_retry_after_of_a_429_is_honoured_when_longer(loader_env, local_hub, caplog, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0")  # the exact wait; jittered: test_backoff_jitter.py
    local_hub.set_faults(parse_faults("429x1:1:path=*config.json"))
    started = time.monotonic()
    robust_model_download("phaita-test/tiny-bert", model_type="tokenizer")
    assert time.monotonic() - started >= 1.0
    assert "retrying in 1.0 s" in warnings_of(caplog)[0]


def test_every_attempt_failing_gives_the_troubleshooting_error(loader_env, local_hub, caplog):
    local_hub.set_faults(parse_faults("503:path=*config.json"))
    with pytest.raises(ModelDownloadError) as info:
        robust_model_download("phaita-test/tiny-bert", max_retries=3)
    err = info.value
    text = str(err)
    assert text.startswith("Failed to download phaita-test/tiny-bert after 3 attempts")
    assert "HTTP 503" in text and "hf download phaita-test/tiny-bert" in text
    assert str(err.cache_dir) in text and "Troubleshooting:" in text
    for step in ("1.", "2.", "3.", "4."):
        assert f"  {step} " in text
    assert "max_retries" in text
    assert "status.huggingface.co" not in text  # the Hub's status page is no help with a local hub or a mirror
    assert err.attempts == 3 and err.transient and err.last_error.status_code == 503
    assert err.models_attempted == ["phaita-test/tiny-bert"]
    assert len(warnings_of(caplog)) == 3 and "giving up" in warnings_of(caplog)[-1]


@pytest.mark.parametrize(
    "repo, kwargs, config, error, advice",
    [
        ("phaita-test/does-not-exist", {}, None, ModelNotFoundError, "Check the name"),
        ("phaita-test/tiny-bert", {"revision": "no-such-branch"}, None, RevisionNotFoundError, "branch, tag"),
        ("acme/gated", {}, {"gated": True}, AccessDeniedError, "accept its licence"),
        ("acme/gated", {"token": "hf_wrongwrongwrong"}, {"gated": True}, AccessDeniedError, "does not grant access"),
    ],
)
def test_permanent_errors_fail_at_once_with_their_own_advice(
    loader_env, local_hub, make_repo, hub_root, repo, kwargs, config, error, advice, caplog
):
    if config is not None:
        make_repo(hub_root, repo, {"config.json": "{}", "model.safetensors": b"x" * 10}, config=config)
    started = time.monotonic()
    with pytest.raises(error) as info:
        robust_model_download(repo, max_retries=5, backoff_base=5, **kwargs)
    assert time.monotonic() - started < 5, "no backoff wait for a permanent error"
    assert advice in str(info.value)
    assert info.value.transient is False
    paths = [r.path for r in local_hub.stats if repo in r.path]
    assert paths and len(paths) == len(set(paths)), f"no request repeated: {paths}"
    assert warnings_of(caplog) == []


def test_disk_full_fails_at_once_and_keeps_nothing_corrupt(loader_env, big_hub, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1_000_000, 1_000_000))
    with pytest.raises(DiskFullError) as info:
        prefetch_model(BIG, max_retries=3, backoff_base=5)
    assert "free" in str(info.value) and "HF_HUB_CACHE" in str(info.value)
    assert _served(big_hub) == 0, "refused before transferring a byte"


def test_tcp_reset_mid_file_resumes_inside_the_same_attempt(loader_env, big_hub, caplog):
    big_hub.set_faults(parse_faults("reset@30%x1"))
    snapshot = prefetch_model(BIG)
    assert _blob_hash(snapshot) == big_hub.files(BIG)[0].sha256
    assert warnings_of(caplog) == [], "a resumed transfer is not a failed attempt"
    ranges = [r.range for r in big_hub.requests("/resolve/")]
    assert ranges[0] is None and ranges[1] and ranges[1].startswith("bytes=")


@pytest.mark.parametrize("spec", ["close@50%x1", "reset@10%x3", "stall@40%x1:30", "close@20%x4"])
def test_breaks_resume_without_backoff_and_send_few_bytes_twice(loader_env, big_hub, caplog, spec):
    big_hub.set_faults(parse_faults(spec))
    snapshot = prefetch_model(BIG, max_retries=1, timeout=60)
    assert _blob_hash(snapshot) == big_hub.files(BIG)[0].sha256
    assert len(big_hub.requests("/resolve/")) >= 2
    assert _served(big_hub) <= BIG_SIZE * 1.5


def test_stalled_server_is_cut_at_the_deadline(loader_env, big_hub, monkeypatch):
    monkeypatch.setenv("PHAITA_STALL_TIMEOUT", "30")  # only the attempt deadline can end it
    big_hub.set_faults(parse_faults("stall@10%"))
    started = time.monotonic()
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(BIG, max_retries=2, timeout=1.5)
    elapsed = time.monotonic() - started
    assert "timed out" in str(info.value) and info.value.attempts == 2
    assert elapsed < 2 * 1.5 + 5, f"hung for {elapsed:.1f} s"


def test_trickling_server_is_cut_at_the_deadline_and_the_next_attempt_continues(loader_env, big_hub):
    big_hub.set_faults(FaultPlan([FaultRule("trickle", after_bytes=1_000_000, rate_bps=200_000, nth=1)]))
    started = time.monotonic()
    snapshot = prefetch_model(BIG, max_retries=2, timeout=2)
    assert time.monotonic() - started < 20
    assert _blob_hash(snapshot) == big_hub.files(BIG)[0].sha256
    gets = big_hub.requests("/resolve/")
    assert gets[1].range and int(gets[1].range.split("=")[1].rstrip("-")) >= 1_000_000, "attempt 2 resumed"
    assert _served(big_hub) <= BIG_SIZE * 1.05


def test_corrupted_bytes_are_discarded_and_fetched_again(loader_env, big_hub, caplog):
    big_hub.set_faults(parse_faults("corrupt@50%x1"))
    snapshot = prefetch_model(BIG)
    assert _blob_hash(snapshot) == big_hub.files(BIG)[0].sha256
    assert "does not match" in warnings_of(caplog)[0]


def test_a_dead_endpoint_fails_cleanly_after_the_attempts(loader_env, monkeypatch, caplog):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ModelDownloadError) as info:
        robust_model_download("phaita-test/tiny-bert", max_retries=2)
    assert time.monotonic() - started < 10
    assert info.value.attempts == 2 and "connection" in str(info.value).lower()
