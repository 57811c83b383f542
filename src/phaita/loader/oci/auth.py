"""Registry credentials and the ways registries ask for them: anonymous, Basic, the Bearer challenge.

Where credentials come from, in order: ``PHAITA_OCI_USERNAME``/``PHAITA_OCI_PASSWORD``, then docker's
``config.json`` (``DOCKER_CONFIG`` or ``~/.docker``): its ``auths`` entry for the registry (``auth`` =
base64 ``user:password``, or ``username``/``password``, or an ``identitytoken``). A registry that the
file hands to a credential helper (``credHelpers``, or ``credsStore`` with no ``auths`` entry) is not
read here: the error names the helper, so a person knows to export the credentials instead. What was
tried is told as a *source* (``PHAITA_OCI_USERNAME``, ``/home/me/.docker/config.json``), never its
value; every secret is registered with :func:`phaita.loader.errors.register_secret`.

A 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` is answered by asking the
token endpoint (with the credentials, if any: Basic) and retrying with the token; tokens are kept per
scope and dropped when they expire (``expires_in``) or when the registry answers 401 to them.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field

from .. import config
from ..errors import BadEnvironment, register_secret


@dataclass(frozen=True)
class Credentials:
    username: str = field(repr=False)
    password: str = field(repr=False)
    source: str  # where they came from, for messages (never the values)
    identity_token: bool = False  # docker's identitytoken: a refresh token for the token endpoint

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class CredentialLookup:
    """What was found for a registry: credentials (or None), and the sources tried (for messages)."""

    credentials: Credentials | None
    tried: tuple[str, ...]
    helper: str | None = None  # a credential helper the config names for this registry (not supported)

    def describe(self) -> str:
        if self.credentials is not None:
            return f"credentials from {self.credentials.source}"
        text = "no credentials (anonymous)"
        if self.tried:
            text += "; looked in " + ", ".join(self.tried)
        if self.helper:
            text += (f"; {config.docker_config_file()} hands this registry to the credential helper "
                     f"'docker-credential-{self.helper}', which phaita does not run: set PHAITA_OCI_USERNAME "
                     f"and PHAITA_OCI_PASSWORD instead (e.g. from `docker-credential-{self.helper} get`)")
        return text


def _register(user: str, password: str) -> None:
    register_secret(password)
    register_secret(f"{user}:{password}")
    register_secret(base64.b64encode(f"{user}:{password}".encode()).decode())


def _config_keys(host: str) -> list[str]:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in ("docker.io", "registry-1.docker.io"):
        keys.append("https://index.docker.io/v1/")
    return keys


def lookup(host: str) -> CredentialLookup:
    """The credentials for registry ``host`` (see the module's text)."""
    tried = ["PHAITA_OCI_USERNAME/PHAITA_OCI_PASSWORD"]
    env = config.oci_credentials()
    if env is not None:
        _register(*env)
        return CredentialLookup(Credentials(env[0], env[1], "PHAITA_OCI_USERNAME/PHAITA_OCI_PASSWORD"), tuple(tried))
    path = config.docker_config_file()
    if not path.is_file():
        return CredentialLookup(None, tuple(tried))
    tried.append(str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadEnvironment(f"{path}: not a readable docker config.json ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BadEnvironment(f"{path}: not a docker config.json (not a JSON object)")
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    helpers = data.get("credHelpers") if isinstance(data.get("credHelpers"), dict) else {}
    for key in _config_keys(host):
        if isinstance(helpers.get(key), str):
            return CredentialLookup(None, tuple(tried), helper=helpers[key])
    for key in _config_keys(host):
        entry = auths.get(key)
        if isinstance(entry, dict):
            found = _from_entry(entry, str(path))
            if found is not None:
                return CredentialLookup(found, tuple(tried))
            break
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        return CredentialLookup(None, tuple(tried), helper=store)
    return CredentialLookup(None, tuple(tried))


def _from_entry(entry: dict, source: str) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        register_secret(token)
        return Credentials("<token>", token, source, identity_token=True)
    raw = entry.get("auth")
    if isinstance(raw, str) and raw:
        try:
            user, sep, password = base64.b64decode(raw).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise BadEnvironment(f"{source}: an 'auth' entry is not base64 of user:password") from None
        if sep:
            register_secret(raw)
            _register(user, password)
            return Credentials(user, password, source)
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user and password:
        _register(user, password)
        return Credentials(user, password, source)
    return None


_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


class TokenCache:
    """Bearer tokens by scope, each until it expires (minus a margin) or is refused."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, realm: str, scope: str) -> str | None:
        with self._lock:
            entry = self._tokens.get((realm, scope))
            if entry is None or entry[1] <= time.monotonic():
                self._tokens.pop((realm, scope), None)
                return None
            return entry[0]

    def put(self, realm: str, scope: str, token: str, expires_in: float) -> None:
        register_secret(token)
        with self._lock:  # renewed 10 % (at most 30 s) before the registry would refuse it
            self._tokens[(realm, scope)] = (token, time.monotonic() + max(1.0, expires_in - min(30.0, expires_in / 10)))

    def drop(self, realm: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((realm, scope), None)
