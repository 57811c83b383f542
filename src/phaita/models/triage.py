"""One triage step: a complaint (and the answers so far) in; red flags, ranked diagnoses, an honest
note when the words cannot separate the leading conditions, and the next question out, or why the
conversation stops (:mod:`phaita.models.policy`: a question is asked only if it can change what happens).

    >>> result = triage(complaint, discriminator, questions, answers={"rusty_phlegm": True})
    >>> result.headline            # red flags first
    'URGENT: Too breathless to speak in sentences'

Red flags are those of the leading conditions, stated in the complaint or the answers and not
denied there (:func:`phaita.models.findings.find_red_flags`), or answered "yes" to a red-flag
check (``red_flag_answers``). The answers update the discriminator's probabilities by Bayes' rule
with the domain's P(symptom | condition).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from phaita.models.findings import Findings, RedFlagFinding, extract_symptoms, find_red_flags, merge_findings
from phaita.models.policy import GAIN_THRESHOLD, MAX_QUESTIONS, next_step

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
    #: why the conversation stops here (None while there is a question, or without a question generator)
    stop_reason: str | None = None

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
           answers: Mapping[str, bool | str] | None = None, *, red_flag_answers: Mapping[str, bool | str] | None = None,
           top_k: int = 3, gain_threshold: float = GAIN_THRESHOLD, max_questions: int = MAX_QUESTIONS) -> TriageResult:
    """Triage one complaint with the answers so far: ``answers`` {symptom id: yes/no or the reply's
    words}, ``red_flag_answers`` {red flag id: yes/no or words}; with ``questions``, the next question
    or the reason to stop."""
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
    flag_answers: dict[str, bool] = {}
    for fid, answer in (red_flag_answers or {}).items():
        if fid not in domain.red_flags:
            raise KeyError(f"unknown red flag {fid!r}; known: {', '.join(domain.red_flags)}")
        yes = parse_answer(answer)
        if yes is not None:
            flag_answers[fid] = yes
        if isinstance(answer, str):
            answer_texts.append(answer)
    present, denied_flags = find_red_flags([complaint, *answer_texts], order[:top_k], domain)
    present, denied_flags = _with_flag_answers(present, denied_flags, flag_answers, order[:top_k], domain)
    ambiguous, note = _ambiguity(ranked)
    question = stop = None
    if questions is not None:
        # the question generator applies the answers itself (Bayes), so it gets the complaint's probabilities
        step = next_step(base=base, ranked=ranked, complaint=complaint, said=said, answers=answered,
                         n_asked=len(answered) + len(flag_answers), present=present, denied=denied_flags,
                         ambiguous=ambiguous, questions=questions, gain_threshold=gain_threshold,
                         max_questions=max_questions)
        question, stop = step.question, step.stop_reason
    if ambiguous and question is not None and question.symptom_id is not None:
        note += f"; the next question (about {domain.symptoms[question.symptom_id].name}) helps tell them apart"
    return TriageResult(ranked, findings, present, denied_flags, ambiguous, note, question, stop)


def _with_flag_answers(present: list[RedFlagFinding], denied: list[RedFlagFinding], flag_answers: dict[str, bool],
                       codes: Sequence[str], domain) -> tuple[list[RedFlagFinding], list[RedFlagFinding]]:
    """A "yes" to a red-flag check is a red flag present (the safe side wins over a denial in words);
    a "no" denies it unless the words state it."""
    present, denied = list(present), list(denied)
    for fid, yes in flag_answers.items():
        flag = domain.red_flags[fid]
        owners = tuple(c for c in codes if fid in domain.condition(c).red_flag_ids) or tuple(codes[:1])
        finding = RedFlagFinding(fid, flag.label, owners, ("yes: " if yes else "no: ") + flag.question)
        if yes and fid not in {f.id for f in present}:
            present.append(finding)
            denied = [f for f in denied if f.id != fid]
        elif not yes and fid not in {f.id for f in present} | {f.id for f in denied}:
            denied.append(finding)
    return present, denied


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
