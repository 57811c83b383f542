"""`phaita models verify` on caches written by other clients: `hf download` and `snapshot_download`,
including huggingface_hub 2.x's shared-blob layout. No network at verify time: the expected hashes
come from a recorded listing or from the blob names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phaita.loader.cache import layout as cache
from phaita.testing.cache_layouts import share_blobs as share_blobs_of

BERT = "phaita-test/tiny-bert"
HF = str(Path(sys.executable).with_name("hf"))
PHAITA = str(Path(sys.executable).with_name("phaita"))


def verify_json(env: dict, *names: str, code: int = 0) -> dict:
    """`phaita models verify --json` as a real process, with no hub to reach."""
    offline = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    proc = subprocess.run([PHAITA, "models", "verify", *names, "--json"], env=offline, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def checks_by_path(report: dict) -> dict[str, str | None]:
    return {f["path"]: f["check"] for f in report["files"]}


def share_blobs(cache_dir: Path, repo_id: str) -> list[Path]:
    """huggingface_hub 2.x's shared-blob layout, made by huggingface_hub itself (see phaita.testing)."""
    pytest.importorskip("hf_xet")
    shared = share_blobs_of(cache_dir, repo_id)
    for blob in shared:
        target = os.readlink(blob)
        assert target.startswith("../../blobs/") and Path(target).name != blob.name
        # a Xet hash is not the content sha256: the link's first hop must be used
    return shared


def flip_byte(path: Path, offset: int = 100) -> None:
    os.chmod(path, 0o644)  # shared-store files are read-only
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_hf_download_cache_verified_from_listing_then_from_blob_names(hf_env):
    cache_dir = Path(hf_env["HF_HUB_CACHE"])
    proc = subprocess.run([HF, "download", BERT], env=hf_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    repo = cache.repo_dir(cache_dir, BERT)
    assert not (repo / cache.LISTING_DIR).exists()  # no phaita listing: another client wrote this cache

    (report,) = verify_json(hf_env)["models"]
    assert report["ok"] and report["files_checked"] == 6 and report["unverifiable"] == []
    assert set(checks_by_path(report).values()) == {"listing"}  # huggingface_hub's trees/<commit>.json

    shutil.rmtree(repo / "trees")  # as hf_hub_download and older clients leave it: blob names only
    (report,) = verify_json(hf_env)["models"]
    assert report["ok"] and report["files_checked"] == 6 and report["unverifiable"] == []
    assert report["checks"] == {"listing": 0, "blob name": 6, "size only": 0, "none": 0}  # every key, as CLI.md shows


def test_snapshot_download_shared_blobs_verified_and_a_flipped_byte_found(hf_env):
    from huggingface_hub import snapshot_download

    cache_dir = Path(hf_env["HF_HUB_CACHE"])
    snapshot_download(BERT, cache_dir=str(cache_dir))
    repo = cache.repo_dir(cache_dir, BERT)
    (shared,) = share_blobs(cache_dir, BERT)  # model.safetensors
    shutil.rmtree(repo / "trees")

    (report,) = verify_json(hf_env, BERT)["models"]
    assert report["ok"] and report["files_checked"] == 6 and report["unverifiable"] == []
    assert checks_by_path(report)["model.safetensors"] == "blob name"

    store_file = Path(os.path.realpath(shared))
    assert store_file.parent.parent == cache_dir / "blobs"
    flip_byte(store_file)
    data = verify_json(hf_env, BERT, code=1)
    (bad,) = data["found_bad"]
    assert bad["path"] == "model.safetensors" and bad["reason"].startswith("sha256 mismatch")
    assert "blob name" in bad["reason"] and bad["blob"] == str(shared)


def test_repair_of_a_shared_blob_refetches_and_leaves_the_store_alone(hf_env, monkeypatch):
    from huggingface_hub import snapshot_download

    from phaita.loader.cache.repair import repair
    from phaita.loader.cache.verify import verify
    from phaita.utils.model_loader import prefetch_model

    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    cache_dir = Path(hf_env["HF_HUB_CACHE"])
    snapshot_download(BERT, cache_dir=str(cache_dir))
    (shared,) = share_blobs(cache_dir, BERT)
    store_file = Path(os.path.realpath(shared))
    flip_byte(store_file)

    (report,) = verify(cache_dir, [BERT])
    fixed = repair(cache_dir, report.bad, prefetch_model, max_retries=1)
    assert fixed.errors == [] and [j.repo_id for j in fixed.refetched] == [BERT]
    assert not shared.is_symlink() and shared.is_file()  # a fresh, whole blob of this repository
    assert store_file.exists()  # the store entry may back other repositories: not deleted here
    (again,) = verify(cache_dir, [BERT])
    assert again.ok and again.files_checked == 6


def test_single_file_hf_download_checked_by_blob_name(hf_env):
    """`hf download REPO FILE` records no tree listing: the git sha1 in the blob's name is the check."""
    cache_dir = Path(hf_env["HF_HUB_CACHE"])
    proc = subprocess.run([HF, "download", BERT, "config.json"], env=hf_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    (report,) = verify_json(hf_env)["models"]
    assert checks_by_path(report) == {"config.json": "blob name"} and report["ok"]
    (snapshot,) = (cache.repo_dir(cache_dir, BERT) / "snapshots").iterdir()
    with open(os.path.realpath(snapshot / "config.json"), "ab") as fh:
        fh.write(b" ")
    (report,) = verify_json(hf_env, code=1)["models"]
    assert report["bad"][0]["reason"].startswith("git sha1 mismatch")
