"""Lock files: `phaita models lock`, `pull --locked`, and loads pinned by a lock (real processes, local hub)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phaita.loader.cache import layout as cache
from phaita.loader.cache.lockfile import read_lock
from phaita.testing import LocalHub, repo_files
from phaita.utils.model_loader import OfflineModeError, load_model_and_tokenizer, robust_model_download

BERT, GPT2, MULTI = "phaita-test/tiny-bert", "phaita-test/tiny-gpt2", "phaita-test/tiny-multiformat"
PHAITA = str(Path(sys.executable).with_name("phaita"))


@pytest.fixture
def env(hf_env, monkeypatch):
    for key, value in {"PHAITA_BACKOFF_BASE": "0.01", "PHAITA_STALL_TIMEOUT": "2", "PHAITA_FRESHNESS_TIMEOUT": "1",
                       "PHAITA_CONNECT_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PHAITA_LOCKFILE", raising=False)
    return dict(os.environ)


def phaita(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PHAITA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def phaita_json(args: list[str], env: dict, code: int = 0) -> dict:
    proc = phaita([*args, "--json"], env)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_lock_records_commit_and_every_needed_file_with_hashes(env, local_hub, hub_root, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    data = phaita_json(["models", "lock", MULTI, GPT2, "-o", str(lock_path)], env)
    assert data["ok"] and data["lockfile"] == str(lock_path)
    assert local_hub.requests("/resolve/") == []  # only listings: nothing is downloaded
    lock = read_lock(lock_path)
    assert [m.repo_id for m in lock.models] == sorted([MULTI, GPT2])  # stable order
    for m in lock.models:
        assert m.commit == local_hub.commit_sha(m.repo_id) and m.revision == "main"
        served = {f.path: f for f in repo_files(hub_root / m.repo_id)}
        for f in m.files:
            assert f.size == served[f.path].size and f.git_oid == served[f.path].oid
            assert f.sha256 == served[f.path].sha256  # set for LFS files, None otherwise
    multi = {f.path for f in lock.get(MULTI).files}
    # the loader's own selection: safetensors weights, never the decoy formats, nothing from subfolders
    assert "model.safetensors" in multi and "config.json" in multi
    assert not multi & {"tf_model.h5", "flax_model.msgpack", "onnx/model.onnx", "model.Q4_0.gguf"}
    text = lock_path.read_text()
    assert phaita_json(["models", "lock", GPT2, MULTI, "-o", str(lock_path)], env)["ok"]
    assert lock_path.read_text() == text  # the same models lock to the same bytes
    assert json.loads(text)["models"][0]["files"] == sorted(json.loads(text)["models"][0]["files"],
                                                           key=lambda f: f["path"])


def test_lock_writes_nothing_when_a_model_cannot_be_resolved(env, local_hub, tmp_path):
    # The local hub carries microsoft/deberta-v3-base only of the default profile's models
    proc = phaita(["models", "lock", "-o", str(tmp_path / "x.lock"), "--max-retries", "1"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Lock file not written" in proc.stderr and not (tmp_path / "x.lock").exists()


def test_lock_output_that_is_a_folder_is_refused_and_leaves_no_temp_file(env, local_hub, tmp_path):
    folder = tmp_path / "locks"
    folder.mkdir()
    proc = phaita(["models", "lock", GPT2, "-o", str(folder)], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "it is a folder" in proc.stderr
    assert not list(tmp_path.glob(".locks*")) and not any(folder.iterdir())


def test_pull_locked_fetches_the_locked_commits(env, local_hub, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    phaita_json(["models", "lock", BERT, GPT2, "-o", str(lock_path)], env)
    local_hub.reset_stats()
    data = phaita_json(["models", "pull", "--locked", "--lockfile", str(lock_path)], env)
    lock = read_lock(lock_path)
    assert {m["name"]: m["commit"] for m in data["models"]} == {m.repo_id: m.commit for m in lock.models}
    revisions = {r.revision for r in local_hub.stats}
    assert revisions == {m.commit for m in lock.models}  # every request named the locked commit, none "main"
    for m in lock.models:  # refs/main written, so plain transformers offline loads find it by name
        assert (cache.repo_dir(Path(env["HF_HUB_CACHE"]), m.repo_id) / "refs" / "main").read_text() == m.commit
    # PHAITA_LOCKFILE is the default lock; a second pull is served by the cache without a request
    local_hub.reset_stats()
    assert phaita_json(["models", "pull", "--locked"], dict(env, PHAITA_LOCKFILE=str(lock_path)))["ok"]
    assert local_hub.requests() == []


def test_pull_locked_fails_clearly_when_the_hub_lost_the_commit_or_a_hash_differs(env, scratch_root, tmp_path):
    with LocalHub(scratch_root) as hub:
        e = dict(env, HF_ENDPOINT=hub.url)
        lock_path = tmp_path / "phaita.lock"
        phaita_json(["models", "lock", BERT, "-o", str(lock_path)], e)
        data = json.loads(lock_path.read_text())
        bad = tmp_path / "bad.lock"
        weights = next(f for f in data["models"][0]["files"] if f["path"] == "model.safetensors")
        weights["sha256"] = "0" * 64
        bad.write_text(json.dumps(data))
        proc = phaita(["models", "pull", "--locked", "--lockfile", str(bad)], e)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "differ from the lock" in proc.stderr and "model.safetensors" in proc.stderr
        assert not (cache.repo_dir(Path(e["HF_HUB_CACHE"]), BERT) / "snapshots").exists()  # nothing fetched

        (scratch_root / BERT / "config.json").write_text('{"model_type": "bert", "moved": true}')  # main moves on
        proc = phaita(["models", "pull", "--locked", "--lockfile", str(lock_path)], e)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "pins 'phaita-test/tiny-bert' to commit" in proc.stderr and "does not have" in proc.stderr


def test_unknown_model_for_pull_locked_is_an_error(env, local_hub, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    phaita_json(["models", "lock", BERT, "-o", str(lock_path)], env)
    proc = phaita(["models", "pull", "--locked", "--lockfile", str(lock_path), GPT2], env)
    assert proc.returncode == 1 and "not in the lock file" in proc.stderr
    assert phaita(["models", "pull", "--locked", "--all"], env).returncode == 2
    missing = phaita(["models", "pull", "--locked", "--lockfile", str(tmp_path / "nope.lock")], env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "broken.lock").write_text("{")
    broken = phaita(["models", "pull", "--locked", "--lockfile", str(tmp_path / "broken.lock")], env)
    assert broken.returncode == 1 and "invalid lock file" in broken.stderr


_LOAD = ("import sys; from phaita.utils.model_loader import robust_model_download as r; "
         "m = r(sys.argv[1]); print(m.config.name_or_path)")


def test_a_load_by_branch_with_a_lock_makes_no_request_on_a_warm_cache(env, scratch_root, tmp_path):
    with LocalHub(scratch_root) as hub:
        e = dict(env, HF_ENDPOINT=hub.url)
        lock_path = tmp_path / "phaita.lock"
        phaita_json(["models", "lock", BERT, "-o", str(lock_path)], e)
        phaita_json(["models", "pull", "--locked", "--lockfile", str(lock_path)], e)
        locked = read_lock(lock_path).get(BERT).commit

        hub.reset_stats()  # without a lock: one freshness request for "main"
        plain = subprocess.run([sys.executable, "-c", _LOAD, BERT], env=e, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0, plain.stderr
        assert len(hub.requests()) == 1

        (scratch_root / BERT / "config.json").write_text(  # main moves on: the lock keeps the old commit
            (scratch_root / BERT / "config.json").read_text().replace("{", '{"moved": 1, ', 1))
        hub.reset_stats()
        pinned = subprocess.run([sys.executable, "-c", _LOAD, BERT], env=dict(e, PHAITA_LOCKFILE=str(lock_path)),
                                capture_output=True, text=True, timeout=120)
        assert pinned.returncode == 0, pinned.stderr
        assert hub.requests() == []  # counted on the hub: not one request
        assert Path(pinned.stdout.strip()).name == locked  # loaded from the locked snapshot


def test_a_missing_locked_model_is_fetched_at_its_locked_commit_only(env, local_hub, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    phaita_json(["models", "lock", BERT, "-o", str(lock_path)], env)
    commit = read_lock(lock_path).get(BERT).commit
    local_hub.reset_stats()
    model = robust_model_download(BERT, lockfile=str(lock_path))
    assert Path(model.config.name_or_path).name == commit
    assert local_hub.stats and {r.revision for r in local_hub.stats} == {commit}
    local_hub.reset_stats()
    model, tokenizer = load_model_and_tokenizer(BERT, lockfile=str(lock_path))  # the same lock, the other entry point
    assert Path(model.config.name_or_path).name == commit and local_hub.requests() == []
    with pytest.raises(ValueError, match="pins it to commit"):
        robust_model_download(BERT, lockfile=str(lock_path), revision="other")
    with pytest.raises(ValueError, match="lockfile must be"):
        robust_model_download(BERT, lockfile=42)


def test_offline_with_a_lock_and_no_locked_snapshot_says_so(env, local_hub, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    phaita_json(["models", "lock", BERT, "-o", str(lock_path)], env)
    robust_model_download(BERT)  # main is cached, but not the commit this other lock pins
    data = json.loads(lock_path.read_text())
    data["models"][0]["commit"] = "f" * 40
    other = tmp_path / "other.lock"
    other.write_text(json.dumps(data))
    local_hub.reset_stats()
    with pytest.raises(OfflineModeError, match="pins commit f{40}"):
        robust_model_download(BERT, lockfile=str(other), allow_offline=True)
    assert local_hub.requests() == []


def test_candidates_not_pinned_by_the_lock_are_not_tried(env, local_hub, tmp_path):
    lock_path = tmp_path / "phaita.lock"
    phaita_json(["models", "lock", BERT, "-o", str(lock_path)], env)
    robust_model_download(BERT, lockfile=str(lock_path))
    local_hub.reset_stats()
    robust_model_download(["nobody/first-choice", BERT], lockfile=str(lock_path))
    assert local_hub.requests() == []  # the unpinned first candidate was not asked for
