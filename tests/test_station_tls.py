"""The station mirror over HTTPS: `phaita hub serve --cache DIR --tls-cert FILE --tls-key FILE`.

The site's CA is made with ``trustme`` (an organisation root issuing the station's certificate for
127.0.0.1 and localhost); the station runs as a real process over a real cache filled by
`phaita models pull`; the clients (`phaita models pull`, `hf download`, the loader in process) trust
the CA through ``SSL_CERT_FILE``, or do not and must fail at once, naming the issuer.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from loader_fixtures import warnings_of
from phaita.loader.cache import layout as cache
from phaita.testing import LocalHub
from test_station_mirror import BERT, BIN, client_env, run, snapshot_sha256, tree

trustme = pytest.importorskip("trustme")

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
ISSUER = "O=Acme Hospital, OU=Network Security"


def tls_client_env(home: Path, endpoint: str, ca_file: Path | None) -> dict[str, str]:
    """A client's environment with no CA bundle of the machine running the tests, and ``ca_file`` if given."""
    env = {k: v for k, v in client_env(home, endpoint).items() if k.upper() not in CA_VARIABLES}
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return env


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimpleNamespace:
    """The site CA's root (``ca``), the station's certificate chain and key, and keys/files that are wrong."""
    folder = tmp_path_factory.mktemp("station-pki")
    root = trustme.CA(organization_name="Acme Hospital", organization_unit_name="Network Security")
    leaf = root.issue_cert("127.0.0.1", "localhost")
    files = SimpleNamespace(ca=folder / "site-ca.pem", cert=folder / "station.pem", key=folder / "station.key",
                            other_key=folder / "other.key", encrypted_key=folder / "encrypted.key")
    root.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    root.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(files.other_key))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    files.encrypted_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.BestAvailableEncryption(b"ward7")))
    return files


@pytest.fixture(scope="module")
def source(hub_root, tmp_path_factory) -> Path:
    """The station's cache, filled from the local hub by `phaita models pull`."""
    home = tmp_path_factory.mktemp("tls-station-home")
    with LocalHub(hub_root) as hub:
        run([str(BIN / "phaita"), "models", "pull", BERT], client_env(home, hub.url))
    return home / "hub"


def start_server(args: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(BIN / "phaita"), "hub", "serve", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if proc.poll() is not None:
        pytest.fail(f"the hub did not start: {proc.stderr.read()}")
    return proc, url


def stop_server(proc: subprocess.Popen) -> int:
    proc.terminate()
    return proc.wait(timeout=20)


@pytest.fixture(scope="module")
def https_station(source, pki):
    """`phaita hub serve --cache DIR --tls-cert FILE --tls-key FILE` as a real process: its URL."""
    env = tls_client_env(source.parent, "http://127.0.0.1:9", None)  # the station itself needs no hub
    proc, url = start_server(["--cache", str(source), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)], env)
    try:
        assert url.startswith("https://127.0.0.1:")
        yield url
    finally:
        assert stop_server(proc) == 0


def test_phaita_pulls_through_the_https_station_with_the_site_ca(https_station, source, pki, tmp_path):
    env = tls_client_env(tmp_path, https_station, pki.ca)
    run([str(BIN / "phaita"), "models", "pull", BERT], env)
    for path in ("model.safetensors", "config.json"):
        assert snapshot_sha256(tmp_path / "hub", BERT, path) == snapshot_sha256(source, BERT, path)
    assert run([str(BIN / "phaita"), "models", "verify"], env).returncode == 0


def test_hf_download_through_the_https_station_with_the_site_ca(https_station, source, pki, tmp_path):
    env = tls_client_env(tmp_path, https_station, pki.ca)
    run([str(BIN / "hf"), "download", BERT], env)
    assert snapshot_sha256(tmp_path / "hub", BERT, "model.safetensors") == \
        snapshot_sha256(source, BERT, "model.safetensors")
    proc = run([str(BIN / "hf"), "download", BERT], tls_client_env(tmp_path / "no-ca", https_station, None), code=1)
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr  # it was the CA bundle that made it trust the station


def test_without_the_site_ca_the_loader_fails_at_once_naming_the_issuer(https_station, source, tmp_path,
                                                                        monkeypatch, caplog):
    from huggingface_hub.utils import close_session

    from phaita.testing.env import point_huggingface_hub_at
    from phaita.utils.model_loader import UntrustedCertificateError, robust_model_download

    for name, value in tls_client_env(tmp_path, https_station, None).items():
        monkeypatch.setenv(name, value)
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    point_huggingface_hub_at(monkeypatch, https_station)
    caplog.set_level(logging.INFO, logger="phaita.model_loader")
    try:
        with pytest.raises(UntrustedCertificateError) as info:
            robust_model_download(BERT, max_retries=3, timeout=60)
    finally:
        close_session()  # the next client is built from the next test's environment
    err, text = info.value, str(info.value)
    assert err.attempts == 1 and err.transient is False and warnings_of(caplog) == []  # not retried
    assert ISSUER in text and https_station in text and "SSL_CERT_FILE" in text
    repo = cache.repo_dir(tmp_path / "hub", BERT)
    assert not (repo / "snapshots").exists() or not any((repo / "snapshots").iterdir())
    assert not (repo / "blobs").exists() or not any((repo / "blobs").iterdir())

    before = tree(tmp_path)  # the CLI too: exit 1, the issuer named, nothing written
    proc = run([str(BIN / "phaita"), "models", "pull", BERT], tls_client_env(tmp_path, https_station, None), code=1)
    assert ISSUER in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert tree(tmp_path) == before


def test_the_plain_local_hub_serves_https_too(hub_root, pki, tmp_path):
    import ssl
    import urllib.request

    proc, url = start_server(["--root", str(hub_root), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)],
                             tls_client_env(tmp_path, "http://127.0.0.1:9", None))
    try:
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        with urllib.request.urlopen(f"{url}/{BERT}/resolve/main/config.json", timeout=30, context=trusting) as resp:
            assert resp.read() == (hub_root / BERT / "config.json").read_bytes()
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"{url}/{BERT}/resolve/main/config.json", timeout=30,
                                   context=ssl.create_default_context())
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("cert, key, message", [
    ("cert", None, "--tls-cert needs --tls-key too"),
    (None, "key", "--tls-key needs --tls-cert too"),
    ("missing", "key", "cannot read it: No such file or directory"),
    ("cert", "missing", "cannot read it: No such file or directory"),
    ("key", "key", "holds no PEM certificate"),
    ("cert", "cert", "holds no PEM private key"),
    ("cert", "other_key", "is not the key of --tls-cert"),
    ("cert", "encrypted_key", "the key is encrypted"),
])
def test_tls_usage_errors_exit_2_without_a_traceback(pki, source, tmp_path, cert, key, message):
    from typer.testing import CliRunner

    from phaita.cli.main import app

    files = {"cert": pki.cert, "key": pki.key, "other_key": pki.other_key, "encrypted_key": pki.encrypted_key,
             "missing": tmp_path / "missing.pem"}
    argv = ["hub", "serve", "--cache", str(source)]
    argv += ["--tls-cert", str(files[cert])] if cert else []
    argv += ["--tls-key", str(files[key])] if key else []
    result = CliRunner().invoke(app, argv)
    output = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, result.output
    assert "Invalid value" in output and message in output and "Traceback" not in output


def test_station_tls_context_is_tls_1_2_or_later(pki):
    import ssl

    from phaita.station.tls import station_tls_context

    ctx = station_tls_context(pki.cert, pki.key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="do not match"):
        station_tls_context(pki.cert, pki.other_key)


def test_airgap_doc_shows_the_commands_this_module_runs():
    """docs/AIRGAP.md's HTTPS part of the station section: the commands exactly as the tests above run them."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "AIRGAP.md").read_text()
    section = doc[doc.index("**HTTPS.**"):doc.index("**Larger fleets.**")]
    serve, clients = ([line.split("#")[0].strip() for line in b.split("```", 1)[0].strip().splitlines()]
                      for b in section.split("```bash\n")[1:3])
    assert serve == ['phaita hub serve --cache "$HF_HOME/hub" --host 0.0.0.0 --port 8443 '
                     '--tls-cert station.pem --tls-key station.key']  # the https_station fixture
    assert clients == [
        "export HF_ENDPOINT=https://station:8443",
        "export SSL_CERT_FILE=site-ca.pem",  # tls_client_env
        f"phaita models pull {BERT}",  # test_phaita_pulls_through_the_https_station_with_the_site_ca
        f"hf download {BERT}",  # test_hf_download_through_the_https_station_with_the_site_ca
    ]
