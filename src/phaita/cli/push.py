"""``phaita models push MODEL[@REV] oci://HOST[:PORT]/PATH[:TAG]``: cached models into an OCI registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import output as out
from .output import expected_failures


_FIELDS = ("repo_id", "revision", "commit", "reference", "digest", "tags", "files", "bytes_uploaded",
           "blobs_uploaded", "blobs_skipped", "blobs_mounted", "signature")


@expected_failures
def push(
    args: list[str] = typer.Argument(..., metavar="[MODEL[@REV]...] TARGET",
                                     help="Cached models (org/name, @revision: default main) and, last, the "
                                          "registry: oci://HOST[:PORT]/PREFIX (the model goes to PREFIX/org/name, "
                                          "tagged with its commit and branch) or oci://HOST/PATH:TAG."),
    locked: bool = typer.Option(False, "--locked", help="Push every model of the lock file at its locked commit."),
    lockfile: Optional[Path] = typer.Option(None, "--lockfile", help="Lock file for --locked "
                                            "(default: PHAITA_LOCKFILE, else ./phaita.lock)."),
    max_retries: int = typer.Option(3, "--max-retries", min=1, help="Attempts per blob and per manifest."),
    timeout: float = typer.Option(600.0, "--timeout", min=0.001, help="Wall-clock limit of one attempt, seconds."),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Push verified, complete cached snapshots to an OCI registry as CNCF ModelPack artifacts.

    Blobs the registry already has are skipped; pushing the same snapshot again uploads nothing.
    Exit 0 when every model was pushed, 1 otherwise.
    """
    from phaita.loader import ModelDownloadError, config
    from phaita.loader.oci.push import NotPushable, Pusher
    from phaita.loader.request.retry import RetryPolicy

    target, names = args[-1], list(args[:-1])
    if not target.startswith("oci://"):
        raise typer.BadParameter(f"the last argument must be the registry (oci://HOST/PATH); got {target!r}",
                                 param_hint="TARGET")
    models: list[tuple[str, str]] = []
    if locked:
        from .lockfile_option import read_lock_option

        lock = read_lock_option(lockfile)
        wanted = {n.split("@")[0] for n in names}
        models = [(m.repo_id, m.commit) for m in lock.models if not wanted or m.repo_id in wanted]
        revisions = {m.repo_id: m.revision for m in lock.models}
    else:
        if not names:
            raise typer.BadParameter("give at least one MODEL before the target, or --locked", param_hint="MODEL")
        models = [(n.split("@", 1)[0], n.split("@", 1)[1] if "@" in n else "main") for n in names]
        revisions = {}
    pusher = Pusher(config.cache_dir(), policy=RetryPolicy(max_attempts=max_retries), timeout=timeout)
    results: list[dict[str, Any]] = []
    with out.loader_logging():
        for repo_id, revision in models:
            try:
                result = pusher.push(repo_id, revision, target, branch=revisions.get(repo_id))
                row = {"ok": True, "revision": revision, **result.to_dict(), "error": None}
                if not json_mode:
                    out.echo(f"{repo_id}@{result.commit[:12]} -> {result.reference} ({', '.join(result.tags)}): "
                             f"{result.files} files, {result.bytes_uploaded} bytes uploaded, "
                             f"{result.blobs_skipped} blobs already there, {result.blobs_mounted} mounted"
                             + ("; signature pushed" if result.signature else ""))
            except (ModelDownloadError, NotPushable, ValueError) as exc:
                row = {"ok": False, **dict.fromkeys(_FIELDS), "repo_id": repo_id, "revision": revision,
                       "error": str(exc)}
                if not json_mode:
                    out.err(str(exc))
            results.append(row)
    ok = all(r["ok"] for r in results)
    if json_mode:
        out.emit_json({"ok": ok, "target": target, "models": results})
    if not ok:
        raise typer.Exit(1)

