"""A whole triage conversation: the complaint, the questions and answers, the result, and why it stopped.

Each turn is one :func:`phaita.models.triage.triage` call on the complaint and every answer so far
(the policy of :mod:`phaita.models.policy` picks the question), so a conversation is exactly the
sequence of results a paramedic's screen shows.

    >>> record = converse(complaint, discriminator, questions, simulated_patient("J45.9"))
    >>> record.stop_reason
    'stopped: no question left worth 0.10 bits (...), and every red flag of J45.9 was asked ...'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection

from phaita.models.triage import TriageResult, triage

if TYPE_CHECKING:
    from phaita.data.domain import Domain
    from phaita.models.discriminator import DiagnosisDiscriminator
    from phaita.models.question_generator import Question, QuestionGenerator

__all__ = ["Turn", "ConversationRecord", "converse", "simulated_patient"]

#: An answer for a question: True/False or the reply's words ("yes, a bit").
Respond = Callable[["Question"], "bool | str"]


@dataclass(frozen=True)
class Turn:
    question: "Question"
    answer: bool | str
    result: TriageResult  # the result after this answer


@dataclass
class ConversationRecord:
    complaint: str
    before: TriageResult  # after the complaint alone
    turns: list[Turn] = field(default_factory=list)

    @property
    def result(self) -> TriageResult:
        return self.turns[-1].result if self.turns else self.before

    @property
    def stop_reason(self) -> str | None:
        return self.result.stop_reason


def converse(complaint: str, discriminator: "DiagnosisDiscriminator", questions: "QuestionGenerator",
             respond: Respond, **triage_kwargs) -> ConversationRecord:
    """Ask until the policy stops (it always does: at most ``MAX_QUESTIONS``), answering by ``respond``."""
    answers: dict[str, bool | str] = {}
    flag_answers: dict[str, bool | str] = {}
    result = triage(complaint, discriminator, questions, **triage_kwargs)
    record = ConversationRecord(complaint, result)
    while result.question is not None:
        q = result.question
        answer = respond(q)
        if q.red_flag_id is not None:
            flag_answers[q.red_flag_id] = answer
        else:
            answers[q.symptom_id] = answer
        result = triage(complaint, discriminator, questions, answers, red_flag_answers=flag_answers, **triage_kwargs)
        record.turns.append(Turn(q, answer, result))
    return record


def simulated_patient(code: str, domain: "Domain | None" = None, *, red_flags: Collection[str] = ()) -> Respond:
    """Answers as a patient with condition ``code``: "yes" to a symptom it has with probability at
    least 0.5, else "no"; "yes" to the red flags named in ``red_flags`` only."""
    from phaita.data.domain import get_domain

    domain = domain or get_domain()

    def respond(q: "Question") -> str:
        if q.red_flag_id is not None:
            return "yes" if q.red_flag_id in red_flags else "no"
        return "yes" if domain.probability(code, q.symptom_id) >= 0.5 else "no"

    return respond
