"""Signatures in bundles: ``export`` carries (or, with ``--sign``, makes) them; ``import`` checks them
against the site's trust before anything becomes visible.

A model's signature sits in the bundle where the cache keeps it:
``models--org--name/signatures/<commit>/model.sig``. ``export --sign`` signs exactly the files the
bundle holds (their sha256: the blob name of an LFS file, else hashed; small files), with the same
library classes as ``phaita models sign``; without ``--sign`` the cache's own signature, if any, is
carried. ``import`` checks each signature against the files it just verified (``PHAITA_TRUST``,
``PHAITA_REQUIRE_SIGNATURE`` as for a load): with a policy, a signature that does not check out,
or (with require) a model without one, refuses the whole bundle, and the cache stays as it was;
without a policy, a bad signature is reported and the import goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from phaita.loader import config
from phaita.loader.cache.layout import RepoCache
from phaita.loader.hashing import SHA256, algorithm_of, hash_file

from .bundle import BundleError, BundleManifest, BundleModel, BundleReader, Entry

logger = logging.getLogger("phaita.model_loader")
MAX_SIGNATURE = 16 << 20


def signature_name(m: BundleModel) -> str:
    return f"{m.folder}/signatures/{m.commit}/model.sig"


def _sha256s(m: BundleModel, content: dict[str, Path]) -> dict[str, str]:
    """``{path: sha256}`` of a model's files: the name of an LFS blob, else the file hashed (small)."""
    return {f.path: f.etag if algorithm_of(f.etag) == SHA256 else hash_file(content[f.path], SHA256, f.size)
            for f in m.files}


def for_export(sources: list[Any], cache_dir: Path, signer: Any | None) -> dict[str, bytes]:
    """``{bundle entry name: signature bytes}``: made for each source with ``signer``, else the cache's own."""
    from phaita.loader.signing.sign import sign_digests

    out = {}
    for src in sources:
        m = src.model
        if signer is not None:
            out[signature_name(m)] = sign_digests(f"{m.repo_id}@{m.commit}", _sha256s(m, src.content), signer)
            continue
        place = RepoCache(cache_dir, m.repo_id).signature_path(m.commit)
        if place.is_file():
            out[signature_name(m)] = place.read_bytes()
    return out


def check_import(reader: BundleReader, entries: dict[str, Entry], manifest: BundleManifest,
                 listings: dict[tuple[str, str], Any], blob_file: Any) -> dict[tuple[str, str], bytes]:
    """Check every model's signature in the bundle; ``{(repo_id, commit): bytes}`` to publish with it.

    ``blob_file(model, file)``: where the verified bytes of that file are now (staged or in the cache).
    Raises ``BundleError`` to refuse the bundle.
    """
    from phaita.loader.signing.bundle import Refusal, verify
    from phaita.loader.signing.check import compare
    from phaita.loader.signing.policy import PolicyError, current_policy

    try:
        policy = current_policy()
    except PolicyError as exc:
        raise BundleError(f"refusing the bundle: the trust policy (PHAITA_TRUST) cannot be used: {exc}") from None
    require = config.require_signature()
    if require and policy is None:
        raise BundleError("refusing the bundle: PHAITA_REQUIRE_SIGNATURE=1 and no trust policy is set (PHAITA_TRUST)")
    out = {}
    for m in manifest.models:
        what = f"{m.repo_id}@{m.commit[:12]}"
        name = signature_name(m)
        entry = entries.get(name)
        if entry is None or entry.kind != "file":
            if require:
                raise BundleError(f"refusing the bundle: {what} has no signature in it ({name}) and "
                                  "PHAITA_REQUIRE_SIGNATURE=1; nothing was imported")
            continue
        if entry.size is not None and entry.size > MAX_SIGNATURE:
            raise BundleError(f"refusing the bundle: {name} is larger than {MAX_SIGNATURE >> 20} MiB")
        with reader.open(name) as fh:
            data = fh.read(MAX_SIGNATURE + 1)
        digests = {f.path: [f.etag if algorithm_of(f.etag) == SHA256 else
                            hash_file(blob_file(m, f), SHA256, f.size), 0, 0, 0] for f in m.files}
        listing = listings.get((m.repo_id, m.commit))
        listed = {f.path for f in listing.files} if listing is not None else set()
        try:
            signed = verify(data, policy)
            refusal, _ = compare(signed, digests, m.commit, listed)
        except Refusal as exc:
            refusal = exc
        if refusal is not None:
            detail = f"{what}: its signature ({name}) was refused: {refusal.detail} (signer: {refusal.signer})"
            if policy is not None:
                raise BundleError(f"refusing the bundle: {detail}; nothing was imported")
            logger.warning("%s; importing it anyway: no trust policy is set (PHAITA_TRUST)", detail)
        else:
            logger.info("%s: signed by %s%s", what, signed.signer, "" if signed.trusted else " (no trust policy)")
        out[(m.repo_id, m.commit)] = data
    return out


def publish(cache_dir: Path, signatures: dict[tuple[str, str], bytes]) -> None:
    """Each checked signature at its commit's signature place (before the snapshot appears)."""
    import os

    for (repo_id, commit), data in signatures.items():
        target = RepoCache(cache_dir, repo_id).signature_path(commit)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.import")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        RepoCache(cache_dir, repo_id).signature_record_path(commit).unlink(missing_ok=True)
