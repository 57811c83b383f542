"""Behind a hospital proxy (issue 10, item 7): a hub behind TLS signed by the site's own CA, and a
real forward proxy process (proxy.py from PyPI) with and without credentials.

The CA is made here with ``trustme`` (an organisation root, an intermediate, a server certificate
for 127.0.0.1): what a TLS-inspecting proxy or a site mirror presents.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loader_fixtures import warnings_of
from phaita.cli.doctor import check_tls
from phaita.testing import LocalHub
from phaita.testing.env import point_huggingface_hub_at
from phaita.utils.model_loader import (
    ModelDownloadError,
    ProxyAuthenticationError,
    UntrustedCertificateError,
    prefetch_model,
    robust_model_download,
)

trustme = pytest.importorskip("trustme")

REPO = "phaita-test/tiny-bert"
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
PROXY_USER, PROXY_PASSWORD = "ward7-device", "S3cret-Proxy-Pa55"


class Pki:
    """An organisation's CA (root + intermediate) and the server certificates the tests need."""

    def __init__(self, folder: Path) -> None:
        self.root = trustme.CA(organization_name="Acme Hospital", organization_unit_name="Network Security")
        self.intermediate = self.root.create_child_ca()
        self.ca_file = folder / "acme-root.pem"
        self.root.cert_pem.write_to_path(str(self.ca_file))
        self.other_ca_file = folder / "other-root.pem"
        trustme.CA(organization_name="Someone Else").cert_pem.write_to_path(str(self.other_ca_file))
        self.folder = folder

    def server_context(self, kind: str):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if kind == "org-ca":  # the site's CA, through an intermediate
            self.intermediate.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        elif kind == "wrong-host":  # a certificate of the site's CA, for another name
            self.intermediate.issue_cert("mirror.acme.example").configure_cert(ctx)
        elif kind == "self-signed":  # the root's own certificate and key, presented as the server's
            cert, key = self.folder / "self.pem", self.folder / "self.key"
            self.root.cert_pem.write_to_path(str(cert))
            self.root.private_key_pem.write_to_path(str(key))
            ctx.load_cert_chain(str(cert), str(key))
        else:
            raise ValueError(kind)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def clean_net_env(loader_env, monkeypatch):
    """No CA bundle or proxy variable from the machine running the tests."""
    for name in CA_VARIABLES + PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield loader_env
    from huggingface_hub.utils import close_session

    close_session()  # the next client is built from the next test's environment


@pytest.fixture
def tls_hub(hub_root, clean_net_env, monkeypatch, pki):
    """``tls_hub("org-ca")``: the local hub behind HTTPS with that certificate; the client aimed at it."""
    hubs = []

    def start(kind: str = "org-ca") -> LocalHub:
        hub = LocalHub(hub_root, tls=pki.server_context(kind)).start()
        hubs.append(hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


class ForwardProxy:
    """proxy.py (PyPI ``proxy.py``) in its own process on 127.0.0.1, optionally requiring Basic auth.

    ``tls_issuer``: the proxy itself speaks TLS (an ``https://`` proxy URL), with a certificate for
    127.0.0.1 issued by that trustme CA.
    """

    def __init__(self, folder: Path, credentials: str | None, tls_issuer=None) -> None:
        port_file, self.log = folder / "proxy.port", folder / "proxy.log"
        args = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file",
                str(port_file), "--num-workers", "1", "--num-acceptors", "1", "--log-level", "INFO"]
        if credentials:
            args += ["--basic-auth", credentials]
        self.scheme = "https" if tls_issuer is not None else "http"
        if tls_issuer is not None:
            leaf = tls_issuer.issue_cert("127.0.0.1")
            cert, key = folder / "proxy-chain.pem", folder / "proxy.key"
            cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(key))
            args += ["--cert-file", str(cert), "--key-file", str(key)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"proxy.py did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def url(self, credentials: str | None = None) -> str:
        return f"{self.scheme}://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def tunnels_to(self, port: int) -> bool:
        """proxy.py logs a CONNECT once its tunnel closes: close the client's connections, then wait."""
        from huggingface_hub.utils import close_session

        close_session()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if f"CONNECT 127.0.0.1:{port}" in self.log.read_text():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def forward_proxy(tmp_path):
    started = []

    def start(credentials: str | None = None, tls_issuer=None) -> ForwardProxy:
        folder = tmp_path / f"proxy-{len(started)}"
        folder.mkdir()
        started.append(ForwardProxy(folder, credentials, tls_issuer))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


# --------------------------------------------------------------------------- untrusted certificates


@pytest.mark.parametrize("kind, reason, shown", [
    ("org-ca", "unable to get local issuer certificate", "O=Acme Hospital, OU=Network Security"),
    ("self-signed", "self-signed certificate", "O=Acme Hospital, OU=Network Security"),
    ("wrong-host", "mismatch", "DNS:mirror.acme.example"),
])
def test_an_untrusted_certificate_fails_at_once_naming_its_issuer(tls_hub, pki, monkeypatch, caplog,
                                                                  kind, reason, shown):
    hub = tls_hub(kind)
    if kind == "wrong-host":
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))  # the CA is trusted; the name is not the host's
    with pytest.raises(UntrustedCertificateError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5)
    err = info.value
    text = str(err)
    assert isinstance(err, ModelDownloadError) and err.transient is False and err.attempts == 1
    assert warnings_of(caplog) == [], "not retried, no backoff"
    assert "CERTIFICATE_VERIFY_FAILED" not in text and reason in text and shown in text
    assert hub.url in text and "not retried" in text
    if kind == "wrong-host":
        assert "HF_ENDPOINT" in text
    else:
        assert "SSL_CERT_FILE" in text and "REQUESTS_CA_BUNDLE" in text and "update-ca-certificates" in text
        assert "Trusted CAs now come from: the system store" in text
    assert err.last_error.message.startswith("untrusted TLS certificate")


def test_the_error_names_the_ca_bundle_in_use(tls_hub, pki, monkeypatch):
    tls_hub("org-ca")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca_file))
    with pytest.raises(UntrustedCertificateError) as info:
        prefetch_model(REPO, max_retries=2)
    assert f"Trusted CAs now come from: REQUESTS_CA_BUNDLE={pki.other_ca_file}" in str(info.value)


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"])
def test_each_ca_bundle_variable_is_honoured(tls_hub, pki, monkeypatch, tmp_path, variable):
    hub = tls_hub("org-ca")
    if variable == "SSL_CERT_DIR":  # a folder of hashed names, as c_rehash / update-ca-certificates make
        import ssl

        folder = tmp_path / "certs"
        folder.mkdir()
        subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pki.ca_file)],
                                      capture_output=True, text=True)
        if subject_hash.returncode != 0:
            pytest.skip("no openssl command to name the folder's certificate")
        (folder / f"{subject_hash.stdout.strip()}.0").write_bytes(pki.ca_file.read_bytes())
        assert ssl.create_default_context(capath=str(folder))
        monkeypatch.setenv(variable, str(folder))
    else:
        monkeypatch.setenv(variable, str(pki.ca_file))
    snapshot = Path(prefetch_model(REPO))
    assert (snapshot / "config.json").read_bytes() == (hub.repo_dir(REPO) / "config.json").read_bytes()


def test_ssl_cert_file_comes_first(tls_hub, pki, monkeypatch):
    tls_hub("org-ca")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.other_ca_file))
    with pytest.raises(UntrustedCertificateError):
        prefetch_model(REPO, max_retries=1)
    monkeypatch.delenv("SSL_CERT_FILE")
    assert Path(prefetch_model(REPO)).is_dir()


def test_a_ca_bundle_variable_naming_nothing_is_a_clear_error(tls_hub, monkeypatch, tmp_path, caplog):
    tls_hub("org-ca")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5)
    assert str(info.value).startswith(f"Cannot fetch '{REPO}': CURL_CA_BUNDLE=") and "no such file" in str(info.value)
    assert info.value.transient is False and warnings_of(caplog) == [] and "Fix or unset" in str(info.value)


def test_huggingface_hub_in_the_same_process_trusts_the_bundle_too(tls_hub, pki, monkeypatch, tmp_path):
    from huggingface_hub import hf_hub_download

    hub = tls_hub("org-ca")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    prefetch_model(REPO, model_type="tokenizer")  # sets the session up
    path = hf_hub_download(REPO, "config.json", cache_dir=str(tmp_path / "hf-cache"))
    assert Path(path).read_bytes() == (hub.repo_dir(REPO) / "config.json").read_bytes()


# --------------------------------------------------------------------------- doctor


def test_doctor_shows_the_chain_and_that_it_is_not_trusted(tls_hub):
    tls_hub("org-ca")
    check = check_tls(timeout=5)
    assert not check.ok and "NOT trusted (unable to get local issuer certificate)" in check.detail
    # The server's certificate, then the intermediate the server sent, up to the organisation's root.
    assert "[0] subject O=trustme" in check.detail and "[1] subject O=trustme" in check.detail
    assert "issuer O=Acme Hospital, OU=Network Security" in check.detail
    assert "SSL_CERT_FILE" in check.advice and "REQUESTS_CA_BUNDLE" in check.advice


def test_doctor_says_trusted_with_the_bundle_and_plain_http_has_no_certificate(tls_hub, pki, monkeypatch,
                                                                               local_hub):
    hub = tls_hub("org-ca")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    check = check_tls(timeout=5)
    assert check.ok and f"trusted (CAs from REQUESTS_CA_BUNDLE={pki.ca_file})" in check.detail
    assert "issuer O=Acme Hospital" in check.detail and hub.url.startswith("https://")
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    assert "plain HTTP" in check_tls(timeout=5).detail


def test_doctor_checks_every_https_endpoint_of_phaita_endpoints(tls_hub, local_hub, monkeypatch):
    hub = tls_hub("org-ca")
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{hub.url},{local_hub.url}")  # the site mirror, then another
    check = check_tls(timeout=5)
    assert not check.ok and check.detail.startswith(f"{hub.url}: NOT trusted") and local_hub.url not in check.detail


# --------------------------------------------------------------------------- forward proxy


def test_loads_through_a_forward_proxy_to_the_tls_hub(tls_hub, pki, forward_proxy, monkeypatch):
    hub = tls_hub("org-ca")
    proxy = forward_proxy()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    snapshot = Path(prefetch_model(REPO))
    assert (snapshot / "model.safetensors").read_bytes() == (hub.repo_dir(REPO) / "model.safetensors").read_bytes()
    assert proxy.tunnels_to(hub.port), proxy.log.read_text()[-2000:]


def test_an_untrusted_certificate_behind_the_proxy_names_the_issuer(tls_hub, forward_proxy, monkeypatch, caplog):
    tls_hub("org-ca")
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy().url())
    with pytest.raises(UntrustedCertificateError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5)
    assert "O=Acme Hospital" in str(info.value) and warnings_of(caplog) == []


def _everything_shown(err: BaseException, caplog, extra: str = "") -> str:
    seen, exc, parts = set(), err, [extra]
    while exc is not None and id(exc) not in seen:  # the whole cause/context chain, as a traceback shows it
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    parts += [r.getMessage() for r in caplog.records]
    parts += [repr(getattr(err, "last_error", None))]
    return "\n".join(parts)


def _credentials_work_and_never_show(hub, proxy, credentials: str, scheme: str, monkeypatch, caplog,
                                     tmp_path) -> None:
    """A load through ``proxy`` with ``credentials``; then wrong ones: a 407 at once, never shown."""
    assert proxy.url(credentials).startswith(f"{scheme}://")
    assert Path(prefetch_model(REPO, model_type="tokenizer")).is_dir()
    assert proxy.tunnels_to(hub.port)

    monkeypatch.setenv("HTTPS_PROXY", proxy.url(f"{PROXY_USER}:wrong-{PROXY_PASSWORD}"))
    with pytest.raises(ProxyAuthenticationError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5, cache_dir=str(tmp_path / "empty-cache"))
    err = info.value
    assert err.attempts == 1 and not err.transient and "407" in str(err)
    assert f"HTTPS_PROXY={scheme}://***@127.0.0.1" in str(err)
    shown = _everything_shown(err, caplog)
    for secret in (PROXY_PASSWORD, credentials):
        assert secret not in shown
    assert "***" in shown


def test_a_proxy_with_credentials_works_and_never_shows_them(tls_hub, pki, forward_proxy, monkeypatch, caplog,
                                                             tmp_path):
    caplog.set_level(logging.DEBUG)  # every logger: httpx, httpcore, huggingface_hub, ours
    hub = tls_hub("org-ca")
    credentials = f"{PROXY_USER}:{PROXY_PASSWORD}"
    proxy = forward_proxy(credentials)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url(credentials))
    _credentials_work_and_never_show(hub, proxy, credentials, "http", monkeypatch, caplog, tmp_path)


def test_the_cli_never_shows_proxy_credentials(tls_hub, pki, forward_proxy, monkeypatch, tmp_path):
    hub = tls_hub("org-ca")
    credentials = f"{PROXY_USER}:{PROXY_PASSWORD}"
    proxy = forward_proxy(credentials)
    phaita = str(Path(sys.executable).with_name("phaita"))
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pki.ca_file), "HF_ENDPOINT": hub.url}
    outputs = []
    for run, (password, code) in enumerate(((PROXY_PASSWORD, 0), ("wrong-" + PROXY_PASSWORD, None))):
        env["HTTPS_PROXY"] = proxy.url(f"{PROXY_USER}:{password}")
        env["HF_HUB_CACHE"] = str(tmp_path / f"cache-{run}")  # empty: the pull must reach the hub
        pull = subprocess.run([phaita, "-v", "models", "pull", REPO, "--max-retries", "2"], env=env,
                              capture_output=True, text=True, timeout=120)
        doctor = subprocess.run([phaita, "models", "doctor", "--model", REPO], env=env, capture_output=True,
                                text=True, timeout=120)
        if code == 0:
            assert pull.returncode == 0, pull.stdout + pull.stderr
            assert "TLS certificate" in doctor.stdout and "trusted (CAs from REQUESTS_CA_BUNDLE" in doctor.stdout
        else:
            assert pull.returncode != 0 and "407" in pull.stdout + pull.stderr
        outputs += [pull.stdout, pull.stderr, doctor.stdout, doctor.stderr]
    shown = "\n".join(outputs)
    assert PROXY_PASSWORD not in shown and f"{PROXY_USER}:" not in shown


# --------------------------------------------------------------------------- a proxy reached over TLS
# HTTPS_PROXY=https://...: the client speaks TLS to the proxy, then CONNECTs through it to the hub.


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_loads_through_an_https_proxy_whose_certificate_the_bundle_trusts(tls_hub, pki, forward_proxy,
                                                                         monkeypatch, variable):
    hub = tls_hub("org-ca")
    proxy = forward_proxy(tls_issuer=pki.intermediate)  # the site's CA signs the proxy's certificate too
    # One bundle verifies both hops: the proxy's certificate, then the hub's inside the tunnel.
    # (httpx2 alone verifies a proxy with SSL_CERT_FILE/SSL_CERT_DIR only, not REQUESTS_CA_BUNDLE.)
    monkeypatch.setenv(variable, str(pki.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    assert proxy.url().startswith("https://")
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    model = robust_model_download(REPO, max_retries=1)
    assert proxy.tunnels_to(hub.port), proxy.log.read_text()[-2000:]
    check = check_tls(timeout=5)  # the doctor reads the hub's chain through the same proxy
    assert check.ok and f"trusted (CAs from {variable}={pki.ca_file})" in check.detail, check.detail
    source = load_file(str(hub.repo_dir(REPO) / "model.safetensors"))
    loaded = {key.removeprefix(model.base_model_prefix + "."): value for key, value in model.state_dict().items()}
    source = {key.removeprefix(model.base_model_prefix + "."): value for key, value in source.items()}
    assert set(loaded) <= set(source) and len(loaded) > 0
    assert all(torch.equal(loaded[key], source[key]) for key in loaded)


def test_an_untrusted_https_proxy_certificate_fails_at_once_naming_the_proxy(tls_hub, pki, forward_proxy,
                                                                            monkeypatch, caplog):
    hub = tls_hub("org-ca")
    proxy = forward_proxy(tls_issuer=trustme.CA(organization_name="Unknown Proxy Vendor"))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))  # trusts the hub, not the proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    with pytest.raises(UntrustedCertificateError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5)
    err, text = info.value, str(info.value)
    assert err.attempts == 1 and not err.transient and warnings_of(caplog) == [], "not retried, no backoff"
    assert text.startswith(f"The TLS certificate of the proxy {proxy.url()} (HTTPS_PROXY; not the hub {hub.url}")
    assert "unable to get local issuer certificate" in text and "CERTIFICATE_VERIFY_FAILED" not in text
    assert "O=Unknown Proxy Vendor" in text and "Acme" not in text  # the proxy's issuer, not the hub's
    assert f"Trusted CAs now come from: SSL_CERT_FILE={pki.ca_file}" in text


def test_an_https_proxy_certificate_for_another_name_says_which_variable_to_fix(tls_hub, pki, forward_proxy,
                                                                                monkeypatch):
    tls_hub("org-ca")
    proxy = forward_proxy(tls_issuer=pki.intermediate)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url().replace("127.0.0.1", "localhost"))  # not in its certificate
    with pytest.raises(UntrustedCertificateError) as info:
        prefetch_model(REPO, max_retries=2)
    text = str(info.value)
    assert "The TLS certificate of the proxy https://localhost:" in text and "mismatch" in text
    assert "Use a name the proxy's certificate carries in HTTPS_PROXY" in text and "IP Address:127.0.0.1" in text


def test_an_https_proxy_with_credentials_works_and_never_shows_them(tls_hub, pki, forward_proxy, monkeypatch,
                                                                    caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    hub = tls_hub("org-ca")
    credentials = f"{PROXY_USER}:{PROXY_PASSWORD}"
    proxy = forward_proxy(credentials, tls_issuer=pki.intermediate)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url(credentials))
    _credentials_work_and_never_show(hub, proxy, credentials, "https", monkeypatch, caplog, tmp_path)
