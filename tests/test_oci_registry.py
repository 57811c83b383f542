"""Push to and pull from a real registry (docker-registry, CNCF distribution 2.8) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader.oci.push import Pusher


def _push(cache: Path, target: str, repo_id: str = MODEL, revision: str = "main"):
    return Pusher(cache).push(repo_id, revision, target)


def test_push_then_pull_gives_the_same_snapshot_and_a_second_push_uploads_nothing(
        registry, cached_model, fresh_cache, monkeypatch):
    first = _push(Path(cached_model).parents[2], f"oci://{registry.host}/models")
    assert first.bytes_uploaded > 0 and first.blobs_uploaded == first.files + 1
    assert first.tags == [first.commit, "main"]
    again = _push(Path(cached_model).parents[2], f"oci://{registry.host}/models")
    assert again.bytes_uploaded == 0 and again.blobs_uploaded == 0
    assert again.digest == first.digest  # same snapshot, same manifest

    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    from phaita.loader import prefetch_model
    pulled = Path(prefetch_model(MODEL, max_retries=1, timeout=60))
    assert pulled.name == first.commit
    assert snapshot_bytes(pulled) == snapshot_bytes(Path(cached_model))
    assert (fresh_cache / "models--phaita-test--tiny-bert" / "refs" / "main").read_text() == first.commit
    # blobs are named as the Hub names them: the same names as in the cache the model came from
    src_blobs = sorted(p.name for p in (Path(cached_model).parents[1] / "blobs").iterdir())
    dst_blobs = sorted(p.name for p in (fresh_cache / "models--phaita-test--tiny-bert" / "blobs").iterdir())
    assert dst_blobs == src_blobs


def test_the_oci_benchmark_runs_in_smoke_mode(registry, tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    out = tmp_path / "oci.json"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "oci.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(root / "src"), "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["step"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["push again (phaita)"]["note"].startswith("0 bytes uploaded")
