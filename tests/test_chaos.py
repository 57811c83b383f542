"""The chaos suite: >= 200 loads through a hub that injects seeded random faults.

CI runs the short mode (about half a minute on two cores); ``PHAITA_FULL=1`` runs the full mode
(1000 loads, more faults, longer stalls, an 8 MB file). The same run from a shell:
``python -m phaita.testing.chaos [--full]``. See :mod:`phaita.testing.chaos` for what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos_checks import assert_the_run_held
from phaita.loader.config import full_runs
from phaita.testing.chaos import ChaosConfig, audit_cache, main, run_chaos, sha256_file

FULL = full_runs()


@pytest.fixture(scope="module")
def chaos_dir(tmp_path_factory) -> Path:
    """One work folder per module: the chaos models are published once."""
    return tmp_path_factory.mktemp("chaos")


def test_chaos_loads_are_exact_or_fail_cleanly(chaos_dir):
    config = ChaosConfig.full() if FULL else ChaosConfig.short()
    report = run_chaos(config, workdir=chaos_dir)
    assert config.loads >= 200
    assert_the_run_held(report, config.loads, max_waste=1.10)
    assert report.failed_cleanly > 0  # some loads ran out of attempts


def test_the_checks_catch_a_loader_that_skips_verification(chaos_dir, monkeypatch):
    """Positive control: with hash verification switched off and every file corrupted in transit,
    the runner must report corrupt loads (so a zero in the real run means something)."""
    from phaita.loader import hashing

    monkeypatch.setattr(hashing.StreamHasher, "matches", lambda self, expected: True)
    config = ChaosConfig.short(loads=6, kinds=("corrupt",), rate=1.0, api_rate=0.0, retries=(1,), workers=2)
    report = run_chaos(config, workdir=chaos_dir)
    assert report.corrupt > 0 and not report.ok
    assert any("differ" in p or "holds other bytes" in p for r in report.results for p in r.corrupt)


def test_audit_finds_wrong_blobs_and_links_to_partial_files(tmp_path):
    hub = tmp_path / "hub" / "acme" / "m"
    hub.mkdir(parents=True)
    (hub / "config.json").write_text("{}")
    truth = {("acme/m", "config.json"): sha256_file(hub / "config.json")}
    repo = tmp_path / "cache" / "models--acme--m"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    good = repo / "blobs" / truth[("acme/m", "config.json")]
    good.write_text("{}")
    (snap / "config.json").symlink_to(good)
    assert audit_cache(tmp_path / "cache", lambda r, p: truth.get((r, p))) == []
    (repo / "blobs" / ("a" * 64)).write_bytes(b"not what the name says")
    partial = repo / "blobs" / ("b" * 64 + ".incomplete")
    partial.write_bytes(b"half")
    (snap / "model.safetensors").symlink_to(partial)
    problems = audit_cache(tmp_path / "cache", lambda r, p: truth.get((r, p)))
    assert len(problems) == 2
    assert "holds other bytes" in problems[0] and "links a partial file" in problems[1]


def test_command_line_prints_the_summary(chaos_dir, capsys):
    assert main(["--loads", "8", "--seed", "3", "--quiet", "--workdir", str(chaos_dir)]) == 0
    out = capsys.readouterr().out
    for row in ("loads", "succeeded", "failed cleanly", "corrupt (must be 0)", "hangs (must be 0)",
                "bytes served / bytes needed"):
        assert row in out


def test_a_run_leaves_the_environment_and_the_loader_as_it_found_them(chaos_dir, monkeypatch):
    from phaita.loader.request import api

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the caller's own endpoint
    def ours() -> dict[str, str]:  # (torch adds variables of its own on first use)
        return {k: v for k, v in os.environ.items() if k.startswith(("HF_", "PHAITA_", "TRANSFORMERS_"))}

    environ, load_snapshot = ours(), api.load_snapshot
    report = run_chaos(ChaosConfig.short(loads=2, rate=0.0, api_rate=0.0, workers=1), workdir=chaos_dir)
    assert report.succeeded == 2
    assert ours() == environ and api.load_snapshot is load_snapshot
