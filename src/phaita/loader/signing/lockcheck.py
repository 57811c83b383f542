"""A signed lock file (``phaita models sign --sign-lock`` writes ``<lock>.sig``), checked before a load uses it.

With a trust policy and a lock file in use (``lockfile=`` / ``PHAITA_LOCKFILE``) that has a
``<lock>.sig`` beside it, the lock's bytes must be what a trusted signer signed, so the commit pins
are the release process's too; anything else is a ``SignatureError`` naming the lock file. A lock
without a ``.sig`` is used as before (each model's own signature is what the policy requires).
The check is recorded once per (lock, signature, policy) in the cache (``RepoCache``'s layout:
``lock_signature_record``), so a warm load does not import the library again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cache.layout import atomic_write, lock_signature_record
from .bundle import Refusal, sha256_bytes, verify
from .enforce import policy_or_refuse, refuse


def before_load(model: str, lock_file: Any, cache_dir: Path) -> None:
    """``lock_file``: the load's ``LockFile`` (or None); its ``source`` is the file it was read from."""
    if lock_file is None or lock_file.source == "<memory>":
        return
    lock = Path(lock_file.source)
    sig = lock.with_name(lock.name + ".sig")
    if not sig.is_file():
        return
    policy = policy_or_refuse(model, cache_dir)
    if policy is None:
        return  # nothing to trust it against; `phaita models verify --signatures` still reports it
    try:
        data, lock_bytes = sig.read_bytes(), lock.read_bytes()
    except OSError as exc:
        raise refuse(model, "unreadable", f"the lock file's signature cannot be read ({exc})", signature=sig,
                     policy=policy, cache_dir=cache_dir) from None
    key = f"{sha256_bytes(lock_bytes)}:{sha256_bytes(data)}:{policy.digest}"
    record = lock_signature_record(cache_dir, lock)
    try:
        if key in json.loads(record.read_text(encoding="utf-8")).get("checked", []):
            return
    except (OSError, ValueError, AttributeError):
        pass
    try:
        signed = verify(data, policy)
    except Refusal as exc:
        raise refuse(model, exc.kind, f"the lock file {lock}: {exc.detail}", signer=exc.signer, signature=sig,
                     policy=policy, cache_dir=cache_dir) from None
    if list(signed.resources.values()) != [sha256_bytes(lock_bytes)]:
        raise refuse(model, "lock-differs", f"the lock file {lock} differs from the one {signed.signer} signed",
                     signer=signed.signer, signature=sig, policy=policy, cache_dir=cache_dir)
    try:
        atomic_write(record, json.dumps({"lock": str(lock), "checked": [key]}))
    except OSError:  # a read-only cache: checked again next time
        pass
