"""Real keys and certificates for the signing tests, made with ``cryptography`` (no fixed files)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc)


@dataclass
class KeyPair:
    private: Path
    public: Path
    key: ec.EllipticCurvePrivateKey


def key_pair(folder: Path, name: str, curve: ec.EllipticCurve | None = None) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private = folder / f"{name}.key.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = folder / f"{name}.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private, public, key)


def _name(cn: str, org: str = "Example Hospital") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


@dataclass
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path  # the root's PEM


def make_ca(folder: Path, cn: str = "Site Root CA") -> CA:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=30))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA384()))
    path = folder / f"{cn.replace(' ', '-').lower()}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(cert, key, path)


@dataclass
class Leaf:
    key: Path  # private key PEM
    cert: Path  # the leaf alone
    chain: Path  # leaf then the root (what `phaita models sign --cert-chain` takes)
    subject: str  # RFC 4514


def make_leaf(folder: Path, ca: CA, cn: str = "Model Release", *, days_valid: tuple[int, int] = (-1, 365),
              email: str | None = "release@example.org") -> Leaf:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=days_valid[0]))
               .not_valid_after(NOW + dt.timedelta(days=days_valid[1]))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False))
    if email:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    cert = builder.sign(ca.key, hashes.SHA384())
    stem = cn.replace(" ", "-").lower()
    key_path = folder / f"{stem}.key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path = folder / f"{stem}.cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain = folder / f"{stem}.chain.pem"
    chain.write_bytes(cert_path.read_bytes() + ca.path.read_bytes())
    return Leaf(key_path, cert_path, chain, ",".join(rdn.rfc4514_string() for rdn in cert.subject.rdns))


def trust_toml(folder: Path, *, keys: list[Path] = (), cas: list[tuple[Path, list[str]]] = ()) -> Path:
    """A trust.toml naming these keys and (CA, subjects) pairs, written in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in keys:
        lines += ["[[key]]", f'file = "{k}"', ""]
    for ca, subjects in cas:
        lines += ["[[ca]]", f'file = "{ca}"', "subjects = [" + ", ".join(f'"{s}"' for s in subjects) + "]", ""]
    path = folder / "trust.toml"
    path.write_text("\n".join(lines))
    return path
