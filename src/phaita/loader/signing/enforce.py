"""The load's signature rule, decided once before ``from_pretrained``.

=====================  =============================  ==========================================
trust policy           signature                      the load
=====================  =============================  ==========================================
none (default)         none                           loads, as always
none                   present, checks out            loads; its signer logged once (INFO)
none                   present, does not check out    loads; one WARNING (nothing changes for
                                                      users who have not set a policy)
none                   present, model-signing absent  loads; one INFO line (not checked)
PHAITA_TRUST           valid, by a trusted signer     loads
PHAITA_TRUST           present, anything wrong        refused: ``SignatureError``
PHAITA_TRUST           none                           loads with one WARNING; refused with
                                                      PHAITA_REQUIRE_SIGNATURE=1 /
                                                      ``require_signature=True``
require, no policy     any                            refused: there is no one to trust
=====================  =============================  ==========================================

A policy that cannot be read (``PHAITA_TRUST`` naming a missing file, a CA with no subject...) is
refused too: fail closed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..cache.layout import RepoCache
from ..errors import ModelDownloadError, SignatureError, UnderlyingError
from . import advice
from .check import Verdict, check
from .policy import PolicyError, TrustPolicy, current_policy

logger = logging.getLogger("phaita.model_loader")
_said: set[tuple[str, ...]] = set()  # (model, commit, signature or policy, what): said once per process
_said_lock = threading.Lock()


def _once(*key: str) -> bool:
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
        return True


def refuse(model: str, kind: str, detail: str, *, signer: str | None = None, signature: Path | None = None,
           policy: TrustPolicy | None = None, cache_dir: Path | None = None) -> SignatureError:
    source = str(policy.source) if policy is not None else None
    return SignatureError(advice.refused_message(model, kind, detail, signer, signature, source), model_name=model,
                          models_attempted=[model], attempts=0, cache_dir=cache_dir,
                          last_error=UnderlyingError("SignatureError", f"{kind}: {detail}"))


def policy_or_refuse(model: str, cache_dir: Path | None = None) -> TrustPolicy | None:
    try:
        return current_policy()
    except PolicyError as exc:
        raise refuse(model, "policy", f"the trust policy cannot be used: {exc}", cache_dir=cache_dir) from None


def before_load(model: str, cache_dir: Path, commit: str, require: bool) -> Verdict | None:
    """Apply the table above to ``commit`` of ``model`` in ``cache_dir``; raise ``SignatureError`` to refuse."""
    policy = policy_or_refuse(model, cache_dir)
    if policy is None and not require:
        repo = RepoCache(cache_dir, model)
        if not repo.signature_path(commit).exists() and not (repo.snapshot_dir(commit) / "model.sig").exists():
            return None  # the common case: two stat calls, nothing else
    repo = RepoCache(cache_dir, model)
    if require and policy is None:
        raise refuse(model, "no-policy", "require_signature (PHAITA_REQUIRE_SIGNATURE) is on and no trust policy is "
                     "set (PHAITA_TRUST), so no signer can be trusted", signature=repo.signature_path(commit),
                     cache_dir=cache_dir)
    verdict = check(repo, commit, policy)
    if policy is None:
        if verdict.refusal is not None and verdict.refusal.kind == "no-library":
            if _once(model, commit, verdict.signature_sha256, "unchecked"):
                logger.info("%s: commit %s has a signature (%s), not checked: %s", model, commit[:12],
                            verdict.signature, verdict.refusal.detail)
        elif verdict.refusal is not None:
            if _once(model, commit, verdict.signature_sha256, "warn"):
                logger.warning(advice.unchecked_warning(model, commit, verdict.refusal.kind, verdict.refusal.detail,
                                                        verdict.signer))
        elif verdict.signed and _once(model, commit, verdict.signature_sha256, "signer"):
            logger.info("%s: commit %s is signed by %s (not checked against a trust policy: PHAITA_TRUST is unset)",
                        model, commit[:12], verdict.signer)
        return verdict
    if verdict.refusal is not None:
        raise refuse(model, verdict.refusal.kind, verdict.refusal.detail, signer=verdict.signer,
                     signature=verdict.signature, policy=policy, cache_dir=cache_dir)
    if not verdict.signed:
        if require:
            raise refuse(model, "unsigned", f"commit {commit} has no signature (looked for {verdict.signature})",
                         signature=verdict.signature, policy=policy, cache_dir=cache_dir)
        if _once(model, commit, str(policy.source), "unsigned"):
            logger.warning("%s: commit %s is not signed; loading it because PHAITA_REQUIRE_SIGNATURE is off",
                           model, commit[:12])
        return verdict
    if _once(model, commit, verdict.signature_sha256 + policy.digest, "trusted"):
        logger.info("%s: commit %s signed by %s: %d file(s) match the signature%s", model, commit[:12], verdict.signer,
                    verdict.files, f" ({len(verdict.not_fetched)} signed file(s) not needed by this load)"
                    if verdict.not_fetched else "")
    return verdict


def local_folder(model: str, require: bool) -> None:
    """A load from a folder path: with require_signature there is no signature place to check: refused."""
    if require:
        raise refuse(model, "local-folder", "a folder given by path has no signature place the loader checks "
                     "(signatures live in the cache, beside its snapshots)")


__all__ = ["before_load", "local_folder", "refuse", "policy_or_refuse", "ModelDownloadError"]
