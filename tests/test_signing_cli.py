"""``phaita models sign | status | verify --signatures | doctor | export --sign | import`` with signatures.

Machine A pulls from a LocalHub and exports; machine B (another cache, offline) imports under its
own trust policy: a bundle whose signature is forged, or missing where one is required, is refused
and B's cache stays as it was.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("model_signing", reason="the phaita[signing] extra is not installed")

from phaita.cli.main import app  # noqa: E402
from phaita.loader import SignatureError, prefetch_model, robust_model_download  # noqa: E402
from phaita.testing import LocalHub  # noqa: E402
from phaita.testing.env import point_huggingface_hub_at  # noqa: E402

from signing_pki import key_pair  # noqa: E402

MODEL = "phaita-test/tiny-bert"


def run(*args: str, code: int | None = 0):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if code is not None:
        assert result.exit_code == code, result.output
    return result


def run_json(*args: str, code: int = 0) -> dict:
    return json.loads(run(*args, "--json", code=code).stdout)


@pytest.fixture
def machine_a(tmp_path, hub_root, loader_env, monkeypatch) -> Path:
    root = tmp_path / "root"
    shutil.copytree(hub_root / MODEL, root / MODEL)
    with LocalHub(root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        snapshot = Path(prefetch_model(MODEL))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


@pytest.fixture
def site(tmp_path):
    return key_pair(tmp_path / "keys", "release")


def to_machine_b(monkeypatch, tmp_path) -> Path:
    cache = tmp_path / "machine-b" / "hub"
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    point_huggingface_hub_at(monkeypatch, "http://127.0.0.1:9", home=str(cache.parent), cache=str(cache))
    return cache


def test_sign_status_verify_and_doctor(machine_a, site, monkeypatch):
    doc = run_json("models", "sign", MODEL, "--key", str(site.private))
    assert doc["ok"] and doc["models"][0]["commit"] == machine_a.name and doc["models"][0]["files"] == 6
    status = run_json("models", "status")
    signature = status["models"][0]["snapshots"][0]["signature"]
    assert signature["ok"] and not signature["trusted"] and signature["signer"].startswith("key sha256")
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    signature = run_json("models", "status")["models"][0]["snapshots"][0]["signature"]
    assert signature == {"signer": signature["signer"], "trusted": True, "ok": True, "problem": None}
    assert "release" in signature["signer"]
    assert "Signed by" in run("models", "status").stdout
    verified = run_json("models", "verify", "--signatures")
    assert verified["ok"] and verified["models"][0]["files"] == 6 and verified["policy"] == str(site.public)
    blob = Path(os.path.realpath(machine_a / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    bad = run_json("models", "verify", "--signatures", code=1)
    assert "model.safetensors differs" in bad["models"][0]["problem"]
    assert "BAD" in run("models", "verify", "--signatures", code=1).stdout
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    checks = {c["name"]: c for c in run_json("models", "doctor", code=None)["checks"]}
    assert checks["signature policy"]["ok"] and "signatures required" in checks["signature policy"]["detail"]
    monkeypatch.delenv("PHAITA_TRUST")
    checks = {c["name"]: c for c in run_json("models", "doctor", code=1)["checks"]}
    assert not checks["signature policy"]["ok"] and "every load is refused" in checks["signature policy"]["detail"]


def test_sign_refuses_what_it_cannot_sign(machine_a, site, tmp_path):
    result = run("models", "sign", "acme/absent", "--key", str(site.private), code=1)
    assert "is not in the cache" in result.output
    bad_key = tmp_path / "rsa.pem"
    bad_key.write_text("not a key")
    assert "cannot sign with key" in run("models", "sign", MODEL, "--key", str(bad_key), code=1).output
    assert run("models", "sign", MODEL, code=2).exit_code == 2  # neither --key nor --pkcs11-uri
    result = run("models", "sign", MODEL, "--pkcs11-uri", "pkcs11:token=none", code=1)
    assert "PKCS#11" in result.output and "Traceback" not in result.output  # no PyKCS11, or no such token


def test_sign_with_a_pkcs11_key_in_softhsm(machine_a, site, tmp_path, monkeypatch):
    """A real PKCS#11 token (SoftHSM 2) holding the site key: the signature loads under the key's policy."""
    import subprocess

    pytest.importorskip("PyKCS11", reason="model-signing[pkcs11] (PyKCS11) is not installed")
    module = Path("/usr/lib/softhsm/libsofthsm2.so")
    if shutil.which("softhsm2-util") is None or not module.is_file():
        pytest.skip("softhsm2 is not installed (scripts/system-packages.sh installs it)")
    tokens = tmp_path / "hsm"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "site", "--pin", "1234", "--so-pin", "4321"],
                   check=True, capture_output=True)
    subprocess.run(["softhsm2-util", "--import", str(site.private), "--token", "site", "--label", "release",
                    "--id", "01", "--pin", "1234"], check=True, capture_output=True)
    uri = f"pkcs11:token=site;object=release?module-path={module}&pin-value=1234"
    doc = run_json("models", "sign", MODEL, "--pkcs11-uri", uri)
    assert doc["ok"] and doc["signer"] == "PKCS#11 key pkcs11:token=site"
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    assert robust_model_download(MODEL, "auto").config.model_type == "bert"
    other = key_pair(tmp_path / "other", "other")
    monkeypatch.setenv("PHAITA_TRUST", str(other.public))
    with pytest.raises(SignatureError, match="a key the trust policy does not name"):
        robust_model_download(MODEL, "auto")


def test_export_sign_then_import_under_the_sites_trust_loads_offline(machine_a, site, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    run("models", "export", str(bundle), MODEL, "--sign", "--key", str(site.private))
    sig = bundle / "models--phaita-test--tiny-bert" / "signatures" / machine_a.name / "model.sig"
    assert sig.is_file()
    cache_b = to_machine_b(monkeypatch, tmp_path)
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    doc = run_json("models", "import", str(bundle))
    assert doc["ok"] and doc["cache_dir"] == str(cache_b)
    placed = cache_b / "models--phaita-test--tiny-bert" / "signatures" / machine_a.name / "model.sig"
    assert placed.read_bytes() == sig.read_bytes()
    assert robust_model_download(MODEL, "auto").config.model_type == "bert"


def _entries(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def test_import_refuses_a_bundle_with_a_forged_signature_and_changes_nothing(machine_a, site, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle.tar"
    folder = tmp_path / "bundle"
    run("models", "export", str(folder), MODEL, "--sign", "--key", str(site.private))
    sig = folder / "models--phaita-test--tiny-bert" / "signatures" / machine_a.name / "model.sig"
    doc = json.loads(sig.read_text())
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "1" * 64  # forged: claims other bytes, same signature
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    sig.write_text(json.dumps(doc))
    del bundle
    cache_b = to_machine_b(monkeypatch, tmp_path)
    cache_b.mkdir(parents=True)
    before = _entries(cache_b)
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    result = run("models", "import", str(folder), code=1)
    assert "its signature" in result.output and "does not verify" in result.output
    assert "nothing was imported" in result.output
    assert _entries(cache_b) == before
    with pytest.raises(Exception):
        robust_model_download(MODEL, "auto")


def test_import_with_require_refuses_an_unsigned_bundle_and_a_wrong_signer(machine_a, site, tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    run("models", "export", str(plain), MODEL)
    other = key_pair(tmp_path / "other", "intruder")
    theirs = tmp_path / "theirs"
    run("models", "export", str(theirs), MODEL, "--sign", "--key", str(other.private))
    cache_b = to_machine_b(monkeypatch, tmp_path)
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    assert "has no signature in it" in run("models", "import", str(plain), code=1).output
    assert "a key the trust policy does not name" in run("models", "import", str(theirs), code=1).output
    assert not (cache_b / "models--phaita-test--tiny-bert" / "snapshots").exists()
    monkeypatch.delenv("PHAITA_REQUIRE_SIGNATURE")
    run("models", "import", str(plain))  # a policy without require: unsigned bundles come in
    with pytest.raises(SignatureError, match="has no signature"):
        robust_model_download(MODEL, "auto", require_signature=True)


def test_the_json_shapes_in_cli_md_are_what_the_signing_commands_print(machine_a, site, tmp_path, monkeypatch):
    from test_cli_docs import documented_shape, same_keys

    same_keys(documented_shape("models sign"), run_json("models", "sign", MODEL, "--key", str(site.private)))
    monkeypatch.setenv("PHAITA_TRUST", str(site.public))
    status = run_json("models", "status")
    assert status["models"][0]["snapshots"][0]["signature"] is not None
    same_keys(documented_shape("models status"), status)
    same_keys(documented_shape("models verify --signatures"), run_json("models", "verify", "--signatures"))


def test_the_station_serves_the_signature_and_a_client_loads_under_require(machine_a, site, tmp_path, monkeypatch):
    from phaita.station.mirror import build_index
    from phaita.station.server import StationServer

    run("models", "sign", MODEL, "--key", str(site.private))
    index = build_index(Path(os.environ["HF_HUB_CACHE"]))
    (served,) = index.snapshots
    assert "model.sig" in [f.path for f in served.files]
    with StationServer(index) as station:
        cache_b = to_machine_b(monkeypatch, tmp_path)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", station.url)
        point_huggingface_hub_at(monkeypatch, station.url, home=str(cache_b.parent), cache=str(cache_b))
        monkeypatch.setenv("PHAITA_TRUST", str(site.public))
        monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
        assert robust_model_download(MODEL, "auto").config.model_type == "bert"
    folder = cache_b / "models--phaita-test--tiny-bert"
    assert (folder / "signatures" / machine_a.name / "model.sig").is_file()
    assert not (folder / "snapshots" / machine_a.name / "model.sig").exists()
