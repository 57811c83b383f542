"""The checks of ``phaita models doctor``: one :class:`Check` each, OK or FAIL with advice.

Every check catches its own errors: doctor reports a broken set-up, it never crashes on one.
The token is only ever reported as present or absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from phaita.loader import config, redact

from .check import Check

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_PROBE = "microsoft/deberta-v3-base"


def _guard(name: str, func: Callable[[], Check]) -> Check:
    try:
        return func()
    except Exception as exc:  # a check that cannot run is a failed check, with the reason
        return Check(name, False, redact(f"{type(exc).__name__}: {exc}"), "see the message above")


def run_checks(probe_model: Optional[str] = None, timeout: float = 5.0, profile: Optional[str] = None) -> list[Check]:
    from .doctor_mirror import check_listing, check_resume, probe_choice
    from .signature_report import check_signature_policy

    choice = probe_choice(probe_model, profile)  # the models the endpoint checks ask for, and why those
    cache = _guard("cache directory", check_cache_writable)
    return [
        _guard("endpoint reachable", lambda: check_reachable(choice, timeout)),
        _guard("endpoint variable", check_endpoint_variable),
        _guard("TLS certificate", lambda: check_tls(timeout)),
        _guard("proxy variables", check_proxies),
        _guard("token", check_token),
        cache,
        _guard("free disk", lambda: check_disk(profile, cache.ok)),
        _guard("offline mode", check_offline),
        _guard("signature policy", check_signature_policy),
        _guard("mirror listing", lambda: check_listing(timeout, choice)),
        _guard("mirror resume", lambda: check_resume(timeout, choice)),
    ]


def _offline() -> bool:
    try:
        return config.offline_mode()
    except ValueError:
        return False  # reported by check_offline


def check_reachable(choice, timeout: float) -> Check:
    """Probe each endpoint the loader uses (PHAITA_ENDPOINTS, else HF_ENDPOINT); OK when all answer."""
    name = "endpoint reachable"
    endpoints = config.endpoints()
    if _offline():
        return Check(name, True, f"{', '.join(endpoints)} not contacted: offline mode is on")
    checks = [_probe_endpoint(name, url, choice, timeout) for url in endpoints]
    if len(checks) == 1:
        return checks[0]
    return Check(name, all(c.ok for c in checks), " | ".join(c.detail for c in checks),
                 "; ".join(dict.fromkeys(c.advice for c in checks if c.advice)))


def _probe_endpoint(name: str, endpoint: str, choice, timeout: float) -> Check:
    """GET the revision API of the probe models in turn (a 404: the next one) within ``timeout``."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers

    from phaita.loader.config import Timeouts
    from phaita.loader.http.deadline import Deadline, stream

    if endpoint.startswith("oci://"):  # a registry: its own probe (reachable, auth, Range)
        from .doctor_oci import probe_registry
        return Check(name, *probe_registry(endpoint, choice.models or [DEFAULT_PROBE], timeout))
    t0 = time.monotonic()
    deadline = Deadline.after(timeout)
    ms = lambda: f"{(time.monotonic() - t0) * 1000:.0f} ms"  # noqa: E731
    advice = ("check the network, the proxy variables (HTTPS_PROXY, NO_PROXY) and HF_ENDPOINT; "
              "on a site without network set HF_HUB_OFFLINE=1 and use models pulled beforehand")
    absent = []
    for probe in choice.models or [DEFAULT_PROBE]:
        url = f"{endpoint}/api/models/{probe}/revision/main"
        try:
            with stream("GET", url, headers=build_hf_headers(), deadline=deadline,
                        timeouts=Timeouts(connect=timeout, stall=timeout), what="endpoint probe") as response:
                body = response.read()
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status is not None and status < 500:
                absent.append(f"{probe}: HTTP {status}")
                if status == 404 and not deadline.expired():
                    continue  # not this model: the next one
                break
            return Check(name, False, f"{endpoint} answered HTTP {status} in {ms()}",
                         "the hub or a proxy in between is failing; try again later, or use a mirror (HF_ENDPOINT)")
        except Exception as exc:
            reason = redact(" ".join(str(exc).split())[:200]) or type(exc).__name__
            return Check(name, False, f"cannot reach {endpoint} ({type(exc).__name__}: {reason}) after {ms()}", advice)
        try:
            commit = json.loads(body).get("sha", "?")
        except (ValueError, AttributeError):
            return Check(name, False, f"{endpoint} answered in {ms()}, but not with the Hub API (JSON expected)",
                         "a captive portal or proxy login page is in the way, or HF_ENDPOINT is not a Hub mirror")
        return Check(name, True, f"{endpoint} answered HTTP 200 in {ms()} (probe model {probe}, {choice.why}: "
                                 f"at {str(commit)[:12]})")
    return Check(name, True, f"{endpoint} answered in {ms()}, but carries none of the probe models "
                             f"({'; '.join(absent)}; {choice.why})")


def check_endpoint_variable() -> Check:
    name = "endpoint variable"
    listed = config.endpoints_as_set()
    if listed:  # set, it replaces HF_ENDPOINT for the loader
        try:
            endpoints = config.endpoints()
        except ValueError as exc:
            return Check(name, False, str(exc), "set PHAITA_ENDPOINTS to comma-separated base URLs, e.g. "
                                                "http://mirror.local:8080,https://huggingface.co")
        return Check(name, True, f"PHAITA_ENDPOINTS={','.join(endpoints)} (in this order; HF_ENDPOINT is not used)")
    raw = config.endpoint_as_set()
    try:
        endpoint = config.endpoint()
    except ValueError as exc:
        return Check(name, False, str(exc), "set HF_ENDPOINT to the mirror's base URL, e.g. http://mirror.local:8080")
    if raw:
        return Check(name, True, f"HF_ENDPOINT={endpoint} (a mirror: every command uses it)")
    return Check(name, True, f"HF_ENDPOINT unset: {endpoint}")


def _mask(value: str) -> str:
    return re.sub(r"//[^/@\s]*@", "//***@", value)  # user:password in a proxy URL


def check_proxies() -> Check:
    name = "proxy variables"
    found, bad = [], []
    for var in PROXY_VARS:
        for key, value in config.variables_set((var, var.lower())).items():
            found.append(f"{key}={_mask(value)}")
            if var != "NO_PROXY" and "://" not in value:
                bad.append(key)
    if bad:
        return Check(name, False, ", ".join(found),
                     f"{', '.join(bad)} must be a URL with a scheme, e.g. http://proxy.local:3128")
    return Check(name, True, ", ".join(found) if found else "none set (direct connection)")


def check_token() -> Check:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        return Check("token", True, "none (public models only; gated models need HF_TOKEN or `hf auth login`)")
    source = "HF_TOKEN" if config.env_token() else "stored login"
    return Check("token", True, f"present (from {source}; not shown)")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_cache_writable() -> Check:
    """Create the cache folder (when missing) and write a file in it, as a download would; what this
    check created is removed again."""
    name = "cache directory"
    cache = config.cache_dir()
    advice = "set HF_HUB_CACHE (or HF_HOME) to a writable folder, or fix its permissions"
    if cache.exists() and not cache.is_dir():
        return Check(name, False, f"{cache} exists but is not a folder", advice)
    base = _existing_ancestor(cache)
    if not base.is_dir():
        return Check(name, False, f"{cache} cannot be created: {base} is a file where a folder should be", advice)
    created = [p for p in (cache, *cache.parents) if not p.exists()]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, prefix=".phaita-doctor-") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        what = "cannot be created" if created else "is not writable"
        return Check(name, False, f"{cache} {what} ({type(exc).__name__}: {exc.strerror or exc})", advice)
    finally:
        for folder in created:  # deepest first: leave no trace of the probe
            try:
                folder.rmdir()
            except OSError:
                break
    if created:
        return Check(name, True, f"{cache} can be created and written (tried: created, wrote a file, removed)")
    return Check(name, True, f"{cache} is writable (tried: wrote a file)")


def check_disk(profile: Optional[str], cache_ok: bool = True) -> Check:
    from phaita.data.manifest import load_manifest
    from phaita.loader import is_model_cached

    from .output import human_size

    name = "free disk"
    cache = config.cache_dir()
    specs = load_manifest().unique_models(profile)

    def cached(name: str, spec) -> bool:
        try:
            return is_model_cached(name, model_type=spec.model_type, gguf_file=spec.gguf_file, cache_dir=str(cache))
        except Exception:  # e.g. a pickle-only snapshot: not usable as is, so not counted as cached
            return False

    missing = [s for s in specs if not any(cached(c, s) for c in s.candidates)]
    need = int(sum(s.size_mb for s in missing) * 1e6)
    base = _existing_ancestor(cache)
    free = shutil.disk_usage(base).free
    label = profile or "default"
    detail = (f"{human_size(free)} free at {base}; the manifest's {label} models need about {human_size(need)} "
              f"more ({len(missing)} of {len(specs)} not cached)")
    if not cache_ok:  # free space where no cache can be made is no answer (e.g. 0 B on /proc)
        return Check(name, False, f"{human_size(free)} free at {base}, but the cache folder cannot be made there "
                     f"(see 'cache directory'); the manifest's {label} models need about {human_size(need)}",
                     "put the cache on a writable disk with room: HF_HUB_CACHE or HF_HOME")
    if free < need:
        return Check(name, False, detail, "free space on that disk, or move the cache to a larger one "
                     "(HF_HUB_CACHE or HF_HOME); `phaita models status` shows what the cache holds")
    return Check(name, True, detail)


def check_offline() -> Check:
    name = "offline mode"
    shown = ", ".join(f"{k}={v}" for k, v in config.variables_set(OFFLINE_VARS).items()) or \
        f"{' and '.join(OFFLINE_VARS)} unset"
    try:
        on = config.offline_mode()
    except ValueError as exc:
        return Check(name, False, str(exc), "use 1 (offline) or 0 (online)")
    if on:
        return Check(name, True, f"ON ({shown}): no network at all; only models already in the cache load")
    return Check(name, True, f"off ({shown})")


def check_tls(timeout: float) -> Check:
    """For each https endpoint: the certificate chain it presents (subject and issuer of each), and
    whether the loader trusts it."""
    from phaita.loader.http import tls

    name = "TLS certificate"
    endpoints = config.endpoints()
    if _offline():
        return Check(name, True, f"{', '.join(endpoints)} not contacted: offline mode is on")
    secure = [e for e in endpoints if e.startswith("https://")]
    if not secure:
        return Check(name, True, f"{', '.join(endpoints)} is plain HTTP: no certificate, traffic not encrypted")
    source = tls.trusted_from(config.ca_bundle())
    parts, advice = [], ""
    for endpoint in secure:
        report = tls.inspect_chain(endpoint + "/", timeout)
        chain = " <- ".join(f"[{i}] {cert.describe()}" for i, cert in enumerate(report.chain))
        where = f"{endpoint}: " if len(endpoints) > 1 else ""
        if report.trusted:
            parts.append(f"{where}trusted (CAs from {source}); chain: {chain}")
        elif report.trusted is False:
            parts.append(f"{where}NOT trusted ({report.problem}); chain: {chain}; CAs from {source}")
            advice = ("trust the CA at the end of the chain: SSL_CERT_FILE=/path/ca.pem (or REQUESTS_CA_BUNDLE / "
                      "CURL_CA_BUNDLE when SSL_CERT_FILE is unset), or add it to the system store "
                      "(/usr/local/share/ca-certificates/, then update-ca-certificates)")
        else:
            parts.append(f"{where}could not check the certificate of {endpoint}: {report.problem}"
                         + (f"; chain: {chain}" if chain else ""))
            advice = advice or "see 'endpoint reachable'; a proxy in the way needs HTTPS_PROXY"
    return Check(name, not advice, " | ".join(parts), advice)
