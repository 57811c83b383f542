"""A model's signature as an OCI referrer (the layout agreed with the signing work).

The referrer is a manifest with ``artifactType`` ``application/vnd.dev.sigstore.bundle.v0.3+json``,
``subject`` = the model manifest's descriptor, the empty config, and one layer holding the ``model.sig``
bytes (``org.opencontainers.image.title: model.sig``). Registries without the referrers API
(distribution 2.8) are served by the OCI 1.1 referrers tag fallback: an image index tagged
``sha256-<hex of the model manifest digest>`` listing the referrers; it is updated, never replaced, so
other referrers stay listed. :func:`fetch_signature` asks the referrers API first, then the tag.
The signing code reads and writes only ``RepoCache.signature_path(commit)``.
"""

from __future__ import annotations

import hashlib
import json

from ..errors import RegistryError
from ..http.deadline import Deadline
from . import modelpack, upload
from .client import Registry
from .reference import Reference, parse

SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def fallback_tag(manifest_digest: str) -> str:
    return manifest_digest.replace(":", "-")


def _registry(ref: Reference | str, registry: Registry | None) -> tuple[Reference, Registry]:
    ref = parse(ref, what="reference") if isinstance(ref, str) else ref
    return ref, registry or Registry(ref.host)


def _put_manifest(registry: Registry, repository: str, target: str, body: bytes, media: str,
                  deadline: Deadline) -> None:
    registry.send("PUT", repository, f"/v2/{repository}/manifests/{target}", deadline=deadline,
                  actions=upload.PUSH, headers={"content-type": media}, content=body, ok=(201,),
                  what=f"the manifest {target}")


def push_signature(ref: Reference | str, manifest_digest: str, sig_bytes: bytes, *,
                   registry: Registry | None = None, deadline: Deadline | None = None) -> str:
    """Store ``sig_bytes`` as a referrer of ``manifest_digest`` in ``ref``'s repository; its digest."""
    ref, registry = _registry(ref, registry)
    deadline = deadline or Deadline.after(120)
    repo = ref.repository
    head = registry.send("HEAD", repo, f"/v2/{repo}/manifests/{manifest_digest}", deadline=deadline,
                         actions=upload.PUSH, headers={"accept": modelpack.MANIFEST_MEDIA_TYPE},
                         what="the signed manifest")
    subject = {"mediaType": modelpack.MANIFEST_MEDIA_TYPE, "digest": manifest_digest,
               "size": int(head.headers.get("content-length", "0"))}
    sig_digest = "sha256:" + hashlib.sha256(sig_bytes).hexdigest()
    for data, digest in ((EMPTY_CONFIG, EMPTY_DIGEST), (sig_bytes, sig_digest)):
        if not upload.exists(registry, repo, digest, deadline):
            upload.put_bytes(registry, repo, data, digest, deadline)
    referrer = _canonical({
        "schemaVersion": 2, "mediaType": modelpack.MANIFEST_MEDIA_TYPE, "artifactType": SIGSTORE_BUNDLE,
        "config": {"mediaType": modelpack.EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": SIGSTORE_BUNDLE, "digest": sig_digest, "size": len(sig_bytes),
                    "annotations": {"org.opencontainers.image.title": "model.sig"}}],
        "subject": subject})
    referrer_digest = "sha256:" + hashlib.sha256(referrer).hexdigest()
    _put_manifest(registry, repo, referrer_digest, referrer, modelpack.MANIFEST_MEDIA_TYPE, deadline)
    index = _fallback_index(registry, repo, manifest_digest, deadline) or {
        "schemaVersion": 2, "mediaType": modelpack.INDEX_MEDIA_TYPE, "manifests": []}
    entries = [m for m in index["manifests"] if isinstance(m, dict) and m.get("digest") != referrer_digest]
    entries.append({"mediaType": modelpack.MANIFEST_MEDIA_TYPE, "digest": referrer_digest, "size": len(referrer),
                    "artifactType": SIGSTORE_BUNDLE})
    index["manifests"] = entries
    _put_manifest(registry, repo, fallback_tag(manifest_digest), _canonical(index), modelpack.INDEX_MEDIA_TYPE,
                  deadline)
    return referrer_digest


def _fallback_index(registry: Registry, repo: str, manifest_digest: str, deadline: Deadline) -> dict | None:
    response = registry.send("GET", repo, f"/v2/{repo}/manifests/{fallback_tag(manifest_digest)}",
                             deadline=deadline, headers={"accept": modelpack.INDEX_MEDIA_TYPE}, ok=(200, 404),
                             what="the referrers tag")
    if response.status_code == 404:
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("manifests"), list) else None


def _referrers(registry: Registry, repo: str, manifest_digest: str, deadline: Deadline) -> list[dict]:
    response = registry.send("GET", repo, f"/v2/{repo}/referrers/{manifest_digest}", deadline=deadline,
                             headers={"accept": modelpack.INDEX_MEDIA_TYPE}, ok=(200, 404, 400, 405),
                             what="the referrers API")
    data = None
    if response.status_code == 200:
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
    if not isinstance(data, dict) or not isinstance(data.get("manifests"), list):
        data = _fallback_index(registry, repo, manifest_digest, deadline)
    return [m for m in (data or {}).get("manifests", []) if isinstance(m, dict)]


def fetch_signature(ref: Reference | str, manifest_digest: str, *, registry: Registry | None = None,
                    deadline: Deadline | None = None) -> bytes | None:
    """The newest ``model.sig`` referring to ``manifest_digest``, its digest checked; None if there is none."""
    ref, registry = _registry(ref, registry)
    deadline = deadline or Deadline.after(60)
    repo = ref.repository
    found = [m for m in _referrers(registry, repo, manifest_digest, deadline)
             if m.get("artifactType") == SIGSTORE_BUNDLE and isinstance(m.get("digest"), str)]
    if not found:
        return None
    body, _, _ = registry.get_manifest(Reference(ref.host, repo, None, found[-1]["digest"]),
                                       deadline)
    manifest = json.loads(body)
    if (manifest.get("subject") or {}).get("digest") != manifest_digest:
        raise RegistryError(f"{ref}: a referrer does not refer to {manifest_digest}", kind="bad_listing")
    layer = next((l for l in manifest.get("layers", []) if l.get("mediaType") == SIGSTORE_BUNDLE), None)
    if layer is None:
        return None
    return registry.get_small_blob(repo, layer["digest"], deadline, max_bytes=16 << 20)
