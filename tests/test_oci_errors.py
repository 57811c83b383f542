"""OCI errors a person can act on, lock files against a registry, signatures as referrers, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oci_fixtures import MODEL, snapshot_bytes
from phaita.loader import (ModelNotFoundError, RevisionNotFoundError, UnsafeModelError, prefetch_model)
from phaita.loader.cache.layout import RepoCache
from phaita.loader.oci import reference
from phaita.loader.oci.push import Pusher
from phaita.loader.oci.signatures import fetch_signature, push_signature


def test_references_and_the_repo_id_mapping(monkeypatch):
    ref = reference.parse("oci://registry.site:5000/phaita/org/name:v1")
    assert (ref.host, ref.repository, ref.tag) == ("registry.site:5000", "phaita/org/name", "v1")
    assert reference.parse("oci://r/x@sha256:" + "a" * 64).digest == "sha256:" + "a" * 64
    mapped = reference.for_model("oci://registry.site/phaita", "Qwen/Qwen2.5-0.5B", "refs/pr/1")
    assert (mapped.repository, mapped.tag) == ("phaita/qwen/qwen2.5-0.5b", "refs-pr-1")
    for bad in ("oci://", "oci://host/UPPER", "oci://host/x:bad tag", "https://host/x"):
        with pytest.raises(ValueError):
            reference.parse(bad)
    assert reference.plain_http_allowed("127.0.0.1:5000") and not reference.plain_http_allowed("registry.site")
    monkeypatch.setenv("PHAITA_OCI_INSECURE_REGISTRIES", "registry.site:5000")
    assert reference.plain_http_allowed("registry.site:5000")


def test_unknown_repository_and_tag_are_permanent_with_advice(registry, loader_env, monkeypatch):
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    with pytest.raises((ModelNotFoundError, RevisionNotFoundError)) as info:  # distribution: MANIFEST_UNKNOWN
        prefetch_model(MODEL, max_retries=3, timeout=10)
    assert info.value.attempts == 1 and "_UNKNOWN" in str(info.value) and "phaita models push" in str(info.value)


def test_unknown_tag_and_a_non_model_artifact(registry, cached_model, fresh_cache, tmp_path, monkeypatch):
    Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    with pytest.raises(RevisionNotFoundError) as info:
        prefetch_model(f"oci://{registry.host}/models/{MODEL}:nope", max_retries=3, timeout=10)
    assert "MANIFEST_UNKNOWN" in str(info.value) and "oras repo tags" in str(info.value)
    oras_client = pytest.importorskip("oras.client")
    (tmp_path / "notes.txt").write_text("not a model")
    with monkeypatch.context() as m:
        m.chdir(tmp_path)
        oras_client.OrasClient(hostname=registry.host, insecure=True).push(
            target=f"{registry.host}/misc/notes:v1", files=["notes.txt"])
    with pytest.raises(UnsafeModelError) as info:
        prefetch_model(f"oci://{registry.host}/misc/notes:v1", max_retries=2, timeout=10)
    assert "is not a model" in str(info.value)
    assert not list(fresh_cache.glob("models--misc--notes/snapshots/*"))


def test_a_lock_file_is_compared_with_the_manifest_before_any_byte(registry, cached_model, fresh_cache, tmp_path,
                                                                   monkeypatch):
    from phaita.loader.cache.lockfile import LockFile, LockedFile, LockedModel, write_lock

    src = RepoCache(Path(cached_model).parents[2], MODEL)
    commit = Path(cached_model).name
    listing = src.load_listing(commit)
    files = tuple(LockedFile.from_remote(f) for f in listing.files if (Path(cached_model) / f.path).exists())
    good = LockFile((LockedModel(MODEL, "main", commit, files),))
    Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/models")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    lock_path = write_lock(good, tmp_path / "phaita.lock")
    path = Path(prefetch_model(MODEL, max_retries=1, timeout=30, lockfile=str(lock_path)))
    assert snapshot_bytes(path) == snapshot_bytes(Path(cached_model))
    # a lock that pins other bytes: refused before anything is fetched
    other = tmp_path / "other-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    bad_files = tuple(LockedFile(f.path, f.size, f.git_oid, "0" * 64 if f.sha256 else None) for f in files)
    bad = write_lock(LockFile((LockedModel(MODEL, "main", commit, bad_files),)), tmp_path / "bad.lock")
    with pytest.raises(UnsafeModelError) as info:
        prefetch_model(MODEL, max_retries=1, timeout=30, lockfile=str(bad), cache_dir=str(other))
    assert "differ from the lock file" in str(info.value)
    assert not list(other.glob("models--*/blobs/*"))


def test_a_cached_signature_travels_as_a_referrer(registry, cached_model, fresh_cache, monkeypatch):
    cache = Path(cached_model).parents[2]
    commit = Path(cached_model).name
    sig = RepoCache(cache, MODEL).signature_path(commit)
    sig.parent.mkdir(parents=True)
    sig.write_bytes(b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "test": 1}')
    result = Pusher(cache).push(MODEL, "main", f"oci://{registry.host}/models")
    assert result.signature
    ref = f"oci://{registry.host}/models/{MODEL}"
    assert fetch_signature(ref, result.digest) == sig.read_bytes()
    push_signature(ref, result.digest, b"second")  # another referrer: the index keeps both, newest last
    assert fetch_signature(ref, result.digest) == b"second"
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/models")
    prefetch_model(MODEL, max_retries=1, timeout=30)
    assert RepoCache(fresh_cache, MODEL).signature_path(commit).read_bytes() == b"second"


def test_the_cli_pushes_and_pulls(registry, cached_model, loader_env, tmp_path):
    env = dict(loader_env)
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    cmd = [sys.executable, "-m", "phaita.cli.main", "models"]
    pushed = subprocess.run(cmd + ["push", MODEL, f"oci://{registry.host}/site", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    doc = json.loads(pushed.stdout)
    assert doc["ok"] and doc["models"][0]["bytes_uploaded"] > 0
    from test_cli_docs import documented_shape, same_keys
    same_keys(documented_shape("models push"), doc)
    failed = subprocess.run(cmd + ["push", "nobody/nothing", f"oci://{registry.host}/site", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    same_keys(documented_shape("models push"), json.loads(failed.stdout))
    again = json.loads(subprocess.run(cmd + ["push", MODEL, f"oci://{registry.host}/site", "--json"], env=env,
                                      capture_output=True, text=True, timeout=120).stdout)
    assert again["models"][0]["bytes_uploaded"] == 0
    env["HF_HUB_CACHE"] = str(tmp_path / "cli-cache")
    pulled = subprocess.run(cmd + ["pull", f"oci://{registry.host}/site/{MODEL}:main", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["models"][0]["commit"] == doc["models"][0]["commit"]


def test_doctor_checks_an_oci_endpoint(registry, cached_model, loader_env, monkeypatch):
    from phaita.cli.doctor import run_checks

    Pusher(Path(cached_model).parents[2]).push(MODEL, "main", f"oci://{registry.host}/site")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"oci://{registry.host}/site")
    checks = {c.name: c for c in run_checks(probe_model=MODEL, timeout=10, profile=None)}
    reach = checks["endpoint reachable"]
    assert reach.ok and "Range honoured (206)" in reach.detail and "anonymous" in reach.detail
    assert checks["mirror listing"].ok and checks["mirror resume"].ok


def test_push_locked_tags_each_locked_commit_and_its_branch(registry, cached_model, loader_env, tmp_path):
    from phaita.loader.cache.lockfile import LockFile, LockedFile, LockedModel, write_lock

    commit = Path(cached_model).name
    listing = RepoCache(Path(cached_model).parents[2], MODEL).load_listing(commit)
    files = tuple(LockedFile.from_remote(f) for f in listing.files if (Path(cached_model) / f.path).exists())
    lock = write_lock(LockFile((LockedModel(MODEL, "main", commit, files),)), tmp_path / "phaita.lock")
    env = dict(loader_env)
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    done = subprocess.run([sys.executable, "-m", "phaita.cli.main", "models", "push", "--locked", "--lockfile",
                           str(lock), f"oci://{registry.host}/site", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["models"][0]
    assert row["commit"] == commit and row["tags"] == [commit, "main"]


def test_a_lock_is_not_made_from_a_registry(registry, loader_env, tmp_path):
    env = {**loader_env, "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
           "PHAITA_ENDPOINTS": f"oci://{registry.host}/site"}
    done = subprocess.run([sys.executable, "-m", "phaita.cli.main", "models", "lock", MODEL], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not from the registry" in done.stderr and "Traceback" not in done.stderr
