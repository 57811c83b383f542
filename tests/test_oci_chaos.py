"""Chaos against a real registry: many loads through seeded random faults, each exact or a clean error.

The same judgement as the hub's chaos suite (``phaita.testing.chaos``): a load returns the registry's
exact bytes or raises a ``ModelDownloadError``; afterwards no cache holds a blob that does not match its
name, a snapshot linking a partial file, or a file whose bytes differ (``audit_cache``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oci_fixtures import MODEL
from phaita.loader import ModelDownloadError, prefetch_model
from phaita.loader.oci.push import Pusher
from phaita.testing.chaos import audit_cache, sha256_file
from phaita.testing.faults import FaultPlan
from phaita.testing.registry_proxy import FaultProxy

LOADS = 24


def test_loads_through_random_registry_faults_are_exact_or_fail_cleanly(registry, cached_model, tmp_path,
                                                                        monkeypatch):
    source = Path(cached_model)
    Pusher(source.parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    truth = {p.relative_to(source).as_posix(): sha256_file(p) for p in source.rglob("*") if p.is_file()}
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0")
    monkeypatch.setenv("PHAITA_PARALLEL_THRESHOLD", "65536")
    plan = FaultPlan(random_rate=0.25, random_kinds=("reset", "close", "status", "corrupt"), seed=18,
                     random_path="*/blobs/*")
    exact = failed = 0
    with FaultProxy(registry.port, plan) as proxy:
        monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{proxy.host}/models")
        for i in range(LOADS):
            cache = tmp_path / f"chaos-{i}"
            try:
                path = Path(prefetch_model(MODEL, max_retries=2 + i % 3, timeout=20, cache_dir=str(cache)))
            except ModelDownloadError:
                failed += 1
                assert not (cache / "models--phaita-test--tiny-bert" / "refs" / "main").exists()
            else:
                got = {p.relative_to(path).as_posix(): sha256_file(p) for p in path.rglob("*") if p.is_file()}
                assert got == truth, f"load {i}: not the registry's bytes"
                exact += 1
            problems = audit_cache(cache, lambda repo, rel: truth.get(rel))
            assert not problems, f"load {i}: {problems}"
    assert len(plan.fired) >= LOADS // 2, "too few faults fired to mean anything"
    assert exact >= LOADS // 2, f"only {exact} of {LOADS} loads succeeded through the faults"
