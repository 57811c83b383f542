"""The doctor's endpoint-feature checks: does each endpoint give what the loader needs?

Against a real small model of the manifest (the smallest the endpoint carries), for every endpoint
in ``PHAITA_ENDPOINTS`` (else ``HF_ENDPOINT``):

* ``mirror listing``: the revision answer lists sizes and hashes (``?blobs=true``), or, where it
  does not (olah), which fallback gives them: tree API, paths-info, HEAD. Sizes without any hash
  means size-only checks: reported as a failure, since a corrupt copy of the same length passes.
* ``mirror resume``: a resolve honours ``Range`` (206 with the asked ``Content-Range``); without
  it every broken transfer starts again from byte 0.

The requests are the loader's own (:mod:`phaita.loader.hub.listing`, :mod:`phaita.loader.hub.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import quote

from phaita.loader import config
from phaita.loader.config import Timeouts
from phaita.loader import redact
from phaita.loader.hub.listing import RevisionAnswer, fetch_revision
from phaita.loader.hub.sources import SOURCES, Endpoint, SourceUnavailable
from phaita.loader.http.deadline import Deadline, stream

from .check import Check

DEFAULT_PROBES = ("microsoft/deberta-v3-base",)


@dataclass(frozen=True)
class ProbeChoice:
    """The models the endpoint checks ask for (the first the endpoint carries is used), and why those."""

    models: list[str]
    why: str


def probe_choice(model: Optional[str] = None, profile: Optional[str] = None) -> ProbeChoice:
    """``--model`` when given; else the models of ``--profile`` (or of the manifest's default profile,
    what ``pull --all`` fetches), smallest first, every candidate, so the probe downloads little."""
    if model:
        return ProbeChoice([model], "given with --model")
    try:
        from phaita.data.manifest import load_manifest

        manifest = load_manifest()
        specs = sorted(manifest.unique_models(profile), key=lambda s: s.size_mb)
        names = list(dict.fromkeys(c for s in specs for c in s.candidates))
        label = f"profile '{profile}'" if profile else "the manifest's default profile"
        if names:
            return ProbeChoice(names, f"the smallest model of {label} this endpoint carries; --model to choose")
    except Exception:
        pass
    return ProbeChoice(list(DEFAULT_PROBES), "the default probe; --model to choose")


def probe_models() -> list[str]:
    """The default probe models: the manifest's default profile, smallest first."""
    return probe_choice().models


def _headers() -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return dict(build_hf_headers())


@dataclass(frozen=True)
class SourceResult:
    """What one fallback source gave for the files the revision answer left without sizes/hashes."""

    text: str
    sizes: bool = False  # sizes of every such file
    hashes: bool = False  # and hashes of every one


@dataclass
class EndpointProbe:
    """What one endpoint offers, learned from one model of the manifest."""

    endpoint: str
    model: Optional[str] = None
    answer: Optional[RevisionAnswer] = None
    problem: Optional[str] = None  # why nothing could be probed
    sources: dict[str, SourceResult] = field(default_factory=dict)  # fallback -> what it gave


def _reason(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    return redact(" ".join(str(exc).split())[:160]) or type(exc).__name__


def probe_endpoint(endpoint: str, models: list[str], timeout: float) -> EndpointProbe:
    probe = EndpointProbe(endpoint)
    deadline, timeouts, headers = Deadline.after(timeout), Timeouts(timeout, timeout), _headers()
    tried = []
    for name in models:
        try:
            probe.answer = fetch_revision(name, "main", headers=headers, deadline=deadline, timeouts=timeouts,
                                          endpoint=endpoint)
            probe.model = name
            break
        except Exception as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) not in (401, 403, 404):
                # not "this model is not here": the endpoint itself is failing; no model is to blame
                probe.problem = f"cannot be probed ({_reason(exc)})"
                return probe
            tried.append(f"{name}: {_reason(exc)}")
    if probe.answer is None:
        probe.problem = "carries none of the probe models (" + "; ".join(tried) + ")"
        return probe
    missing = probe.answer.missing()
    if missing:
        ep = Endpoint(endpoint, probe.model, probe.answer.commit, headers, deadline, timeouts)  # type: ignore[arg-type]
        for label, source in SOURCES:
            try:
                found = source(ep, set(missing))
            except SourceUnavailable as exc:
                probe.sources[label] = SourceResult(f"not offered ({exc})")
                continue
            except Exception as exc:
                probe.sources[label] = SourceResult(f"failed ({_reason(exc)})")
                continue
            sized = [p for p in missing if p in found and isinstance(found[p].size, int)]
            hashed = [p for p in sized if found[p].sha256 or found[p].blob_id]
            text = (f"sizes and hashes of {len(hashed)} of {len(missing)} files" if hashed
                    else f"sizes of {len(sized)} of {len(missing)} files, no hashes")
            probe.sources[label] = SourceResult(text, len(sized) == len(missing), len(hashed) == len(missing))
            if len(hashed) == len(missing):
                break
    return probe


def _listing_verdict(p: EndpointProbe, why: str = "") -> tuple[bool, str]:
    if p.answer is None:
        return False, f"{p.endpoint}: {p.problem}"
    head = f"{p.endpoint} (probe model {p.model}{', ' + why if why else ''}; at {p.answer.commit[:12]}): "
    if not p.answer.missing():
        return True, head + "revision listing with sizes and hashes"
    via = "; ".join(f"{k}: {v.text}" for k, v in p.sources.items())
    complete = next((k for k, v in p.sources.items() if v.hashes), None)
    text = head + f"revision listing WITHOUT sizes or hashes (missing feature: ?blobs=true); {via}"
    if complete:
        return True, text + f" -> the loader uses the {complete}"
    if any(v.sizes for v in p.sources.values()):
        return False, text + " -> files would be checked by size only"
    return False, text + " -> the loader cannot list this endpoint"


def check_listing(timeout: float, choice: Optional[ProbeChoice] = None,
                  probe: Callable[[str, list[str], float], EndpointProbe] = probe_endpoint) -> Check:
    name = "mirror listing"
    endpoints = [e for e in config.endpoints() if not e.startswith("oci://")]  # registries: endpoint reachable
    if not endpoints:
        return Check(name, True, "only OCI registries are listed (their manifests are the listing)")
    if config.offline_mode():
        return Check(name, True, "not contacted: offline mode is on")
    choice = choice or probe_choice()
    probes = [probe(e, choice.models, timeout) for e in endpoints]
    verdicts = [_listing_verdict(p, choice.why) for p in probes]
    ok = all(v[0] for v in verdicts)
    if ok:
        return Check(name, True, " | ".join(v[1] for v in verdicts))
    lacking = [p.endpoint for p, v in zip(probes, verdicts) if not v[0] and p.answer is not None]
    return Check(name, False, " | ".join(v[1] for v in verdicts), _advice(
        lacking, [p.endpoint for p in probes if p.answer is None],
        "lacks Hub listing features the loader needs for verified downloads: update it, or list the Hub after "
        "it (PHAITA_ENDPOINTS=mirror,https://huggingface.co)"))


def _resume_verdict(endpoint: str, models: list[str], timeout: float) -> tuple[bool, str, bool]:
    from phaita.loader.hub.listing import complete_listing

    p = probe_endpoint(endpoint, models, timeout)
    if p.answer is None:
        return False, f"{endpoint}: {p.problem}", False
    deadline, timeouts = Deadline.after(timeout), Timeouts(timeout, timeout)
    listing = complete_listing(p.answer, endpoint=endpoint, headers=_headers(), deadline=deadline,
                               timeouts=timeouts)
    files = sorted((f for f in listing.files if f.size >= 2), key=lambda f: f.size)
    if not files:
        return True, f"{endpoint}: {p.model} has no file to probe", True
    f = files[0]
    url = f"{endpoint}/{p.model}/resolve/{listing.commit}/{quote(f.path)}"
    headers = {**_headers(), "Range": "bytes=1-", "Accept-Encoding": "identity"}
    with stream("GET", url, headers=headers, deadline=deadline, timeouts=timeouts, what="resume probe") as r:
        got = r.read()
        status, content_range = r.status_code, r.headers.get("Content-Range", "")
    if status == 206 and content_range.startswith("bytes 1-") and len(got) == f.size - 1:
        return True, f"{endpoint}: Range honoured (206, {content_range}) on {p.model}/{f.path}", True
    return False, (f"{endpoint}: asked {f.path} from byte 1, got HTTP {status} {content_range or 'no Content-Range'} "
                   f"({len(got)} bytes) (missing feature: Range) -> a broken transfer restarts from byte 0"), True


def check_resume(timeout: float, choice: Optional[ProbeChoice] = None) -> Check:
    name = "mirror resume"
    if config.offline_mode():
        return Check(name, True, "not contacted: offline mode is on")
    verdicts, lacking, unreachable = [], [], []
    for endpoint in [e for e in config.endpoints() if not e.startswith("oci://")]:
        try:
            ok, text, reached = _resume_verdict(endpoint, (choice or probe_choice()).models, timeout)
        except Exception as exc:
            ok, text, reached = False, f"{endpoint}: the probe failed ({_reason(exc)})", False
        verdicts.append((ok, text))
        if not ok:
            (lacking if reached else unreachable).append(endpoint)
    ok = all(v[0] for v in verdicts)
    if not verdicts:
        return Check(name, True, "only OCI registries are listed (Range is checked by endpoint reachable)")
    return Check(name, ok, " | ".join(v[1] for v in verdicts), "" if ok else _advice(
        lacking, unreachable, "does not honour Range: a broken transfer of a large model starts over; configure "
        "the mirror (or the proxy in front of it) to pass Range requests through"))


def _advice(lacking: list[str], unreachable: list[str], feature: str) -> str:
    """Advice for what failed: a missing feature, or an endpoint that could not be probed at all (its
    reachability, not its features, is the problem: see the "endpoint reachable" check)."""
    parts = [f"{', '.join(lacking)} {feature}"] if lacking else []
    if unreachable:
        parts.append(f"{', '.join(unreachable)} could not be probed: make it reachable first (see the "
                     "\"endpoint reachable\" check); its features are unknown")
    return "; ".join(parts)
