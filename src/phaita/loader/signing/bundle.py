"""One OpenSSF model-signing bundle checked against the trust policy: the only code that calls the
``model-signing`` library to verify, and the one boundary where its exceptions are translated.

The library (the format's reference) checks the DSSE signature, the key or the certificate chain and
turns the in-toto payload into a manifest. What it does not check, this module does: a certificate
leaf valid *now* (the library checks the chain as of the leaf's start date, so an expired leaf
passes), the signer subject the policy names (it checks none), and a Sigstore trust root staged on
disk (offline). Comparing the signed files with the snapshot is :mod:`.check`'s job.

Every failure becomes a :class:`Refusal` with its own ``kind`` (``unreadable``, ``bad-signature``,
``wrong-key``, ``untrusted-ca``, ``expired``, ``wrong-subject``, ``unsupported``, ``no-library``):
fail closed, whatever the library raised (``ValueError``, ``InvalidSignature``,
``X509StoreContextError``, ``AttributeError``, ``KeyError``...).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .policy import TrustedCA, TrustPolicy

KEY, CERTIFICATE, SIGSTORE = "key", "certificate", "sigstore"


class Refusal(Exception):
    """A signature phaita does not accept; ``kind`` says which check failed, ``signer`` who it names."""

    def __init__(self, kind: str, detail: str, signer: str = "unknown signer") -> None:
        super().__init__(detail)
        self.kind, self.detail, self.signer = kind, detail, signer


@dataclass
class Signed:
    """What a signature says, once its signature (and, with a policy, its signer) is checked."""

    method: str  # key | certificate | sigstore
    signer: str  # a person-readable name: the key's policy name and hash, or the certificate subject
    trusted: bool  # False: no policy was given (the signer is only named, not trusted)
    subject_name: str  # the in-toto subject's name (model-signing: the signed folder's name)
    resources: dict[str, str] = field(default_factory=dict)  # signed path -> sha256 hex
    ignore_paths: tuple[str, ...] = ()
    serialization: dict[str, Any] = field(default_factory=dict)


def library() -> Any:
    """The ``model_signing`` internals phaita uses, or a ``no-library`` refusal naming the extra."""
    try:
        from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore, sign_sigstore_pb, signing
    except ImportError as exc:
        raise Refusal("no-library", f"the model-signing package cannot be imported ({exc}); install "
                      "phaita[signing] (model-signing and pyopenssl)") from None
    return sign_certificate, sign_ec_key, sign_sigstore, sign_sigstore_pb, signing


def method_of(doc: dict[str, Any]) -> str:
    material = doc.get("verificationMaterial") or {}
    if "publicKey" in material:
        return KEY
    if "x509CertificateChain" in material:
        return CERTIFICATE
    if "certificate" in material:
        return SIGSTORE
    raise Refusal("unreadable", "the bundle has no verification material (public key, certificate chain or "
                  "Sigstore certificate)")


def parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal("unreadable", f"not a JSON Sigstore bundle ({exc})") from None
    if not isinstance(doc, dict) or "dsseEnvelope" not in doc:
        raise Refusal("unreadable", "not an OpenSSF model-signing bundle (no DSSE envelope)")
    return doc


def verify(data: bytes, policy: TrustPolicy | None) -> Signed:
    """Check one bundle; with ``policy`` its signer must be one the policy names. Raises :class:`Refusal`."""
    doc = parse(data)
    method = method_of(doc)
    signer = _signer_name(doc, method, policy)
    try:
        if policy is None:
            return _untrusted(doc, method, signer)
        if method == KEY:
            return _with_key(doc, policy, signer)
        if method == CERTIFICATE:
            return _with_ca(doc, policy, signer)
        return _with_sigstore(doc, policy, signer)
    except Refusal:
        raise
    except Exception as exc:  # the library's many types: InvalidSignature, X509StoreContextError, ValueError...
        raise _translate(exc, signer) from None


def _translate(exc: Exception, signer: str) -> Refusal:
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300]
    if name == "InvalidSignature":
        return Refusal("bad-signature", "the signature does not verify: the bundle (its payload or its signature) "
                       "was changed after signing, or it was signed with another key", signer)
    if name == "X509StoreContextError":
        return Refusal("untrusted-ca", f"the signer's certificate does not chain to a CA the trust policy names "
                       f"({text})", signer)
    if "Key mismatch" in text:
        return Refusal("wrong-key", "the bundle was signed with a key the trust policy does not name", signer)
    return Refusal("bad-signature", f"the signature cannot be verified ({name}: {text or 'no detail'})", signer)


# --------------------------------------------------------------------------- the three methods


def _pb_signature(doc: dict[str, Any]) -> Any:
    """The library's protobuf bundle (as its ``Signature.read`` builds it, from bytes already read)."""
    from sigstore_models.bundle import v1 as bundle_pb

    _, _, _, sigstore_pb, _ = library()
    doc = json.loads(json.dumps(doc))
    material = doc["verificationMaterial"]
    material.setdefault("tlogEntries", [])
    if "publicKey" in material:
        material["publicKey"].setdefault("hint", None)
        for k in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(k, None)
    return sigstore_pb.Signature(bundle_pb.Bundle.from_dict(doc))


def _with_key(doc: dict[str, Any], policy: TrustPolicy, signer: str) -> Signed:
    _, sign_ec_key, _, _, _ = library()
    hint = (doc["verificationMaterial"]["publicKey"] or {}).get("hint")
    candidates = [k for k in policy.keys if not hint or k.hint == hint]
    if not candidates:
        raise Refusal("wrong-key", "signed with a key the trust policy does not name (trusted keys: "
                      + (", ".join(k.name for k in policy.keys) or "none") + ")", signer)
    from cryptography.hazmat.primitives import serialization

    signature = _pb_signature(doc)
    last: Exception | None = None
    for key in candidates:
        verifier = _KeyVerifier.make(sign_ec_key, serialization.load_pem_public_key(key.pem))
        try:
            manifest = verifier.verify(signature)
        except Exception as exc:  # translated below: every candidate failed
            last = exc
            continue
        return _signed(manifest, KEY, f"key {key.name} (sha256 {key.hint[:16]}...)", True)
    assert last is not None
    raise _translate(last, signer)


class _KeyVerifier:
    @staticmethod
    def make(sign_ec_key: Any, public_key: Any) -> Any:
        """The library's EC key verifier for a key already loaded (it only takes a path)."""

        class Verifier(sign_ec_key.Verifier):
            def __init__(self, key: Any) -> None:  # the library's __init__ only loads the file into _public_key
                self._public_key = key

        return Verifier(public_key)


def _with_ca(doc: dict[str, Any], policy: TrustPolicy, signer: str) -> Signed:
    sign_certificate, _, _, _, _ = library()
    from cryptography import x509

    if not policy.cas:
        raise Refusal("untrusted-ca", "signed with a certificate, and the trust policy names no CA", signer)
    leaf = x509.load_der_x509_certificate(_chain(doc)[0])
    signature = _pb_signature(doc)
    failures: list[Exception] = []
    for ca in policy.cas:
        try:
            manifest = sign_certificate.Verifier([ca.path]).verify(signature)
        except Exception as exc:  # another CA may be the one
            failures.append(exc)
            continue
        _leaf_valid_now(leaf, signer)
        _subject_named(leaf, ca, signer)
        return _signed(manifest, CERTIFICATE, f"{signer} (CA {ca.name})", True)
    chain_errors = [e for e in failures if type(e).__name__ == "X509StoreContextError"]
    if len(chain_errors) == len(failures):
        raise Refusal("untrusted-ca", f"the signer's certificate (issued by {as_written(leaf.issuer)}) does not "
                      "chain to a CA the trust policy names (" + ", ".join(c.name for c in policy.cas) + ")", signer)
    raise _translate(next(e for e in failures if type(e).__name__ != "X509StoreContextError"), signer)


def _leaf_valid_now(leaf: Any, signer: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    if now > leaf.not_valid_after_utc:
        raise Refusal("expired", f"the signer's certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                      signer)
    if now < leaf.not_valid_before_utc:
        raise Refusal("expired", f"the signer's certificate is not valid before "
                      f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", signer)


def subject_names(leaf: Any) -> list[str]:
    """The leaf's RFC 4514 subject, then every SAN value (email, URI, DNS name)."""
    from cryptography import x509

    names = [as_written(leaf.subject), leaf.subject.rfc4514_string()]  # CN first, and RFC 4514's reversed order
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
        names += [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
        names += [str(v) for v in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return names


def as_written(name: Any) -> str:
    """A subject in the order it was built (``CN=...,O=...``, as people write it and ``openssl`` shows it)."""
    return ",".join(rdn.rfc4514_string() for rdn in name.rdns)


def _subject_named(leaf: Any, ca: TrustedCA, signer: str) -> None:
    if not set(subject_names(leaf)) & set(ca.subjects):
        raise Refusal("wrong-subject", f"the signer's certificate is for {as_written(leaf.subject)}, and the trust "
                      f"policy accepts from CA {ca.name} only: {', '.join(ca.subjects)}", signer)


def _with_sigstore(doc: dict[str, Any], policy: TrustPolicy, signer: str) -> Signed:
    _, _, sign_sigstore, _, _ = library()
    if not policy.sigstore:
        raise Refusal("untrusted-ca", "signed with Sigstore, and the trust policy names no Sigstore identity", signer)
    from sigstore import models as sigstore_models

    signature = sign_sigstore.Signature(sigstore_models.Bundle.from_json(json.dumps(doc)))
    last: Exception | None = None
    for entry in policy.sigstore:
        if entry.trust_config is None:
            raise Refusal("unsupported", f"Sigstore identity {entry.identity}: the policy stages no trust root "
                          "(trust_config = \"...\"), which an offline check needs", signer)
        try:
            verifier = sign_sigstore.Verifier(identity=entry.identity, oidc_issuer=entry.issuer,
                                              trust_config=entry.trust_config)
            manifest = verifier.verify(signature)
        except Exception as exc:  # the next identity may be the one
            last = exc
            continue
        return _signed(manifest, SIGSTORE, f"Sigstore {entry.identity} ({entry.issuer})", True)
    raise _translate(last, signer) if last else Refusal("untrusted-ca", "no Sigstore identity matched", signer)


def _untrusted(doc: dict[str, Any], method: str, signer: str) -> Signed:
    """No policy: the payload is read; a certificate bundle's signature is checked with its own leaf key
    (a key bundle names only the key's hash, so it cannot be checked without the key)."""
    _, sign_ec_key, _, sigstore_pb, signing = library()
    envelope = doc["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    if method == CERTIFICATE:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        key = x509.load_der_x509_certificate(_chain(doc)[0]).public_key()
        key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), sigstore_pb.pae(payload),
                   ec.ECDSA(sign_ec_key.get_ec_key_hash(key)))
    statement = json.loads(payload)
    if statement.get("_type") != "https://in-toto.io/Statement/v1":
        raise Refusal("unreadable", "the payload is not an in-toto Statement v1", signer)
    return _signed(signing.dsse_payload_to_manifest(statement), method, signer, False)


# --------------------------------------------------------------------------- helpers


def _chain(doc: dict[str, Any]) -> list[bytes]:
    certs = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    return [base64.b64decode(c["rawBytes"]) for c in certs]


def _signer_name(doc: dict[str, Any], method: str, policy: TrustPolicy | None) -> str:
    """Who the bundle says signed it, before anything is checked (for messages and ``status``)."""
    try:
        material = doc["verificationMaterial"]
        if method == KEY:
            hint = (material.get("publicKey") or {}).get("hint") or ""
            named = [k.name for k in (policy.keys if policy else ()) if hint and k.hint == hint]
            return f"key {named[0]} (sha256 {hint[:16]}...)" if named else f"key sha256 {hint[:16] or '?'}..."
        from cryptography import x509

        raw = _chain(doc)[0] if method == CERTIFICATE else base64.b64decode(material["certificate"]["rawBytes"])
        leaf = x509.load_der_x509_certificate(raw)
        names = subject_names(leaf)
        return names[0] if method == CERTIFICATE or len(names) < 3 else names[2]  # Sigstore: the SAN identity
    except Exception:  # a malformed bundle: the check itself reports it
        return "unknown signer"


def _signed(manifest: Any, method: str, signer: str, trusted: bool) -> Signed:
    resources = {}
    for rd in manifest.resource_descriptors():
        if rd.digest.algorithm != "sha256":
            raise Refusal("unsupported", f"{rd.identifier} is signed with {rd.digest.algorithm}; phaita checks "
                          "sha256 signatures (model_signing's default)", signer)
        resources[str(rd.identifier)] = rd.digest.digest_hex
    serialization = dict(manifest.serialization_type)
    if serialization.get("method") != "files":
        raise Refusal("unsupported", f"the signature uses {serialization.get('method')!r} serialization; phaita checks "
                      "per-file signatures (model_signing's default); re-sign without shards", signer)
    ignored = tuple(str(p) for p in serialization.get("ignore_paths", ()))
    return Signed(method, signer, trusted, manifest.model_name, resources, ignored, serialization)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
