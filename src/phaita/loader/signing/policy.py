"""The site's trust policy (``PHAITA_TRUST``): which signers a model's signature may come from.

``PHAITA_TRUST`` names a file or a folder:

* a PEM file holding one or more EC public keys (``-----BEGIN PUBLIC KEY-----``): each is a trusted key;
* a policy file, ``*.toml`` or ``*.json``, with any of these tables (paths relative to the file)::

      [[key]]                       # a trusted public key
      file = "release.pub.pem"
      name = "release key"          # optional: how messages and `phaita models status` name it

      [[ca]]                        # root CAs, and the signer subjects they may certify
      file = "site-root-ca.pem"
      subjects = ["CN=Model Release,O=Example Hospital"]   # RFC 4514 subject, or a SAN value

      [[sigstore]]                  # Sigstore keyless: identity, issuer, staged trust root (offline)
      identity = "release@example.org"
      issuer = "https://accounts.example.org"
      trust_config = "trust_config.json"

* a folder: its ``trust.toml`` or ``trust.json`` (if any) plus every ``*.pem`` there that holds only
  public keys. A CA certificate is never trusted on its own (it would trust anyone it certifies): a
  ``*.pem`` holding a certificate that no ``[[ca]]`` entry names is an error.

Parsing reads only small files and never imports ``model-signing``; the policy's ``digest`` covers
everything read, so a changed policy invalidates every recorded check.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config

POLICY_NAMES = ("trust.toml", "trust.json")
_MAX_FILE = 4 << 20


class PolicyError(ValueError):
    """``PHAITA_TRUST`` names something that is not a usable trust policy; the message says what."""


@dataclass(frozen=True)
class TrustedKey:
    name: str
    path: Path
    pem: bytes  # one SubjectPublicKeyInfo PEM
    hint: str  # sha256 of the PEM: what model-signing writes into a key bundle's ``publicKey.hint``


@dataclass(frozen=True)
class TrustedCA:
    name: str
    path: Path  # PEM file of root CA certificate(s)
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class TrustedSigstore:
    identity: str
    issuer: str
    trust_config: Path | None


@dataclass(frozen=True)
class TrustPolicy:
    source: Path
    keys: tuple[TrustedKey, ...] = ()
    cas: tuple[TrustedCA, ...] = ()
    sigstore: tuple[TrustedSigstore, ...] = ()
    digest: str = ""  # sha256 over every file read and every entry
    files: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.keys or self.cas or self.sigstore)

    def describe(self) -> list[str]:
        """One line per trusted signer, for ``doctor`` and ``status``."""
        out = [f"key {k.name} (sha256 {k.hint[:16]}..., {k.path})" for k in self.keys]
        out += [f"CA {c.name} ({c.path}) for subject(s) {', '.join(c.subjects)}" for c in self.cas]
        out += [f"Sigstore identity {s.identity} from {s.issuer}" for s in self.sigstore]
        return out


_cache: dict[tuple[Any, ...], TrustPolicy] = {}


def current_policy() -> TrustPolicy | None:
    """The policy ``PHAITA_TRUST`` names (None when unset); parsed once per set of file versions."""
    path = config.trust_path()
    return None if path is None else load_policy(path)


def load_policy(path: Path) -> TrustPolicy:
    path = Path(path)
    key = _fingerprint(path)
    hit = _cache.get(key)
    if hit is None:
        hit = _cache[key] = _parse(path)
    return hit


def _fingerprint(path: Path) -> tuple[Any, ...]:
    """What changes when the policy might have: every file of the folder, or the file, by stat."""
    try:
        if path.is_dir():
            entries = sorted(os.scandir(path), key=lambda e: e.name)
            return (str(path),) + tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size, e.stat().st_ino)
                                        for e in entries if e.is_file())
        st = path.stat()
    except OSError as exc:
        raise PolicyError(f"PHAITA_TRUST={str(path)!r} cannot be read ({exc.strerror or exc})") from None
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


class _Reader:
    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.read: list[str] = []

    def bytes(self, path: Path) -> bytes:
        try:
            if path.stat().st_size > _MAX_FILE:
                raise PolicyError(f"trust policy file {path} is larger than {_MAX_FILE >> 20} MiB")
            data = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"trust policy file {path} cannot be read ({exc.strerror or exc})") from None
        self.hasher.update(f"{path}\0{len(data)}\0".encode() + data)
        self.read.append(str(path))
        return data


def _parse(path: Path) -> TrustPolicy:
    reader = _Reader()
    keys: list[TrustedKey] = []
    cas: list[TrustedCA] = []
    stores: list[TrustedSigstore] = []
    if path.is_dir():
        policy_files = [path / n for n in POLICY_NAMES if (path / n).is_file()]
        named: set[Path] = set()
        for pf in policy_files:
            named |= _policy_file(pf, reader, keys, cas, stores)
        for pem in sorted(path.glob("*.pem")):
            if pem.resolve() in named:
                continue
            data = reader.bytes(pem)
            if b"CERTIFICATE" in data:
                raise PolicyError(f"{pem} holds a certificate that no [[ca]] entry of {path}/trust.toml names: a CA "
                                  "is trusted only together with the signer subject(s) it may certify")
            keys += _keys(pem, data, _stem(pem))
    elif path.suffix.lower() in (".toml", ".json"):
        _policy_file(path, reader, keys, cas, stores)
    else:
        data = reader.bytes(path)
        if b"CERTIFICATE" in data:
            raise PolicyError(f"PHAITA_TRUST={str(path)!r} is a certificate: name it in a trust.toml [[ca]] entry "
                              "with the signer subject(s) it may certify (a CA alone would trust anyone it certifies)")
        keys += _keys(path, data, _stem(path))
    policy = TrustPolicy(path, tuple(keys), tuple(cas), tuple(stores), reader.hasher.hexdigest(), tuple(reader.read))
    if policy.empty:
        raise PolicyError(f"PHAITA_TRUST={str(path)!r} names no trusted key, CA or Sigstore identity")
    return policy


def _policy_file(pf: Path, reader: _Reader, keys: list[TrustedKey], cas: list[TrustedCA],
                 stores: list[TrustedSigstore]) -> set[Path]:
    raw = reader.bytes(pf)
    try:
        doc = tomllib.loads(raw.decode("utf-8")) if pf.suffix.lower() == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"trust policy {pf} is not valid {pf.suffix[1:].upper()}: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyError(f"trust policy {pf} must be a table of [[key]], [[ca]] and [[sigstore]] entries")
    unknown = sorted(set(doc) - {"key", "ca", "sigstore"})
    if unknown:
        raise PolicyError(f"trust policy {pf}: unknown section(s) {', '.join(unknown)} (known: key, ca, sigstore)")
    named: set[Path] = set()
    for i, entry in enumerate(_entries(doc, "key", pf)):
        file = _file(entry, pf, f"key #{i + 1}")
        named.add(file.resolve())
        keys += _keys(file, reader.bytes(file), str(entry.get("name") or _stem(file)))
    for i, entry in enumerate(_entries(doc, "ca", pf)):
        file = _file(entry, pf, f"ca #{i + 1}")
        named.add(file.resolve())
        subjects = entry.get("subjects", entry.get("subject"))
        subjects = [subjects] if isinstance(subjects, str) else subjects
        if not subjects or not all(isinstance(s, str) and s.strip() for s in subjects):
            raise PolicyError(f"trust policy {pf}: ca #{i + 1} ({file.name}) names no signer subject: add "
                              "subjects = [\"CN=...,O=...\"] (a CA alone would trust anyone it certifies)")
        if b"CERTIFICATE" not in reader.bytes(file):
            raise PolicyError(f"trust policy {pf}: ca #{i + 1}: {file} holds no PEM certificate")
        cas.append(TrustedCA(str(entry.get("name") or file.stem), file, tuple(s.strip() for s in subjects)))
    for i, entry in enumerate(_entries(doc, "sigstore", pf)):
        identity, issuer = entry.get("identity"), entry.get("issuer")
        if not isinstance(identity, str) or not isinstance(issuer, str) or not identity or not issuer:
            raise PolicyError(f"trust policy {pf}: sigstore #{i + 1} needs both identity and issuer")
        trust = _file(entry, pf, f"sigstore #{i + 1}", key="trust_config") if entry.get("trust_config") else None
        if trust is not None:
            reader.bytes(trust)
        reader.hasher.update(f"sigstore\0{identity}\0{issuer}\0".encode())
        stores.append(TrustedSigstore(identity, issuer, trust))
    return named


def _entries(doc: dict[str, Any], name: str, pf: Path) -> list[dict[str, Any]]:
    entries = doc.get(name, [])
    entries = [entries] if isinstance(entries, dict) else entries
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PolicyError(f"trust policy {pf}: [[{name}]] must be a list of tables")
    return entries


def _file(entry: dict[str, Any], pf: Path, what: str, key: str = "file") -> Path:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise PolicyError(f"trust policy {pf}: {what} has no {key} = \"...\"")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else pf.parent / path
    if not path.is_file():
        raise PolicyError(f"trust policy {pf}: {what}: {path} does not exist")
    return path


def _stem(path: Path) -> str:
    """``release.pub.pem`` -> ``release``: how a key file names its key."""
    name = path.name[:-4] if path.name.lower().endswith(".pem") else path.stem
    return name[:-4] if name.lower().endswith(".pub") else name


def _keys(path: Path, data: bytes, name: str) -> list[TrustedKey]:
    """Each PEM public key block in ``data``, re-encoded as model-signing hashes it."""
    if b"PRIVATE KEY" in data:
        raise PolicyError(f"{path} holds a private key: a trust policy needs only public keys (keep the private "
                          "key with the release process, and out of this machine)")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    blocks = [b"-----BEGIN PUBLIC KEY-----" + part.split(b"-----END PUBLIC KEY-----")[0] + b"-----END PUBLIC KEY-----\n"
              for part in data.split(b"-----BEGIN PUBLIC KEY-----")[1:]]
    if not blocks:
        raise PolicyError(f"{path} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    out = []
    for i, block in enumerate(blocks):
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError as exc:
            raise PolicyError(f"{path}: public key #{i + 1} cannot be read ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1",
                                                                                   "secp521r1"):
            raise PolicyError(f"{path}: public key #{i + 1} is not an EC P-256/384/521 key (what OpenSSF model "
                              "signing uses)")
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        label = name if len(blocks) == 1 else f"{name}#{i + 1}"
        out.append(TrustedKey(label, path, pem, hashlib.sha256(pem).hexdigest()))
    return out
