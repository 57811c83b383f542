"""``phaita models pull | status | verify | doctor``: fetch, list, check and repair cached models."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Any, Optional

import typer

from phaita.loader import MODEL_TYPES

from . import output as out
from .output import expected_failures
from .profile_option import known_profile

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Fetch, list, verify and diagnose the models in the Hugging Face cache.")

ModelType = enum.Enum("ModelType", {t: t for t in MODEL_TYPES}, type=str)  # --type choices
JSON_OPT = typer.Option(False, "--json", help="Print one JSON document on stdout (no bars, no table).")


def _cache_dir() -> Path:
    from phaita.loader import config

    return config.cache_dir()


# --------------------------------------------------------------------------- pull


def _targets(names: list[str], all_models: bool, profile: Optional[str], model_type: str,
             gguf_file: Optional[str]) -> list[dict[str, Any]]:
    """What to pull: the names given, then (``--all``) each distinct manifest model."""
    targets = [{"candidates": [n], "model_type": model_type, "gguf_file": gguf_file} for n in names]
    if all_models:
        from phaita.data.manifest import load_manifest

        for spec in load_manifest().unique_models(profile):
            targets.append({"candidates": list(spec.candidates), "model_type": spec.model_type,
                            "gguf_file": spec.gguf_file})
    return targets


def _pull_one(target: dict[str, Any], index: int, count: int, bar: out.PullProgress | None,
              opts: dict[str, Any], failed: dict[tuple, tuple[str, str]]) -> dict[str, Any]:
    """Pull one target (its candidates in order). ``failed``: (name, type, gguf) -> (error, type) of this
    run's failures, so a model named by two entries is asked (and reported) once."""
    from phaita.loader import ModelDownloadError, no_progress
    from phaita.loader import prefetch_model

    mtype, gguf = target["model_type"], target["gguf_file"]
    result: dict[str, Any] = {"name": target["candidates"][0], "candidates": target["candidates"],
                              "model_type": mtype, "gguf_file": gguf, "ok": False, "path": None,
                              "commit": None, "seconds": 0.0, "error": None, "error_type": None}
    t0 = time.monotonic()
    for name in target["candidates"]:  # a manifest entry's candidates, in order, as the components do
        result["name"] = name
        key = (name, mtype, gguf, tuple(sorted(target.get("extra", {}).items())))
        if key in failed:
            result["error"], result["error_type"] = failed[key]
            continue
        kwargs = {**opts, **target.get("extra", {})}
        if gguf:
            kwargs["gguf_file"] = gguf
        if bar is not None:
            bar.begin_model(f"[{index}/{count}] {name}")
            kwargs["progress"] = bar
        else:  # not the loader's default either (tqdm on a terminal): no bars means none
            kwargs["progress"] = no_progress
        try:
            path = prefetch_model(name, mtype, **kwargs)
        except (ModelDownloadError, ValueError) as exc:
            if bar is not None:
                bar.end_model(False)
            result["error"], result["error_type"] = failed[key] = str(exc), type(exc).__name__
            continue
        if bar is not None:
            bar.end_model(True)
        result.update(ok=True, path=str(path), error=None, error_type=None,
                      commit=Path(path).name if Path(path).parent.name == "snapshots" else None)
        break
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


@app.command()
@expected_failures
def pull(
    names: list[str] = typer.Argument(None, metavar="NAME", help="Hub model ids (org/name), e.g. microsoft/deberta-v3-base."),
    model_type: ModelType = typer.Option("auto", "--type",
                                   help="What the model will be loaded as: decides which files are needed "
                                        "(tokenizer: no weights)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
    max_retries: int = typer.Option(3, "--max-retries", min=1, help="Attempts in total per model."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.001, help="Wall-clock limit of one attempt, seconds."),
    gguf_file: Optional[str] = typer.Option(None, "--gguf-file", help="Fetch this GGUF file (for GGUF repositories)."),
    all_models: bool = typer.Option(False, "--all", help="Also pull every model the PHAITA components use (the manifest)."),
    profile: Optional[str] = typer.Option(None, "--profile", callback=known_profile, help="Manifest profile for --all (default: the manifest's default)."),
    locked: bool = typer.Option(False, "--locked", help="Fetch exactly the commits and files of the lock file "
                                "(every locked model, or the NAMEs given)."),
    lockfile: Optional[Path] = typer.Option(None, "--lockfile", help="Lock file for --locked "
                                            "(default: PHAITA_LOCKFILE, else ./phaita.lock)."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Fetch models into the Hugging Face cache (retries, resume, deadline, verification).

    Nothing is loaded into memory. Exit 0 when every model was fetched whole, 1 otherwise.
    """
    cache_dir = _cache_dir()
    opts: dict[str, Any] = {"max_retries": max_retries, "timeout": timeout, "revision": revision,
                            "cache_dir": str(cache_dir)}
    if locked:
        if all_models or revision:
            raise typer.BadParameter("--locked takes the models and commits from the lock file: "
                                     "not with --all or --revision", param_hint="--locked")
        from phaita.airgap.lock import pull_targets

        from .lockfile_option import read_lock_option

        opts["lockfile"] = lock_file = read_lock_option(lockfile)
        targets = pull_targets(lock_file, names or [])
    elif not names and not all_models:
        raise typer.BadParameter("give at least one NAME, or --all", param_hint="NAME")
    else:
        targets = _targets(list(names or []), all_models, profile, ModelType(model_type).value, gguf_file)
    results: list[dict[str, Any]] = []
    failed: dict[tuple, tuple[str, str]] = {}
    shown: set[str] = set()  # error messages already printed: each failing model is reported once
    if out.bars_enabled(json_mode):
        progress = out.make_progress()
        bar = out.PullProgress(progress)
        with progress, out.loader_logging(progress.console):
            for i, target in enumerate(targets, 1):
                results.append(_pull_one(target, i, len(targets), bar, opts, failed))
                _report_pull(results[-1], json_mode, shown, say=lambda text, _err: progress.console.print(
                    text, markup=False, highlight=False, soft_wrap=True))
    else:
        with out.loader_logging():
            for i, target in enumerate(targets, 1):
                results.append(_pull_one(target, i, len(targets), None, opts, failed))
                _report_pull(results[-1], json_mode, shown)
    ok = all(r["ok"] for r in results)
    if json_mode:
        out.emit_json({"ok": ok, "cache_dir": str(cache_dir), "models": results})
    elif len(results) > 1:
        failed = sum(not r["ok"] for r in results)
        out.err(f"{len(results) - failed} of {len(results)} models pulled" + (f", {failed} failed" if failed else ""))
    if not ok:
        raise typer.Exit(1)


def _report_pull(result: dict[str, Any], json_mode: bool, shown: set[str], say: Any = None) -> None:
    """One line per model on stdout (OK/FAIL), the loader's message on stderr (once per message)."""
    if json_mode:
        return
    say = say or (lambda text, to_err: out.err(text) if to_err else out.echo(text))
    if result["ok"]:
        say(f"OK    {result['name']}  {(result['commit'] or '')[:12]}  {result['path']}", False)
    else:
        say(f"FAIL  {' | '.join(result['candidates'])}", False)
        message = result["error"] or "failed"
        say(message if message not in shown else f"({result['name']}: see above)", True)
        shown.add(message)


# --------------------------------------------------------------------------- status


@app.command()
@expected_failures
def status(
    names: list[str] = typer.Argument(None, metavar="NAME", help="Only these models (default: all cached)."),
    json_mode: bool = JSON_OPT,
) -> None:
    """List cached models: commit, refs, complete or partial (missing files), size on disk, last used.

    No network. Exit 1 only when a NAME given is not in the cache.
    """
    from phaita.loader import scan_cache

    cache_dir = _cache_dir()
    models = scan_cache(cache_dir, names or None)
    absent = sorted(set(names or []) - {m.repo_id for m in models})
    if json_mode:
        data = [m.to_dict() for m in models]
        for m in data:
            m["last_used"] = out.iso(m["last_used"])
            for s in m["snapshots"]:
                s["last_used"] = out.iso(s["last_used"])
        from .signature_report import status_signatures

        status_signatures(cache_dir, data)
        out.emit_json({"cache_dir": str(cache_dir), "models": data, "not_cached": absent,
                       "total_size_on_disk": sum(m.size_on_disk for m in models)})
    else:
        _status_table(models, cache_dir)
    if absent:
        raise out.fail(f"Not in the cache ({cache_dir}): {', '.join(absent)}")


def _status_table(models: list[Any], cache_dir: Path) -> None:
    from rich.table import Table

    console = out.stdout_console()
    if not models:
        out.echo(f"No models in {cache_dir}")
        return
    from .signature_report import signature_cell, status_signatures

    data = [m.to_dict() for m in models]
    signed = status_signatures(cache_dir, data)  # the "Signed by" column only where it says something
    table = Table(title=f"Models in {cache_dir}", title_justify="left")
    for col in ("Model", "Commit", "Refs", "State") + (("Signed by",) if signed else ()) + (
            "Size on disk", "Partial", "Last used"):
        table.add_column(col, no_wrap=col in ("Model", "Commit", "Size on disk"), overflow="fold")
    for m, d in zip(models, data):
        for i, s in enumerate(m.snapshots):
            state = s.state
            problems = [f"missing {p}" for p in s.missing] + [f"wrong size {p}" for p in s.wrong_size]
            if problems:
                shown = ", ".join(problems[:4]) + (f", +{len(problems) - 4} more" if len(problems) > 4 else "")
                state = f"[yellow]{state}[/]: {shown}"
            elif s.complete:
                state = f"[green]{state}[/]"
            first = i == 0
            table.add_row(m.repo_id if first else "", (s.commit or "-")[:12], ", ".join(s.refs) or "-", state,
                          *((signature_cell(d["snapshots"][i]["signature"]),) if signed else ()),
                          out.human_size(m.size_on_disk) if first else "",
                          (out.human_size(m.incomplete_bytes) if m.incomplete_bytes else "-") if first else "",
                          out.when(s.last_used))
    console.print(table)
    console.print(f"{len(models)} model(s), {out.human_size(sum(m.size_on_disk for m in models))} on disk")


# --------------------------------------------------------------------------- verify


@app.command()
@expected_failures
def verify(
    names: list[str] = typer.Argument(None, metavar="NAME", help="Only these models (default: all cached)."),
    repair: bool = typer.Option(False, "--repair", help="Remove bad files and fetch them again."),
    max_retries: int = typer.Option(3, "--max-retries", min=1, help="Attempts per refetch (with --repair)."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.001, help="Limit of one refetch attempt, seconds."),
    signatures: bool = typer.Option(False, "--signatures", help="Re-hash every file against the snapshot's OpenSSF "
                                    "signature instead, and check its signer against PHAITA_TRUST."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Re-hash cached files against the sha256 / git sha1 and sizes the hub announced.

    Reports each bad file. Exit 1 when bad files remain (after --repair, if given).
    """
    if signatures:
        from .signature_report import verify_signatures

        if repair:
            raise typer.BadParameter("--signatures checks, it does not repair: run --repair on its own",
                                     param_hint="--signatures")
        return verify_signatures(list(names or []), json_mode)
    from phaita.loader import repair as repair_cache
    from phaita.loader import scan_cache

    cache_dir = _cache_dir()
    models = scan_cache(cache_dir, names or None)
    absent = sorted(set(names or []) - {m.repo_id for m in models})
    if absent:
        raise out.fail(f"Not in the cache ({cache_dir}): {', '.join(absent)}")
    reports = _verify_with_bar(cache_dir, models, json_mode)
    bad = [b for r in reports for b in r.bad]
    repair_report = None
    if repair and bad:
        from phaita.loader import default_progress, no_progress, prefetch_model

        bars = default_progress() if out.bars_enabled(json_mode) else no_progress
        with out.loader_logging():
            repair_report = repair_cache(cache_dir, bad, prefetch_model, max_retries=max_retries, timeout=timeout,
                                         progress=bars)
        again = {r.repo_id for r in reports if r.bad}
        fixed = _verify_with_bar(cache_dir, scan_cache(cache_dir, again), json_mode)
        reports = [next((f for f in fixed if f.repo_id == r.repo_id), r) for r in reports]
    remaining = [b for r in reports for b in r.bad]
    failed = bool(remaining) or bool(repair_report and repair_report.errors)
    if json_mode:
        out.emit_json({"ok": not failed, "cache_dir": str(cache_dir), "models": [r.to_dict() for r in reports],
                       "found_bad": [b.to_dict() for b in bad],
                       "repair": repair_report.to_dict() if repair_report else None,
                       "bad_files_remaining": len(remaining)})
    else:
        _verify_text(reports, bad, repair_report)
    if failed:
        raise typer.Exit(1)


def _verify_with_bar(cache_dir: Path, models: list[Any], json_mode: bool) -> list[Any]:
    from phaita.loader import bytes_to_verify, verify_model

    if not out.bars_enabled(json_mode):
        return [verify_model(cache_dir, m.repo_id) for m in models]
    progress = out.make_progress(transfer=False)
    reports = []
    with progress:
        task = progress.add_task("verifying", total=bytes_to_verify(models) or None)
        for m in models:
            progress.update(task, description=f"verifying {m.repo_id}")
            reports.append(verify_model(cache_dir, m.repo_id, on_bytes=lambda n: progress.advance(task, n)))
    return reports


def _verify_text(reports: list[Any], found: list[Any], repair_report: Any) -> None:
    if not reports:
        out.echo("No models in the cache.")
    if repair_report is not None:
        for b in found:
            out.echo(f"BAD   {b.repo_id}  {b.commit[:12]}/{b.path}: {b.reason}")
        for path in repair_report.removed:
            out.echo(f"REMOVED  {path}")
        for job in repair_report.refetched:
            out.echo(f"FETCHED  {job.repo_id}  {job.commit[:12]}")
        for job, error in repair_report.errors:
            out.echo(f"FAIL  refetch {job.repo_id}  {job.commit[:12]}")
            out.err(error)
    for r in reports:
        counts = r.check_counts()
        how = ", ".join(f"{counts[k]} by {k}" for k in ("listing", "blob name", "size only") if counts.get(k))
        extra = (f"; {how}" if how else "") + (f"; {len(r.unverifiable)} without a recorded hash"
                                                if r.unverifiable else "")
        if r.ok:
            out.echo(f"OK    {r.repo_id}  ({r.files_checked} files, {out.human_size(r.bytes_checked)}{extra})")
        else:
            for b in r.bad:
                out.echo(f"BAD   {b.repo_id}  {b.commit[:12]}/{b.path}: {b.reason}" + ("  (after repair)" if repair_report else ""))
    remaining = sum(len(r.bad) for r in reports)
    if remaining:
        out.err(f"{remaining} bad file(s)" + ("" if repair_report else "; run `phaita models verify --repair` to fetch them again"))


# --------------------------------------------------------------------------- doctor


@app.command()
@expected_failures
def doctor(
    probe: Optional[str] = typer.Option(None, "--model", help="Model used to probe the endpoint "
                                        "(default: the manifest's smallest model the endpoint carries)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.001, help="Seconds allowed for the endpoint probe."),
    profile: Optional[str] = typer.Option(None, "--profile", callback=known_profile, help="Manifest profile for the disk check."),
    json_mode: bool = JSON_OPT,
) -> None:
    """Check the set-up: endpoint, proxies, token, cache folder, free disk, offline mode, and
    whether each endpoint (a mirror) gives what the loader needs: listing sizes and hashes, Range.

    One line each, OK or FAIL with advice. Exit 1 if any check fails.
    """
    from .doctor import run_checks

    checks = run_checks(probe_model=probe, timeout=timeout, profile=profile)
    ok = all(c.ok for c in checks)
    if json_mode:
        out.emit_json({"ok": ok, "checks": [c.to_dict() for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.echo(f"{'OK  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
            if c.advice and not c.ok:
                out.echo(f"{'':6}{'':<{width}}  -> {c.advice}")
    if not ok:
        raise typer.Exit(1)


from .push import push as _push  # noqa: E402  (its own module: models.py stays short)

app.command("push")(_push)
