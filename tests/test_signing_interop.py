"""Interop both ways with the ``model_signing`` command (the format's reference implementation).

* A snapshot signed by ``model_signing sign key|certificate`` loads in phaita under a policy that
  trusts that key / CA and subject.
* A phaita signature (``phaita models sign``, made from the cache's known digests, no re-read)
  passes ``model_signing verify key|certificate`` on the snapshot folder (symlinks, hence
  ``--allow_symlinks``) and on a flat exported copy of it (plain files).
* ``phaita models sign --sign-lock``: the lock file's signature passes ``model_signing verify`` too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("model_signing", reason="the phaita[signing] extra is not installed")

from phaita.loader import prefetch_model, robust_model_download  # noqa: E402
from phaita.testing import LocalHub  # noqa: E402
from phaita.testing.env import point_huggingface_hub_at  # noqa: E402

from signing_pki import key_pair, make_ca, make_leaf, trust_toml  # noqa: E402

MODEL = "phaita-test/tiny-bert"
BIN = Path(sys.executable).parent
MODEL_SIGNING = str(BIN / "model_signing")
PHAITA = str(BIN / "phaita")


@pytest.fixture
def snapshot(tmp_path, hub_root, loader_env, monkeypatch):
    root = tmp_path / "root"
    shutil.copytree(hub_root / MODEL, root / MODEL)
    with LocalHub(root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        path = Path(prefetch_model(MODEL))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything below is offline (but `models lock`)
        yield path


def ms(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MODEL_SIGNING, *args], capture_output=True, text=True, timeout=120)


def phaita(*args: str, **env_over: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), **env_over)
    return subprocess.run([PHAITA, *args], capture_output=True, text=True, timeout=120, env=env)


def signature_place(snapshot: Path) -> Path:
    return snapshot.parents[1] / "signatures" / snapshot.name / "model.sig"


def flat_copy(snapshot: Path, dest: Path) -> Path:
    shutil.copytree(snapshot, dest, symlinks=False)  # what an export to plain files looks like
    assert not any(p.is_symlink() for p in dest.iterdir())
    return dest


def loads(monkeypatch, policy: Path) -> None:
    monkeypatch.setenv("PHAITA_TRUST", str(policy))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    assert robust_model_download(MODEL, "auto").config.model_type == "bert"


def test_model_signing_key_signature_on_a_snapshot_loads_in_phaita(snapshot, tmp_path, monkeypatch):
    site = key_pair(tmp_path / "k", "release")
    sig = signature_place(snapshot)
    sig.parent.mkdir(parents=True)
    r = ms("sign", "key", str(snapshot), "--private_key", str(site.private), "--signature", str(sig),
           "--allow_symlinks")
    assert r.returncode == 0, r.stderr
    loads(monkeypatch, site.public)


def test_model_signing_certificate_signature_on_a_snapshot_loads_in_phaita(snapshot, tmp_path, monkeypatch):
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca)
    sig = signature_place(snapshot)
    sig.parent.mkdir(parents=True)
    r = ms("sign", "certificate", str(snapshot), "--private_key", str(leaf.key), "--signing_certificate",
           str(leaf.cert), "--certificate_chain", str(ca.path), "--signature", str(sig), "--allow_symlinks")
    assert r.returncode == 0, r.stderr
    loads(monkeypatch, trust_toml(tmp_path / "policy", cas=[(ca.path, [leaf.subject])]))


def test_phaita_key_signature_verifies_with_model_signing_on_the_snapshot_and_a_flat_copy(snapshot, tmp_path):
    site = key_pair(tmp_path / "k", "release")
    r = phaita("models", "sign", MODEL, "--key", str(site.private), "--json")
    assert r.returncode == 0, r.stderr
    sig = Path(json.loads(r.stdout)["models"][0]["signature"])
    assert sig == signature_place(snapshot)
    r = ms("verify", "key", str(snapshot), "--public_key", str(site.public), "--signature", str(sig), "--allow_symlinks")
    assert r.returncode == 0 and "Verification succeeded" in r.stdout, r.stdout + r.stderr
    flat = flat_copy(snapshot, tmp_path / "flat")
    r = ms("verify", "key", str(flat), "--public_key", str(site.public), "--signature", str(sig))
    assert r.returncode == 0 and "Verification succeeded" in r.stdout, r.stdout + r.stderr
    (flat / "config.json").write_text((flat / "config.json").read_text().replace("bert", "BERT"))
    r = ms("verify", "key", str(flat), "--public_key", str(site.public), "--signature", str(sig))
    assert r.returncode != 0 and "config.json" in r.stdout + r.stderr  # the oracle can fail


def test_phaita_certificate_signature_verifies_with_model_signing(snapshot, tmp_path):
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca)
    r = phaita("models", "sign", MODEL, "--key", str(leaf.key), "--cert-chain", str(leaf.chain))
    assert r.returncode == 0, r.stderr
    sig = signature_place(snapshot)
    for folder, extra in ((snapshot, ["--allow_symlinks"]), (flat_copy(snapshot, tmp_path / "flat"), [])):
        r = ms("verify", "certificate", str(folder), "--certificate_chain", str(ca.path), "--signature", str(sig), *extra)
        assert r.returncode == 0 and "Verification succeeded" in r.stdout, r.stdout + r.stderr
    other = make_ca(tmp_path / "other", "Other Root")
    r = ms("verify", "certificate", str(snapshot), "--certificate_chain", str(other.path), "--signature", str(sig),
           "--allow_symlinks")
    assert r.returncode != 0


def test_a_signed_lock_file_verifies_with_model_signing(snapshot, tmp_path, monkeypatch):
    site = key_pair(tmp_path / "k", "release")
    lock = tmp_path / "phaita.lock"
    r = phaita("models", "lock", MODEL, "--output", str(lock), HF_HUB_OFFLINE="0")  # locking asks the hub
    assert r.returncode == 0, r.stderr
    r = phaita("models", "sign", "--locked", "--lockfile", str(lock), "--sign-lock", "--key", str(site.private),
               "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["models"][0]["commit"] == snapshot.name and doc["lock_signature"] == str(lock) + ".sig"
    r = ms("verify", "key", str(lock), "--public_key", str(site.public), "--signature", doc["lock_signature"])
    assert r.returncode == 0, r.stdout + r.stderr
    monkeypatch.setenv("PHAITA_LOCKFILE", str(lock))
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    r = phaita("models", "verify", "--signatures", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["lock"]["ok"]
    from test_cli_docs import documented_shape, same_keys

    same_keys(documented_shape("models verify --signatures"), json.loads(r.stdout))  # with the lock row
    assert robust_model_download(MODEL, "auto").config.model_type == "bert"  # the signed pins: checked, loaded
    from phaita.loader import SignatureError

    lock.write_text(lock.read_text() + "\n")  # still a valid lock, no longer the signed bytes
    with pytest.raises(SignatureError, match=f"the lock file {lock} differs from the one key release"):
        robust_model_download(MODEL, "auto")
    lock.write_text(lock.read_text().replace(snapshot.name, "0" * 40))
    r = phaita("models", "verify", "--signatures", "--json")
    assert r.returncode == 1 and "differs from the signed one" in json.loads(r.stdout)["lock"]["detail"]


def test_an_export_sign_bundle_verifies_with_model_signing_inside_the_bundle(snapshot, tmp_path):
    """`export --sign` signs exactly the bundled files: model_signing verifies the bundle's own snapshot folder."""
    site = key_pair(tmp_path / "k", "release")
    bundle = tmp_path / "bundle"
    r = phaita("models", "export", str(bundle), MODEL, "--sign", "--key", str(site.private))
    assert r.returncode == 0, r.stderr
    folder = bundle / "models--phaita-test--tiny-bert"
    sig = folder / "signatures" / snapshot.name / "model.sig"
    r = ms("verify", "key", str(folder / "snapshots" / snapshot.name), "--public_key", str(site.public),
           "--signature", str(sig), "--allow_symlinks")
    assert r.returncode == 0 and "Verification succeeded" in r.stdout, r.stdout + r.stderr
