"""What a complaint (or an answer) says: the symptoms it states and denies, and the red flags.

Negation-aware matching of the lay cues in the domain data (:mod:`phaita.cues`); no model. Used
by the question generator (ask only about what was not said), the triage result (red flags first),
the complaint generator (is an LM complaint on its condition?) and the realism scorer (does the
complaint support its condition?).

    >>> f = extract_symptoms("I'm wheezing and my chest is tight, no fever")
    >>> sorted(f.stated), sorted(f.denied)
    (['chest_tightness', 'wheezing'], ['fever'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from phaita.cues import find, normalize
from phaita.domain import Domain, get_domain

__all__ = ["Findings", "RedFlagFinding", "extract_symptoms", "find_red_flags", "merge_findings"]


@dataclass(frozen=True)
class Findings:
    """Symptom ids a text states and denies, with the words that said so."""

    stated: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()
    evidence: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def known(self) -> frozenset[str]:
        """Stated or denied: nothing left to ask about these."""
        return self.stated | self.denied


def extract_symptoms(text: str, domain: Domain | None = None) -> Findings:
    """The symptoms ``text`` states and denies. A symptom both stated and denied counts as stated
    ("no fever yesterday, but now I'm burning up")."""
    domain = domain or get_domain()
    norm = normalize(text or "")
    stated: set[str] = set()
    denied: set[str] = set()
    evidence: dict[str, str] = {}
    for sid, sym in domain.symptoms.items():
        matches = find(text, sym.cues, normalized=norm)
        if not matches:
            continue
        positive = [m for m in matches if not m.denied]
        if positive:
            stated.add(sid)
            evidence[sid] = positive[0].text
        else:
            denied.add(sid)
            evidence[sid] = "not " + matches[0].text
    return Findings(frozenset(stated), frozenset(denied), evidence)


def merge_findings(*findings: Findings) -> Findings:
    """Later findings win: an answer "no" after a complaint that said "a bit of a fever" denies it."""
    stated: set[str] = set()
    denied: set[str] = set()
    evidence: dict[str, str] = {}
    for f in findings:
        stated = (stated - f.denied) | f.stated
        denied = (denied - f.stated) | f.denied
        evidence.update(f.evidence)
    return Findings(frozenset(stated), frozenset(denied), evidence)


@dataclass(frozen=True)
class RedFlagFinding:
    """A red flag of one or more of the conditions considered, present in (or denied by) the words."""

    id: str
    label: str
    conditions: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.label


def find_red_flags(texts: str | Sequence[str], codes: Iterable[str], domain: Domain | None = None
                   ) -> tuple[list[RedFlagFinding], list[RedFlagFinding]]:
    """(present, denied): the red flags of ``codes`` that ``texts`` state, and those they deny.

    A flag stated anywhere is present, even if another sentence denies it (the safe side).
    """
    domain = domain or get_domain()
    texts = [texts] if isinstance(texts, str) else list(texts)
    norms = [normalize(t or "") for t in texts]
    owners: dict[str, list[str]] = {}
    for code in codes:
        for fid in domain.condition(code).red_flag_ids:
            owners.setdefault(fid, []).append(code)
    present: list[RedFlagFinding] = []
    denied: list[RedFlagFinding] = []
    for fid, conds in owners.items():
        flag = domain.red_flags[fid]
        hits = [m for t, n in zip(texts, norms) for m in find(t, flag.cues, normalized=n)]
        positive = [m for m in hits if not m.denied]
        if positive:
            present.append(RedFlagFinding(fid, flag.label, tuple(conds), positive[0].text))
            continue
        absent = [m for t, n in zip(texts, norms) for m in find(t, flag.absent_cues, normalized=n) if not m.denied]
        if hits or absent:
            denied.append(RedFlagFinding(fid, flag.label, tuple(conds), (hits or absent)[0].text))
    return present, denied
