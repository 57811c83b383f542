"""PHAITA domain data: respiratory conditions, their symptoms, lay phrasings and red flags.

The data lives in ``phaita/data/conditions.yaml``; this module loads it and validates it on first
use (:func:`get_domain`), so a bad edit fails at start with a ``ValueError`` that names the entry.

    >>> from phaita.data.domain import get_domain
    >>> dom = get_domain()
    >>> dom.condition("J45.9").name
    'Asthma, unspecified'
    >>> dom.probability("J45.9", "wheezing")
    0.9
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

import yaml

__all__ = [
    "Symptom", "Condition", "Domain", "RedFlag", "load_domain", "get_domain", "validate_domain_data",
    "CONDITION_CODES", "ICD10_PATTERN",
]

#: ICD-10 code shape: a letter, two digits, optionally a dot and 1-2 more characters.
ICD10_PATTERN = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?$")
#: The ten conditions PHAITA triages (the packaged YAML must define exactly these).
CONDITION_CODES = ("J44.1", "J45.9", "J18.9", "J20.9", "J12.9", "J13", "J21.9", "J84.10", "J44.0", "R06.02")
SPEAKERS = ("patient", "caregiver")
_SYMPTOM_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Symptom:
    """One symptom: its id, a plain name, the question that asks about it, and lay phrasings."""

    id: str
    name: str
    question: str
    phrasings: tuple[str, ...]
    caregiver_phrasings: tuple[str, ...] = ()
    caregiver_question: str | None = None
    terms: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()

    def phrasings_for(self, speaker: str = "patient") -> tuple[str, ...]:
        """Phrasings in the voice of ``speaker`` (caregiver falls back to patient phrasings)."""
        if speaker == "caregiver" and self.caregiver_phrasings:
            return self.caregiver_phrasings
        return self.phrasings

    def question_for(self, speaker: str = "patient") -> str:
        if speaker == "caregiver" and self.caregiver_question:
            return self.caregiver_question
        return self.question


@dataclass(frozen=True)
class RedFlag:
    """A sign that needs emergency care now, with the lay cues that state it (or deny it)."""

    id: str
    label: str
    cues: tuple[str, ...]
    absent_cues: tuple[str, ...] = ()
    question: str = ""
    caregiver_question: str | None = None
    #: 1: life-threatening now (ask first), 2: severe, 3: needs urgent review.
    danger: int = 2

    def question_for(self, speaker: str = "patient") -> str:
        if speaker == "caregiver" and self.caregiver_question:
            return self.caregiver_question
        return self.question or f"Any sign of this: {self.label.lower()}?"


@dataclass(frozen=True)
class Condition:
    """A condition by ICD-10 code with P(symptom reported | condition) for its typical symptoms."""

    code: str
    name: str
    symptoms: Mapping[str, float]
    red_flags: tuple[str, ...]
    durations: tuple[str, ...] = ()
    speaker: str = "patient"
    red_flag_ids: tuple[str, ...] = ()

    def symptom_ids(self) -> list[str]:
        """Symptom ids, most probable first."""
        return sorted(self.symptoms, key=lambda s: -self.symptoms[s])

    def red_flags_by_danger(self, catalogue: Mapping[str, "RedFlag"]) -> list[str]:
        """This condition's red flag ids, most dangerous first (ties: the order listed)."""
        return sorted(self.red_flag_ids, key=lambda f: (catalogue[f].danger, self.red_flag_ids.index(f)))


@dataclass(frozen=True)
class Domain:
    """All conditions and the shared symptom catalogue."""

    conditions: Mapping[str, Condition]
    symptoms: Mapping[str, Symptom]
    absent_symptom_probability: float = 0.03
    clinical_terms: frozenset[str] = field(default_factory=frozenset)
    source: str = "<memory>"
    red_flags: Mapping[str, RedFlag] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return list(self.conditions)

    def condition(self, code: str) -> Condition:
        try:
            return self.conditions[code]
        except KeyError:
            raise KeyError(f"unknown ICD-10 code {code!r}; known: {', '.join(self.conditions)}") from None

    def symptom(self, key: str) -> Symptom:
        """A symptom by id or (case-insensitive) name."""
        if key in self.symptoms:
            return self.symptoms[key]
        k = key.strip().lower().replace(" ", "_")
        for s in self.symptoms.values():
            if s.id == k or s.name.lower() == key.strip().lower():
                return s
        raise KeyError(f"unknown symptom {key!r}")

    def probability(self, code: str, symptom_id: str) -> float:
        """P(symptom reported | condition); the absent-symptom base rate when not listed."""
        return float(self.condition(code).symptoms.get(symptom_id, self.absent_symptom_probability))

    def condition_name(self, code: str) -> str:
        return self.condition(code).name

    def lay_references(self) -> list[str]:
        """Every lay phrasing (patient and caregiver voice), for realism references."""
        out: list[str] = []
        for s in self.symptoms.values():
            out.extend(s.phrasings)
            out.extend(s.caregiver_phrasings)
        return out


def _err(where: str, msg: str) -> ValueError:
    return ValueError(f"invalid domain data at {where}: {msg}")


def _str_list(value: Any, where: str, *, min_len: int = 1) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < min_len:
        raise _err(where, f"expected a list of at least {min_len} non-empty strings, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _err(f"{where}[{i}]", f"expected a non-empty string, got {item!r}")
    if len(set(value)) != len(value):
        raise _err(where, "duplicate entries")
    return tuple(v.strip() for v in value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _err(where, f"expected a non-empty string, got {value!r}")
    return value.strip()


def validate_domain_data(data: Any, source: str = "<memory>", *, require_codes: tuple[str, ...] | None = None) -> Domain:
    """Validate parsed YAML and build a :class:`Domain`. Raises ``ValueError`` naming the bad entry."""
    if not isinstance(data, dict):
        raise _err(source, "top level must be a mapping")
    unknown = set(data) - {"version", "absent_symptom_probability", "clinical_terms", "symptoms", "red_flags",
                           "conditions"}
    if unknown:
        raise _err(source, f"unknown top-level keys {sorted(unknown)}")
    if data.get("version", 1) != 1:
        raise _err("version", f"unsupported version {data.get('version')!r}")
    base = data.get("absent_symptom_probability", 0.03)
    if not isinstance(base, (int, float)) or not 0 < base < 0.5:
        raise _err("absent_symptom_probability", f"must be a number in (0, 0.5), got {base!r}")
    terms = frozenset(t.lower() for t in _str_list(data.get("clinical_terms", ["-"]), "clinical_terms"))

    raw_symptoms = data.get("symptoms")
    if not isinstance(raw_symptoms, dict) or not raw_symptoms:
        raise _err("symptoms", "expected a non-empty mapping of symptom id -> entry")
    symptoms: dict[str, Symptom] = {}
    for sid, entry in raw_symptoms.items():
        where = f"symptoms.{sid}"
        if not isinstance(sid, str) or not _SYMPTOM_ID.match(sid):
            raise _err(where, "symptom id must be lower_snake_case")
        if not isinstance(entry, dict):
            raise _err(where, "expected a mapping")
        extra = set(entry) - {"name", "question", "phrasings", "caregiver_phrasings", "caregiver_question", "terms", "cues"}
        if extra:
            raise _err(where, f"unknown keys {sorted(extra)}")
        cq = entry.get("caregiver_question")
        symptoms[sid] = Symptom(
            id=sid,
            name=_text(entry.get("name"), f"{where}.name"),
            question=_text(entry.get("question"), f"{where}.question"),
            phrasings=_str_list(entry.get("phrasings"), f"{where}.phrasings"),
            caregiver_phrasings=_str_list(entry["caregiver_phrasings"], f"{where}.caregiver_phrasings")
            if "caregiver_phrasings" in entry else (),
            caregiver_question=_text(cq, f"{where}.caregiver_question") if cq is not None else None,
            terms=_str_list(entry["terms"], f"{where}.terms") if "terms" in entry else (),
            cues=_cues(entry["cues"], f"{where}.cues") if "cues" in entry else (),
        )

    red_flags = _red_flag_catalogue(data.get("red_flags"))

    raw_conditions = data.get("conditions")
    if not isinstance(raw_conditions, dict) or not raw_conditions:
        raise _err("conditions", "expected a non-empty mapping of ICD-10 code -> entry")
    conditions: dict[str, Condition] = {}
    for code, entry in raw_conditions.items():
        where = f"conditions.{code}"
        if not isinstance(code, str) or not ICD10_PATTERN.match(code):
            raise _err(where, "key must be an ICD-10 code such as J45.9")
        if not isinstance(entry, dict):
            raise _err(where, "expected a mapping")
        extra = set(entry) - {"name", "symptoms", "red_flags", "durations", "speaker"}
        if extra:
            raise _err(where, f"unknown keys {sorted(extra)}")
        speaker = entry.get("speaker", "patient")
        if speaker not in SPEAKERS:
            raise _err(f"{where}.speaker", f"must be one of {SPEAKERS}, got {speaker!r}")
        probs = entry.get("symptoms")
        if not isinstance(probs, dict) or len(probs) < 2:
            raise _err(f"{where}.symptoms", "expected a mapping of at least two symptom id -> probability")
        for sid, p in probs.items():
            if sid not in symptoms:
                raise _err(f"{where}.symptoms.{sid}", "unknown symptom id (not in the symptoms catalogue)")
            if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0 < p <= 1:
                raise _err(f"{where}.symptoms.{sid}", f"probability must be in (0, 1], got {p!r}")
            if speaker == "caregiver" and not symptoms[sid].caregiver_phrasings:
                raise _err(f"{where}.symptoms.{sid}", "a caregiver condition needs caregiver_phrasings for each symptom")
        flags = _str_list(entry.get("red_flags"), f"{where}.red_flags")
        if red_flags:  # with a catalogue, a condition lists red flag ids
            for i, fid in enumerate(flags):
                if fid not in red_flags:
                    raise _err(f"{where}.red_flags[{i}]", f"unknown red flag id {fid!r} (not in the red_flags catalogue)")
        conditions[code] = Condition(
            code=code,
            name=_text(entry.get("name"), f"{where}.name"),
            symptoms={k: float(v) for k, v in probs.items()},
            red_flags=tuple(red_flags[f].label for f in flags) if red_flags else flags,
            red_flag_ids=flags if red_flags else (),
            durations=_str_list(entry["durations"], f"{where}.durations") if "durations" in entry else (),
            speaker=speaker,
        )
    if require_codes is not None:
        missing = [c for c in require_codes if c not in conditions]
        if missing:
            raise _err("conditions", f"missing required conditions {missing}")
    return Domain(conditions=conditions, symptoms=symptoms, absent_symptom_probability=float(base),
                  clinical_terms=terms, source=source, red_flags=red_flags)


def _cues(value: Any, where: str) -> tuple[str, ...]:
    """Cue patterns: a list of strings that each compile (see :mod:`phaita.models.findings`)."""
    from phaita.data.cues import compile_cue  # the cue language (text only, no domain)

    cues = _str_list(value, where)
    for i, cue in enumerate(cues):
        try:
            compile_cue(cue)
        except re.error as exc:
            raise _err(f"{where}[{i}]", f"cue {cue!r} does not compile ({exc})") from None
    return cues


def _red_flag_catalogue(raw: Any) -> dict[str, RedFlag]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise _err("red_flags", "expected a non-empty mapping of red flag id -> entry")
    out: dict[str, RedFlag] = {}
    for fid, entry in raw.items():
        where = f"red_flags.{fid}"
        if not isinstance(fid, str) or not _SYMPTOM_ID.match(fid):
            raise _err(where, "red flag id must be lower_snake_case")
        if not isinstance(entry, dict):
            raise _err(where, "expected a mapping")
        extra = set(entry) - {"label", "cues", "absent_cues", "question", "caregiver_question", "danger"}
        if extra:
            raise _err(where, f"unknown keys {sorted(extra)}")
        danger = entry.get("danger", 2)
        if danger not in (1, 2, 3):
            raise _err(f"{where}.danger", f"must be 1 (life-threatening), 2 (severe) or 3 (urgent review), got {danger!r}")
        cq = entry.get("caregiver_question")
        out[fid] = RedFlag(id=fid, label=_text(entry.get("label"), f"{where}.label"),
                           cues=_cues(entry.get("cues"), f"{where}.cues"),
                           absent_cues=_cues(entry["absent_cues"], f"{where}.absent_cues") if entry.get("absent_cues") else (),
                           question=_text(entry["question"], f"{where}.question") if "question" in entry else "",
                           caregiver_question=_text(cq, f"{where}.caregiver_question") if cq is not None else None,
                           danger=danger)
    return out


def load_domain(path: str | os.PathLike[str] | None = None) -> Domain:
    """Load and validate a conditions YAML file (default: the packaged ``conditions.yaml``)."""
    if path is None:
        ref = resources.files("phaita").joinpath("data/conditions.yaml")
        text, source, required = ref.read_text(encoding="utf-8"), "phaita/data/conditions.yaml", CONDITION_CODES
    else:
        with open(path, encoding="utf-8") as fh:
            text, source, required = fh.read(), os.fspath(path), None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid domain data in {source}: not valid YAML ({exc})") from exc
    return validate_domain_data(data, source, require_codes=required)


@functools.lru_cache(maxsize=1)
def get_domain() -> Domain:
    """The packaged domain, loaded and validated once (first use)."""
    return load_domain()
