"""The signature parts of ``phaita models status``, ``verify --signatures`` and ``doctor``.

Kept apart from ``phaita models sign`` (:mod:`.signing`) so that ``models`` and ``doctor`` can use it
without importing the command module. The work is done in :mod:`phaita.loader.signing`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import typer

from . import output as out
from .check import Check


def _cache_dir() -> Path:
    from phaita.loader import config

    return config.cache_dir()


def _policy() -> Any:
    """The trust policy in force, or exit 1 with why it cannot be used."""
    from phaita.loader.signing.policy import PolicyError, current_policy

    try:
        return current_policy()
    except PolicyError as exc:
        raise out.fail(f"the trust policy (PHAITA_TRUST) cannot be used: {exc}") from None


def status_signatures(cache_dir: Path, models: list[dict[str, Any]]) -> bool:
    """Add ``signature`` to each snapshot of ``status --json``: null (unsigned) or who signed it and whether
    it checks out (from the recorded check when it still holds). True when a policy is set or any is signed."""
    from phaita.loader.cache.layout import RepoCache
    from phaita.loader.signing.check import check

    policy = _policy()
    for m in models:
        repo = RepoCache(cache_dir, m["name"])
        for s in m["snapshots"]:
            verdict = check(repo, s["commit"], policy) if s.get("commit") else None
            s["signature"] = None if verdict is None or not (verdict.signed or verdict.refusal) else {
                "signer": verdict.signer, "trusted": verdict.trusted, "ok": verdict.ok,
                "problem": verdict.refusal.detail if verdict.refusal else None}
    return policy is not None or any(s["signature"] for m in models for s in m["snapshots"])


def signature_cell(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return "-"
    if not sig["ok"]:
        return f"[red]refused[/]: {sig['problem']}"
    return f"[green]{sig['signer']}[/]" + ("" if sig["trusted"] else " (no policy)")


def verify_signatures(names: list[str], json_mode: bool) -> None:
    """``verify --signatures``: every snapshot's files re-hashed against its signature."""
    from phaita.loader import scan_cache
    from phaita.loader.cache.layout import RepoCache
    from phaita.loader.signing.check import check

    cache_dir = _cache_dir()
    models = scan_cache(cache_dir, names or None)
    absent = sorted(set(names or []) - {m.repo_id for m in models})
    if absent:
        raise out.fail(f"Not in the cache ({cache_dir}): {', '.join(absent)}")
    policy = _policy()
    rows = []
    for m in models:
        for s in m.snapshots:
            verdict = check(RepoCache(cache_dir, m.repo_id), s.commit, policy, rehash=True)
            rows.append({"name": m.repo_id, "commit": s.commit, **verdict.to_dict()})
    lock = _lock_signature(policy)
    failed = [r for r in rows if r["problem"] or (policy is not None and not r["signed"])]
    ok = not failed and (lock is None or lock["ok"])
    if json_mode:
        out.emit_json({"ok": ok, "cache_dir": str(cache_dir), "policy": str(policy.source) if policy else None,
                       "models": rows, "lock": lock})
    else:
        for r in rows:
            where = f"{r['name']}  {r['commit'][:12]}"
            if r["problem"]:
                out.echo(f"BAD   {where}: {r['problem']} (signer: {r['signer']})")
            elif r["signed"]:
                out.echo(f"OK    {where}  signed by {r['signer']}" + ("" if r["trusted"] else " (no trust policy)")
                         + f"; {r['files']} files re-hashed")
            else:
                out.echo(f"{'BAD ' if policy else '-   '}  {where}: not signed")
        if lock is not None:
            out.echo(f"{'OK  ' if lock['ok'] else 'BAD '}  lock file {lock['path']}: {lock['detail']}")
    if not ok:
        raise typer.Exit(1)


def _lock_signature(policy: Any) -> dict[str, Any] | None:
    """The lock file in use (PHAITA_LOCKFILE) and its ``.sig``, when there is one."""
    from phaita.loader import config
    from phaita.loader.signing.bundle import Refusal, verify

    lock = config.lockfile()
    if lock is None or not lock.with_name(lock.name + ".sig").is_file():
        return None
    sig = lock.with_name(lock.name + ".sig")
    row = {"path": str(lock), "signature": str(sig), "ok": False, "detail": ""}
    try:
        signed = verify(sig.read_bytes(), policy)
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
        if list(signed.resources.values()) != [digest]:
            row["detail"] = "the lock file differs from the signed one"
        else:
            row.update(ok=True, detail=f"signed by {signed.signer}" + ("" if signed.trusted else " (no trust policy)"))
    except Refusal as exc:
        row["detail"] = f"{exc.detail} (signer: {exc.signer})"
    except OSError as exc:
        row["detail"] = f"cannot be read ({exc})"
    return row


def check_signature_policy() -> Check:
    """doctor: the trust policy in force, and whether loads require a signature."""
    from phaita.loader import config
    from phaita.loader.signing.policy import PolicyError, current_policy

    name = "signature policy"
    require = config.require_signature()
    try:
        policy = current_policy()
    except PolicyError as exc:
        return Check(name, False, str(exc), "fix PHAITA_TRUST (see the guide's 'Signed models' section)")
    if policy is None:
        if require:
            return Check(name, False, "PHAITA_REQUIRE_SIGNATURE=1 and PHAITA_TRUST is unset: every load is refused",
                         "set PHAITA_TRUST to the site's keys, CAs with subjects, or Sigstore identities")
        return Check(name, True, "PHAITA_TRUST unset: a model's signature, when present, is checked and its signer "
                     "logged; none is required")
    try:
        import model_signing  # noqa: F401
    except ImportError as exc:
        return Check(name, False, f"PHAITA_TRUST={policy.source}, but model-signing cannot be imported ({exc})",
                     "pip install 'phaita[signing]'")
    return Check(name, True, f"PHAITA_TRUST={policy.source}: " + "; ".join(policy.describe())
                 + ("; signatures required (PHAITA_REQUIRE_SIGNATURE=1)" if require else
                    "; a signed model must verify, an unsigned one loads with a warning"))
