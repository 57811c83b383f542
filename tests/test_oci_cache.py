"""A model pulled from a registry is an ordinary Hugging Face cache entry; pushes mount across repositories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import prefetch_model, robust_model_download
from phaita.loader.oci.push import Pusher


def test_a_registry_pull_serves_hf_cache_ls_transformers_offline_and_warm_loads(registry, cached_model, fresh_cache,
                                                                                monkeypatch, caplog):
    pushed = Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    prefetch_model(MODEL, max_retries=1, timeout=30, endpoints=[f"oci://{registry.host}/models"])
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    from huggingface_hub import scan_cache_dir
    info = {r.repo_id: r for r in scan_cache_dir(fresh_cache).repos}
    revisions = {rev.commit_hash: rev for rev in info[MODEL].revisions}
    assert pushed.commit in revisions and "main" in revisions[pushed.commit].refs
    hf = Path(sys.executable).with_name("hf")
    if hf.exists():  # the hf command line, as a site would run it
        listed = subprocess.run([str(hf), "cache", "ls", "--cache-dir", str(fresh_cache)], capture_output=True,
                                text=True, timeout=120)
        assert listed.returncode == 0 and MODEL in listed.stdout, listed.stderr
    import transformers
    model = transformers.AutoModel.from_pretrained(MODEL, local_files_only=True, cache_dir=str(fresh_cache))
    assert model.__class__.__name__.startswith("Bert")
    # warm: a second load asks the registry's tag once; with the registry gone it still loads the cache
    registry.stop()
    caplog.clear()
    path = Path(prefetch_model(MODEL, max_retries=1, timeout=30))
    assert path.name == pushed.commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert robust_model_download(MODEL, max_retries=1, timeout=30).__class__.__name__.startswith("Bert")


def test_a_second_repository_of_the_same_registry_gets_its_blobs_by_mount(registry, cached_model):
    pusher = Pusher(Path(cached_model).parents[2])
    first = pusher.push(MODEL, "main", f"oci://{registry.host}/team-a")
    second = pusher.push(MODEL, "main", f"oci://{registry.host}/team-b")
    assert first.bytes_uploaded > 0
    assert second.bytes_uploaded == 0 and second.blobs_mounted == first.blobs_uploaded
    assert second.digest == first.digest
