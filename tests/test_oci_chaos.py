"""The chaos suite against a real registry: Debian's docker-registry, behind a fault proxy.

The chaos models are pushed by phaita in the ModelPack format; then the same runner, plan and
judgement as the hub's chaos suite (``phaita.testing.chaos``): seeded random faults of every kind on
manifest and blob GETs (resets, clean closes, 5xx, 429 with ``Retry-After``, stalls before and after
the headers, trickles, corrupted bytes), loads on three threads over parallel range streams, each
load exact or a clean transient error within its time bound, and every cache audited afterwards.
"""

from __future__ import annotations

from chaos_checks import assert_the_run_held
from phaita.testing.chaos import ChaosConfig, run_chaos

LOADS = 80  # the hub's run has 200; a registry load costs more requests (manifest, config, blobs)


def test_the_chaos_suite_through_a_registry_loads_exact_or_fails_cleanly(registry, tmp_path):
    config = ChaosConfig.short(loads=LOADS, seed=18)
    report = run_chaos(config, workdir=tmp_path, registry=registry)
    assert_the_run_held(report, LOADS, max_waste=1.3)
