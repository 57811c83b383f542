"""What to ask next, and when to stop: a question is asked only if it can change what happens.

Two kinds of question can:

1. **A diagnostic question** whose expected information gain over the differential (the leading
   conditions, after the answers so far) is at least :data:`GAIN_THRESHOLD` bits, about a symptom
   the words have not stated, denied or implied, that the person answering can tell (a carer is not
   asked whether the baby's chest feels tight). Diagnostic questions come first: the red flags to
   check depend on the diagnosis.
2. **A red-flag check** of the leading condition (and of the runner-up, while the two are not told
   apart), not yet stated or denied, most dangerous first (``danger`` in ``conditions.yaml``): a
   "yes" makes the result URGENT. Once it is URGENT, only the checks more dangerous than every red
   flag present are still asked (an asthmatic too breathless to speak is asked about blue lips and
   a silent chest: life-threatening signs change what the crew does); with a life-threatening sign
   present, none. A check whose answer the words already gave is not asked ("Has your fever lasted
   more than three days?" after "no fever"; "breathless at rest?" after "not short of breath").

When neither is left the conversation stops, and the result says why (:attr:`NextStep.stop_reason`).

Why 0.1 bits: over the 450 read hand-written complaints (the dev sets; never the holdout), with
every question asked and answers simulated from each complaint's condition, the questions' gains
cluster at 0.00-0.05 bits (settled differentials: 5095 questions, 1 answer moved the leading
condition) and above 0.2 bits (open ones: 45 questions, 6 moved it); 0.05-0.2 bits held 94
questions and moved it 0 times. The threshold sits below the open cluster with a margin
(``benchmarks/triage_quality.py --only-conversations`` prints the distribution; docs/BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from phaita.data.domain import Domain
    from phaita.models.findings import Findings, RedFlagFinding
    from phaita.models.question_generator import Question, QuestionGenerator

__all__ = ["GAIN_THRESHOLD", "MAX_QUESTIONS", "NextStep", "next_step", "red_flags_to_check"]

#: A diagnostic question is asked only when its expected information gain is at least this (bits).
GAIN_THRESHOLD = 0.1
#: A call does not go on for ever: at most this many questions (red-flag checks included).
MAX_QUESTIONS = 12


@dataclass(frozen=True)
class NextStep:
    """The next question, or None and why the conversation stops."""

    question: "Question | None"
    stop_reason: str | None


#: A red flag that takes a symptom for granted is answered "no" when every one of them was denied.
FLAG_PRESUPPOSES = {"fever_3_days": ("fever",), "cough_3_weeks": ("dry_cough", "productive_cough"),
                    "breathless_at_rest": ("shortness_of_breath",), "too_breathless_to_speak": ("shortness_of_breath",),
                    "inhaler_not_helping": ("inhaler_use",), "silent_chest": ("shortness_of_breath",),
                    "fast_breathing_30": ("fast_breathing",)}


def red_flags_to_check(leading: Sequence[str], present: Sequence["RedFlagFinding"],
                       denied: Sequence["RedFlagFinding"], domain: "Domain",
                       denied_symptoms: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(red flag id, condition) of the ``leading`` conditions still worth checking, most dangerous
    first (each condition's, in turn): not stated or denied, not answered by a denied symptom, and,
    with red flags present, more dangerous than all of them."""
    known = {f.id for f in present} | {f.id for f in denied}
    worst = min((domain.red_flags[f.id].danger for f in present), default=None)
    out: list[tuple[str, str]] = []
    for code in leading:
        for fid in domain.condition(code).red_flags_by_danger(domain.red_flags):
            needs = FLAG_PRESUPPOSES.get(fid)
            if fid in known or fid in {f for f, _ in out} or (needs and set(needs) <= denied_symptoms):
                continue
            if worst is None or domain.red_flags[fid].danger < worst:
                out.append((fid, code))
    return out


def next_step(*, base: Mapping[str, float], ranked: Sequence[tuple[str, str, float]], complaint: str,
              said: "Findings", answers: Mapping[str, bool], n_asked: int, present: Sequence["RedFlagFinding"],
              denied: Sequence["RedFlagFinding"], ambiguous: tuple[str, str] | None,
              questions: "QuestionGenerator", gain_threshold: float = GAIN_THRESHOLD,
              max_questions: int = MAX_QUESTIONS) -> NextStep:
    """The next question for a complaint with the answers so far (see the module's rules)."""
    from phaita.models.question_generator import Question

    domain = questions.domain
    if n_asked >= max_questions:
        return NextStep(None, f"stopped: {max_questions} questions asked, the most one call allows")
    leader = ranked[0][0]
    speaker = questions.addressee({c: p for c, _, p in ranked}, said)
    best = questions.best_symptom(base, complaint=complaint, answers=answers, speaker=speaker)
    if best is not None and best[1] >= gain_threshold:
        sid, gain = best
        text, source, rejected = questions._phrase(sid, speaker)
        return NextStep(Question(text, sid, gain, source, rejected=rejected, speaker=speaker,
                                 reason=f"worth {gain:.2f} bits (asked at {gain_threshold:.2f} or more)"), None)
    best_txt = (f"the best, about {domain.symptoms[best[0]].name}, is worth {best[1]:.2f} bits" if best
                else "nothing left to ask")
    leading = [leader] + ([ambiguous[1]] if ambiguous else [])
    heard = questions._heard(complaint, answers)
    open_flags = red_flags_to_check(leading, present, denied, domain, heard.denied)
    if not open_flags and present:
        return NextStep(None, f"stopped: URGENT ({'; '.join(f.label for f in present)}); no question left worth "
                              f"{gain_threshold:.2f} bits ({best_txt}), and no red flag left more dangerous "
                              "than those present")
    if open_flags:
        fid, code = open_flags[0]
        flag = domain.red_flags[fid]
        return NextStep(Question(flag.question_for(speaker), None, 0.0, "template", red_flag_id=fid, speaker=speaker,
                                 reason=f"red-flag check of {code} (danger {flag.danger}): {flag.label}"), None)
    checked = " and ".join(leading)
    return NextStep(None, f"stopped: no question left worth {gain_threshold:.2f} bits ({best_txt}), and every "
                          f"red flag of {checked} was asked or already answered: none present")
