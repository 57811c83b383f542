"""``phaita models sign``: OpenSSF model signatures over cached snapshots (and the lock file).

Same conventions as the other ``phaita models`` commands (``--json``, exit 0/1/2, no traceback for
an expected failure). The work is done in :mod:`phaita.loader.signing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import output as out
from .lockfile_option import lock_path, read_lock_option
from .models import JSON_OPT, _cache_dir, app
from .output import expected_failures


def _targets(names: list[str], locked: bool, lockfile: Optional[Path], cache_dir: Path) -> list[tuple[str, str]]:
    """(repo_id, commit) to sign: MODEL[@REV] from the cache (default main), or every locked commit."""
    from phaita.loader.cache.layout import RepoCache

    if locked:
        if names:
            raise typer.BadParameter("--locked signs the lock file's commits: give no MODEL", param_hint="--locked")
        return [(m.repo_id, m.commit) for m in read_lock_option(lockfile).models]
    if not names:
        raise typer.BadParameter("give at least one MODEL[@REV], or --locked", param_hint="MODEL")
    targets = []
    for name in names:
        repo_id, _, rev = name.partition("@")
        commit = RepoCache(cache_dir, repo_id).read_ref(rev or "main")
        if commit is None or not RepoCache(cache_dir, repo_id).snapshot_dir(commit).is_dir():
            raise out.fail(f"{repo_id}@{rev or 'main'} is not in the cache ({cache_dir}): pull it first "
                           f"(`phaita models pull {repo_id}`)")
        targets.append((repo_id, commit))
    return targets


@app.command()
@expected_failures
def sign(
    names: list[str] = typer.Argument(None, metavar="MODEL[@REV]", help="Cached models to sign (REV: branch, tag or "
                                      "commit; default main)."),
    key: Optional[Path] = typer.Option(None, "--key", help="The site's EC private key (P-256/384/521, PEM)."),
    cert_chain: Optional[Path] = typer.Option(None, "--cert-chain", help="PEM: the key's certificate, then its chain "
                                              "(sign with a certificate instead of a bare key)."),
    pkcs11_uri: Optional[str] = typer.Option(None, "--pkcs11-uri", help="Sign with a PKCS#11 key (needs "
                                             "model-signing[pkcs11]) instead of --key."),
    locked: bool = typer.Option(False, "--locked", help="Sign every commit the lock file pins."),
    lockfile: Optional[Path] = typer.Option(None, "--lockfile", help="The lock file (default: PHAITA_LOCKFILE, else "
                                            "./phaita.lock)."),
    sign_lock: bool = typer.Option(False, "--sign-lock", help="Also sign the lock file itself (<lock>.sig), so the "
                                   "commit pins are signed too."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Sign cached snapshots with an OpenSSF model-signing bundle (signatures/<commit>/model.sig).

    Uses the digests the cache verified when it wrote each file (no re-read of the weights).
    Exit 0 when every model was signed, 1 otherwise.
    """
    from phaita.loader.cache.layout import RepoCache
    from phaita.loader.signing.sign import Signer, SigningError, sign_file, sign_snapshot

    if (key is None) == (pkcs11_uri is None):
        raise typer.BadParameter("give exactly one of --key and --pkcs11-uri", param_hint="--key")
    cache_dir = _cache_dir()
    signer = Signer(key=key, cert_chain=cert_chain, pkcs11_uri=pkcs11_uri)
    results: list[dict[str, Any]] = []
    for repo_id, commit in _targets(list(names or []), locked, lockfile, cache_dir):
        row: dict[str, Any] = {"name": repo_id, "commit": commit, "signature": None, "files": 0, "error": None}
        try:
            path, count = sign_snapshot(RepoCache(cache_dir, repo_id), commit, signer)
            row.update(signature=str(path), files=count)
        except SigningError as exc:
            row["error"] = str(exc)
        results.append(row)
    lock_sig = None
    if sign_lock:
        lock = lock_path(lockfile)
        try:
            lock_sig = str(sign_file(lock, signer, lock.with_name(lock.name + ".sig")))
        except (SigningError, OSError, ValueError) as exc:
            results.append({"name": str(lock), "commit": None, "signature": None, "files": 0, "error": str(exc)})
    ok = all(r["error"] is None for r in results)
    if json_mode:
        out.emit_json({"ok": ok, "signer": signer.describe(), "models": results, "lock_signature": lock_sig})
    else:
        for r in results:
            if r["error"] is None:
                out.echo(f"SIGNED  {r['name']}  {r['commit'][:12]}  {r['files']} files  {r['signature']}")
            else:
                out.echo(f"FAIL    {r['name']}")
                out.err(r["error"])
        if lock_sig:
            out.echo(f"SIGNED  lock file  {lock_sig}")
    if not ok:
        raise typer.Exit(1)
