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
from .lockfile_option import lock_path, read_lock_option
from .output import expected_failures
from .profile_option import known_profile

LOCKFILE_OPT = typer.Option(None, "--lockfile", help="The lock file (default: PHAITA_LOCKFILE, else ./phaita.lock).")


# --------------------------------------------------------------------------- lock


@app.command()
@expected_failures
def lock(
    names: list[str] = typer.Argument(None, metavar="MODEL", help="Hub model ids to lock (default: the manifest's)."),
    profile: Optional[str] = typer.Option(None, "--profile", callback=known_profile, help="Manifest profile when no MODEL is given "
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
        from phaita.loader.cache.lockfile import write_lock

        write_lock(lock_file, path)
    models = [{**m.to_dict(), "size": sum(f.size for f in m.files)} for m in lock_file.models]
    if json_mode:
        out.emit_json({"ok": ok, "lockfile": str(path) if ok else None, "models": models,
                       "failures": [f.to_dict() for f in failures]})
    else:
        for m in models:
            out.echo(f"LOCKED  {m['repo_id']}  {m['commit'][:12]}  {len(m['files'])} files  {out.human_size(m['size'])}")
        shown: set[str] = set()
        for f in failures:  # each model once; a message shared by entries (same repository) once
            used_by = f"  (used by {', '.join(f.components)})" if f.components else ""
            out.echo(f"FAIL    {' | '.join(f.target.candidates)}{used_by}")
            message = str(f.error)
            out.err(message if message not in shown else f"({f.error.model_name or 'it'}: see above)")
            shown.add(message)
    if not ok:
        raise out.fail(f"Lock file not written: {len(failures)} model(s) could not be resolved.")
    if not json_mode:
        out.err(f"Wrote {path} ({len(models)} models)")


# --------------------------------------------------------------------------- export / import


def _with_bar(json_mode: bool, total: Any, label: str, work: Any) -> Any:
    """Run ``work(on_bytes, on_file)`` with a byte bar (of ``total()`` bytes) on a terminal only."""
    if not out.bars_enabled(json_mode):
        return work(None, None)
    progress = out.make_progress(transfer=False)
    with progress:
        task = progress.add_task(label, total=total() or None)
        return work(lambda n: progress.advance(task, n),
                    lambda name: progress.update(task, description=f"{label} {name[-50:]}"))


@app.command("export")
@expected_failures
def export_cmd(
    path: Path = typer.Argument(..., metavar="PATH", help="The bundle to write: a folder, or a .tar file "
                                "(must not exist)."),
    names: list[str] = typer.Argument(None, metavar="MODEL", help="Cached models to bundle (org/name, or "
                                      "org/name@<branch or commit>; default: the snapshot main points at)."),
    locked: bool = typer.Option(False, "--locked", help="Bundle exactly the commits and files of the lock file."),
    lockfile: Optional[Path] = LOCKFILE_OPT,
    sign: bool = typer.Option(False, "--sign", help="Sign each bundled model's files (OpenSSF model signing) with "
                              "--key [--cert-chain]; without it the cache's own signatures are carried."),
    key: Optional[Path] = typer.Option(None, "--key", help="With --sign: the site's EC private key (PEM)."),
    cert_chain: Optional[Path] = typer.Option(None, "--cert-chain", help="With --sign: the key's certificate and "
                                              "chain (PEM)."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Write a bundle of complete, verified snapshots from the cache (offline): blobs, snapshots, lock, manifest.

    Every file is hashed while it is copied. Exit 1 when a snapshot is incomplete or a file does not verify.
    """
    from phaita.airgap import export

    if locked == bool(names):
        raise typer.BadParameter("give MODEL names or --locked (one of the two)", param_hint="MODEL")
    cache_dir = _cache()
    lock_file = read_lock_option(lockfile) if locked else None
    sources = export.sources_from_lock(cache_dir, lock_file) if lock_file else export.sources_from_names(cache_dir, names)
    if sign != (key is not None):
        raise typer.BadParameter("--sign needs --key (and --key is only for --sign)", param_hint="--sign")
    sigs = _signatures(sources, cache_dir, key, cert_chain)
    total = lambda: sum({(s.model.repo_id, f.etag): f.size for s in sources for f in s.model.files}.values())  # noqa: E731
    report = _with_bar(json_mode, total, "exporting", lambda on_bytes, on_file: export.export_bundle(
        sources, path, lock_file, on_bytes, on_file, extra=sigs))
    if json_mode:
        out.emit_json({"ok": True, "cache_dir": str(cache_dir), **report.to_dict()})
        return
    for m in report.models:
        out.echo(f"EXPORTED  {m['repo_id']}  {m['commit'][:12]}  {m['files']} files  {out.human_size(m['bytes'])}")
    out.err(f"Wrote {report.path} ({report.blobs} blobs, {out.human_size(report.bytes)}, every file verified)")


@app.command("import")
@expected_failures
def import_cmd(
    path: Path = typer.Argument(..., metavar="PATH", help="A bundle folder or .tar written by `phaita models export`."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Verify a bundle and add its snapshots to the cache: nothing becomes visible before every byte matched.

    A damaged bundle is refused with the file named and the cache left as it was; an interrupted
    import resumes. Exit 1 when the bundle is refused.
    """
    from phaita.airgap.importing import import_bundle

    cache_dir = _cache()
    report = _with_bar(json_mode, lambda: _bundle_bytes(path), "importing",
                       lambda on_bytes, on_file: import_bundle(path, cache_dir, on_bytes, on_file))
    if json_mode:
        out.emit_json({"ok": True, **report.to_dict()})
        return
    for m in report.models:
        refs = ", ".join(f"{r} -> {m['commit'][:12]}" for r in m["refs"]) or "no refs"
        where = "new snapshot" if m["new_snapshot"] else "added to the cached snapshot"
        out.echo(f"IMPORTED  {m['repo_id']}  {m['commit'][:12]}  {m['files']} files, {m['blobs_added']} new blobs, "
                 f"{where}; {refs}")
    out.err(f"Added {report.blobs_added} blobs ({out.human_size(report.bytes_added)}) to {report.cache_dir}; "
            f"{report.blobs_present} already present, {report.blobs_resumed} from an interrupted import")


def _signatures(sources: list[Any], cache_dir: Path, key: Optional[Path], cert_chain: Optional[Path]) -> dict[str, bytes]:
    from phaita.airgap.signatures import for_export

    if key is None:
        return for_export(sources, cache_dir, None)
    from phaita.loader.signing.sign import Signer, SigningError

    try:
        return for_export(sources, cache_dir, Signer(key=key, cert_chain=cert_chain))
    except SigningError as exc:
        raise out.fail(str(exc)) from None


def _cache() -> Path:
    from phaita.loader import config

    return config.cache_dir()


def _bundle_bytes(path: Path) -> int:
    """Bytes the import reads (for the bar); 0 when the bundle cannot be read yet (the import says why)."""
    from phaita.airgap.bundle import BundleError, BundleReader

    try:
        with BundleReader(path) as reader:
            manifest, _ = reader.read_manifest(reader.entries())
    except (BundleError, OSError):
        return 0
    return sum(f.size for _, f in manifest.blobs().values())
