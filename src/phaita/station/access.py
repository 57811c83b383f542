"""Who may read from the station: bearer tokens from a file, client certificates signed by the site CA.

With neither configured, every client on the network may read (the station is read-only either way).
With ``--tokens FILE``, a request must carry ``Authorization: Bearer <token>`` with a token of the
file (devices set ``HF_TOKEN`` to it: the loader, ``hf`` and ``transformers`` all send it). With
``--client-ca FILE``, a client certificate signed by the site CA admits the request (one signed by
another CA already failed the TLS handshake). With both, either one admits it. Refused: no
credential at all -> 401 (``WWW-Authenticate: Bearer``, and the Hub's ``X-Error-Message``); a token not in the file, or no certificate
where only certificates admit -> 403. The answer is a short JSON error: no file byte, no listing.

The token file: one token per line, optionally after a label (``ambulance-17 s3cr3t...``): the
label, never the token, is the user in the access log. ``#`` starts a comment. The file is read
again when its modification time changes (checked at most once a second), so a token is revoked
by deleting its line. Tokens are kept as sha256 digests and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phaita.hubserver.protocol import HubError

REALM = 'Bearer realm="phaita station"'
# The Hub's own words on a 401: with them huggingface_hub (and so the loader) reports an access error;
# a 401 on the model API without them reads as "repository not found" (the Hub's answer for private repos).
HUB_401 = "Invalid credentials in Authorization header"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, source: str) -> dict[bytes, str]:
    """{sha256 of token: label} from a token file's text; ValueError naming the line otherwise."""
    out: dict[bytes, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ValueError(f"--tokens {source} line {n}: give a token, or a label and a token (no spaces in either)")
        label, token = (parts[0], parts[1]) if len(parts) == 2 else (f"token-{n}", parts[0])
        if len(token) < 16 or any(not ("!" <= c <= "~") for c in token):
            raise ValueError(f"--tokens {source} line {n}: a token must be at least 16 printable ASCII characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        out[_digest(token)] = label
    if not out:
        raise ValueError(f"--tokens {source}: holds no token (one per line, optionally after a label)")
    return out


class TokenFile:
    """The tokens of ``--tokens FILE``, read again when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[bytes, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
            text = self.path.read_text()
        except OSError as exc:
            raise ValueError(f"--tokens {self.path}: cannot read it: {exc.strerror or exc}") from None
        self._tokens = parse_tokens(text, str(self.path))
        self._stamp = (st.st_size, st.st_mtime_ns)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            st = self.path.stat()
            if (st.st_size, st.st_mtime_ns) != self._stamp:
                self._load()
        except (OSError, ValueError):  # a file being rewritten, or emptied: nobody gets in until it is fixed
            self._tokens, self._stamp = {}, None

    def label(self, token: str) -> str | None:
        """The label of ``token``, or None when it is not in the file."""
        digest = _digest(token)
        with self._lock:
            self._refresh()
            found = None
            for known, label in self._tokens.items():  # every entry compared: no early exit to time
                if hmac.compare_digest(known, digest):
                    found = label
            return found


@dataclass
class Access:
    """The station's access rule (see the module's text): ``admit`` -> the user for the log, or HubError."""

    tokens: TokenFile | None = None
    client_certs: bool = False  # the TLS context asks for client certificates of the site CA

    @property
    def open(self) -> bool:
        return self.tokens is None and not self.client_certs

    def admit(self, authorization: str | None, peer_cert: dict[str, Any] | None) -> str:
        if self.open:
            return "-"
        if self.client_certs and peer_cert:
            return _common_name(peer_cert)
        token = _bearer(authorization)
        if self.tokens is not None and token is not None:
            label = self.tokens.label(token)
            if label is not None:
                return label
            raise HubError(403, None, "the token is not one of this station's (ask the site's administrator)")
        if self.tokens is None:  # certificates only
            raise HubError(403, None, "this station admits clients with a certificate signed by the site CA")
        what = "a token (HF_TOKEN)" + (" or a client certificate of the site CA" if self.client_certs else "")
        raise HubError(401, None, f"this station needs {what}", {"WWW-Authenticate": REALM, "X-Error-Message": HUB_401})


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def _common_name(cert: dict[str, Any]) -> str:
    """The certificate's common name (else its first DNS name), printable, for the access log."""
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    return "".join(c if "!" <= c <= "~" else "_" for c in names[0])[:64] if names else "cert"
