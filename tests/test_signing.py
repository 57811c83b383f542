"""Signed models through real loads: a LocalHub, the real loader, real keys and certificates.

Every bad input is refused with ``SignatureError`` naming the model, the signature file and the
signer, before ``from_pretrained``: the load raises and returns no model. Signatures come from
phaita's own signer (``phaita.loader.signing.sign``) and from the ``model_signing`` library's
hashing (the format's reference); see test_signing_interop.py for the library's CLI both ways.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("model_signing", reason="the phaita[signing] extra is not installed")

from phaita.loader import SignatureError, prefetch_model, robust_model_download  # noqa: E402
from phaita.loader.cache.layout import RepoCache  # noqa: E402
from phaita.loader.signing.sign import Signer, sign_snapshot  # noqa: E402
from phaita.testing import LocalHub  # noqa: E402
from phaita.testing.env import point_huggingface_hub_at  # noqa: E402

from loader_fixtures import warnings_of  # noqa: E402
from signing_pki import key_pair, make_ca, make_leaf, trust_toml  # noqa: E402

MODEL = "phaita-test/tiny-bert"


@pytest.fixture
def repo_root(tmp_path, hub_root) -> Path:
    """A writable hub root holding only tiny-bert (copied from the session's published models)."""
    root = tmp_path / "root"
    shutil.copytree(hub_root / MODEL, root / MODEL)
    return root


@pytest.fixture
def hub(repo_root, loader_env, monkeypatch):
    with LocalHub(repo_root) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        point_huggingface_hub_at(monkeypatch, running.url)
        yield running


@pytest.fixture
def site(tmp_path):
    """The site's release key pair."""
    return key_pair(tmp_path / "keys", "release")


def cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def fetched() -> tuple[RepoCache, str]:
    snapshot = Path(prefetch_model(MODEL))
    return RepoCache(cache(), MODEL), snapshot.name


def trust(monkeypatch, path: Path, require: bool = True) -> None:
    monkeypatch.setenv("PHAITA_TRUST", str(path))
    if require:
        monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")


def refused(kind_text: str, *also: str) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        robust_model_download(MODEL, "auto", max_retries=1)
    text = str(info.value)
    assert f"'{MODEL}' was not loaded" in text and "Nothing was loaded." in text
    assert kind_text in text, text
    for part in also:
        assert part in text, text
    assert info.value.model_name == MODEL and info.value.last_error.type_name == "SignatureError"
    return info.value


def loads() -> None:
    model = robust_model_download(MODEL, "auto", max_retries=1)
    assert model.config.model_type == "bert"


# --------------------------------------------------------------------------- the good path


def test_a_model_signed_by_the_site_key_loads_and_the_warm_load_uses_the_record(hub, site, monkeypatch, caplog):
    repo, commit = fetched()
    sig, count = sign_snapshot(repo, commit, Signer(key=site.private))
    assert sig == repo.signature_path(commit) and count == len(repo.linked_files(commit))
    assert not (repo.snapshot_dir(commit) / "model.sig").exists()
    trust(monkeypatch, site.public)
    loads()
    record = json.loads(repo.signature_record_path(commit).read_text())
    (entry,) = record["checks"].values()
    assert entry["trusted"] and entry["signer"].startswith("key release")
    assert set(record["files"]) == set(repo.linked_files(commit))
    assert any("signed by key release" in r.getMessage() for r in caplog.records)
    from phaita.loader.signing.check import check
    from phaita.loader.signing.policy import current_policy

    assert check(repo, commit, current_policy()).from_record  # the next load reads the record, not the library
    loads()
    other = key_pair(Path(site.private).parent / "other", "other")
    trust(monkeypatch, other.public)  # another policy: the record does not answer for it
    refused("a key the trust policy does not name")


def test_require_signature_kwarg_without_the_environment(hub, site, monkeypatch):
    fetched()
    trust(monkeypatch, site.public, require=False)
    with pytest.raises(SignatureError, match="has no signature"):
        robust_model_download(MODEL, "auto", require_signature=True)
    with pytest.raises(ValueError, match="require_signature must be True, False or None"):
        robust_model_download(MODEL, "auto", require_signature="yes")


def test_policy_without_require_loads_an_unsigned_model_with_one_warning(hub, site, monkeypatch, caplog):
    fetched()
    trust(monkeypatch, site.public, require=False)
    loads()
    assert any("is not signed" in w for w in warnings_of(caplog))


def test_without_a_policy_a_signature_is_checked_and_its_signer_logged_a_bad_one_warns(hub, site, caplog):
    repo, commit = fetched()
    leaf_ca = make_ca(Path(site.private).parent / "ca")
    leaf = make_leaf(Path(site.private).parent / "leaf", leaf_ca)
    sign_snapshot(repo, commit, Signer(key=leaf.key, cert_chain=leaf.chain))
    loads()
    assert any(f"signed by {leaf.subject}" in r.getMessage() and "not checked against a trust policy" in r.getMessage()
               for r in caplog.records)
    blob = Path(os.path.realpath(repo.snapshot_dir(commit) / "README.md"))
    blob.write_bytes(blob.read_bytes().swapcase())  # same size: the warm load sees a whole snapshot
    caplog.clear()
    loads()  # nothing changes for users without a policy: one warning
    assert any("does not check out" in w and "README.md differs" in w for w in warnings_of(caplog))


def test_a_publishers_model_sig_is_fetched_beside_the_snapshot_not_into_it(repo_root, site, loader_env, monkeypatch):
    from model_signing import hashing, signing

    folder = repo_root / MODEL
    config = hashing.Config().set_ignored_paths(paths=["model.sig"]).set_allow_symlinks(True)
    signing.Config().use_elliptic_key_signer(private_key=site.private).set_hashing_config(config).sign(
        folder, folder / "model.sig")
    with LocalHub(repo_root) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        point_huggingface_hub_at(monkeypatch, running.url)
        trust(monkeypatch, site.public)
        loads()
        repo = RepoCache(cache(), MODEL)
        (commit,) = repo.commits()
        assert "model.sig" not in repo.linked_files(commit)
        assert repo.signature_path(commit).read_bytes() == (folder / "model.sig").read_bytes()
        loads()  # warm: the snapshot is complete without model.sig in it


# --------------------------------------------------------------------------- every bad input


def test_unsigned_model_refused(hub, site, monkeypatch):
    fetched()
    trust(monkeypatch, site.public)
    refused("has no signature", "Signer: none")


def test_tampered_weights_refused_after_a_good_load(hub, site, monkeypatch):
    repo, commit = fetched()
    sign_snapshot(repo, commit, Signer(key=site.private))
    trust(monkeypatch, site.public)
    loads()
    blob = Path(os.path.realpath(repo.snapshot_dir(commit) / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size: only the bytes changed (the file's identity changed, so it is re-hashed)
    blob.write_bytes(bytes(data))
    refused("model.safetensors differs from the signed file", "key release")


def test_weights_from_the_hub_that_differ_from_the_signed_ones_refused(hub, repo_root, site, monkeypatch):
    repo, commit = fetched()
    sign_snapshot(repo, commit, Signer(key=site.private))
    sig = repo.signature_path(commit).read_bytes()
    weights = repo_root / MODEL / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # a new commit on the hub, fetched by name
    snapshot = Path(prefetch_model(MODEL))
    assert snapshot.name != commit
    target = repo.signature_path(snapshot.name)
    target.parent.mkdir(parents=True)
    target.write_bytes(sig)
    trust(monkeypatch, site.public)
    refused("the signature is over commit " + commit)


def test_tampered_signature_refused(hub, site, monkeypatch):
    repo, commit = fetched()
    path, _ = sign_snapshot(repo, commit, Signer(key=site.private))
    trust(monkeypatch, site.public)
    loads()  # recorded: the changed signature below must not be answered by the record
    bundle = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(bundle))
    trust(monkeypatch, site.public)
    refused("the signature does not verify", f"Signature file: {path}", "Signer: key release")


def test_signature_bytes_flipped_refused(hub, site, monkeypatch):
    repo, commit = fetched()
    path, _ = sign_snapshot(repo, commit, Signer(key=site.private))
    bundle = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[10] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(bundle))
    trust(monkeypatch, site.public)
    refused("does not verify")


def test_wrong_key_refused(hub, site, tmp_path, monkeypatch):
    repo, commit = fetched()
    other = key_pair(tmp_path / "other", "intruder")
    sign_snapshot(repo, commit, Signer(key=other.private))
    trust(monkeypatch, site.public)
    refused("signed with a key the trust policy does not name (trusted keys: release)")


def test_untrusted_ca_refused(hub, tmp_path, monkeypatch):
    repo, commit = fetched()
    theirs, ours = make_ca(tmp_path / "theirs", "Other Root"), make_ca(tmp_path / "ours", "Site Root")
    leaf = make_leaf(tmp_path / "leaf", theirs)
    sign_snapshot(repo, commit, Signer(key=leaf.key, cert_chain=leaf.chain))
    trust(monkeypatch, trust_toml(tmp_path / "policy", cas=[(ours.path, [leaf.subject])]))
    refused("does not chain to a CA the trust policy names", leaf.subject)


def test_expired_leaf_refused(hub, tmp_path, monkeypatch):
    repo, commit = fetched()
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca, days_valid=(-30, -1))
    sign_snapshot(repo, commit, Signer(key=leaf.key, cert_chain=leaf.chain))
    trust(monkeypatch, trust_toml(tmp_path / "policy", cas=[(ca.path, [leaf.subject])]))
    refused("the signer's certificate expired on", leaf.subject)


def test_wrong_subject_refused(hub, tmp_path, monkeypatch):
    repo, commit = fetched()
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca, cn="Intern Laptop", email=None)
    sign_snapshot(repo, commit, Signer(key=leaf.key, cert_chain=leaf.chain))
    trust(monkeypatch, trust_toml(tmp_path / "policy", cas=[(ca.path, ["CN=Model Release,O=Example Hospital"])]))
    refused("the signer's certificate is for CN=Intern Laptop", "accepts from CA")


def test_certificate_signer_named_by_subject_or_email_loads(hub, tmp_path, monkeypatch):
    repo, commit = fetched()
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca)
    sign_snapshot(repo, commit, Signer(key=leaf.key, cert_chain=leaf.chain))
    trust(monkeypatch, trust_toml(tmp_path / "p1", cas=[(ca.path, [leaf.subject])]))
    loads()
    trust(monkeypatch, trust_toml(tmp_path / "p2", cas=[(ca.path, ["release@example.org"])]))
    loads()


def test_signature_of_another_commit_refused(hub, repo_root, site, monkeypatch):
    repo, first = fetched()
    sign_snapshot(repo, first, Signer(key=site.private))
    (repo_root / MODEL / "README.md").write_text("a new commit\n")
    second = Path(prefetch_model(MODEL)).name
    assert second != first
    target = repo.signature_path(second)
    target.parent.mkdir(parents=True)
    shutil.copyfile(repo.signature_path(first), target)
    trust(monkeypatch, site.public)
    refused(f"the signature is over commit {first}, and this snapshot is commit {second}")


def test_extra_file_in_the_snapshot_refused(hub, site, monkeypatch):
    repo, commit = fetched()
    sign_snapshot(repo, commit, Signer(key=site.private))
    (repo.snapshot_dir(commit) / "added.py").write_text("print('not signed')\n")
    trust(monkeypatch, site.public)
    refused("not in the signed file list: added.py")


def test_a_signed_file_missing_from_the_snapshot_refused(hub, site, tmp_path, monkeypatch):
    from model_signing import hashing, signing

    repo, commit = fetched()
    flat = tmp_path / "release"
    shutil.copytree(repo.snapshot_dir(commit), flat, symlinks=False)
    (flat / "special_tokens_map.json").write_text("{}")  # signed, but never in the hub's repository
    repo.signature_path(commit).parent.mkdir(parents=True)
    signing.Config().use_elliptic_key_signer(private_key=site.private).set_hashing_config(
        hashing.Config().set_allow_symlinks(True)).sign(flat, repo.signature_path(commit))
    trust(monkeypatch, site.public)
    refused("signed but not in the snapshot", "special_tokens_map.json")


def test_a_signature_inside_the_snapshot_refused(hub, site, monkeypatch):
    repo, commit = fetched()
    path, _ = sign_snapshot(repo, commit, Signer(key=site.private))
    shutil.move(path, repo.snapshot_dir(commit) / "model.sig")
    trust(monkeypatch, site.public)
    refused("model.sig is inside the snapshot folder", "mv ")
    sign_snapshot_error = None
    try:
        sign_snapshot(repo, commit, Signer(key=site.private))
    except ValueError as exc:
        sign_snapshot_error = str(exc)
    assert sign_snapshot_error and "inside the snapshot" in sign_snapshot_error


def test_a_policy_that_cannot_be_used_refuses_every_load(hub, tmp_path, monkeypatch):
    fetched()
    ca = make_ca(tmp_path / "ca")
    folder = tmp_path / "policy"
    folder.mkdir()
    shutil.copy(ca.path, folder / "root.pem")  # a CA with no subject: trusting it would trust anyone it certifies
    trust(monkeypatch, folder, require=False)
    refused("a CA is trusted only together with the signer subject(s)")
    trust(monkeypatch, tmp_path / "nowhere.toml", require=False)
    refused("cannot be read")


def test_require_without_a_policy_refused_and_local_folders_too(hub, site, monkeypatch):
    snapshot = Path(prefetch_model(MODEL))
    monkeypatch.setenv("PHAITA_REQUIRE_SIGNATURE", "1")
    refused("no trust policy is set")
    trust(monkeypatch, site.public)
    with pytest.raises(SignatureError, match="a folder given by path"):
        robust_model_download(str(snapshot), "auto")


def test_a_signature_is_checked_once_the_library_not_imported_on_a_warm_load(hub, site, monkeypatch, tmp_path):
    """A warm load of a signed model in a fresh process does not import model_signing (0.6 s)."""
    import subprocess
    import sys

    repo, commit = fetched()
    sign_snapshot(repo, commit, Signer(key=site.private))
    trust(monkeypatch, site.public)
    loads()
    code = ("import sys; from phaita.loader import robust_model_download as r; r(%r, 'auto', max_retries=1); "
            "print('model_signing' in sys.modules)" % MODEL)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
    logging.getLogger(__name__).info("warm load did not import model_signing")


def _mangle(kind: str, bundle: dict) -> bytes:
    if kind == "not json":
        return b"\x00\xffnot a bundle"
    if kind == "no envelope":
        return json.dumps({"mediaType": bundle["mediaType"]}).encode()
    if kind == "no material":
        return json.dumps({"dsseEnvelope": bundle["dsseEnvelope"]}).encode()
    if kind == "no signatures":
        bundle["dsseEnvelope"]["signatures"] = []
    if kind == "payload not base64":
        bundle["dsseEnvelope"]["payload"] = "%%%"
    if kind == "wrong media type":
        bundle["mediaType"] = "application/json"
    if kind == "certificate garbage":
        bundle["verificationMaterial"] = {"x509CertificateChain": {"certificates": [{"rawBytes": "AAAA"}]},
                                          "tlogEntries": []}
    return json.dumps(bundle).encode()


@pytest.mark.parametrize("kind", ["not json", "no envelope", "no material", "no signatures", "payload not base64",
                                  "wrong media type", "certificate garbage"])
def test_a_malformed_signature_is_refused_with_a_message_never_a_traceback(kind, hub, site, tmp_path, monkeypatch):
    """Whatever the library raises (IndexError, binascii.Error, ValueError, ASN.1 errors...) is one SignatureError."""
    repo, commit = fetched()
    path, _ = sign_snapshot(repo, commit, Signer(key=site.private))
    path.write_bytes(_mangle(kind, json.loads(path.read_text())))
    ca = make_ca(tmp_path / "ca")
    trust(monkeypatch, trust_toml(tmp_path / "policy", keys=[site.public], cas=[(ca.path, ["CN=x"])]))
    error = refused("its signature was refused")
    assert "Traceback" not in str(error)


def test_a_sigstore_bundle_needs_a_sigstore_identity_and_its_staged_trust_root(hub, site, tmp_path, monkeypatch):
    """Keyless (Sigstore) bundles are checked by the library against the policy's identity, issuer and staged
    trust root; one the policy has no identity for, or a trust root that cannot be read, is refused (offline)."""
    from cryptography.hazmat.primitives import serialization

    repo, commit = fetched()
    path, _ = sign_snapshot(repo, commit, Signer(key=site.private))
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(tmp_path / "leaf", ca)
    from cryptography import x509

    der = x509.load_pem_x509_certificate(leaf.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    bundle = json.loads(path.read_text())
    bundle["verificationMaterial"] = {"certificate": {"rawBytes": base64.b64encode(der).decode()}, "tlogEntries": []}
    path.write_text(json.dumps(bundle))
    trust(monkeypatch, site.public)
    refused("signed with Sigstore, and the trust policy names no Sigstore identity", "release@example.org")
    (tmp_path / "sigstore").mkdir()
    (tmp_path / "sigstore" / "trust_config.json").write_text('{"mediaType": "not a trust config"}')
    (tmp_path / "sigstore" / "trust.toml").write_text(
        '[[sigstore]]\nidentity = "release@example.org"\nissuer = "https://issuer.example"\n'
        'trust_config = "trust_config.json"\n')
    trust(monkeypatch, tmp_path / "sigstore")
    refused("its signature was refused", "Signer: release@example.org")


def test_signing_a_lock_file_that_cannot_be_read_or_with_a_key_that_is_not_one_says_so(site, tmp_path):
    """sign_file (a lock file's signature) fails as sign_snapshot does: one SigningError naming the
    cause, no traceback from the library, nothing written."""
    from phaita.loader.signing.sign import SigningError, sign_file

    with pytest.raises(SigningError, match="cannot read .*absent.lock"):
        sign_file(tmp_path / "absent.lock", Signer(key=site.private), tmp_path / "absent.lock.sig")
    lock = tmp_path / "phaita.lock"
    lock.write_text("{}")
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
    with pytest.raises(SigningError) as info:
        sign_file(lock, Signer(key=not_a_key), tmp_path / "phaita.lock.sig")
    assert str(not_a_key) in str(info.value) and "Traceback" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "not-a-key.pem", "phaita.lock"]  # no .sig
    signed = sign_file(lock, Signer(key=site.private), tmp_path / "phaita.lock.sig")
    assert signed.is_file() and json.loads(signed.read_text())["mediaType"].startswith("application/vnd.dev.sigstore")
