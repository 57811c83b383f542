"""``PHAITA_TRUST`` read from real files: a key, a trust.toml, a trust.json, a folder; each mistake named."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from phaita.loader.signing.policy import PolicyError, current_policy, load_policy

from signing_pki import key_pair, make_ca, trust_toml


def test_a_public_key_file_is_a_policy_of_one_key(tmp_path):
    site = key_pair(tmp_path, "release")
    policy = load_policy(site.public)
    (key,) = policy.keys
    assert key.name == "release" and len(key.hint) == 64 and policy.digest
    assert policy.describe() == [f"key release (sha256 {key.hint[:16]}..., {site.public})"]


def test_two_keys_in_one_pem_and_p384(tmp_path):
    a = key_pair(tmp_path, "a")
    b = key_pair(tmp_path, "b", ec.SECP384R1())
    both = tmp_path / "both.pem"
    both.write_bytes(a.public.read_bytes() + b.public.read_bytes())
    assert [k.name for k in load_policy(both).keys] == ["both#1", "both#2"]


def test_a_folder_with_trust_toml_and_loose_keys(tmp_path):
    folder = tmp_path / "trust"
    folder.mkdir()
    site = key_pair(tmp_path / "keys", "release")
    (folder / "release.pub.pem").write_bytes(site.public.read_bytes())
    ca = make_ca(folder / "cas")
    trust_toml(folder, cas=[(ca.path, ["CN=Model Release,O=Example Hospital"])])
    policy = load_policy(folder)
    assert [k.name for k in policy.keys] == ["release"] and policy.cas[0].subjects == (
        "CN=Model Release,O=Example Hospital",)
    before = policy.digest
    (folder / "release.pub.pem").write_bytes(key_pair(tmp_path / "new", "new").public.read_bytes())
    os.utime(folder / "release.pub.pem", ns=(1, 1))  # a changed file: a new policy, a new digest
    assert load_policy(folder).digest != before
    del site


def test_trust_json_with_names_and_sigstore(tmp_path):
    site = key_pair(tmp_path, "k")
    (tmp_path / "root.json").write_text("{}")
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({"key": [{"file": site.public.name, "name": "release key"}],
                                "sigstore": [{"identity": "me@example.org", "issuer": "https://issuer.example",
                                              "trust_config": "root.json"}]}))
    policy = load_policy(path)
    assert policy.keys[0].name == "release key" and policy.sigstore[0].identity == "me@example.org"


@pytest.mark.parametrize("write, message", [
    (lambda d, ca: (d / "trust.toml").write_text(f"[[ca]]\nfile = '{ca}'\n"), "names no signer subject"),
    (lambda d, ca: (d / "trust.toml").write_text("[[keys]]\nfile = 'x'\n"), "unknown section(s) keys"),
    (lambda d, ca: (d / "trust.toml").write_text("[[key]]\nfile = 'absent.pem'\n"), "does not exist"),
    (lambda d, ca: (d / "trust.toml").write_text("[[key\n"), "is not valid TOML"),
    (lambda d, ca: (d / "trust.toml").write_text("[[sigstore]]\nidentity = 'x'\n"), "needs both identity and issuer"),
    (lambda d, ca: (d / "loose.pem").write_bytes(ca.read_bytes()), "a CA is trusted only together"),
    (lambda d, ca: (d / "rsa.pem").write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)), "is not an EC P-256/384/521"),
    (lambda d, ca: (d / "junk.pem").write_text("hello"), "holds no PEM public key"),
    (lambda d, ca: key_pair(d, "oops"), "holds a private key: a trust policy needs only public keys"),
    (lambda d, ca: None, "names no trusted key, CA or Sigstore identity"),
])
def test_each_mistake_in_a_policy_is_named(write, message, tmp_path):
    folder = tmp_path / "trust"
    folder.mkdir()
    write(folder, make_ca(tmp_path / "cas").path)
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_policy(folder)


def test_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("PHAITA_TRUST", raising=False)
    assert current_policy() is None
    monkeypatch.setenv("PHAITA_TRUST", str(tmp_path / "missing"))
    with pytest.raises(PolicyError, match="cannot be read"):
        current_policy()
    monkeypatch.setenv("PHAITA_TRUST", str(key_pair(tmp_path, "site").public))
    assert current_policy().keys[0].name == "site"
