"""The station's TLS: the server's certificate and key, and (optionally) the site CA that signs clients'.

:func:`station_tls_context` checks the files and says which one is wrong and how. With
``client_ca``, a client may present a certificate; one that the site CA did not sign fails the
handshake (no HTTP answer at all), and :mod:`.access` decides what a client without one may do.
"""

from __future__ import annotations

import os
import ssl


class _Encrypted(Exception):
    pass


def _refuse_passphrase() -> bytes:
    raise _Encrypted  # instead of OpenSSL prompting on the terminal of a service


def station_tls_context(cert: str | os.PathLike[str], key: str | os.PathLike[str],
                        client_ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or later) presenting ``cert`` (PEM, the server's certificate
    first, then any intermediates) with its unencrypted PEM private ``key``.

    ``client_ca`` (PEM, the site CA): clients may present a certificate, which must be signed by it
    (``CERT_OPTIONAL``: one signed by another CA fails the handshake; none at all is left to the
    access rules, which answer 403).

    Raises ValueError with a message naming the file and what is wrong with it.
    """
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ValueError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None
    try:  # the certificate alone first, to tell which of the two files is wrong
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=os.fspath(cert))
    except ssl.SSLError:
        raise ValueError(f"--tls-cert {cert}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key), password=_refuse_passphrase)
    except _Encrypted:
        raise ValueError(f"--tls-key {key}: the key is encrypted (has a passphrase): give the mirror an "
                         "unencrypted key, readable only by its user (openssl pkey -in KEY -out KEY.plain)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"--tls-key {key} is not the key of --tls-cert {cert} (they do not match)") from None
        raise ValueError(f"--tls-key {key}: holds no PEM private key the certificate can use "
                         f"({exc.reason or exc})") from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=os.fspath(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--client-ca {client_ca}: holds no PEM CA certificate "
                             f"({getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc})") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
