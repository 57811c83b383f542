"""``phaita models doctor`` for an ``oci://`` endpoint: reachable, auth, the probe model, Range on a blob."""

from __future__ import annotations

import time

from phaita.loader.errors import RegistryError, redact


def probe_registry(endpoint: str, models: list[str], timeout: float) -> tuple[bool, str, str]:
    """One check of a registry endpoint: (ok, detail, advice) for the doctor's ``Check``."""
    from phaita.loader.http.deadline import Deadline
    from phaita.loader.oci import modelpack
    from phaita.loader.oci.client import Registry
    from phaita.loader.oci.pull import read_model
    from phaita.loader.oci.reference import for_model, parse

    t0 = time.monotonic()
    ms = lambda: f"{(time.monotonic() - t0) * 1000:.0f} ms"  # noqa: E731
    deadline = Deadline.after(timeout)
    try:
        base = parse(endpoint, what="endpoint", repository_required=False)
        registry = Registry(base.host)
        registry.send("GET", base.repository or "_", "/v2/", deadline=deadline, ok=(200, 401), what="the registry API")
    except Exception as exc:
        return (False, f"cannot reach the registry {endpoint} ({type(exc).__name__}: "
                                  f"{redact(' '.join(str(exc).split())[:200])}) after {ms()}",
                     "check the host and port, the CA bundle (SSL_CERT_FILE) for its certificate, and "
                     "PHAITA_OCI_INSECURE_REGISTRIES for a plain-http registry off loopback")
    auth = registry.credentials.describe()
    absent = []
    for probe in models:
        ref = for_model(endpoint, probe, "main")
        try:
            manifest = read_model(registry, ref, deadline)
        except RegistryError as exc:
            if exc.kind == "access_denied":
                return (False, f"{endpoint}: HTTP {exc.status} for {ref} ({auth})",
                             "give credentials that may pull: PHAITA_OCI_USERNAME/PHAITA_OCI_PASSWORD or "
                             "`docker login` (DOCKER_CONFIG)")
            absent.append(f"{probe}: {exc.code or exc.kind}")
            continue
        raw = [l for l in manifest.layers if l.fmt == "raw" and l.size >= 2]
        if not raw:
            return (True, f"{endpoint} answered in {ms()} ({auth}); {probe} has no blob to probe Range", "")
        layer = min(raw, key=lambda l: l.size)
        response = registry.send("GET", ref.repository, f"/v2/{ref.repository}/blobs/{layer.digest}",
                                 deadline=deadline, headers={"range": "bytes=1-"}, ok=(200, 206), follow=True,
                                 what="the Range probe")
        ranged = response.status_code == 206 and len(response.content) == layer.size - 1
        return (ranged, f"{endpoint} answered in {ms()} ({auth}); {probe} is there "
                                   f"({len(manifest.layers)} layers, {modelpack.ARTIFACT_TYPE.split('.')[-2]}); "
                                   + ("Range honoured (206)" if ranged else f"Range not honoured (HTTP "
                                                                            f"{response.status_code})"),
                     "" if ranged else "a broken transfer restarts from byte 0: let Range pass through the proxy")
    return (True, f"{endpoint} answered in {ms()} ({auth}), but holds none of the probe models "
                             f"({'; '.join(absent)}); push them: phaita models push MODEL {endpoint}", "")
