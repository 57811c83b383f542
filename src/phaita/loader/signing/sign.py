"""Sign a cached snapshot at the site, from the digests the cache already verified (no re-read).

The manifest is built from the blob names (an LFS blob is named by the sha256 the loader checked
when it wrote it; small git-named files are hashed), then handed to ``model-signing``'s own
payload and signer classes, so the bundle is the library's format byte for byte: ``model_signing
verify`` accepts it on the snapshot folder (``--allow_symlinks``) and on a flat copy (tested). The
library has no public call for precomputed digests; these are its internal classes (manifest items,
``Payload``, the key / certificate / PKCS#11 signers), pinned by the ``phaita[signing]`` range and
the interop tests. Like ``model_signing sign``, git metadata (``.gitattributes``...) is left out.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache.layout import RepoCache
from .bundle import Refusal, library
from .check import GIT_PATHS, SIGNATURE_NAME, is_git_path, snapshot_files


class SigningError(ValueError):
    """Signing could not be done (a key that cannot be read, a snapshot that is not there); the message says why."""


@dataclass
class Signer:
    """How to sign: an EC private key (P-256/384/521 PEM), with a certificate chain, or a PKCS#11 URI."""

    key: Path | None = None
    cert_chain: Path | None = None  # PEM: the signing certificate (the one for ``key``) and its chain
    pkcs11_uri: str | None = None
    password: str | None = None

    def describe(self) -> str:
        if self.pkcs11_uri:
            return f"PKCS#11 key {self.pkcs11_uri.split(';')[0]}"
        return f"key {self.key}" + (f" with certificate chain {self.cert_chain}" if self.cert_chain else "")

    def build(self) -> Any:
        """The library's signer object (imports ``model_signing``)."""
        import tempfile

        try:
            sign_certificate, sign_ec_key, _, _, _ = library()
        except Refusal as exc:
            raise SigningError(exc.detail) from None
        try:
            with tempfile.TemporaryDirectory(prefix="phaita-sign-") as tmp:  # the library reads them in __init__
                if self.pkcs11_uri:
                    return _pkcs11(self.pkcs11_uri, self.cert_chain, Path(tmp))
                if self.key is None:
                    raise SigningError("no signing key: pass --key (an EC private key, PEM) or --pkcs11-uri")
                if self.cert_chain is None:
                    return sign_ec_key.Signer(Path(self.key), self.password)
                leaf, chain = _split_chain(Path(self.cert_chain), Path(tmp), _public_key(Path(self.key), self.password))
                return sign_certificate.Signer(Path(self.key), leaf, chain)
        except SigningError:
            raise
        except Exception as exc:  # a key file, a PKCS#11 module or token (PyKCS11Error...): one message
            detail = re.sub(r"pin-value=[^&;\s'\"]*", "pin-value=***", str(exc))  # never the token's PIN
            raise SigningError(f"cannot sign with {self.describe()}: {type(exc).__name__}: {detail}") from None


def _public_key(key: Path, password: str | None) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(key.read_bytes(), password.encode() if password else None).public_key()


def _pkcs11(uri: str, cert_chain: Path | None, tmp: Path) -> Any:
    try:
        from model_signing._signing import sign_pkcs11
    except ImportError as exc:
        raise SigningError(f"PKCS#11 signing needs model-signing's pkcs11 extra (PyKCS11): "
                           f"`pip install 'model-signing[pkcs11]'` ({exc})") from None
    if cert_chain is None:
        return sign_pkcs11.Signer(uri)
    leaf, chain = _split_chain(cert_chain, tmp, None)
    return sign_pkcs11.CertSigner(uri, leaf, chain)


def _split_chain(chain: Path, tmp: Path, public_key: Any) -> tuple[Path, list[Path]]:
    """The chain file as the library wants it: the signing certificate (the one for ``public_key``;
    else the first) and the rest, as two files in ``tmp``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    mine = [c for c in certs if public_key is None or c.public_key() == public_key]
    if not mine:
        raise SigningError(f"{chain} holds no certificate for the signing key")
    rest = [c for c in certs if c is not mine[0]]
    leaf = tmp / "leaf.pem"
    leaf.write_bytes(mine[0].public_bytes(serialization.Encoding.PEM))
    others = tmp / "chain.pem"
    others.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in rest))
    return leaf, [others] if rest else []


def manifest_for(repo: RepoCache, commit: str, name: str) -> tuple[Any, int]:
    """The library's manifest of the snapshot from its known digests; (manifest, files)."""
    files = snapshot_files(repo, commit)
    dangling = sorted(n for n, v in files.items() if v[0] is None)
    if dangling:
        raise SigningError(f"{repo.repo_id}@{commit[:12]}: missing from the cache: {', '.join(dangling[:5])}")
    if SIGNATURE_NAME in files:
        raise SigningError(f"{repo.repo_id}@{commit[:12]}: {SIGNATURE_NAME} is inside the snapshot; move it to "
                           f"{repo.signature_path(commit)} first")
    return manifest_from_digests(name, {n: v[0] for n, v in files.items()})


def manifest_from_digests(name: str, digests: dict[str, str]) -> tuple[Any, int]:
    """The library's manifest of ``{path: sha256}`` (git metadata left out, as ``model_signing sign`` does)."""
    from model_signing import manifest as ms_manifest
    from model_signing._hashing import hashing as ms_hashing

    items = [ms_manifest.FileManifestItem(path=pathlib.PurePosixPath(n), digest=ms_hashing.Digest(
             "sha256", bytes.fromhex(d))) for n, d in sorted(digests.items()) if not is_git_path(n)]
    ignored = [p.rstrip("/") for p in GIT_PATHS]
    serialization = ms_manifest._FileSerialization("sha256", True, [pathlib.Path(p) for p in ignored])
    return ms_manifest.Manifest(name, items, serialization), len(items)


def sign_digests(name: str, digests: dict[str, str], signer: Signer) -> bytes:
    """A bundle over ``{path: sha256}`` (an export's files), as bytes."""
    import tempfile

    manifest, _ = manifest_from_digests(name, digests)
    signature = _sign(manifest, signer, name)
    with tempfile.TemporaryDirectory(prefix="phaita-sign-") as tmp:  # the library writes to a path only
        signature.write(Path(tmp) / "model.sig")
        return (Path(tmp) / "model.sig").read_bytes()


def sign_snapshot(repo: RepoCache, commit: str, signer: Signer, out: Path | None = None) -> tuple[Path, int]:
    """Write an OpenSSF model-signing bundle over ``commit`` (default: its signature place); (path, files)."""
    if not repo.snapshot_dir(commit).is_dir():
        raise SigningError(f"{repo.repo_id}: commit {commit} is not in the cache")
    manifest, count = manifest_for(repo, commit, f"{repo.repo_id}@{commit}")
    signature = _sign(manifest, signer, f"{repo.repo_id}@{commit[:12]}")
    target = out or repo.signature_path(commit)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_whole(signature, target)
    repo.signature_record_path(commit).unlink(missing_ok=True)
    return target, count


def _write_whole(signature: Any, target: Path) -> None:
    """Write the library's signature beside ``target`` and rename it there: never a half-written file."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        signature.write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def sign_file(path: Path, signer: Signer, out: Path) -> Path:
    """Sign one small file (a lock file) with the library's own hashing: ``model_signing verify`` reads it."""
    signer.build()  # model-signing installed and the key usable, or a SigningError saying what is wrong
    from model_signing import hashing as ms_hashing

    try:
        manifest = ms_hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False).hash(path)
    except (OSError, ValueError) as exc:  # the library says ValueError for a missing or special file
        reason = "no such file" if not path.exists() else getattr(exc, "strerror", None) or str(exc)
        raise SigningError(f"cannot read {path}: {reason}") from None
    _write_whole(_sign(manifest, signer, str(path)), out)
    return out


def _sign(manifest: Any, signer: Signer, what: str) -> Any:
    """The library's signature over ``manifest``; its failures (key type, PKCS#11 token...) as one SigningError."""
    library_signer = signer.build()
    _, _, _, _, signing = library()
    try:
        return library_signer.sign(signing.Payload(manifest))
    except Exception as exc:
        raise SigningError(f"signing {what} with {signer.describe()} failed: {type(exc).__name__}: {exc}") from None
