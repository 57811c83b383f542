"""Jittered backoff and the Hub's rate-limit headers (issue 10, item 5: no stampede).

The statistics run on the policy object (many draws, no sleeping); the rest goes through the real
local hub with short waits (``PHAITA_BACKOFF_BASE``), reading the wait each retry logged.
"""

from __future__ import annotations

import logging
import random
import statistics

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError

from loader_fixtures import warnings_of
from phaita.loader.request.retry import RetryEvent, RetryPolicy
from phaita.loader.http.failures import classify
from phaita.testing import parse_faults
from phaita.utils.model_loader import prefetch_model

REPO = "phaita-test/tiny-bert"
DRAWS = 20_000


def _retry_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "phaita.model_loader" and hasattr(r, "retry_wait")]


@pytest.mark.parametrize("jitter", [0.5, 0.2, 1.0])
def test_waits_keep_the_documented_mean_and_stay_within_the_spread(monkeypatch, jitter):
    monkeypatch.delenv("PHAITA_BACKOFF_BASE", raising=False)  # the documented 10 s, 20 s, 40 s
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", str(jitter))
    policy = RetryPolicy(max_attempts=4)
    for k, documented in enumerate((10.0, 20.0, 40.0)):
        waits = [policy.wait_before(k) for _ in range(DRAWS)]
        assert min(waits) >= documented * (1 - jitter) and max(waits) <= documented * (1 + jitter)
        # Uniform on [w(1-j), w(1+j)]: mean w, standard deviation w*j/sqrt(3). The mean's standard
        # error is under 0.6 % of w at 20,000 draws, so 2 % is a > 3-sigma margin.
        assert statistics.fmean(waits) == pytest.approx(documented, rel=0.02)
        assert statistics.pstdev(waits) == pytest.approx(documented * jitter / 3**0.5, rel=0.05)
        # Spread over the whole range, not bunched: each fifth of it holds about a fifth of the draws.
        low, width = documented * (1 - jitter), documented * 2 * jitter / 5
        counts = [sum(1 for w in waits if low + i * width <= w < low + (i + 1) * width) for i in range(5)]
        assert all(abs(c - DRAWS / 5) < DRAWS / 5 * 0.1 for c in counts), counts


def test_jitter_zero_is_the_exact_schedule_and_the_cap_holds(monkeypatch):
    monkeypatch.delenv("PHAITA_BACKOFF_BASE", raising=False)
    assert [RetryPolicy(jitter=0).wait_before(k) for k in range(3)] == [10, 20, 40]
    monkeypatch.setenv("PHAITA_MAX_BACKOFF", "30")
    capped = [RetryPolicy(jitter=0.5).wait_before(2) for _ in range(2000)]
    assert max(capped) <= 30  # 40 s jittered would reach 60 s: the cap is a hard ceiling
    assert min(capped) >= 15  # the cap (30) jittered down by at most 50 %


def test_two_clients_draw_different_waits_even_when_the_app_seeds_random():
    # transformers.set_seed(42) seeds Python's random on every device of a fleet alike.
    random.seed(42)
    first = [RetryPolicy(backoff_base=10).wait_before(k) for k in range(3) for _ in range(5)]
    random.seed(42)
    second = [RetryPolicy(backoff_base=10).wait_before(k) for k in range(3) for _ in range(5)]
    assert first != second and len(set(first) | set(second)) == 30


def test_the_wait_logged_is_the_wait_slept():
    slept: list[float] = []
    events: list[RetryEvent] = []

    def attempt(n: int) -> str:
        if n < 4:
            raise httpx2.ConnectError("refused")
        return "ok"

    policy = RetryPolicy(max_attempts=4, backoff_base=1, jitter=0.5, on_retry=events.append, sleep=slept.append)
    assert policy.run(attempt, what="m") == "ok"
    assert [e.wait for e in events] == slept and len(set(slept)) == 3
    assert all(0.5 * 2**k <= w <= 1.5 * 2**k for k, w in enumerate(slept))


def test_jittered_retries_through_the_hub_stay_in_range_and_differ_between_clients(
        loader_env, local_hub, caplog, tmp_path, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.05")
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0.5")
    clients = 6
    for client in range(clients):
        random.seed(0)  # the same application seed on every client
        local_hub.set_faults(parse_faults("503x1:path=*/config.json"))
        prefetch_model(REPO, model_type="tokenizer", cache_dir=str(tmp_path / f"client-{client}"))
    waits = [r.retry_wait for r in _retry_records(caplog)]
    assert len(waits) == clients, "one failed attempt per client"
    assert all(0.025 <= w <= 0.075 for w in waits), waits
    assert len(set(waits)) == clients, f"no two clients wait alike: {waits}"
    config_gets = [r for r in local_hub.requests("/resolve/") if r.path.endswith("/config.json")]
    assert [r.status for r in config_gets] == [503, 200] * clients


def _http_error(status: int, headers: dict[str, str]) -> HfHubHTTPError:
    response = httpx2.Response(status, headers=headers, request=httpx2.Request("GET", "http://h/x"))
    return HfHubHTTPError("boom", response=response)


@pytest.mark.parametrize("headers, wait", [
    ({"RateLimit": '"resolvers";r=0;t=55', "RateLimit-Policy": '"fixed window";"resolvers";q=3000;w=300'}, 55),
    ({"RateLimit": '"api";r=0;t=20', "Retry-After": "30"}, 30),  # the longer of the two
    ({"RateLimit": '"api";r=0;t=40', "Retry-After": "30"}, 40),
    ({"RateLimit": '"api";r=12;t=40'}, None),  # quota left: this 429 is not about that window
    ({"RateLimit": "garbage"}, None),
    ({}, None),
])
def test_a_429_takes_its_wait_from_the_rate_limit_headers(headers, wait):
    failure = classify(_http_error(429, headers))
    assert failure.transient and failure.retry_after == wait
    if "q=3000" in headers.get("RateLimit-Policy", ""):
        assert "'resolvers' quota, 3000 per 300 s, resets in 55 s" in failure.reason
    assert classify(_http_error(503, headers)).retry_after is None  # only a 429 sets the wait


def test_a_429_with_the_hubs_rate_limit_headers_is_honoured_with_jitter(loader_env, local_hub, caplog, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("PHAITA_BACKOFF_JITTER", "0.5")
    local_hub.set_faults(parse_faults("429x1:ratelimit=1:path=*/config.json"))
    prefetch_model(REPO, model_type="tokenizer")
    (record,) = _retry_records(caplog)
    assert 1.0 <= record.retry_wait <= 1.5, "never before the hub's reset, at most 50 % after it"
    assert "HTTP 429" in record.getMessage() and "resets in 1 s" in record.getMessage()
    first, retry = [r for r in local_hub.requests("/resolve/") if r.path.endswith("/config.json")]
    assert first.status == 429 and retry.status == 200
    assert retry.started - first.started >= 1.0, "the client really waited for the reset"


def test_a_long_rate_limit_reset_is_capped_and_still_spread(loader_env, local_hub, caplog, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("PHAITA_MAX_RETRY_AFTER", "0.2")
    local_hub.set_faults(parse_faults("429x2:ratelimit=3600:path=*/config.json"))
    prefetch_model(REPO, model_type="tokenizer")
    waits = [r.retry_wait for r in _retry_records(caplog)]
    assert len(waits) == 2 and all(0.2 <= w <= 0.3 for w in waits), waits
    assert waits[0] != waits[1]
    assert "resets in 3600 s" in warnings_of(caplog)[0]


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "half", True])
def test_a_bad_backoff_jitter_is_a_value_error_before_any_io(loader_env, local_hub, value):
    with pytest.raises(ValueError, match="backoff_jitter"):
        prefetch_model(REPO, backoff_jitter=value)
    assert local_hub.stats == []
