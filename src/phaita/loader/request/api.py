"""The loader's engine: validate a request, pick the cached snapshot or fetch one (with retries), then load.

Data flows one way: callers -> this module -> fetch/cache -> huggingface_hub's HTTP session.
The public functions on top of it are in ``phaita.loader.request.facade`` (re-exported by ``phaita.loader``
and by ``phaita.utils.model_loader``).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from huggingface_hub import get_token
from huggingface_hub.utils import get_token_to_send

from .. import advice, config, errors
from ..cache.layout import RepoCache, repo_id_of
from ..cache.verify import verify_snapshot
from ..errors import CorruptCacheError, LockMismatch, ModelDownloadError, ModelLoadError, OfflineMiss, register_secret
from ..transfer.endpoints import fetch_from_endpoints
from ..events import Attempt, Emitter, LoadFinished, LoadStarted, Retried
from ..transfer.snapshot import FetchContext
from ..hub.listing import complete_listing, fetch_listing, fetch_revision, is_commit_hash
from ..cache.lockfile import LockedModel
from ..signing import enforce as signatures, lockcheck as signed_lock
from .load import load_snapshot, quantization_kwargs
from ..http.deadline import Deadline
from .retry import RetryEvent, RetryPolicy, log_retry
from ..http.failures import classify
from . import freshness
from .progress import default_progress, no_progress
from .load_request import LoadRequest, needs_for
from .public_errors import public_error
from ..hub.selection import Needs
from ..oci import pull as oci_pull
from ..oci.client import Registry
from ..oci.reference import is_oci, parse as parse_oci

logger = logging.getLogger("phaita.model_loader")


# --------------------------------------------------------------------------- one load, as observers see it


@contextmanager
def observed_load(repo_id: str, req: LoadRequest) -> Iterator[Callable[[Path], Path]]:
    """``LoadStarted`` now; ``LoadFinished`` when the block ends (``finish(folder)``: it succeeded)."""
    events = req.emitter()
    if not events:
        yield lambda folder: folder
        return
    revision = req.revision or "main"
    try:
        endpoint = errors.redact(req.endpoint_list()[0])
    except ValueError:  # a malformed HF_ENDPOINT: the public error says so
        endpoint = ""
    events.emit(LoadStarted(repo_id, revision, endpoint))
    done: list[Path] = []

    def finish(folder: Path) -> Path:
        done.append(folder)
        return folder

    try:
        yield finish
    except BaseException as exc:
        events.emit(LoadFinished(repo_id, revision, "failed", kind=failure_kind(exc), reason=_reason(exc),
                                 attempts=getattr(exc, "attempts", None)))
        raise
    if done:
        events.emit(LoadFinished(repo_id, revision, "ok", commit=done[0].name, snapshot_bytes=_size(done[0])))


def failure_kind(exc: BaseException) -> str:
    """The kind of a load's failure: the ``FailureKind`` value its public error came from."""
    kind = getattr(exc, "failure_kind", None)
    if kind:
        return str(kind)
    if isinstance(exc, ModelLoadError):
        return "load_failed"
    if isinstance(exc, CorruptCacheError):
        return "corrupt_cache"
    if isinstance(exc, ModelDownloadError):
        return "other"
    return classify(exc).kind.value


def _reason(exc: BaseException) -> str:
    last = getattr(exc, "last_error", None)
    text = getattr(last, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return errors.redact(text)[:300]


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------- fetch or reuse


def _headers(req: LoadRequest) -> dict[str, str]:
    if req.token is None:
        try:
            register_secret(get_token())
        except Exception:  # a broken token file must not stop a public download
            pass
    import platform

    import huggingface_hub
    from huggingface_hub import constants

    from phaita import __version__

    # Not build_hf_headers(): with telemetry on (huggingface_hub's default) its user agent asks the hub
    # for an "agent harness" registry (GET /api/agent-harnesses, a fixed 3 s timeout, outside our
    # deadlines) whenever no copy younger than a day is cached: 3 s more on every warm load from a hub
    # that hangs (measured in docs/BENCHMARKS.md, scenario 2). Same token rules, no telemetry part.
    agent = f"phaita/{__version__}; hf_hub/{huggingface_hub.__version__}; python/{platform.python_version()}"
    if constants.HF_HUB_USER_AGENT_ORIGIN:
        agent += "; origin/" + constants.HF_HUB_USER_AGENT_ORIGIN
    headers = {"user-agent": agent}
    token = get_token_to_send(req.token)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


def fetch_context(req: LoadRequest, quiet: bool = False) -> FetchContext:
    """Endpoint, headers (token), timeouts and progress for one call's network work.

    ``quiet``: no progress bar (a background refresh must not draw over the caller's output); the
    ``events`` observers still see everything.
    """
    observers = [no_progress if quiet else (req.progress or default_progress())]
    if req.events:
        observers.append(req.emitter())
    return FetchContext(req.cache_dir, req.endpoint_list()[0], _headers(req), config.Timeouts.from_env(),
                        Emitter(observers), config.Parallelism.from_env())


def ensure_snapshot(repo_id: str, needs: Needs, req: LoadRequest) -> Path:
    """A complete snapshot folder for ``repo_id``: from the cache, or fetched. Raises public errors.

    One load as observers see it: ``LoadStarted`` ... ``LoadFinished``.
    """
    with observed_load(repo_id, req) as finish:
        return finish(_ensure_snapshot(repo_id, needs, req))


def _ensure_snapshot(repo_id: str, needs: Needs, req: LoadRequest) -> Path:
    revision = req.revision or "main"
    repo = RepoCache(req.cache_dir, repo_id)
    if not req.resume:
        removed = repo.discard_partials()
        if removed:
            logger.info("%s: discarded %d partial download(s): resume_download is False", repo_id, len(removed))
    locked = req.lock.get(repo_id) if req.lock is not None else None
    if locked is not None:
        return _ensure_locked(repo_id, needs, req, locked)
    status = repo.status(revision, needs)
    if req.offline:
        if status.complete:
            return status.path  # type: ignore[return-value]
        detail = "allow_offline=True" if req.allow_offline else "HF_HUB_OFFLINE=1"
        if status.commit:
            detail += "; cached snapshot incomplete: " + ", ".join(status.problems[:5])
        raise public_error(OfflineMiss(detail), repo_id, req, attempts=0)
    if status.complete and is_commit_hash(revision):
        return status.path  # type: ignore[return-value]
    try:
        mode = req.freshness or config.freshness()
        if status.complete and mode == "never":
            return status.path  # type: ignore[return-value]
        ctx = fetch_context(req, quiet=status.complete and mode == "background")
    except Exception as exc:
        raise public_error(exc, repo_id, req, attempts=0) from None
    if not status.complete:
        return _fetch_with_retries(repo_id, revision, needs, req, ctx, None)
    if mode == "background":
        if freshness.start(req.cache_dir, repo_id, revision,
                           lambda: _refresh(repo_id, revision, needs, req, ctx, status.path, req.timeout)):
            logger.info("%s: loading cached commit %s of '%s'; checking the hub for a newer one in the background "
                        "(freshness=background: a newer commit is for the next load)", repo_id, status.commit, revision)
        return status.path  # type: ignore[return-value]
    return _refresh(repo_id, revision, needs, req, ctx, status.path, min(config.freshness_timeout(), req.timeout))


def _refresh(repo_id: str, revision: str, needs: Needs, req: LoadRequest, ctx: FetchContext, cached: Path,
             budget: float) -> Path:
    """A branch we already hold: one bounded check for a newer commit, fetched if there is one.

    Any failure keeps the cached snapshot (``cached``): a warm load never fails for want of a network.
    """
    commit = cached.name
    try:
        deadline = Deadline.after(budget)
        if is_oci(ctx.endpoint):  # a registry: the tag's manifest names the commit
            if oci_pull.resolve_commit(ctx.endpoint, repo_id, revision, ctx.timeouts, deadline) == commit:
                return cached
            return _fetch_with_retries(repo_id, revision, needs, req, ctx, None)
        answer = fetch_revision(repo_id, revision, headers=ctx.headers, deadline=deadline,
                                timeouts=ctx.timeouts, endpoint=ctx.endpoint)
        if answer.commit == commit:  # (no need for sizes a mirror may leave out)
            return cached
        listing = complete_listing(answer, endpoint=ctx.endpoint, headers=ctx.headers, deadline=deadline,
                                   timeouts=ctx.timeouts)
    except Exception as exc:
        logger.warning("%s: could not check the hub for a newer '%s' (%s); using cached commit %s",
                       repo_id, revision, classify(exc).reason, commit)
        return cached
    logger.info("%s: '%s' moved to %s; fetching it", repo_id, revision, listing.commit)
    try:
        return _fetch_with_retries(repo_id, revision, needs, req, ctx, listing)
    except ModelDownloadError as exc:
        logger.warning("%s: could not fetch the new commit (%s); using cached commit %s",
                       repo_id, exc.last_error, commit)
        return cached


def _ensure_locked(repo_id: str, needs: Needs, req: LoadRequest, locked: LockedModel) -> Path:
    """The lock's commit of ``repo_id``: from the cache with no request at all, else fetched at that commit."""
    source = req.lock.source if req.lock is not None else "?"
    if req.revision not in (None, locked.revision, locked.commit):
        raise ValueError(f"{repo_id}: revision {req.revision!r} was asked for, but the lock file {source} pins "
                         f"it to commit {locked.commit} ('{locked.revision}'); leave revision unset, or pass "
                         f"lockfile=False (unset PHAITA_LOCKFILE) to load another revision")
    repo = RepoCache(req.cache_dir, repo_id)
    status = repo.status(locked.commit, needs)
    if status.complete and locked.linked_in(repo, status.path, needs):  # type: ignore[arg-type]
        return status.path  # type: ignore[return-value]
    if req.offline:
        detail = ("allow_offline=True" if req.allow_offline else "HF_HUB_OFFLINE=1") + \
            f"; the lock file {source} pins commit {locked.commit}"
        if status.complete:
            detail += ", and the cached files of that commit are not the locked ones"
        elif status.commit and status.path:
            detail += "; cached snapshot incomplete: " + ", ".join(status.problems[:5])
        raise public_error(OfflineMiss(detail), repo_id, req, attempts=0)
    try:
        ctx = fetch_context(req)
    except Exception as exc:
        raise public_error(exc, repo_id, req, attempts=0) from None
    try:
        path = _fetch_with_retries(repo_id, locked.commit, needs, req, ctx, None, locked=locked)
    except errors.RevisionNotFoundError as exc:
        raise errors.RevisionNotFoundError(
            advice.locked_revision_gone_message(repo_id, locked.commit, source, ctx.endpoint),
            model_name=repo_id, models_attempted=[repo_id], attempts=exc.attempts, cache_dir=req.cache_dir,
            last_error=exc.last_error) from None
    repo.write_ref(locked.revision, locked.commit)  # plain transformers offline loads find it by name
    return path


def _fetch_with_retries(repo_id: str, revision: str, needs: Needs, req: LoadRequest, ctx: FetchContext,
                        listing: Any, locked: LockedModel | None = None) -> Path:
    first = [listing]

    def attempt(n: int) -> Path:
        ctx.events.emit(Attempt(repo_id, n, req.max_retries))
        known = first.pop() if first else None
        deadline = Deadline.after(req.timeout)
        if known is None and locked is not None and not is_oci(ctx.endpoint):  # the hub's listing at the locked commit must agree with the lock
            known = fetch_listing(repo_id, locked.commit, headers=ctx.headers, deadline=deadline,
                                  timeouts=ctx.timeouts, endpoint=ctx.endpoint)
            problems = locked.mismatches(known)
            if problems:
                raise LockMismatch(f"the hub's files at the locked commit {locked.commit[:12]} differ from the lock "
                                   f"file {req.lock.source if req.lock else '?'}: " + "; ".join(problems[:5]))
        return fetch_from_endpoints(repo_id, revision, needs, ctx, deadline, known, req.endpoint_list(), locked)

    def on_retry(event: RetryEvent) -> None:
        log_retry(event)
        ctx.events.emit(Retried(event.what, event.attempt, event.max_attempts, event.failure.reason, event.wait,
                                event.failure.kind.value))

    policy = RetryPolicy(max_attempts=req.max_retries, backoff_base=req.backoff_base, jitter=req.backoff_jitter,
                         on_retry=on_retry)
    try:
        return policy.run(attempt, what=repo_id)
    except Exception as exc:
        raise public_error(exc, repo_id, req, attempts=getattr(exc, "attempts_made", 1)) from None


def ensure_oci(name: str, needs: Needs, req: LoadRequest) -> Path:
    """``oci://host/path:tag`` as a model name: that artifact into the cache (as the repo id it names)."""
    ref = parse_oci(name, what="model_name")
    if req.offline:
        raise public_error(OfflineMiss("an oci:// reference is read from its registry; offline, load the model by "
                                       "its repo id (it is in the cache under that name once pulled)"),
                           name, req, attempts=0)
    try:
        ctx = fetch_context(req)
    except Exception as exc:
        raise public_error(exc, name, req, attempts=0) from None

    def attempt(n: int) -> Path:
        deadline = Deadline.after(req.timeout)
        manifest = oci_pull.read_model(Registry(ref.host, ctx.timeouts), ref, deadline)
        repo_id = oci_pull.repo_id_of(manifest, ref)
        revision = ref.tag if ref.tag and ref.tag != "latest" or not manifest.revision else manifest.revision
        return oci_pull.fetch_model(ref, repo_id, revision or oci_pull.commit_of(manifest, ref), needs, ctx, deadline)

    policy = RetryPolicy(max_attempts=req.max_retries, backoff_base=req.backoff_base, jitter=req.backoff_jitter,
                         on_retry=lambda e: (log_retry(e), ctx.events.emit(Retried(
                             e.what, e.attempt, e.max_attempts, e.failure.reason, e.wait))))
    try:
        return policy.run(attempt, what=name)
    except Exception as exc:
        raise public_error(exc, name, req, attempts=getattr(exc, "attempts_made", 1)) from None


# --------------------------------------------------------------------------- load


def load_candidates(req: LoadRequest, model_types: Sequence[str]) -> tuple[Any, ...]:
    """Try each candidate in order; return the loaded objects of the first that works."""
    failures: list[tuple[str, ModelDownloadError]] = []
    quant = quantization_kwargs(bool(req.kwargs.pop("use_4bit", False)), req.kwargs) if any(
        t != "tokenizer" for t in model_types) else {}
    req.kwargs.pop("use_4bit", None)
    signed_lock.before_load(req.candidates[0], req.lock, req.cache_dir)  # a signed lock (<lock>.sig): checked first
    for name in req.lock.pinned(req.candidates) if req.lock is not None else req.candidates:
        try:
            return _load_one(name, req, model_types, quant)
        except ModelDownloadError as exc:
            failures.append((name, exc))
            if len(req.candidates) > 1:
                logger.warning("%s could not be loaded (%s); trying the next candidate",
                               name, exc.last_error or str(exc).splitlines()[0])
    raise _combined(failures, req)


def _load_one(name: str, req: LoadRequest, model_types: Sequence[str], quant: dict[str, Any]) -> tuple[Any, ...]:
    if os.path.isdir(name):
        signatures.local_folder(name, req.require_signature)
        return _load_folder(name, Path(name), req, model_types, quant)
    with observed_load(name, req) as finish:
        if is_oci(name):  # an OCI reference: cached under the repo id its manifest names
            folder = ensure_oci(name, needs_for(model_types, req), req)
            repo_id = repo_id_of(folder.parents[1].name) or name
        else:
            folder = _ensure_snapshot(name, needs_for(model_types, req), req)
            repo_id = name
        if req.verify_on_load:
            _verify_before_load(repo_id, folder, req)
        signatures.before_load(repo_id, req.cache_dir, folder.name, req.require_signature)  # before from_pretrained
        loaded = _load_folder(name, folder, req, model_types, quant)
        finish(folder)
        return loaded


def _load_folder(name: str, folder: Path, req: LoadRequest, model_types: Sequence[str],
                 quant: dict[str, Any]) -> tuple[Any, ...]:
    loaded = []
    for model_type in model_types:
        extra = quant if model_type != "tokenizer" else {}
        try:
            loaded.append(load_snapshot(folder, model_type, {**req.kwargs, **extra}, req))
        except Exception as exc:  # transformers raises many types; all mean "cannot load these files"
            reason = errors.redact(" ".join(str(exc).split())[:2000]) or type(exc).__name__
            raise ModelLoadError(
                advice.load_failed_message(name, folder, f"{type(exc).__name__}: {reason}"),
                model_name=name, models_attempted=[name], attempts=0, cache_dir=req.cache_dir,
                last_error=errors.UnderlyingError(type(exc).__name__, reason)) from exc
    return tuple(loaded)


def _verify_before_load(name: str, folder: Path, req: LoadRequest) -> None:
    """verify_on_load: every file of the snapshot re-hashed; a changed one is refused, nothing loaded."""
    bad = verify_snapshot(req.cache_dir, name, folder)
    if bad:
        raise CorruptCacheError(advice.corrupt_cache_message(name, folder, bad), model_name=name,
                                models_attempted=[name], attempts=0, cache_dir=req.cache_dir,
                                last_error=errors.UnderlyingError("ChecksumMismatch", bad[0]))
    logger.info("%s: verify_on_load: every file of %s re-hashed, all match", name, folder.name[:12])


def _combined(failures: list[tuple[str, ModelDownloadError]], req: LoadRequest) -> ModelDownloadError:
    if len(failures) == 1:
        return failures[0][1]
    names = [n for n, _ in failures]
    lines = "\n".join(f"  - {n}: {str(e).splitlines()[0]}" for n, e in failures)
    classes = {type(e) for _, e in failures}
    cls: Callable[..., ModelDownloadError] = classes.pop() if len(classes) == 1 else ModelDownloadError
    last = failures[-1][1]
    return cls(
        f"None of the {len(names)} candidate models could be loaded:\n{lines}\n"
        f"Details for the last candidate ({names[-1]}):\n{last}",
        model_name=names[0], models_attempted=names, attempts=sum(e.attempts for _, e in failures),
        last_error=last.last_error, cache_dir=req.cache_dir, transient=all(e.transient for _, e in failures))
