"""Bundles: machine A pulls with a lock and exports; machine B (another HF_HOME, offline, no hub) imports.

Every step is a real `phaita` process; A talks to the local hub, B never has one. "Machine B's
cache unchanged" is checked by comparing a listing of every entry (name, type, size, link target)
before and after a refused import.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from phaita.loader import cache
from phaita.testing import LocalHub

BERT, GPT2, DEBERTA = "phaita-test/tiny-bert", "phaita-test/tiny-gpt2", "microsoft/deberta-v3-base"
PHAITA = str(Path(sys.executable).with_name("phaita"))

# Loads each (name, model_type, gguf_file) through the loader and prints a digest of its weights.
LOAD = r"""
import hashlib, json, sys
from phaita.utils.model_loader import robust_model_download
out = {}
for name, mtype, gguf in json.loads(sys.argv[1]):
    model = robust_model_download(name, mtype, **({"gguf_file": gguf} if gguf else {}))
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode()); h.update(value.detach().float().cpu().numpy().tobytes())
    out[name] = h.hexdigest()
print(json.dumps(out))
"""


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there


@pytest.fixture
def machine_a(hf_env, monkeypatch):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.delenv("PHAITA_LOCKFILE", raising=False)
    return dict(os.environ)


def machine(tmp_path: Path, name: str, a_env: dict) -> dict:
    """Another machine: its own HF_HOME, offline, and no hub (the endpoint refuses connections)."""
    home = tmp_path / name
    (home / "hub").mkdir(parents=True)
    return dict(a_env, HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_HUB_OFFLINE="1",
                HF_ENDPOINT=dead_endpoint())


def phaita(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PHAITA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def phaita_json(args: list[str], env: dict) -> dict:
    proc = phaita([*args, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def load_digests(models: list[tuple[str, str, str | None]], env: dict) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(models)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def listing(root: Path) -> list[tuple]:
    """Every entry under ``root``: path, type, size, link target (what "unchanged" compares)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
            out.append((str(p.relative_to(root)), kind, st.st_size if kind == "file" else 0,
                        os.readlink(p) if kind == "link" else None))
    return sorted(out)


def lock_pull_export(a: dict, tmp_path: Path, models: list[str], *outputs: str) -> Path:
    lock = tmp_path / "phaita.lock"
    assert phaita_json(["models", "lock", *models, "-o", str(lock)], a)["ok"]
    assert phaita_json(["models", "pull", "--locked", "--lockfile", str(lock)], a)["ok"]
    for out in outputs:
        report = phaita_json(["models", "export", str(tmp_path / out), "--locked", "--lockfile", str(lock)], a)
        assert report["path"] == str(tmp_path / out)
    return lock


# --------------------------------------------------------------------------- the whole way, A to B


def test_lock_pull_export_import_load_offline(machine_a, local_hub, tmp_path):
    a = machine_a
    models = [BERT, GPT2, DEBERTA]
    lock = lock_pull_export(a, tmp_path, models, "bundle", "bundle.tar")
    assert (tmp_path / "bundle" / "phaita-bundle.json").is_file() and tarfile.is_tarfile(tmp_path / "bundle.tar")
    assert json.loads((tmp_path / "bundle" / "phaita.lock").read_text()) == json.loads(lock.read_text())
    kinds = [(BERT, "auto", None), (GPT2, "causal_lm", None), (DEBERTA, "auto", None)]
    on_a = load_digests(kinds, dict(a, PHAITA_LOCKFILE=str(lock)))

    for bundle in ("bundle", "bundle.tar"):
        b = machine(tmp_path, f"b-{bundle}", a)
        report = phaita_json(["models", "import", str(tmp_path / bundle)], b)
        assert {m["repo_id"] for m in report["models"]} == set(models)
        assert report["blobs_added"] > 0 and report["blobs_present"] == 0
        assert all(m["new_snapshot"] and m["refs"]["main"]["now"] == m["commit"] for m in report["models"])
        # robust_model_download with HF_HUB_OFFLINE=1, by branch name and with the bundle's lock
        assert load_digests(kinds, b) == on_a
        assert load_digests(kinds, dict(b, PHAITA_LOCKFILE=str(tmp_path / "bundle" / "phaita.lock"))) == on_a
        status = phaita_json(["models", "status"], b)
        assert all(s["state"] == "complete" for m in status["models"] for s in m["snapshots"])
        assert phaita_json(["models", "verify"], b)["ok"]

    b = machine(tmp_path, "b-bundle", a)
    # allow_offline=True without HF_HUB_OFFLINE, and plain transformers in offline mode
    online_flag = dict(b, HF_HUB_OFFLINE="0")
    check = ("from phaita.utils.model_loader import robust_model_download as r; "
             f"r('{BERT}', allow_offline=True); r('{GPT2}', 'tokenizer', allow_offline=True)")
    proc = subprocess.run([sys.executable, "-c", check], env=online_flag, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plain = (f"from transformers import AutoModel, AutoTokenizer; AutoModel.from_pretrained('{BERT}'); "
             f"AutoTokenizer.from_pretrained('{GPT2}'); print('ok')")
    proc = subprocess.run([sys.executable, "-c", plain], env=dict(b, TRANSFORMERS_OFFLINE="1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

    again = phaita_json(["models", "import", str(tmp_path / "bundle.tar")], b)  # everything is there already
    assert again["blobs_added"] == 0 and again["blobs_present"] == report["blobs_added"]
    text = phaita(["models", "import", str(tmp_path / "bundle")], b)
    assert text.returncode == 0 and "IMPORTED  phaita-test/tiny-bert" in text.stdout and "already present" in text.stderr


def test_export_names_models_and_refuses_what_it_cannot_verify(machine_a, local_hub, tmp_path):
    a = machine_a
    assert phaita_json(["models", "pull", BERT], a)["ok"]
    offline_a = dict(a, HF_HUB_OFFLINE="1", HF_ENDPOINT=dead_endpoint())  # export needs the cache only
    data = phaita_json(["models", "export", str(tmp_path / "one.tar"), BERT], offline_a)
    assert [m["repo_id"] for m in data["models"]] == [BERT] and data["blobs"] == data["models"][0]["files"]

    again = phaita(["models", "export", str(tmp_path / "one.tar"), BERT], offline_a)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert phaita(["models", "export", str(tmp_path / "x")], offline_a).returncode == 2  # neither MODEL nor --locked
    absent = phaita(["models", "export", str(tmp_path / "x"), GPT2], offline_a)
    assert absent.returncode == 1 and "not in the cache" in absent.stderr and "Traceback" not in absent.stderr

    snapshot = Path(data["models"][0]["commit"])
    blob = Path(os.path.realpath(cache.repo_dir(Path(a["HF_HUB_CACHE"]), BERT) / "snapshots" / snapshot.name /
                                 "config.json"))
    blob.write_bytes(blob.read_bytes().replace(b"{", b"[", 1))  # same size, one byte changed in the cache
    bad = phaita(["models", "export", str(tmp_path / "bad"), BERT], offline_a)
    assert bad.returncode == 1 and "config.json does not match its hash" in bad.stderr
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.partial-*"))  # nothing half-written


def test_a_cache_filled_by_snapshot_download_can_be_bundled(machine_a, local_hub, tmp_path):
    from huggingface_hub import snapshot_download

    snapshot_download(BERT, cache_dir=machine_a["HF_HUB_CACHE"])  # no phaita listing: verified by blob names
    data = phaita_json(["models", "export", str(tmp_path / "hf.tar"), BERT], machine_a)
    b = machine(tmp_path, "b", machine_a)
    assert phaita_json(["models", "import", str(tmp_path / "hf.tar")], b)["models"][0]["commit"] == \
        data["models"][0]["commit"]
    assert load_digests([(BERT, "auto", None)], b) == load_digests([(BERT, "auto", None)], machine_a)


# --------------------------------------------------------------------------- refused bundles


def _flip(bundle: Path, manifest: dict) -> str:
    blob = _weights_blob(bundle, manifest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    return blob.name


def _truncate(bundle: Path, manifest: dict) -> str:
    blob = _weights_blob(bundle, manifest)
    with open(blob, "r+b") as fh:
        fh.truncate(blob.stat().st_size - 100)
    return blob.name


def _missing(bundle: Path, manifest: dict) -> str:
    model = manifest["models"][0]
    f = next(f for f in model["files"] if f["path"] == "config.json")
    blob = bundle / cache.repo_dir(Path("."), model["repo_id"]).name / "blobs" / (f.get("sha256") or f["git_oid"])
    blob.unlink()
    return blob.name


def _dotdot(bundle: Path, manifest: dict) -> str:
    manifest["models"][0]["files"][0]["path"] = "../../../escaped.json"
    (bundle / "phaita-bundle.json").write_text(json.dumps(manifest))
    return "../../../escaped.json"


def _outside_link(bundle: Path, manifest: dict) -> str:
    model = manifest["models"][0]
    folder = bundle / cache.repo_dir(Path("."), model["repo_id"]).name / "snapshots" / model["commit"]
    os.symlink("/etc/passwd", folder / "tokenizer_extra.json")
    return "tokenizer_extra.json"


def _weights_blob(bundle: Path, manifest: dict) -> Path:
    model = manifest["models"][0]
    f = next(f for f in model["files"] if f["path"] == "model.safetensors")
    return bundle / cache.repo_dir(Path("."), model["repo_id"]).name / "blobs" / f["sha256"]


DAMAGE = {"flipped byte": (_flip, "does not match its sha256"),
          "truncated file": (_truncate, "(truncated or changed)"),
          "missing file": (_missing, "is missing from it"),
          "path leaving the bundle": (_dotdot, "leaves the"),
          "symlink pointing outside": (_outside_link, "points outside the bundle")}


@pytest.fixture
def good_bundle(machine_a, local_hub, tmp_path):
    lock_pull_export(machine_a, tmp_path, [BERT], "good")
    return tmp_path / "good"


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_a_damaged_bundle_is_refused_and_the_cache_is_unchanged(damage, as_tar, good_bundle, machine_a, tmp_path):
    b = machine(tmp_path, "b", machine_a)
    bundle = tmp_path / "damaged"
    shutil.copytree(good_bundle, bundle, symlinks=True)
    manifest = json.loads((bundle / "phaita-bundle.json").read_text())
    damage_fn, message = DAMAGE[damage]
    named = damage_fn(bundle, manifest)
    target = bundle
    if as_tar:
        target = tmp_path / "damaged.tar"
        with tarfile.open(target, "w") as tar:
            tar.add(bundle, arcname=".")
    before = listing(Path(b["HF_HOME"]))
    proc = phaita(["models", "import", str(target)], b)
    assert proc.returncode == 1, proc.stdout
    assert message in proc.stderr and named in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert listing(Path(b["HF_HOME"])) == before


def test_a_tar_member_named_with_dotdot_is_refused(good_bundle, machine_a, tmp_path):
    b = machine(tmp_path, "b", machine_a)
    target = tmp_path / "evil.tar"
    with tarfile.open(target, "w") as tar:
        tar.add(good_bundle, arcname=".")
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 4
        tar.addfile(info, __import__("io").BytesIO(b"evil"))
    before = listing(tmp_path)
    proc = phaita(["models", "import", str(target)], b)
    assert proc.returncode == 1 and "'../../outside.txt' leaves the bundle" in proc.stderr
    assert listing(tmp_path) == before and not (tmp_path.parent / "outside.txt").exists()


# --------------------------------------------------------------------------- SIGKILL halfway


def test_an_import_killed_halfway_resumes_and_nothing_partial_is_ever_visible(machine_a, scratch_root, make_repo,
                                                                              tmp_path):
    files = {"config.json": '{"model_type": "bert"}'}
    for i in range(8):  # 8 x 4 MB weights: the import takes long enough to be killed in the middle
        files[f"model-{i:05d}-of-00008.safetensors"] = os.urandom(4 << 20)
    make_repo(scratch_root, "acme/many", files)
    with LocalHub(scratch_root) as hub:
        a = dict(machine_a, HF_ENDPOINT=hub.url)
        assert phaita_json(["models", "pull", "acme/many"], a)["ok"]
        assert phaita_json(["models", "export", str(tmp_path / "many.tar"), "acme/many"], a)["blobs"] == 9
    b = machine(tmp_path, "b", machine_a)
    cache_b = Path(b["HF_HUB_CACHE"])
    repo_b = cache_b / "models--acme--many"
    staging = cache_b / ".phaita-import"
    seen_partial: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # what any reader of B's cache could see, as often as it can look
        while not stop.is_set():
            for snap in (repo_b / "snapshots").glob("*") if (repo_b / "snapshots").is_dir() else []:
                present = {p.name for p in snap.iterdir()}
                if len(present) != 9 or any(not (snap / n).exists() for n in present):
                    seen_partial.append(f"snapshot {snap.name}: {len(present)} entries")
            for blob in (repo_b / "blobs").glob("*") if (repo_b / "blobs").is_dir() else []:
                if blob.name.endswith((".part", ".incomplete")):
                    seen_partial.append(f"blob {blob.name}")
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = subprocess.Popen([PHAITA, "models", "import", str(tmp_path / "many.tar"), "--json"], env=b,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if staging.is_dir() and any(not p.name.endswith(".part") for p in staging.rglob("*") if p.is_file()):
                break  # at least one blob verified and staged, others still to come
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
        assert not (repo_b / "snapshots").exists()  # killed while verifying: nothing published yet

        rerun = subprocess.run([PHAITA, "models", "import", str(tmp_path / "many.tar"), "--json"], env=b,
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        report = json.loads(rerun.stdout)
        assert report["blobs_resumed"] >= 1 and report["blobs_added"] == 9
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert seen_partial == []
    assert not staging.exists()
    assert phaita_json(["models", "verify", "acme/many"], b)["ok"]
    assert phaita_json(["models", "status", "acme/many"], b)["models"][0]["snapshots"][0]["state"] == "complete"
