"""One load request, validated: the call's options as one value, before any I/O.

:func:`prepare` checks every argument and environment variable once and returns a
:class:`LoadRequest`; :mod:`.api` runs it and :mod:`.public_errors` words its failures.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from huggingface_hub.utils import validate_repo_id

from .. import config
from ..errors import register_secret
from ..events import Emitter, Observer, as_observer
from ..cache.lockfile import LockFile, resolve_lock
from .load import MODEL_TYPES
from .options import LoaderOptions
from .freshness import check_mode
from . import telemetry
from .retry import check_backoff_base, check_jitter, check_max_retries
from ..hub.selection import Needs

logger = logging.getLogger("phaita.model_loader")
ModelName = str | os.PathLike | Sequence[str]


@dataclass
class LoadRequest:
    """One call's validated options."""

    candidates: list[str]
    max_retries: int
    timeout: float
    allow_offline: bool
    token: str | bool | None = field(repr=False)
    revision: str | None
    cache_dir: Path
    backoff_base: float | None
    backoff_jitter: float | None
    resume: bool
    allow_pickle: bool
    progress: Observer | None = field(default=None, repr=False)  # None: a bar on a terminal
    events: list[Observer] = field(default_factory=list, repr=False)
    kwargs: dict[str, Any] = field(default_factory=dict)
    lock: LockFile | None = None  # lockfile= or PHAITA_LOCKFILE: branch names resolve to its commits
    endpoints: tuple[str, ...] | None = None  # endpoints=; None: PHAITA_ENDPOINTS or HF_ENDPOINT, read when used
    freshness: str | None = None  # freshness=; None: PHAITA_FRESHNESS, read when used
    verify_on_load: bool = False  # re-hash the snapshot before from_pretrained (verify_on_load= / PHAITA_VERIFY_ON_LOAD)
    require_signature: bool = False  # a trusted signature before from_pretrained (require_signature= / PHAITA_REQUIRE_SIGNATURE)

    _emitter: Emitter | None = field(default=None, repr=False, compare=False)

    def emitter(self) -> Emitter:
        """The request's one Emitter of ``events``: an observer that raises is dropped for the whole call."""
        if self._emitter is None:
            self._emitter = Emitter(self.events)
        return self._emitter

    def endpoint_list(self) -> tuple[str, ...]:
        return config.endpoints(self.endpoints)

    @property
    def offline(self) -> bool:
        return self.allow_offline or config.offline_mode()


def _candidates(model_name: Any) -> list[str]:
    names = list(model_name) if isinstance(model_name, (list, tuple)) else [model_name]
    if not names:
        raise ValueError("model_name: the list of candidate models is empty")
    out = []
    for name in names:
        if isinstance(name, os.PathLike):
            name = os.fspath(name)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model_name must be a non-empty string, a local folder, or a list of them; got {name!r}")
        name = name.strip()
        if name.startswith("oci://"):  # an OCI registry reference: checked here, read by the loader
            from ..oci.reference import parse as parse_oci
            parse_oci(name, what="model_name")
        elif not os.path.isdir(name):
            try:
                validate_repo_id(name)
            except ValueError as exc:
                raise ValueError(f"model_name {name!r} is neither a local folder nor a valid Hub model id "
                                 f"('organization/model-name'): {exc}") from None
        out.append(name)
    return out


def _finite(value: int | float) -> bool:
    """math.isfinite, also for ints too large for a float (10**400 raises OverflowError there)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _clean_token(token: str) -> str:
    """Strip line ends and spaces (a token read from a file), as huggingface_hub does for HF_TOKEN.

    What is left must be sendable in an HTTP header: otherwise the HTTP library's error would quote
    the header, token included, in a message and in its debug log. The value is never echoed here.
    """
    register_secret(token)
    cleaned = token.replace("\r", "").replace("\n", "").strip()
    if not cleaned:
        raise ValueError("token is empty: pass None to use HF_TOKEN or the stored login, or False to send none")
    if any(not ("!" <= c <= "~") for c in cleaned):
        raise ValueError("token contains spaces, control or non-ASCII characters, which an HTTP header cannot "
                         "carry; check how it was copied (the value is not shown)")
    register_secret(cleaned)
    return cleaned


def _unsafe_revision(revision: str) -> bool:
    """True for a revision that, used as ``refs/<revision>`` in the cache, would leave that folder."""
    return (any(part in ("", ".", "..") for part in revision.split("/")) or "\\" in revision
            or any(ord(c) < 32 or ord(c) == 127 for c in revision))


def prepare(model_name: Any, *, model_type: str, options: LoaderOptions,
            model_types: Sequence[str] = ()) -> LoadRequest:
    """Check every argument up front: a ValueError naming the argument, before any I/O."""
    max_retries, timeout, allow_offline, token = (options.max_retries, options.timeout, options.allow_offline,
                                                  options.token)
    kwargs = dict(options.loader_kwargs)
    for t in (model_type, *model_types):
        if not isinstance(t, str) or t not in MODEL_TYPES:  # (a list is unhashable: TypeError otherwise)
            raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}; got {t!r}")
    check_max_retries(max_retries)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not _finite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0; got {timeout!r}")
    backoff = check_backoff_base(kwargs.pop("backoff_base", None))
    jitter = check_jitter(kwargs.pop("backoff_jitter", None))
    revision = kwargs.pop("revision", None)
    if revision is not None and (not isinstance(revision, str) or not revision.strip() or _unsafe_revision(revision)):
        raise ValueError(f"revision must be a branch, tag or commit hash (it names a file under refs/ in the "
                         f"cache: no '..', '.' or empty parts, backslashes or control characters); got {revision!r}")
    if token is not None and not isinstance(token, (str, bool)):
        raise ValueError("token must be a string, True/False or None")
    if isinstance(token, str):
        token = _clean_token(token)
    if kwargs.pop("local_files_only", False):
        allow_offline = True
    kwargs.pop("use_auth_token", None)
    if kwargs.pop("force_download", False):
        logger.info("force_download is not needed: every file is verified against the hub's hashes")
    register_secret(token if isinstance(token, str) else None)
    register_secret(config.env_token())
    endpoints = kwargs.pop("endpoints", None)
    freshness = kwargs.pop("freshness", None)
    verify = kwargs.pop("verify_on_load", options.verify_on_load)
    if verify is not None and not isinstance(verify, bool):
        raise ValueError(f"verify_on_load must be True, False or None (None: PHAITA_VERIFY_ON_LOAD); got {verify!r}")
    signed = kwargs.pop("require_signature", options.require_signature)
    if signed is not None and not isinstance(signed, bool):
        raise ValueError(f"require_signature must be True, False or None (None: PHAITA_REQUIRE_SIGNATURE); got {signed!r}")
    return LoadRequest(
        candidates=_candidates(model_name),
        max_retries=max_retries,
        timeout=float(timeout),
        allow_offline=bool(allow_offline),
        token=token,
        revision=revision,
        cache_dir=config.cache_dir(kwargs.pop("cache_dir", None)),
        backoff_base=backoff,
        backoff_jitter=jitter,
        resume=bool(kwargs.pop("resume_download", True)),
        allow_pickle=bool(kwargs.pop("allow_pickle", False)),
        progress=as_observer(kwargs.pop("progress", None)),
        events=_observers(kwargs.pop("events", None)),
        lock=resolve_lock(kwargs.pop("lockfile", None), config.lockfile()),
        kwargs=kwargs,
        endpoints=config.parse_endpoints(endpoints) if endpoints is not None else None,
        freshness=check_mode(freshness) if freshness is not None else None,
        verify_on_load=config.verify_on_load(verify),
        require_signature=config.require_signature(signed),
    )


def _observers(events: Any) -> list[Observer]:
    """``events=``: one observer (a callable taking loader events) or a list of them."""
    out = []
    for observer in (events if isinstance(events, (list, tuple)) else [events]) if events is not None else []:
        if not callable(observer):
            raise ValueError(f"events must be a callable taking loader events, or a list of them; got {observer!r}")
        out.append(observer)
    otel = telemetry.observer()  # None unless OpenTelemetry is installed and configured
    return out + [otel] if otel is not None else out


def needs_for(model_types: Sequence[str], req: LoadRequest) -> Needs:
    weights = any(t != "tokenizer" for t in model_types)
    return Needs(weights=weights, tokenizer="tokenizer" in model_types, gguf_file=req.kwargs.get("gguf_file"),
                 subfolder=req.kwargs.get("subfolder"), allow_pickle=req.allow_pickle)
