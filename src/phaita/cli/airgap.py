"""``phaita models lock | export | import``: pinned versions and verified bundles for air-gapped sites.

Same conventions as the other ``phaita models`` commands (``--json``, exit 0/1/2, bars on a
terminal only, no traceback for an expected failure). The work is done in :mod:`phaita.airgap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import output as out
from .models import JSON_OPT, ModelType, app
from .output import expected_failures

LOCKFILE_OPT = typer.Option(None, "--lockfile", help="The lock file (default: PHAITA_LOCKFILE, else ./phaita.lock).")


def lock_path(option: Optional[Path]) -> Path:
    """``--lockfile``, else PHAITA_LOCKFILE, else ``phaita.lock`` in the current folder."""
    from phaita.loader import config
    from phaita.loader.lockfile import DEFAULT_NAME

    return Path(option) if option is not None else (config.lockfile() or Path(DEFAULT_NAME))


def read_lock_option(option: Optional[Path]) -> Any:
    from phaita.loader.lockfile import read_lock

    return read_lock(lock_path(option))


# --------------------------------------------------------------------------- lock


@app.command()
@expected_failures
def lock(
    names: list[str] = typer.Argument(None, metavar="MODEL", help="Hub model ids to lock (default: the manifest's)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Manifest profile when no MODEL is given "
                                          "(default: the manifest's default; small: the demo's models)."),
    model_type: ModelType = typer.Option("auto", "--type", help="What each MODEL is loaded as (decides the files)."),
    gguf_file: Optional[str] = typer.Option(None, "--gguf-file", help="Lock this GGUF file of each MODEL."),
    revision: str = typer.Option("main", "--revision", help="Branch or tag to resolve."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the lock "
                                          "(default: PHAITA_LOCKFILE, else ./phaita.lock)."),
    max_retries: int = typer.Option(3, "--max-retries", min=1, help="Attempts in total per model."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.001, help="Wall-clock limit of one attempt, seconds."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Resolve each model to a commit and write a lock file with every needed file's size and hash.

    No file is downloaded (only listings, and the index of a sharded model). Nothing is written
    unless every model resolved. Exit 0 on success, 1 when a model could not be resolved.
    """
    from phaita.airgap.lock import LockTarget, lock_models, manifest_targets

    if names:
        targets = [LockTarget((n,), ModelType(model_type).value, gguf_file) for n in names]
    else:
        targets = manifest_targets(profile)
    path = lock_path(output)
    with out.loader_logging():
        lock_file, failures = lock_models(targets, revision=revision, profile=None if names else profile,
                                          max_retries=max_retries, timeout=timeout)
    ok = not failures
    if ok:
        from phaita.loader.lockfile import write_lock

        write_lock(lock_file, path)
    models = [{**m.to_dict(), "size": sum(f.size for f in m.files)} for m in lock_file.models]
    if json_mode:
        out.emit_json({"ok": ok, "lockfile": str(path) if ok else None, "models": models,
                       "failures": [f.to_dict() for f in failures]})
    else:
        for m in models:
            out.echo(f"LOCKED  {m['repo_id']}  {m['commit'][:12]}  {len(m['files'])} files  {out.human_size(m['size'])}")
        for f in failures:
            out.echo(f"FAIL    {' | '.join(f.target.candidates)}")
            out.err(str(f.error))
    if not ok:
        raise out.fail(f"Lock file not written: {len(failures)} model(s) could not be resolved.")
    if not json_mode:
        out.err(f"Wrote {path} ({len(models)} models)")
