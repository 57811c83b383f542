"""A real OCI registry for tests and benchmarks: Debian's ``docker-registry`` (CNCF distribution 2.8).

:class:`LocalRegistry` starts it on 127.0.0.1 with filesystem storage in a folder of the caller's,
open, with htpasswd Basic auth (``users=``), over TLS (``tls=(cert, key)``), or delegating auth to
a token server (:class:`TokenServer`, which signs JWTs the registry trusts). The registry's config
cannot ask for port 0, so a free port is taken from the OS, released, and the start retried if
another process took it meanwhile. :func:`registry_missing` says why none can run here (for a skip).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

BINARY = "/usr/bin/docker-registry"


def registry_missing() -> str | None:
    """Why no registry can be started here (None: it can)."""
    found = shutil.which("docker-registry") or (BINARY if os.path.exists(BINARY) else None)
    if found is None:
        return ("docker-registry (Debian package docker-registry, CNCF distribution) is not installed; "
                "scripts/system-packages.sh installs it (make setup)")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"


class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1; use as a context manager (``url``, ``host``, ``root``)."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, token: "TokenServer | None" = None) -> None:
        self.workdir = Path(workdir)
        self.root = self.workdir / "storage"
        self.users, self.tls, self.token = users, tls, token
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self, port: int) -> Path:
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.root}", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{port}", "  secret: phaita-test-secret"]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
        if self.users:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text("\n".join(htpasswd_line(u, p) for u, p in self.users.items()) + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: phaita-test", f"    path: {htpasswd}"]
        elif self.token:
            lines += ["auth:", "  token:", f"    realm: {self.token.url}/token", f"    service: {self.token.service}",
                      f"    issuer: {self.token.issuer}", f"    rootcertbundle: {self.token.cert_path}"]
        path = self.workdir / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> "LocalRegistry":
        missing = registry_missing()
        if missing:
            raise RuntimeError(missing)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(5):
            port = _free_port()
            config = self._config(port)
            log = open(self.workdir / "registry.log", "wb")
            self.proc = subprocess.Popen([shutil.which("docker-registry") or BINARY, "serve", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT)
            log.close()
            if self._wait(port):
                self.port = port
                return self
            self.stop()
            last = (self.workdir / "registry.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"docker-registry did not start: {last}")

    def _wait(self, port: int, seconds: float = 15.0) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to corrupt it in a test)."""
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint for the registry's Bearer flow: Basic credentials in, a signed JWT out; or, as
    docker's ``identitytoken`` asks, the OAuth2 form (``POST``, ``grant_type=refresh_token``).

    ``expires_in``: token lifetime (short, to exercise renewal); ``issued``: tokens handed out;
    ``requests``: every (scope, user) asked; ``refresh_tokens``: refresh token -> user.
    """

    service = "phaita-test-registry"
    issuer = "phaita-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str], expires_in: int = 300) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users, self.expires_in = users, expires_in
        self.refresh_tokens: dict[str, str] = {}
        self.issued = 0
        self.requests: list[tuple[str, str | None]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phaita test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self._der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = Path(workdir) / "token-signer.pem"
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _jwt(self, subject: str, access: list[dict]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 5, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(sig)}"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        user = None
        auth = handler.headers.get("Authorization", "")
        if handler.command == "POST":  # the OAuth2 form: a refresh token for a user, scopes in the body
            length = int(handler.headers.get("Content-Length") or 0)
            query = parse_qs(handler.rfile.read(length).decode())
            user = self.refresh_tokens.get(query.get("refresh_token", [""])[0])
            if query.get("grant_type") != ["refresh_token"] or user is None:
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        elif auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            user = u
        access = []
        for scope in query.get("scope", []):
            self.requests.append((scope, user))
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if user is not None:  # anonymous: nothing granted
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self._jwt(user or "anonymous", access)
        self.issued += 1
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.expires_in}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> "TokenServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer._answer(self)

            def do_POST(self) -> None:  # noqa: N802
                outer._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ping(url: str) -> int:
    try:
        with urlopen(url + "/v2/", timeout=2) as r:
            return r.status
    except Exception as exc:
        return getattr(exc, "code", 0)
