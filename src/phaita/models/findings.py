"""What a complaint (or an answer) says: the symptoms it states and denies, and the red flags.

Negation-aware matching of the lay cues in the domain data (:mod:`phaita.data.cues`); no model. Used
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

from phaita.data.cues import find, normalize
from phaita.data.domain import Domain, get_domain

__all__ = ["Findings", "RedFlagFinding", "ConditionFit", "extract_symptoms", "find_red_flags", "merge_findings",
           "condition_fit", "implied_known", "implied_stated", "PRESUPPOSES"]


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


#: A condition's typical symptoms denied with at least this probability contradict it ("no wheeze" for asthma).
TYPICAL = 0.75
#: A symptom that is a hallmark of another condition, stated for one that lacks it, contradicts it.
SIGNATURE = 0.6
#: A specific symptom implies the general one: a condition with a sudden high fever has a fever.
IMPLIES = {"high_fever": "fever", "shaking_chills": "chills", "rusty_phlegm": "productive_cough",
           "colored_phlegm": "productive_cough", "increased_phlegm": "productive_cough",
           "gradual_breathlessness": "shortness_of_breath", "fast_breathing": "shortness_of_breath"}


#: What a stated symptom answers without being asked. Known asthma answers "a long-term lung
#: condition?" (an asthmatic would say yes, and that says nothing about COPD); one kind of cough answers
#: the other, and a cough with nothing coming up answers every question about its phlegm.
_ANSWERED_BY_STATED = {"asthma_history": ("copd_history",),
                       "dry_cough": ("productive_cough", "colored_phlegm", "rusty_phlegm", "increased_phlegm"),
                       "productive_cough": ("dry_cough",)}
#: What a denied symptom answers: no fever is no sudden high fever; no phlegm is no green phlegm.
_ANSWERED_BY_DENIED = {"fever": ("high_fever",), "chills": ("shaking_chills",),
                       "productive_cough": ("colored_phlegm", "rusty_phlegm", "increased_phlegm"),
                       "shortness_of_breath": ("gradual_breathlessness",)}


#: A question that takes another symptom for granted ("Is the phlegm green?" takes a cough with phlegm).
PRESUPPOSES = {"colored_phlegm": "productive_cough", "rusty_phlegm": "productive_cough",
               "increased_phlegm": "productive_cough", "high_fever": "fever", "shaking_chills": "chills"}


def implied_stated(findings: Findings) -> frozenset[str]:
    """The stated symptoms and their general ones (green phlegm: a cough with phlegm)."""
    stated = set(findings.stated)
    while True:  # specific -> general, to a fixed point
        more = {IMPLIES[s] for s in stated if s in IMPLIES} - stated
        if not more:
            return frozenset(stated)
        stated |= more


def implied_known(findings: Findings) -> frozenset[str]:
    """Symptoms the words imply, beyond those they state or deny: never asked about.

    A specific symptom implies its general one (green phlegm is a cough with phlegm, which in turn
    is not a dry cough); known asthma implies a long-term lung disease; a denied general symptom
    denies its specific ones.
    """
    stated = implied_stated(findings)
    out = set(stated)
    for s in stated:
        out.update(_ANSWERED_BY_STATED.get(s, ()))
    for s in findings.denied:
        out.update(_ANSWERED_BY_DENIED.get(s, ()))
    return frozenset(out - findings.known)


#: Said without saying which kind: "a cough" supports a condition with a dry or a productive cough.
_GENERIC = {"cough": (("cough*", "coff*", "coughing"), ("dry_cough", "productive_cough"))}


def _generic_support(text: str, stated: set[str], cond_symptoms: dict[str, float]) -> list[str]:
    out = []
    for name, (cues, kinds) in _GENERIC.items():
        if stated & set(kinds) or not any(k in cond_symptoms for k in kinds):
            continue
        if any(not m.denied for m in find(text, cues)):
            out.append(name)
    return out


@dataclass(frozen=True)
class ConditionFit:
    """How well a text fits a condition: the condition's symptoms it states (support), and what
    contradicts it (a symptom the condition does not have, or a typical one denied)."""

    code: str
    support: tuple[str, ...]
    contradictions: tuple[str, ...]

    @property
    def score(self) -> float:
        """In [0, 1]: 1 with two or more supporting symptoms and no contradiction, halved per contradiction."""
        return min(1.0, len(self.support) / 2) * 0.5 ** len(self.contradictions)

    def on_condition(self, min_support: int = 2) -> bool:
        return len(self.support) >= min_support and not self.contradictions


def condition_fit(text: str, code: str, domain: Domain | None = None, findings: Findings | None = None) -> ConditionFit:
    """Does ``text`` support condition ``code``? ("infant" says who, not what: it is not support.)"""
    domain = domain or get_domain()
    cond = domain.condition(code)
    f = findings if findings is not None else extract_symptoms(text, domain)
    has = set(cond.symptoms) | {IMPLIES[s] for s in cond.symptoms if s in IMPLIES}
    # a specific symptom whose general one the condition has supports it: "a fever of 39" (high fever)
    # is a fever for any pneumonia, not a contradiction of the ones without a sudden high fever
    stated = {IMPLIES[s] if s not in has and IMPLIES.get(s) in has else s for s in f.stated}
    support = tuple(sorted([s for s in stated if s in has and s != "infant"]
                           + _generic_support(text, stated, cond.symptoms)))
    # stated: a symptom this condition does not have and another has as a hallmark (P >= SIGNATURE)
    contra = sorted(s for s in stated if s not in has and s != "infant" and max(
        (c.symptoms.get(s, 0.0) for c in domain.conditions.values()), default=0.0) >= SIGNATURE)
    contra += sorted(s for s in f.denied if cond.symptoms.get(s, 0.0) >= TYPICAL)
    if cond.speaker == "caregiver" and "infant" in f.denied:
        contra.append("infant")
    return ConditionFit(code, support, tuple(contra))
