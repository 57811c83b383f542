"""QuestionGenerator: the next triage question, chosen by expected information gain.

Given the current diagnosis probabilities, the complaint and the answers so far, it picks the
symptom whose answer best separates the leading conditions (largest expected reduction in entropy,
using P(symptom | condition) from the domain data) among the symptoms *not yet stated or denied*:
what the complaint says (negation-aware, :mod:`phaita.models.findings`) is never asked again, and
the answers update the probabilities by Bayes' rule. Then it phrases the question: by the language
model when one is loaded (through the model loader) and its wording asks about that symptom in
plain words, from the domain's question templates otherwise.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from phaita.data.domain import Domain, get_domain
from phaita.data.manifest import default_spec
from phaita.models._common import LoaderOptions, chat_generate, clean_generation, load_causal_lm, model_label
from phaita.models.findings import PRESUPPOSES, Findings, extract_symptoms, implied_known, implied_stated, merge_findings
from phaita.models.question_check import check_question

log = logging.getLogger("phaita.models.question_generator")

__all__ = ["QuestionGenerator", "Question", "expected_information_gain"]

COMPONENT = "QuestionGenerator"
_SYSTEM = "You are a paramedic asking a patient short, plain yes/no questions about one symptom at a time."
_SHOTS = (("sore throat", "Do you have a sore throat?"), ("headache", "Have you been getting headaches?"))

Probabilities = Mapping[str, float] | Sequence[tuple]


@dataclass(frozen=True)
class Question:
    """A proposed question: its text, the symptom (or red flag) it asks about, the expected
    information gain (bits; 0 for a red-flag check), where the wording came from (``"lm"`` or
    ``"template"``), why the LM's wording was not used (``rejected``), and why it is asked."""

    text: str
    symptom_id: str | None
    information_gain: float
    source: str
    red_flag_id: str | None = None
    rejected: str | None = None
    reason: str = ""
    speaker: str = "patient"  # who answers: the patient, or the carer of a baby

    @property
    def kind(self) -> str:
        return "red_flag" if self.red_flag_id else "symptom"


def _entropy(p: Iterable[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def expected_information_gain(prior: Mapping[str, float], likelihood: Mapping[str, float]) -> float:
    """Expected entropy reduction (bits) of asking a yes/no question.

    ``prior``: P(condition) (normalised here); ``likelihood``: P(yes | condition).
    """
    total = sum(prior.values())
    if total <= 0:
        return 0.0
    prior = {c: p / total for c, p in prior.items()}
    p_yes = sum(prior[c] * likelihood[c] for c in prior)
    gain = _entropy(prior.values())
    for answer_p, lik in ((p_yes, lambda c: likelihood[c]), (1 - p_yes, lambda c: 1 - likelihood[c])):
        if answer_p <= 0:
            continue
        post = [prior[c] * lik(c) / answer_p for c in prior]
        gain -= answer_p * _entropy(post)
    return max(gain, 0.0)


class QuestionGenerator:
    """Propose the next triage question.

    Args:
        model_name: causal LM used to phrase questions. Default: the manifest's.
        use_pretrained: load the LM through the loader; False: template questions only.
        fallback_to_templates: on a loader failure log ONE warning and use templates instead of raising.
        top_n: how many leading conditions the question should separate.
        update_with_answers: first update the given probabilities by Bayes' rule with the confirmed and
            denied symptoms (set False when the caller's probabilities already include the answers).
        max_retries, timeout, allow_offline, token, loader_kwargs: passed to the model loader.
        model, tokenizer: an already loaded LM to share (e.g. the ComplaintGenerator's).
    Raises:
        ModelDownloadError: the LM could not be loaded (message starts with ``QuestionGenerator:``).
    """

    def __init__(self, model_name: str | Sequence[str] | None = None, use_pretrained: bool = True, *,
                 use_4bit: bool = True, fallback_to_templates: bool = False, top_n: int = 3,
                 update_with_answers: bool = True,
                 max_new_tokens: int = 32, seed: int | None = None, max_retries: int = 3, timeout: float = 300,
                 allow_offline: bool = False, token: str | bool | None = None,
                 loader_kwargs: dict[str, Any] | None = None, model: Any = None, tokenizer: Any = None,
                 domain: Domain | None = None) -> None:
        if top_n < 2:
            raise ValueError("top_n must be >= 2 (a question separates at least two conditions)")
        self.domain = domain or get_domain()
        spec = default_spec(COMPONENT, "generator")
        self.model_name = model_name if model_name is not None else spec.model_name
        self.top_n, self.max_new_tokens = top_n, max_new_tokens
        self.update_with_answers = update_with_answers
        self.rng = random.Random(seed)
        self.loader_options = LoaderOptions(max_retries, timeout, allow_offline, token, dict(loader_kwargs or {}))
        self.model, self.tokenizer = model, tokenizer
        #: LM wordings tried, kept, and rejected by the well-formedness check (then the template is shown)
        self.stats = {"lm_tried": 0, "lm_kept": 0, "lm_rejected": 0}
        self.loaded_model_name: str | None = model_label(self.model_name, model) if model is not None else None
        if model is None and use_pretrained:
            loaded = load_causal_lm(COMPONENT, spec, self.model_name, model_name is not None, use_4bit,
                                    fallback_to_templates, "template questions", self.loader_options)
            if loaded is not None:
                self.model, self.tokenizer = loaded
                self.loaded_model_name = model_label(self.model_name, self.model)

    @property
    def mode(self) -> str:
        return "lm" if self.model is not None else "template"

    # -- selection ------------------------------------------------------------------------------
    def _probabilities(self, diagnosis: Probabilities) -> dict[str, float]:
        """Accept {code: p} or predict_diagnosis output [(code, name, p), ...] (or [(code, p), ...])."""
        if isinstance(diagnosis, Mapping):
            probs = {str(c): float(p) for c, p in diagnosis.items()}
        else:
            probs = {str(t[0]): float(t[-1]) for t in diagnosis}
        unknown = [c for c in probs if c not in self.domain.conditions]
        if unknown:
            raise ValueError(f"unknown ICD-10 codes in diagnosis probabilities: {unknown}")
        if not probs or any(p < 0 or math.isnan(p) for p in probs.values()) or sum(probs.values()) <= 0:
            raise ValueError("diagnosis probabilities must be non-negative with a positive sum")
        return probs

    def _known(self, symptoms: Iterable[str]) -> set[str]:
        out = set()
        for s in symptoms:
            try:
                out.add(self.domain.symptom(s).id)
            except KeyError:
                log.debug("%s: ignoring unknown symptom %r", COMPONENT, s)
        return out

    def update_probabilities(self, diagnosis: Probabilities, confirmed: Iterable[str] = (),
                             denied: Iterable[str] = ()) -> dict[str, float]:
        """Bayes update of the condition probabilities by answered symptoms (normalised)."""
        probs = self._probabilities(diagnosis)
        for sid in self._known(confirmed):
            probs = {c: p * self.domain.probability(c, sid) for c, p in probs.items()}
        for sid in self._known(denied):
            probs = {c: p * (1 - self.domain.probability(c, sid)) for c, p in probs.items()}
        total = sum(probs.values())
        return {c: p / total for c, p in probs.items()} if total > 0 else probs

    def rank_symptoms(self, diagnosis: Probabilities, confirmed_symptoms: Iterable[str] = (),
                      denied_symptoms: Iterable[str] = (), *, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """(symptom id, expected information gain in bits) for every unasked symptom, best first.

        The gain is computed over the ``top_n`` leading conditions (renormalised, after the answers'
        Bayes update when ``update_with_answers``); ties are broken
        by symptom order in the domain data, so the result is deterministic. ``exclude``: symptoms
        already known some other way (what the complaint stated or denied), never asked.
        """
        confirmed_symptoms, denied_symptoms = list(confirmed_symptoms), list(denied_symptoms)
        probs = (self.update_probabilities(diagnosis, confirmed_symptoms, denied_symptoms)
                 if self.update_with_answers else self._probabilities(diagnosis))
        leading = dict(sorted(probs.items(), key=lambda kv: -kv[1])[: self.top_n])
        asked = self._known(confirmed_symptoms) | self._known(denied_symptoms) | self._known(exclude)
        candidates = {s for c in leading for s in self.domain.condition(c).symptoms} - asked
        ranked = []
        for sid in self.domain.symptoms:  # domain order: deterministic tie-break
            if sid in candidates:
                lik = {c: self.domain.probability(c, sid) for c in leading}
                ranked.append((sid, expected_information_gain(leading, lik)))
        ranked.sort(key=lambda t: -t[1])
        return ranked

    def select_symptom(self, diagnosis: Probabilities, confirmed_symptoms: Iterable[str] = (),
                       denied_symptoms: Iterable[str] = (), *, exclude: Iterable[str] = ()) -> tuple[str, float] | None:
        """The best (symptom id, gain), or None when every relevant symptom has been asked."""
        ranked = self.rank_symptoms(diagnosis, confirmed_symptoms, denied_symptoms, exclude=exclude)
        return ranked[0] if ranked else None

    def addressee(self, diagnosis: Probabilities, said: Findings | None = None) -> str:
        """Who answers: ``"caregiver"`` when the words are about a baby or the leading condition is a
        baby's (a baby does not answer questions), else ``"patient"``."""
        if said is not None and "infant" in said.stated:
            return "caregiver"
        probs = self._probabilities(diagnosis)
        return self.domain.condition(max(probs, key=probs.get)).speaker

    def askable(self, symptom_id: str, speaker: str) -> bool:
        """A carer is asked only what they can see in their child (a symptom with a carer's question)."""
        return speaker != "caregiver" or self.domain.symptoms[symptom_id].caregiver_question is not None

    def _heard(self, complaint: str | None, answers: Mapping[str, bool] | None) -> Findings:
        said = extract_symptoms(complaint, self.domain) if complaint else Findings()
        answered = Findings(frozenset(s for s, y in (answers or {}).items() if y),
                            frozenset(s for s, y in (answers or {}).items() if not y))
        return merge_findings(said, answered)

    def not_to_ask(self, complaint: str | None, answers: Mapping[str, bool] | None = None) -> frozenset[str]:
        """Symptoms the complaint and answers state, deny or imply (known asthma: a long-term lung
        disease; green phlegm: a cough with phlegm, so not a dry cough), and those whose question
        takes for granted a symptom not yet heard ("Is the phlegm green?" before any phlegm)."""
        heard = self._heard(complaint, answers)
        stated = implied_stated(heard)
        presumed = {s for s, needs in PRESUPPOSES.items() if needs not in stated}
        return heard.known | implied_known(heard) | presumed

    def best_symptom(self, diagnosis: Probabilities, *, complaint: str | None = None,
                     answers: Mapping[str, bool] | None = None, speaker: str | None = None
                     ) -> tuple[str, float] | None:
        """The best (symptom id, gain) to ask next, whatever its gain, or None when nothing is left:
        never a symptom stated, denied or implied, nor one the person answering cannot tell."""
        said = extract_symptoms(complaint, self.domain) if complaint else Findings()
        speaker = speaker or self.addressee(diagnosis, said)
        confirmed = [s for s, y in (answers or {}).items() if y]
        denied = [s for s, y in (answers or {}).items() if not y]
        skip = self.not_to_ask(complaint, answers)
        for sid, gain in self.rank_symptoms(diagnosis, confirmed, denied, exclude=skip):
            if self.askable(sid, speaker):
                return sid, gain
        return None

    # -- phrasing -------------------------------------------------------------------------------
    def phrase_question(self, symptom_id: str, speaker: str = "patient") -> tuple[str, str]:
        """(question text, source): the LM's rewording when loaded and well formed, else the template."""
        text, source, _ = self._phrase(symptom_id, speaker)
        return text, source

    def _phrase(self, symptom_id: str, speaker: str) -> tuple[str, str, str | None]:
        """(text, source, why the LM's wording was rejected or None)."""
        template = self.domain.symptom(symptom_id).question_for(speaker)
        if self.model is None:
            return template, "template", None
        # A 135M model answers a question it is asked to rephrase; asked for a question about a
        # named symptom, with the reply started by the template's first two words, it writes one.
        msgs = [{"role": "system", "content": _SYSTEM}]
        for q, a in _SHOTS:
            msgs += [{"role": "user", "content": f"Symptom: {q}"}, {"role": "assistant", "content": a}]
        who = " (asking a parent about their baby)" if speaker == "caregiver" else ""
        msgs.append({"role": "user", "content": f"Symptom{who}: {self.domain.symptom(symptom_id).name}"})
        raw = chat_generate(self.model, self.tokenizer, msgs, max_new_tokens=self.max_new_tokens,
                            temperature=0.5, seed=self.rng.randrange(2 ** 31), prefix=" ".join(template.split()[:2]))
        text = clean_generation(raw, max_sentences=2, max_words=30)
        m = re.search(r"[^.!?]*\?", text)
        question = m.group(0).strip() if m else ""
        question = question[:1].upper() + question[1:]
        self.stats["lm_tried"] += 1
        why = check_question(question, symptom_id, speaker, self.domain, template=template) if question else \
            "no question in the LM's reply"
        if why is not None:
            self.stats["lm_rejected"] += 1
            log.debug("%s: LM question %r rejected (%s); using the template", COMPONENT, question or raw, why)
            return template, "template", why
        self.stats["lm_kept"] += 1
        return question, "lm", None

    def _usable(self, question: str, symptom_id: str, template: str, speaker: str = "patient") -> bool:
        """The well-formedness check (:func:`phaita.models.question_check.check_question`) passes."""
        return check_question(question, symptom_id, speaker, self.domain, template=template) is None

    def generate_question(self, diagnosis_probabilities: Probabilities, confirmed_symptoms: Iterable[str] = (),
                          denied_symptoms: Iterable[str] = (), *, complaint: str | None = None,
                          answers: Mapping[str, bool] | None = None, min_gain: float = 0.0,
                          speaker: str | None = None) -> Question | None:
        """The next question (None when nothing is left to ask, or nothing worth ``min_gain`` bits).

        ``complaint``: what the patient said; the symptoms it states, denies or implies are not asked.
        ``answers``: {symptom id: yes/no} so far (added to the confirmed and denied symptoms).
        """
        answers = dict(answers or {})
        answers.update({s: True for s in confirmed_symptoms})
        answers.update({s: False for s in denied_symptoms})
        said = extract_symptoms(complaint, self.domain) if complaint else None
        speaker = speaker or self.addressee(diagnosis_probabilities, said)
        best = self.best_symptom(diagnosis_probabilities, complaint=complaint, answers=answers, speaker=speaker)
        if best is None or best[1] < min_gain:
            return None
        sid, gain = best
        text, source, rejected = self._phrase(sid, speaker)
        return Question(text=text, symptom_id=sid, information_gain=gain, source=source, rejected=rejected,
                        reason=f"worth {gain:.2f} bits", speaker=speaker)
