"""Every environment variable the loader reads, in one place.

Values are read when a call starts, not at import, so a process (or a test) can change them
between calls. A malformed value raises ``BadEnvironment`` (a ``ValueError``) naming the
variable: a typo in a deployment script should fail loudly, not silently fall back to a default.

=========================  ==========  =====================================================
Variable                   Default     Meaning
=========================  ==========  =====================================================
PHAITA_BACKOFF_BASE        10          First wait between attempts, seconds (then x2, x4...)
PHAITA_BACKOFF_JITTER      0.5         Spread of each wait, as a fraction: drawn uniformly in
                                       [w(1-j), w(1+j)] around the scheduled w (mean w); a
                                       hub-given wait is a floor, spread up to w(1+j); 0 =
                                       the exact schedule. Within [0, 1]
PHAITA_MAX_BACKOFF         600         Longest single wait between attempts, seconds
PHAITA_MAX_RETRY_AFTER     300         Longest hub-given wait honoured (``Retry-After``, or the
                                       reset time of a ``RateLimit`` header on a 429), seconds
PHAITA_FRESHNESS_TIMEOUT   2.5         Budget of the one "is main still at this commit?"
                                       check made when a branch is already cached, seconds
                                       (with the ~0.2 s of setting up a request, a dead or
                                       stalled hub costs a warm load < 3 s)
PHAITA_FRESHNESS           check       A cached branch: ``check`` asks the hub once (within
                                       the budget above) before loading; ``background`` loads
                                       the cached commit at once and fetches a newer one for
                                       the next load; ``never`` asks nothing
PHAITA_STALL_TIMEOUT       10          Silence on an open connection before it is treated
                                       as broken and resumed, seconds
PHAITA_CONNECT_TIMEOUT     10          TCP/TLS connect timeout, seconds
PHAITA_MAX_FILE_SIZE       200 GB      Largest single file accepted from a hub, bytes
PHAITA_MAX_FILES           50000       Most files a repository listing may name
PHAITA_VERIFY_ON_LOAD      unset       ``1``: re-hash every file of the snapshot before
                                       ``from_pretrained`` (warm loads too); a file that no
                                       longer matches its hash is refused. Unset, a warm
                                       load checks sizes, links and blob names, not bytes
PHAITA_TRUST               unset       The site's trust policy for OpenSSF model signatures:
                                       a PEM public key, a ``trust.toml``/``trust.json``, or
                                       a folder of them (keys; root CAs with the signer
                                       subject; Sigstore identities with a staged trust root)
PHAITA_REQUIRE_SIGNATURE   unset       ``1``: a load of a model that is not signed by a
                                       signer PHAITA_TRUST names fails (``SignatureError``)
                                       before ``from_pretrained``
PHAITA_MAX_WORKERS         8           Files of a snapshot fetched at once
PHAITA_MAX_CONNECTIONS     16          Connections one snapshot fetch opens at once, in all
PHAITA_STREAMS_PER_FILE    8           Range streams a large file starts with (1 = off; more while they help)
PHAITA_PARALLEL_THRESHOLD  16 MiB      Files at least this large are fetched in ranges, bytes
HF_ENDPOINT                hub         The Hub or any compatible mirror
PHAITA_ENDPOINTS           unset       Endpoints in order, comma-separated, e.g. the site
                                       mirror then the Hub: a file missing, failing or
                                       corrupt on one is fetched from the next. Set, it
                                       replaces HF_ENDPOINT for the loader. An
                                       ``oci://registry/prefix`` entry is an OCI registry
                                       holding ModelPack artifacts (docs/GUIDE.md)
PHAITA_OCI_USERNAME,       unset       Credentials for OCI registries (HTTP Basic, or sent to
PHAITA_OCI_PASSWORD                    the token endpoint); before ``DOCKER_CONFIG``'s auths
DOCKER_CONFIG              ~/.docker   Folder of docker's ``config.json``: its ``auths`` are
                                       read for OCI registries
PHAITA_OCI_INSECURE_REGISTRIES unset   Registries (``host:port``, comma-separated) reached
                                       over plain http; loopback ones always may be
PHAITA_OCI_CHUNK_SIZE      64 MiB      Upload chunk size of ``phaita models push``, bytes
HF_HUB_OFFLINE             unset       ``1`` = never touch the network (also
                                       ``TRANSFORMERS_OFFLINE``)
HF_HUB_CACHE, HF_HOME,     standard    Cache location, in huggingface_hub's order; the legacy
TRANSFORMERS_CACHE                     ``TRANSFORMERS_CACHE`` is honoured too
HF_TOKEN                   unset       Access token (or the one stored by ``hf auth login``)
PHAITA_LOCKFILE            unset       A lock file (``phaita models lock``): loads by branch
                                       name use the commits it pins, with no network request
                                       on a warm cache
SSL_CERT_FILE,             system      The CA certificates to trust (a PEM file, or a folder
SSL_CERT_DIR,              store       for SSL_CERT_DIR), instead of the system store: the
REQUESTS_CA_BUNDLE,                    first one set, in this order (what a site behind a
CURL_CA_BUNDLE                         TLS-inspecting proxy already sets for pip and curl)
HTTPS_PROXY, HTTP_PROXY,   unset       Proxies (read by the HTTP client); credentials in them
ALL_PROXY, NO_PROXY                    are redacted from every message; an https:// proxy's
                                       certificate is verified with the CA bundle above
PHAITA_GGUF_CACHE          <cache>/.phaita/gguf  GGUF models converted once (a folder;
                                       ``off``: convert on every load)
PHAITA_FULL                unset       ``1``: the long chaos run and slow tests (tools only)
(progress bars)            on          ``HF_HUB_DISABLE_PROGRESS_BARS=1`` (huggingface_hub's
                                       switch) turns them off, in the loader and the CLI
=========================  ==========  =====================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import BadEnvironment

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float = math.inf) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadEnvironment(f"{name}={raw!r} is not a number of seconds/bytes; unset it or set e.g. "
                             f"{name}={default:g}") from None
    if not math.isfinite(value) or value < minimum:
        raise BadEnvironment(f"{name}={raw!r} must be a finite number >= {minimum:g}")
    if value > maximum:
        raise BadEnvironment(f"{name}={raw!r} must be at most {maximum:g}")
    return value


def env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise BadEnvironment(f"{name}={os.environ[name]!r} is not a boolean; use 1 or 0")


def backoff_base() -> float:
    return _env_float("PHAITA_BACKOFF_BASE", 10.0)


def backoff_jitter() -> float:
    return _env_float("PHAITA_BACKOFF_JITTER", 0.5, maximum=1.0)


def max_backoff() -> float:
    return _env_float("PHAITA_MAX_BACKOFF", 600.0)


def max_retry_after() -> float:
    return _env_float("PHAITA_MAX_RETRY_AFTER", 300.0)


def freshness_timeout() -> float:
    return _env_float("PHAITA_FRESHNESS_TIMEOUT", 2.5, minimum=0.01)


def freshness() -> str:
    """``PHAITA_FRESHNESS``: check (default), background or never."""
    value = os.environ.get("PHAITA_FRESHNESS", "").strip().lower() or "check"
    if value not in ("check", "background", "never"):
        raise BadEnvironment(f"PHAITA_FRESHNESS must be check, background or never; got {value!r}")
    return value


def stall_timeout() -> float:
    return _env_float("PHAITA_STALL_TIMEOUT", 10.0, minimum=0.01)


def connect_timeout() -> float:
    return _env_float("PHAITA_CONNECT_TIMEOUT", 10.0, minimum=0.01)


def max_file_size() -> int:
    return int(_env_float("PHAITA_MAX_FILE_SIZE", 200e9, minimum=1))


def max_files() -> int:
    return _env_int("PHAITA_MAX_FILES", 50_000)


def verify_on_load(explicit: bool | None = None) -> bool:
    """``verify_on_load=`` when given, else ``PHAITA_VERIFY_ON_LOAD``."""
    return bool(explicit) if explicit is not None else env_flag("PHAITA_VERIFY_ON_LOAD")


def trust_path() -> Path | None:
    """``PHAITA_TRUST``: the file or folder of the site's signature trust policy (None: no policy)."""
    value = os.environ.get("PHAITA_TRUST", "").strip()
    return Path(value).expanduser() if value else None


def require_signature(explicit: bool | None = None) -> bool:
    """``require_signature=`` when given, else ``PHAITA_REQUIRE_SIGNATURE``."""
    return bool(explicit) if explicit is not None else env_flag("PHAITA_REQUIRE_SIGNATURE")


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadEnvironment(f"{name}={raw!r} is not a whole number; unset it or set e.g. {name}={default}") from None
    if value < minimum:
        raise BadEnvironment(f"{name}={raw!r} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class Parallelism:
    """How much of a snapshot is fetched at once; see the table above."""

    workers: int = 8
    connections: int = 16
    streams_per_file: int = 8
    threshold: int = 16 << 20

    @classmethod
    def from_env(cls) -> "Parallelism":
        connections = _env_int("PHAITA_MAX_CONNECTIONS", 16)
        return cls(workers=min(_env_int("PHAITA_MAX_WORKERS", 8), connections), connections=connections,
                   streams_per_file=_env_int("PHAITA_STREAMS_PER_FILE", 8),
                   threshold=_env_int("PHAITA_PARALLEL_THRESHOLD", 16 << 20))


def endpoint() -> str:
    value = os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    if not value.startswith(("http://", "https://")):
        raise BadEnvironment(f"HF_ENDPOINT={value!r} must be an http:// or https:// URL")
    return value.rstrip("/")


def parse_endpoints(value: object, source: str = "endpoints") -> tuple[str, ...]:
    """A list of http(s) URLs or ``oci://`` registries (or one comma-separated string of them),
    without trailing slashes."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{source} must be a non-empty list of http://, https:// or oci:// URLs; got {value!r}")
    out = []
    for item in items:
        url = item.strip().rstrip("/") if isinstance(item, str) else item
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "oci://")) or len(url) <= 8:
            raise ValueError(f"{source}: {item!r} is not an http://, https:// or oci:// URL")
        if url not in out:
            out.append(url)
    return tuple(out)


def endpoints(explicit: object = None) -> tuple[str, ...]:
    """``endpoints=`` if given, else PHAITA_ENDPOINTS, else HF_ENDPOINT (or the Hub) alone."""
    if explicit is not None:
        return parse_endpoints(explicit)
    raw = os.environ.get("PHAITA_ENDPOINTS", "").strip()
    if raw:
        try:
            return parse_endpoints(raw, "PHAITA_ENDPOINTS")
        except ValueError as exc:  # from the environment: the loader reports it as a setting to fix
            raise BadEnvironment(str(exc)) from None
    return (endpoint(),)


CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass(frozen=True)
class CaBundle:
    """The CA certificates the environment names: which variable, and the file or folder."""

    variable: str
    path: str

    def __str__(self) -> str:
        return f"{self.variable}={self.path}"


def ca_bundle() -> CaBundle | None:
    """The first of SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE that is set.

    None: the system store. A path that does not exist is a ``BadEnvironment`` naming the variable.
    """
    for name in CA_BUNDLE_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if raw:
            path = os.path.expanduser(raw)
            if not os.path.exists(path):
                raise BadEnvironment(f"{name}={raw!r}: no such file or folder; it must name the PEM file of the "
                                 "CA certificates to trust (or unset it to use the system store)")
            return CaBundle(name, path)
    return None


def proxy_settings() -> tuple[tuple[str, str], ...]:
    """The proxy variables that are set (both spellings), as (name, value) pairs."""
    found = []
    for name in PROXY_VARIABLES:
        for key in (name, name.lower()):
            value = os.environ.get(key)
            if value is not None and value.strip():
                found.append((key, value.strip()))
    return tuple(found)


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or the legacy TRANSFORMERS_OFFLINE) switched on."""
    return env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")


def lockfile() -> Path | None:
    """The lock file named by PHAITA_LOCKFILE, or None (unset or empty)."""
    value = os.environ.get("PHAITA_LOCKFILE", "").strip()
    return Path(os.path.expandvars(value)).expanduser() if value else None


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache folder, resolved like huggingface_hub, plus the legacy TRANSFORMERS_CACHE."""
    if explicit is not None:
        if str(explicit).strip() == "":
            raise ValueError("cache_dir must not be empty")
        return Path(explicit).expanduser()
    for name in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(name, "").strip()
        if value:
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME", "").strip()
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


@dataclass(frozen=True)
class Timeouts:
    """Network time limits of one attempt; see the table above."""

    connect: float
    stall: float

    @classmethod
    def from_env(cls) -> "Timeouts":
        return cls(connect=connect_timeout(), stall=stall_timeout())


def gguf_cache(default: Path) -> Path | None:
    """PHAITA_GGUF_CACHE: the folder of converted GGUF models (None: ``off``); unset, ``default``."""
    if (value := os.environ.get("PHAITA_GGUF_CACHE", "").strip()).lower() in ("off", "0", "false", "no"):
        return None
    return Path(os.path.expandvars(value)).expanduser() if value else Path(default)


def full_runs() -> bool:
    """PHAITA_FULL: run the long variants (chaos --full, slow tests), for tools and tests only."""
    return os.environ.get("PHAITA_FULL", "").strip().lower() in ("1", "true", "yes")


def progress_bars_disabled() -> bool:
    """HF_HUB_DISABLE_PROGRESS_BARS set to a true value (huggingface_hub's switch, honoured here too)."""
    return os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in _TRUE


def env_token() -> str | None:
    """HF_TOKEN as set (stripped), or None. (huggingface_hub reads it too; here: to redact and to advise.)"""
    return os.environ.get("HF_TOKEN", "").strip() or None


def endpoints_as_set() -> str:
    """PHAITA_ENDPOINTS exactly as set (stripped), '' when unset: for messages about it."""
    return os.environ.get("PHAITA_ENDPOINTS", "").strip()


def endpoint_as_set() -> str:
    """HF_ENDPOINT exactly as set (stripped, no trailing '/'), '' when unset: for messages about it.

    :func:`endpoint` is the validated value to connect to.
    """
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")


def variables_set(names: Iterable[str]) -> dict[str, str]:
    """``{name: value}`` of the variables among ``names`` that are set and not blank (for reports)."""
    return {name: os.environ[name] for name in names if os.environ.get(name, "").strip()}


# --------------------------------------------------------------------------- OCI registries


def oci_credentials() -> tuple[str, str] | None:
    """PHAITA_OCI_USERNAME and PHAITA_OCI_PASSWORD, both set, or None (one without the other is an error)."""
    user = os.environ.get("PHAITA_OCI_USERNAME", "").strip()
    password = os.environ.get("PHAITA_OCI_PASSWORD", "")
    if not user and not password:
        return None
    if not user or not password:
        missing = "PHAITA_OCI_PASSWORD" if user else "PHAITA_OCI_USERNAME"
        raise BadEnvironment(f"{missing} is not set: set both PHAITA_OCI_USERNAME and PHAITA_OCI_PASSWORD, or neither")
    return user, password


def docker_config_file() -> Path:
    """docker's ``config.json``: in ``DOCKER_CONFIG`` when set, else ``~/.docker``."""
    folder = os.environ.get("DOCKER_CONFIG", "").strip()
    return (Path(folder).expanduser() if folder else Path("~/.docker").expanduser()) / "config.json"


def oci_insecure_registries() -> frozenset[str]:
    """PHAITA_OCI_INSECURE_REGISTRIES: ``host[:port]`` names allowed over plain http (lower case)."""
    raw = os.environ.get("PHAITA_OCI_INSECURE_REGISTRIES", "")
    return frozenset(item.strip().lower() for item in raw.split(",") if item.strip())


def oci_chunk_size() -> int:
    """PHAITA_OCI_CHUNK_SIZE: bytes per upload PATCH (at least 64 KiB)."""
    return _env_int("PHAITA_OCI_CHUNK_SIZE", 64 << 20, minimum=64 << 10)
