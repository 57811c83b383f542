"""The retry policy and the error classification, as small units (no network)."""

from __future__ import annotations

import errno

import httpx2
import pytest

from phaita.loader import config
from phaita.loader.errors import BadEnvironment, ChecksumMismatch, DeadlineExceeded, TransferIncomplete, UnsafeRepository
from phaita.loader.request.retry import RetryEvent, RetryPolicy
from phaita.loader.http.failures import classify


def test_default_backoff_is_10_20_40_seconds(monkeypatch):
    monkeypatch.delenv("PHAITA_BACKOFF_BASE", raising=False)
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0")  # the exact schedule; jitter: test_backoff_jitter.py
    policy = RetryPolicy(max_attempts=4)
    assert [policy.wait_before(k) for k in range(3)] == [10, 20, 40]


def test_backoff_base_from_parameter_and_environment(monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.5")
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0")
    assert [RetryPolicy().wait_before(k) for k in range(3)] == [0.5, 1.0, 2.0]
    assert RetryPolicy(backoff_base=2).wait_before(1) == 4


def test_retry_after_wins_only_when_longer():
    policy = RetryPolicy(backoff_base=10, jitter=0)
    assert policy.wait_before(0, retry_after=30) == 30
    assert policy.wait_before(0, retry_after=3) == 10


def test_bad_environment_values_are_value_errors_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "soon")
    with pytest.raises(ValueError, match="PHAITA_BACKOFF_BASE"):
        RetryPolicy().wait_before(0)
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "1")
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "1.5")
    with pytest.raises(ValueError, match="PHAITA_BACKOFF_JITTER"):
        RetryPolicy().wait_before(0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        config.offline_mode()


def test_policy_runs_until_success_and_reports_each_failure():
    events: list[RetryEvent] = []
    slept: list[float] = []
    calls = []

    def attempt(n: int) -> str:
        calls.append(n)
        if n < 3:
            raise httpx2.ConnectError("refused")
        return "done"

    policy = RetryPolicy(max_attempts=3, backoff_base=1, jitter=0, on_retry=events.append, sleep=slept.append)
    assert policy.run(attempt, what="m") == "done"
    assert calls == [1, 2, 3] and slept == [1, 2]
    assert [(e.attempt, e.wait) for e in events] == [(1, 1), (2, 2)]


def test_policy_stops_at_once_on_a_permanent_error():
    slept: list[float] = []

    def attempt(n: int) -> None:
        raise UnsafeRepository("bad listing")

    with pytest.raises(UnsafeRepository) as info:
        RetryPolicy(max_attempts=5, backoff_base=1, sleep=slept.append).run(attempt, what="m")
    assert slept == [] and info.value.attempts_made == 1


@pytest.mark.parametrize(
    "exc, kind, transient",
    [
        (httpx2.ConnectError("x"), "network", True),
        (httpx2.ReadTimeout("x"), "network", True),
        (httpx2.ReadError("reset"), "network", True),
        (TransferIncomplete("cut"), "network", True),
        (ChecksumMismatch("bad"), "network", True),
        (DeadlineExceeded("late"), "network", True),
        (OSError(errno.ENOSPC, "No space left on device"), "disk_full", False),
        (PermissionError(errno.EACCES, "denied"), "cache_io", False),
        (UnsafeRepository("..") , "unsafe", False),
        (BadEnvironment("CURL_CA_BUNDLE='/x': no such file"), "bad_environment", False),
        (KeyError("bug"), "other", False),
    ],
)
def test_classification(exc, kind, transient):
    failure = classify(exc)
    assert (failure.kind, failure.transient) == (kind, transient)
    assert "\n" not in failure.reason


@pytest.mark.parametrize("status, transient", [(500, True), (502, True), (503, True), (504, True), (408, True),
                                               (429, True), (400, False), (401, False), (403, False), (404, True)])
def test_http_status_classification(status, transient):
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(status, headers={"Retry-After": "7"}, request=httpx2.Request("GET", "http://h/x"))
    failure = classify(HfHubHTTPError("boom", response=response))
    assert failure.transient is transient
    assert failure.retry_after == (7 if status == 429 else None)


def test_use_4bit_builds_a_4bit_config_where_cuda_and_bitsandbytes_exist(monkeypatch):
    # No GPU here: CUDA and bitsandbytes are the two things mocked; the config is transformers' own.
    import importlib.util

    import torch

    from phaita.loader.request.load import quantization_kwargs

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a))
    kwargs = quantization_kwargs(True)
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert kwargs["device_map"] == "auto"
    assert quantization_kwargs(False) == {}


@pytest.mark.parametrize("bf16, half", [(True, "bfloat16"), (False, "float16")])
def test_use_4bit_on_a_gpu_without_bitsandbytes_loads_half_precision_on_the_gpu(monkeypatch, caplog, bf16, half):
    # No GPU here: CUDA (and its bfloat16 support) is mocked, bitsandbytes is really absent.
    import importlib.util

    import torch

    from phaita.loader.request.load import quantization_kwargs

    assert importlib.util.find_spec("bitsandbytes") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    with caplog.at_level("WARNING", logger="phaita.model_loader"):
        kwargs = quantization_kwargs(True)
    assert kwargs == {"dtype": getattr(torch, half), "device_map": "auto"}
    (warning,) = [r.getMessage() for r in caplog.records if "use_4bit" in r.getMessage()]
    assert "bitsandbytes" in warning and f"half precision ({half}) on the GPU" in warning
    # what the caller set wins
    assert quantization_kwargs(True, {"dtype": torch.float32}) == {"device_map": "auto"}
    assert quantization_kwargs(True, {"torch_dtype": torch.float32, "device_map": "cuda:0"}) == {}


def test_torch_dtype_reaches_from_pretrained_as_dtype():
    import torch

    from phaita.loader.request.load import load_kwargs

    assert load_kwargs({"torch_dtype": torch.float16}, "causal_lm") == {"dtype": torch.float16, "trust_remote_code": False}
    both = load_kwargs({"torch_dtype": torch.float16, "dtype": torch.bfloat16}, "auto")
    assert both["dtype"] == torch.bfloat16 and "torch_dtype" not in both
    assert "dtype" not in load_kwargs({"torch_dtype": torch.float16}, "tokenizer")
