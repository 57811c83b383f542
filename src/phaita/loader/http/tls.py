"""Which certificates the loader trusts, the session that applies it, and what an endpoint presents.

One place sets up TLS for every request (the loader's, the doctor's, and huggingface_hub's own in
the same process): :func:`session` installs a client factory in huggingface_hub
(``set_client_factory``) whose client trusts the CA bundle :func:`phaita.loader.config.ca_bundle`
names. httpx alone reads ``SSL_CERT_FILE``/``SSL_CERT_DIR`` only; a site behind a TLS-inspecting
proxy usually sets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` for its other tools, and those
are honoured here too. A factory the application installed itself is left alone.

:func:`inspect_chain` reads the certificate chain an endpoint presents (through the same proxies,
without verifying it) so that an untrusted certificate's error and ``phaita models doctor`` can
say who issued it. Proxy credentials are registered as secrets, so they are redacted everywhere.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

import httpx2
from httpx2._utils import URLPattern, get_environment_proxies  # the proxy map httpx2 itself builds
from huggingface_hub.utils import _http as hf_http  # default_client_factory: the settings it gives a client
from huggingface_hub.utils import close_session, get_session, set_client_factory

from .. import config
from ..errors import BadEnvironment, redact, register_secret
from ..advice import untrusted_certificate_message

_lock = threading.Lock()
_built_for: tuple | None = None  # the settings the shared client was last built with by our factory
_contexts: dict[tuple, ssl.SSLContext] = {}  # (bundle path, size, mtime) -> its context
_contexts_lock = threading.Lock()


def trust_context(bundle: config.CaBundle | None) -> ssl.SSLContext | bool:
    """The ``verify=`` for an httpx client: the bundle's CAs, or True (httpx's default store).

    A context is built once per bundle file as it is now (path, size, modification time): loading a
    system bundle takes ~0.1 s, which every process would otherwise pay two or three times.
    """
    if bundle is None:
        return True
    try:
        st = os.stat(bundle.path)
        key = (bundle.path, st.st_size, st.st_mtime_ns)
        with _contexts_lock:
            cached = _contexts.get(key)
        if cached is not None:
            return cached
        if os.path.isdir(bundle.path):
            context = ssl.create_default_context(capath=bundle.path)
        else:
            context = ssl.create_default_context(cafile=bundle.path)
    except (ssl.SSLError, OSError) as exc:
        raise BadEnvironment(f"{bundle}: not a readable PEM file of CA certificates ({exc})") from None
    with _contexts_lock:
        _contexts[key] = context
    return context


def trusted_from(bundle: config.CaBundle | None) -> str:
    if bundle is not None:
        return str(bundle)
    paths = ssl.get_default_verify_paths()
    return f"the system store ({paths.openssl_cafile or paths.cafile or paths.openssl_capath})"


def _settings() -> tuple:
    return config.ca_bundle(), config.proxy_settings()


def register_proxy_secrets(proxies: Sequence[tuple[str, str]]) -> None:
    """Redact a proxy's password (raw, percent-decoded, and as the Basic credentials sent for it)."""
    for _, value in proxies:
        try:
            parts = urlsplit(value if "://" in value else "http://" + value)
        except ValueError:
            continue
        if parts.password is None:
            continue
        for user, password in {(parts.username or "", parts.password),
                               (unquote(parts.username or ""), unquote(parts.password))}:
            register_secret(password)
            register_secret(f"{user}:{password}")
            register_secret(base64.b64encode(f"{user}:{password}".encode()).decode())


def _https_proxy_mounts(verify: ssl.SSLContext | bool,
                        proxy_verify: ssl.SSLContext | bool | None = None) -> dict[str, httpx2.HTTPTransport] | None:
    """Transports for the ``https://`` proxies of the environment, their own TLS verified like the hub's.

    Left alone, httpx2 verifies a proxy's certificate with SSL_CERT_FILE/SSL_CERT_DIR or the system
    store only (not REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE): the same CAs must verify both hops.
    ``proxy_verify``: the proxy's, when it differs from ``verify`` (the doctor reads a hub's chain unverified).
    """
    proxy_context = httpx2.create_ssl_context(verify if proxy_verify is None else proxy_verify)
    mounts = {pattern: httpx2.HTTPTransport(verify=verify, proxy=httpx2.Proxy(url, ssl_context=proxy_context))
              for pattern, url in get_environment_proxies().items() if url and url.lower().startswith("https://")}
    return mounts or None


def _client_factory() -> httpx2.Client:
    """huggingface_hub's client (its request hook, redirects, no timeout) with the site's CAs."""
    global _built_for
    settings = _settings()
    verify = trust_context(settings[0])
    hook = getattr(hf_http, "hf_request_event_hook", None)
    if hook is not None:  # what default_client_factory sets, without building its client (an SSL context)
        client = httpx2.Client(event_hooks={"request": [hook]}, follow_redirects=True, timeout=None, verify=verify,
                               mounts=_https_proxy_mounts(verify))
    else:
        template = hf_http.default_client_factory()
        try:
            client = httpx2.Client(event_hooks=template.event_hooks, follow_redirects=template.follow_redirects,
                                   timeout=template.timeout, verify=verify, mounts=_https_proxy_mounts(verify))
        finally:
            template.close()
    _built_for = settings
    return client


def session() -> httpx2.Client:
    """huggingface_hub's shared session, built for the CA bundle and proxies the environment names now.

    Raises ``ValueError`` (naming the variable) for a CA bundle that does not exist or does not parse.
    """
    settings = _settings()
    register_proxy_secrets(settings[1])
    with _lock:
        factory = getattr(hf_http, "_GLOBAL_CLIENT_FACTORY", None)
        if factory is hf_http.default_client_factory:
            trust_context(settings[0])  # a bad bundle fails here, with the variable's name
            set_client_factory(_client_factory)  # closes the client built before, if any
        elif factory is _client_factory and _built_for is not None and _built_for != settings:
            trust_context(settings[0])
            close_session()  # the environment changed since the client was built: build it again
    return get_session()


# --------------------------------------------------------------------------- certificate chains


@dataclass(frozen=True)
class CertSummary:
    """One certificate of a chain, as a person reads it."""

    subject: str
    issuer: str
    names: tuple[str, ...]  # subjectAltName entries
    not_after: str

    def describe(self) -> str:
        return f"subject {self.subject}; issuer {self.issuer}"


@dataclass(frozen=True)
class ChainReport:
    """The chain an HTTPS endpoint presented, and whether the loader's session trusts it."""

    url: str
    chain: tuple[CertSummary, ...]
    trusted: bool | None  # None: the trust check itself could not run (network error...)
    problem: str | None  # why it is not trusted, or why the chain could not be read

    @property
    def leaf(self) -> CertSummary | None:
        return self.chain[0] if self.chain else None


_NAME_KEYS = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
              "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def _name(rdns: Any) -> str:
    parts = [f"{_NAME_KEYS.get(key, key)}={value}" for rdn in rdns or () for key, value in rdn]
    return ", ".join(parts) or "(empty)"


def _summary(info: dict) -> CertSummary:
    names = tuple(f"{kind}:{value}" for kind, value in info.get("subjectAltName", ()))
    return CertSummary(_name(info.get("subject")), _name(info.get("issuer")), names, str(info.get("notAfter", "?")))


def _peer_chain(ssl_object: Any) -> tuple[CertSummary, ...]:
    # Python 3.13 makes get_unverified_chain() public; 3.10-3.12 have it on the inner _ssl object.
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        raise RuntimeError("this Python cannot read a peer's certificate chain")
    return tuple(_summary(cert.get_info()) for cert in getter() or ())


def verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (httpx wraps it twice), if that is what it is."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def describe_verification_error(err: ssl.SSLCertVerificationError) -> str:
    return (getattr(err, "verify_message", None) or err.reason or str(err)).rstrip(".")


def inspect_chain(url: str, timeout: float) -> ChainReport:
    """Read the chain ``url``'s server presents (not verified), then check it with the loader's session.

    Both go through the proxies of the environment. Never raises: problems are in the report.
    """
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    chain: tuple[CertSummary, ...] = ()
    try:
        proxied = _https_proxy_mounts(unverified, trust_context(config.ca_bundle()))
        with httpx2.Client(verify=unverified, timeout=timeout, mounts=proxied) as client:
            with client.stream("HEAD", url) as response:
                chain = _peer_chain(response.extensions["network_stream"].get_extra_info("ssl_object"))
    except Exception as exc:  # the report says why; the caller decides what to do
        reason = redact(" ".join(str(exc).split())[:200]) or type(exc).__name__
        return ChainReport(url, (), None, f"{type(exc).__name__}: {reason}")
    try:
        session().head(url, timeout=timeout)
    except Exception as exc:
        err = verification_error(exc)
        if err is not None:
            return ChainReport(url, chain, False, describe_verification_error(err))
        reason = redact(" ".join(str(exc).split())[:200]) or type(exc).__name__
        return ChainReport(url, chain, None, f"{type(exc).__name__}: {reason}")
    return ChainReport(url, chain, True, None)


def _failed_origin(exc: BaseException) -> str | None:
    """``scheme://host:port/`` of the request that failed (a redirect may have led off the endpoint)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, httpx2.RequestError):
            try:
                url = exc.request.url
            except RuntimeError:  # raised outside a request
                url = None
            if url is not None:
                return f"{url.scheme}://{url.netloc.decode()}/"
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def https_proxy_for(url: str) -> str | None:
    """The ``https://`` proxy URL httpx2 takes for ``url`` from the environment (None: direct, or http://)."""
    target = httpx2.URL(url)
    for pattern, proxy in sorted((URLPattern(key), value) for key, value in get_environment_proxies().items()):
        if pattern.matches(target):
            return proxy if proxy and proxy.lower().startswith("https://") else None
    return None


def _proxy_certificate_refused(proxy: str, timeout: float) -> tuple[str, tuple[CertSummary, ...]] | None:
    """Why the bundle refuses the proxy's own certificate, and its chain; None if it is trusted (or unreachable)."""
    url = httpx2.URL(proxy)
    host, port = url.host, url.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with httpx2.create_ssl_context(trust_context(config.ca_bundle())).wrap_socket(sock, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        reason = describe_verification_error(exc)
    except (OSError, ValueError):
        return None  # not a certificate problem of the proxy's, as far as can be told
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with unverified.wrap_socket(sock, server_hostname=host) as tls_socket:
                return reason, _peer_chain(tls_socket)
    except (OSError, RuntimeError, ValueError):
        return reason, ()


def _proxy_shown(proxy: str) -> tuple[str, str]:
    """(the variable that set it, the URL without credentials)."""
    variable = next((name for name, value in config.proxy_settings() if value == proxy), "HTTPS_PROXY")
    return variable.upper(), redact(str(httpx2.URL(proxy).copy_with(username=None, password=None)).rstrip("/"))


def certificate_advice(exc: BaseException, model_name: str, endpoint: str, reason: str) -> str:
    """The untrusted-certificate message, with the chain the server presents (read again, briefly).

    Behind an ``https://`` proxy the refused certificate may be the proxy's own: that is checked first.
    """
    err = verification_error(exc)
    reason = describe_verification_error(err) if err is not None else reason
    origin = _failed_origin(exc) or endpoint.rstrip("/") + "/"
    bundle = config.ca_bundle()
    proxy = https_proxy_for(origin) if origin.startswith("https") else None
    refused = _proxy_certificate_refused(proxy, min(config.connect_timeout(), 5.0)) if proxy else None
    if refused is not None:
        proxy_reason, chain = refused
        leaf = chain[0] if chain else None
        return untrusted_certificate_message(
            model_name, origin.rstrip("/"), proxy_reason, subject=leaf.subject if leaf else None,
            issuer=leaf.issuer if leaf else None, root=chain[-1].issuer if chain else None,
            names=leaf.names if leaf else (), trusted_from=trusted_from(bundle),
            chain_problem=None if leaf else "the proxy's chain could not be read", proxy=_proxy_shown(proxy))
    report = inspect_chain(origin, timeout=min(config.connect_timeout(), 5.0)) if origin.startswith("https") else None
    leaf = report.leaf if report is not None else None
    root = report.chain[-1].issuer if report is not None and report.chain else None  # the CA to trust
    problem = None if leaf is not None else (report.problem if report is not None else "not an https URL")
    return untrusted_certificate_message(
        model_name, origin.rstrip("/"), reason, subject=leaf.subject if leaf else None,
        issuer=leaf.issuer if leaf else None, root=root, names=leaf.names if leaf else (),
        trusted_from=trusted_from(bundle), chain_problem=problem)


def shown_proxies() -> str:
    """The proxy variables that are set, credentials masked."""
    return redact(", ".join(f"{name}={value}" for name, value in config.proxy_settings()))
