"""The judgement of a chaos run, shared by the hub's (test_chaos.py) and the registry's (test_oci_chaos.py)."""

from __future__ import annotations

from phaita.testing.chaos import CHAOS_KINDS, ChaosReport


def assert_the_run_held(report: ChaosReport, loads: int, max_waste: float) -> None:
    """No corrupt, hung or unexpected load; the faults were real; most loads succeeded, little sent twice
    beyond what corrupted answers force (each costs its whole file again: one hash covers a file)."""
    print("\n" + report.table())
    problems = "\n".join(report.problems())
    assert report.loads == loads
    assert report.corrupt == 0, problems
    assert report.hangs == 0, problems
    assert report.unexpected == 0, problems
    assert report.succeeded + report.failed_cleanly == report.loads
    # The faults were real: every kind fired, transfers were resumed, attempts failed...
    assert all(report.faults[kind] > 0 for kind in CHAOS_KINDS), report.faults
    assert report.resumes > 0 and report.failed_attempts > 0
    assert report.range_segments > 0  # files came over parallel range streams, under the same faults
    # ...and still most loads succeeded, without sending much twice, each within its time bound.
    assert report.succeeded >= 0.8 * report.loads
    assert report.waste < max_waste
    assert max(r.seconds / r.bound for r in report.results) < 1
