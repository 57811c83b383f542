"""Is a question fit to show a patient (or a baby's carer)? Every LM question passes here first.

A question is shown only if it is one complete yes/no question (an auxiliary verb, a subject, and
something said about the subject: "Is the baby?" has no predicate), in plain words (no clinical term),
addressed to the person who answers (a baby does not answer: its carer is asked about "your baby" /
"your child", never about themselves; a patient is not asked about a child), about the intended symptom by its lay cues and about
no other symptom. :func:`check_question` says why not, or None; the question generator falls back
to the domain's template question on any reason, never to a broken sentence.

    >>> check_question("Is the baby?", "feeding_difficulty", "caregiver")
    'no predicate after the subject (an incomplete question)'
"""

from __future__ import annotations

import re

from phaita.data.domain import Domain, get_domain
from phaita.models.findings import extract_symptoms

__all__ = ["check_question", "AUXILIARIES"]

AUXILIARIES = frozenset({"do", "does", "did", "is", "are", "was", "were", "have", "has", "had", "can", "could",
                         "would", "will"})
# a sentence that ends on one of these is cut off ("Does your baby have a?")
_DANGLING = frozenset({"a", "an", "the", "of", "to", "and", "or", "with", "your", "my", "any", "that", "when", "if",
                       "but", "than", "very", "been", "be", "feeling", "having"})
_SUBJECT = re.compile(r"^(you|he|she|it|they|there|(?:your|the|his|her|my|this|that)\s+(?:little\s+)?[a-z']+)\b")
_CARER_WORDS = re.compile(r"\b(your (baby|child|little one|son|daughter|boy|girl)('s)?|the (baby|child)('s)?|"
                          r"(he|she|him|her|his|they|their))\b")
_CHILD = re.compile(r"\b(your|the) (baby|child|little one)\b")
_MIN_WORDS, _MAX_WORDS = 4, 25


def check_question(text: str, symptom_id: str, speaker: str = "patient", domain: Domain | None = None, *,
                   template: str | None = None) -> str | None:
    """None when ``text`` is fit to ask about ``symptom_id`` of ``speaker``'s patient; else the reason.

    ``speaker``: ``"patient"`` (asked about themselves) or ``"caregiver"`` (asked about their child).
    ``template``: the domain's question for the symptom; the text may name no symptom it does not.
    """
    domain = domain or get_domain()
    q = " ".join((text or "").split())
    if not q.endswith("?") or re.search(r"[!?]|\.(?!\d)", q[:-1]):  # "38.5" is not a full stop
        return "not one question ending in '?'"
    words = re.findall(r"[a-z']+", q.lower())
    if len(words) < _MIN_WORDS and words and words[0] in AUXILIARIES:
        return "no predicate after the subject (an incomplete question)"
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS:
        return f"{len(words)} words (a question has {_MIN_WORDS}-{_MAX_WORDS})"
    if words[0] not in AUXILIARIES:
        return f"not a yes/no question (starts with {words[0]!r})"
    rest = " ".join(words[1:])
    m = _SUBJECT.match(rest)
    subject = m.group(1) if m else words[1]
    if not rest[len(subject):].strip():
        return "no predicate after the subject (an incomplete question)"
    if words[-1] in _DANGLING:
        return f"cut off (ends on {words[-1]!r})"
    if any(a == b for a, b in zip(words, words[1:])):
        return "a word repeated"
    jargon = [w for w in words if w in domain.clinical_terms]
    if jargon:
        return f"clinical word {jargon[0]!r}"
    lowered = q.lower()
    if speaker == "caregiver":
        if not _CARER_WORDS.search(lowered):
            return "asks the carer about themselves, not about the child"
    elif _CHILD.search(lowered):
        return "asks about a child, but the patient answers for themselves"
    asked = extract_symptoms(q, domain).known
    if symptom_id != "infant":  # "your baby" says whom the question is about, not a symptom
        asked -= {"infant"}
    if symptom_id not in asked:
        return f"does not ask about {domain.symptoms[symptom_id].name}"
    allowed = {symptom_id} | (extract_symptoms(template, domain).known if template else set())
    extra = sorted(asked - allowed)
    if extra:
        return f"also asks about {', '.join(domain.symptoms[s].name for s in extra)}"
    return None
