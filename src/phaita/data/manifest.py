"""The model manifest: which models each PHAITA component loads by default.

``phaita/data/manifest.yaml`` holds profiles (``default``: the specification's models; ``small``:
small real models from PyPI for the offline demo). The components take their default model names
from it, and ``phaita models pull --all`` fetches :meth:`Manifest.unique_models`.

    >>> from phaita.data.manifest import get_manifest
    >>> spec = get_manifest().get("ComplaintGenerator", "generator")
    >>> spec.name, spec.model_type
    ('mistralai/Mistral-7B-Instruct-v0.2', 'causal_lm')
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

__all__ = ["ModelSpec", "Manifest", "load_manifest", "get_manifest", "default_spec", "gguf_file_for"]

MODEL_TYPES = ("auto", "causal_lm", "tokenizer", "sequence_classification", "masked_lm", "seq2seq_lm",
               "token_classification")
_KEYS = {"component", "role", "name", "candidates", "type", "tokenizer", "gguf_file", "kwargs", "size_mb",
         "description"}


@dataclass(frozen=True)
class ModelSpec:
    """One model a component loads."""

    component: str
    role: str
    candidates: tuple[str, ...]
    model_type: str = "auto"
    tokenizer: bool = True
    gguf_file: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    size_mb: float = 0.0
    description: str = ""

    @property
    def name(self) -> str:
        """The first (preferred) candidate."""
        return self.candidates[0]

    @property
    def model_name(self) -> str | list[str]:
        """What to pass to the loader: one name, or the candidate list."""
        return self.candidates[0] if len(self.candidates) == 1 else list(self.candidates)

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the loader (``gguf_file`` and the entry's ``kwargs``)."""
        out = dict(self.kwargs)
        if self.gguf_file:
            out["gguf_file"] = self.gguf_file
        return out


@dataclass(frozen=True)
class Manifest:
    profiles: dict[str, tuple[ModelSpec, ...]]
    descriptions: dict[str, str]
    default_profile: str = "default"
    source: str = "<memory>"

    def models(self, profile: str | None = None) -> tuple[ModelSpec, ...]:
        profile = profile or self.default_profile
        if profile not in self.profiles:
            raise KeyError(f"unknown manifest profile {profile!r}; known: {', '.join(self.profiles)}")
        return self.profiles[profile]

    def get(self, component: str, role: str | None = None, profile: str | None = None) -> ModelSpec:
        """The spec for ``component`` (and ``role`` when the component loads several models)."""
        found = [m for m in self.models(profile) if m.component == component and (role is None or m.role == role)]
        if not found:
            raise KeyError(f"no manifest entry for component {component!r} role {role!r} in profile "
                           f"{profile or self.default_profile!r}")
        if len(found) > 1:
            raise KeyError(f"component {component!r} has several models; pass role= one of "
                           f"{[m.role for m in found]}")
        return found[0]

    def unique_models(self, profile: str | None = None) -> list[ModelSpec]:
        """Each distinct (candidates, type, gguf_file) once, in manifest order (what ``pull --all`` fetches)."""
        seen: set[tuple] = set()
        out: list[ModelSpec] = []
        for m in self.models(profile):
            key = (m.candidates, m.model_type, m.gguf_file)
            if key not in seen:
                seen.add(key)
                out.append(m)
        return out

    def total_size_mb(self, profile: str | None = None) -> float:
        """Approximate download of every distinct model of a profile, in MB."""
        return float(sum(m.size_mb for m in self.unique_models(profile)))


def _err(where: str, msg: str) -> ValueError:
    return ValueError(f"invalid model manifest at {where}: {msg}")


def _spec(entry: Any, where: str) -> ModelSpec:
    if not isinstance(entry, dict):
        raise _err(where, "expected a mapping")
    extra = set(entry) - _KEYS
    if extra:
        raise _err(where, f"unknown keys {sorted(extra)}")
    for key in ("component", "role"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise _err(f"{where}.{key}", "required non-empty string")
    if ("name" in entry) == ("candidates" in entry):
        raise _err(where, "give exactly one of name or candidates")
    cands = [entry["name"]] if "name" in entry else entry["candidates"]
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) and c.strip() for c in cands):
        raise _err(where, "name/candidates must be non-empty strings")
    mtype = entry.get("type", "auto")
    if mtype not in MODEL_TYPES:
        raise _err(f"{where}.type", f"unknown model type {mtype!r}; one of {MODEL_TYPES}")
    size = entry.get("size_mb", 0)
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0:
        raise _err(f"{where}.size_mb", f"must be a number >= 0, got {size!r}")
    kwargs = entry.get("kwargs", {}) or {}
    if not isinstance(kwargs, dict):
        raise _err(f"{where}.kwargs", "expected a mapping")
    gguf = entry.get("gguf_file")
    if gguf is not None and (not isinstance(gguf, str) or not gguf.endswith(".gguf")):
        raise _err(f"{where}.gguf_file", f"must be a .gguf file name, got {gguf!r}")
    return ModelSpec(component=entry["component"], role=entry["role"], candidates=tuple(cands),
                     model_type=mtype, tokenizer=bool(entry.get("tokenizer", True)), gguf_file=gguf,
                     kwargs=dict(kwargs), size_mb=float(size), description=str(entry.get("description", "")))


def parse_manifest(data: Any, source: str = "<memory>") -> Manifest:
    """Validate parsed manifest YAML. Raises ``ValueError`` naming the bad entry."""
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict) or not data["profiles"]:
        raise _err(source, "expected a mapping with a non-empty 'profiles' mapping")
    if data.get("version", 1) != 1:
        raise _err("version", f"unsupported version {data.get('version')!r}")
    profiles: dict[str, tuple[ModelSpec, ...]] = {}
    descriptions: dict[str, str] = {}
    for pname, pdata in data["profiles"].items():
        if not isinstance(pdata, dict) or not isinstance(pdata.get("models"), list) or not pdata["models"]:
            raise _err(f"profiles.{pname}", "expected a mapping with a non-empty 'models' list")
        specs = tuple(_spec(e, f"profiles.{pname}.models[{i}]") for i, e in enumerate(pdata["models"]))
        keys = [(s.component, s.role) for s in specs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise _err(f"profiles.{pname}", f"duplicate component/role entries {dupes}")
        profiles[str(pname)] = specs
        descriptions[str(pname)] = str(pdata.get("description", ""))
    default = data.get("default_profile", "default")
    if default not in profiles:
        raise _err("default_profile", f"{default!r} is not a profile")
    return Manifest(profiles=profiles, descriptions=descriptions, default_profile=default, source=source)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Load a manifest file (default: the packaged ``manifest.yaml``)."""
    if path is None:
        text = resources.files("phaita").joinpath("data/manifest.yaml").read_text(encoding="utf-8")
        source = "phaita/data/manifest.yaml"
    else:
        with open(path, encoding="utf-8") as fh:
            text, source = fh.read(), os.fspath(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid model manifest in {source}: not valid YAML ({exc})") from exc
    return parse_manifest(data, source)


@functools.lru_cache(maxsize=1)
def get_manifest() -> Manifest:
    """The packaged manifest, loaded once."""
    return load_manifest()


def default_spec(component: str, role: str | None = None) -> ModelSpec:
    """The default-profile spec of a component (what it loads when no model name is passed)."""
    return get_manifest().get(component, role)


def gguf_file_for(model_name: Any) -> str | None:
    """The GGUF file the manifest names for ``model_name`` (any profile), or None."""
    if not isinstance(model_name, str):
        return None
    for specs in get_manifest().profiles.values():
        for s in specs:
            if s.gguf_file and model_name in s.candidates:
                return s.gguf_file
    return None
