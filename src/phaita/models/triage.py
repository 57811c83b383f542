"""One triage step: a complaint (and the answers so far) in; red flags, ranked diagnoses, an honest
note when the words cannot separate the leading conditions, and the next question out.

    >>> result = triage(complaint, discriminator, questions, answers={"rusty_phlegm": True})
    >>> result.headline            # red flags first
    'URGENT: Too breathless to speak in sentences'

Red flags are those of the leading conditions, stated in the complaint or the answers and not
denied there (:func:`phaita.models.findings.find_red_flags`). The answers update the
discriminator's probabilities by Bayes' rule with the domain's P(symptom | condition).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from phaita.models.findings import Findings, RedFlagFinding, extract_symptoms, find_red_flags, merge_findings

if TYPE_CHECKING:
    from phaita.models.discriminator import DiagnosisDiscriminator
    from phaita.models.question_generator import Question, QuestionGenerator

__all__ = ["TriageResult", "triage", "parse_answer", "AMBIGUITY_RATIO"]

#: The runner-up is "not told apart" from the leader when its probability is at least this share of it.
AMBIGUITY_RATIO = 0.5
_YES = re.compile(r"^\s*(yes|yeah|yep|yup|aye|i (do|have|am|did)|she (does|has|is)|he (does|has|is)|a (bit|little)|sort of)\b", re.I)
_NO = re.compile(r"^\s*(no|nope|nah|not|never|none|i (dont|don't|haven't|havent|am not)|(she|he) (doesn't|doesnt|hasn't|isn't))\b", re.I)


def parse_answer(answer: bool | str) -> bool | None:
    """A yes/no answer from ``True``/``False`` or a short reply ("yes, a bit" / "no"); None if unclear."""
    if isinstance(answer, bool):
        return answer
    if _NO.match(answer):
        return False
    if _YES.match(answer):
        return True
    return None


@dataclass(frozen=True)
class TriageResult:
    """What a paramedic reads first: red flags, then the ranked diagnoses and the next question."""

    ranked: list[tuple[str, str, float]]
    findings: Findings
    red_flags: list[RedFlagFinding]
    denied_red_flags: list[RedFlagFinding] = field(default_factory=list)
    ambiguous: tuple[str, str] | None = None
    note: str | None = None
    question: "Question | None" = None

    @property
    def urgent(self) -> bool:
        return bool(self.red_flags)

    @property
    def headline(self) -> str:
        """``URGENT: <red flags>`` or ``no red flag stated``."""
        if self.red_flags:
            return "URGENT: " + "; ".join(f.label for f in self.red_flags)
        return "no red flag stated"


def triage(complaint: str, discriminator: "DiagnosisDiscriminator", questions: "QuestionGenerator | None" = None,
           answers: Mapping[str, bool | str] | None = None, *, top_k: int = 3) -> TriageResult:
    """Triage one complaint with the answers so far ({symptom id: yes/no or the reply's words})."""
    domain = discriminator.domain
    base = {c: float(p) for c, p in zip(discriminator.classes, discriminator.predict_proba([complaint])[0])}
    probs = base
    said = extract_symptoms(complaint, domain)
    answered: dict[str, bool] = {}
    answer_texts: list[str] = []
    for sid, answer in (answers or {}).items():
        domain.symptom(sid)  # unknown ids fail here, by name
        yes = parse_answer(answer)
        if yes is not None:
            answered[sid] = yes
        if isinstance(answer, str):
            answer_texts.append(answer)
    if answered:
        confirmed = [s for s, yes in answered.items() if yes]
        denied = [s for s, yes in answered.items() if not yes]
        probs = _bayes(base, confirmed, denied, domain)
    order = sorted(probs, key=lambda c: -probs[c])
    ranked = [(c, domain.condition_name(c), probs[c]) for c in order[:top_k]]
    answer_findings = Findings(frozenset(s for s, y in answered.items() if y),
                               frozenset(s for s, y in answered.items() if not y))
    findings = merge_findings(said, answer_findings)
    present, denied_flags = find_red_flags([complaint, *answer_texts], order[:top_k], domain)
    ambiguous, note = _ambiguity(ranked)
    question = None
    if questions is not None:
        # the question generator applies the answers itself (Bayes), so it gets the complaint's probabilities
        question = questions.generate_question(base, complaint=complaint, answers=answered)
    if ambiguous and question is not None:
        note += f"; the next question (about {domain.symptoms[question.symptom_id].name}) helps tell them apart"
    return TriageResult(ranked, findings, present, denied_flags, ambiguous, note, question)


def _bayes(probs: dict[str, float], confirmed: Sequence[str], denied: Sequence[str], domain) -> dict[str, float]:
    out = dict(probs)
    for sid in confirmed:
        out = {c: p * domain.probability(c, sid) for c, p in out.items()}
    for sid in denied:
        out = {c: p * (1 - domain.probability(c, sid)) for c, p in out.items()}
    total = sum(out.values())
    return {c: p / total for c, p in out.items()} if total > 0 else probs


def _ambiguity(ranked: list[tuple[str, str, float]]) -> tuple[tuple[str, str] | None, str | None]:
    if len(ranked) < 2:
        return None, None
    (c1, n1, p1), (c2, n2, p2) = ranked[0], ranked[1]
    if p1 > 0 and p2 / p1 >= AMBIGUITY_RATIO:
        return (c1, c2), (f"{c1} ({n1}) or {c2} ({n2}): these words do not tell them apart "
                          f"({p1:.0%} vs {p2:.0%})")
    return None, None
