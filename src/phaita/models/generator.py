"""ComplaintGenerator: what a patient (or a parent) would say, for a condition's symptoms.

Two paths. With ``use_pretrained=True`` a causal LM (loaded through the model loader) writes the
patient's own words from a few-shot chat prompt. With ``use_pretrained=False`` (or after a
fallback) templates assemble varied lay-language complaints from the phrasings in the domain data.
"""

from __future__ import annotations

import logging
import random
import re
from typing import Any, Sequence

from phaita.data.domain import Condition, Domain, get_domain
from phaita.data.manifest import default_spec
from phaita.models._common import LoaderOptions, chat_generate, clean_generation, load_causal_lm, model_label
from phaita.models.findings import condition_fit, extract_symptoms

log = logging.getLogger("phaita.models.generator")

__all__ = ["ComplaintGenerator"]

COMPONENT = "ComplaintGenerator"
_OPENERS = ("", "", "Hi,", "Please help,", "I don't feel well.", "Sorry to bother you,", "I need some help.", "Hello,")
_CARE_OPENERS = ("", "", "Please help,", "I'm really worried.", "Hi,", "Sorry to call,")
_CLOSERS = ("", "", "", "What should I do?", "I'm really worried.", "Can someone come out?", "I don't know what to do.")
_JOINERS = (". Also, ", ". On top of that, ", ", plus ", ". And I should say ", ", and also ", ". Oh and ")
# The LM rewrites the patient's own notes (lay phrasings from the domain data) as one complaint, and
# its reply starts with the first note. Measured on SmolLM2-135M, 40 generations each: symptom names
# as the input 12 % on condition at the first try; lay terms 35 %; lay notes 57 %; lay notes with the
# reply started on the first note 72-80 %. The examples are about other complaints (knee, stomach),
# so their symptoms cannot leak into a respiratory complaint.
_SYSTEM = ("You turn a patient's notes into what they say to a paramedic: one or two short sentences, first person, "
           "everyday words. Mention every note.")
_SYSTEM_CARE = ("You turn a parent's notes about their baby into what the parent says to a paramedic: one or two "
                "short sentences, everyday words. Mention every note.")
_SHOTS = (("burning up since yesterday, can't stop coughing, every muscle aches",
           "I've been burning up since yesterday, I can't stop coughing and every muscle in my body aches."),
          ("throat really sore, nose won't stop running",
           "My throat is really sore and my nose just won't stop running, it's been two days."),
          ("knee swollen, hurts to walk", "My knee has swollen right up and it hurts to walk on it."),
          ("head pounding, feel sick, bright lights hurt",
           "Hi, my head is pounding, I feel sick and the lights hurt my eyes."),
          ("stomach cramps, been sick twice", "I've got bad stomach cramps and I've been sick twice since lunch."),
          ("back aches, can't sleep", "My back has been aching for days and now I can't sleep with it."),
          ("ear hurts, feel hot", "My ear really hurts and I feel hot, what should I do?"))
_SHOTS_CARE = (("a temperature, crying a lot, not taking his bottle",
                "My little boy has had a temperature since last night, he's crying a lot and he won't take his "
                "bottle."),
               ("rash on her tummy, sleepy", "My baby girl has a rash on her tummy and she's very sleepy today."),
               ("being sick after feeds, grizzly", "My son keeps being sick after his feeds and he's so grizzly."),
               ("pulling at her ear, won't settle", "My daughter keeps pulling at her ear and she just won't settle."))
_GENERIC = {"with", "more", "than", "usual", "known", "when", "over", "slowly", "getting", "worse", "months", "came",
            "using", "brought", "each", "unintended", "rounded", "swollen", "pulling", "breath", "feeling"}
_SYNONYMS = {  # everyday words for the commonest symptoms (stems)
    "shortness": ("breath", "air", "puff", "gasp", "wind"), "breathing": ("breath", "pant"),
    "breathlessness": ("breath", "air", "puff"), "phlegm": ("mucu", "gunk", "spit", "snot", "sputum"),
    "fever": ("hot", "temperat", "burn"), "tiredness": ("tired", "exhaust", "energy", "wiped", "weak"),
    "wheezing": ("whist", "wheez"), "chills": ("shiver", "cold"), "aching": ("ache", "hurt", "sore"),
    "tightness": ("tight", "squeez", "pressure"), "feeding": ("feed", "bottle", "milk", "eat"),
}
_TO_FEMALE = {"he": "she", "him": "her", "his": "her", "he's": "she's", "boy": "girl", "son": "daughter",
              "himself": "herself"}
_TO_MALE = {"she": "he", "she's": "he's", "girl": "boy", "daughter": "son", "herself": "himself"}


def _gender(text: str, female: bool) -> str:
    """Make a caregiver phrase consistently about a girl or a boy."""
    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        low = w.lower()
        if female:
            rep = _TO_FEMALE.get(low, w)
        elif low == "her":
            nxt = text[m.end():].lstrip().split(" ", 1)[0].lower()
            rep = "him" if (not nxt or nxt.endswith("ing") or not nxt.isalpha()) else "his"
        else:
            rep = _TO_MALE.get(low, w)
        return rep[0].upper() + rep[1:] if w[0].isupper() else rep
    return re.sub(r"\b[A-Za-z]+(?:'s)?\b", sub, text)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


class ComplaintGenerator:
    """Generate patient complaints for a condition.

    Args:
        model_name: causal LM (Hub id, local folder or candidate list). Default: the manifest's.
        use_pretrained: load the LM through the loader; False: templates only, no model.
        use_4bit: passed to the loader (4-bit where CUDA and bitsandbytes exist, else a warning).
        fallback_to_templates: on a loader failure log ONE warning and use templates instead of raising.
        seed: seeds symptom sampling, templates and LM sampling.
        max_retries, timeout, allow_offline, token, loader_kwargs: passed to the model loader.
        model, tokenizer: an already loaded LM to share (no load happens).
        domain: the conditions (default: the packaged data).
        lm_attempts: LM tries per complaint before the template (each must be on its condition).
        lm_max_notes: at most this many of the symptoms go to the LM (a 135M model drops the rest).
    Raises:
        ModelDownloadError: the LM could not be loaded (message starts with ``ComplaintGenerator:``).
    """

    def __init__(self, model_name: str | Sequence[str] | None = None, use_pretrained: bool = True,
                 use_4bit: bool = True, *, fallback_to_templates: bool = False, seed: int | None = None,
                 max_new_tokens: int = 48, temperature: float = 0.5, top_p: float = 0.9, min_symptoms: int = 2,
                 max_symptoms: int = 5, max_retries: int = 3, timeout: float = 300, allow_offline: bool = False,
                 token: str | bool | None = None, loader_kwargs: dict[str, Any] | None = None,
                 model: Any = None, tokenizer: Any = None, domain: Domain | None = None, lm_attempts: int = 3,
                 lm_max_notes: int = 3) -> None:
        if min_symptoms < 1 or max_symptoms < min_symptoms:
            raise ValueError("need 1 <= min_symptoms <= max_symptoms")
        if lm_attempts < 1:
            raise ValueError("lm_attempts must be >= 1")
        self.lm_attempts, self.lm_max_notes = lm_attempts, lm_max_notes
        self.domain = domain or get_domain()
        spec = default_spec(COMPONENT, "generator")
        self.model_name = model_name if model_name is not None else spec.model_name
        self.use_pretrained = use_pretrained
        self.use_4bit = use_4bit
        self.fallback_to_templates = fallback_to_templates
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.min_symptoms, self.max_symptoms = min_symptoms, max_symptoms
        self.rng = random.Random(seed)
        self.loader_options = LoaderOptions(max_retries, timeout, allow_offline, token, dict(loader_kwargs or {}))
        self.model, self.tokenizer = model, tokenizer
        self.loaded_model_name: str | None = None
        self.stats = {"lm": 0, "template_fallback": 0}  # LM complaints kept / replaced by a template
        self.last_source: str | None = None  # "lm" or "template": how the last complaint was written
        if model is not None and tokenizer is not None:
            self.loaded_model_name = model_label(self.model_name, model)
        elif use_pretrained:
            loaded = load_causal_lm(COMPONENT, spec, self.model_name, model_name is not None, use_4bit,
                                    fallback_to_templates, "template complaints", self.loader_options)
            if loaded is not None:
                self.model, self.tokenizer = loaded
                self.loaded_model_name = model_label(self.model_name, self.model)

    @property
    def mode(self) -> str:
        """``"lm"`` when a language model writes the complaints, ``"template"`` otherwise."""
        return "lm" if self.model is not None else "template"

    # -- symptoms ----------------------------------------------------------------------------
    def sample_symptoms(self, icd10_code: str, rng: random.Random | None = None) -> list[str]:
        """Symptom ids for one patient: each included with its probability, between min and max count."""
        rng = rng or self.rng
        cond = self.domain.condition(icd10_code)
        chosen = [s for s, p in cond.symptoms.items() if rng.random() < p]
        rest = [s for s in cond.symptoms if s not in chosen]
        while len(chosen) < min(self.min_symptoms, len(cond.symptoms)):
            pick = rng.choices(rest, weights=[cond.symptoms[s] for s in rest])[0]
            rest.remove(pick)
            chosen.append(pick)
        if len(chosen) > self.max_symptoms:
            chosen = rng.sample(chosen, self.max_symptoms)
        rng.shuffle(chosen)
        if "infant" in chosen:  # a parent says who it is about first
            chosen.remove("infant")
            chosen.insert(0, "infant")
        return chosen

    def _resolve(self, symptoms: Sequence[str]) -> list[tuple[str, str | None]]:
        """(symptom text, symptom id or None for free text) for ids, names or free text."""
        out = []
        for s in symptoms:
            try:
                sym = self.domain.symptom(s)
                out.append((sym.name, sym.id))
            except KeyError:
                out.append((str(s).strip(), None))
        return out

    # -- templates ----------------------------------------------------------------------------
    def template_complaint(self, symptoms: Sequence[str], icd10_code: str, rng: random.Random | None = None) -> str:
        """A lay-language complaint assembled from the domain phrasings (no model)."""
        rng = rng or self.rng
        cond = self.domain.condition(icd10_code)
        care = cond.speaker == "caregiver"
        female = rng.random() < 0.5
        clauses = []
        for text, sid in self._resolve(symptoms):
            if sid is None:
                phrase = f"I have {text}" if not care else f"my baby has {text}"
            else:
                phrase = rng.choice(self.domain.symptoms[sid].phrasings_for(cond.speaker))
            clauses.append(_gender(phrase, female) if care else phrase)
        opener = rng.choice(_CARE_OPENERS if care else _OPENERS)
        body = (clauses[0] if opener.endswith(",") else _cap(clauses[0])) if clauses else ""
        special = rng.sample(_JOINERS, len(_JOINERS))  # each connective at most once per complaint
        for i, c in enumerate(clauses[1:], start=2):
            if i == len(clauses):
                joiner = rng.choice((" and ", ", and ", ". And ", special[0]))
            else:
                joiner = rng.choice((", ", ". ")) if rng.random() < 0.5 or not special else special.pop()
            body += joiner + (_cap(c) if joiner.endswith(". ") else c)
        parts = [opener, body + "."]
        if cond.durations and rng.random() < 0.75:
            parts.append(_gender(rng.choice(cond.durations), female) if care else rng.choice(cond.durations))
        parts.append(rng.choice(_CLOSERS))
        text = " ".join(p for p in parts if p)
        text = re.sub(r"([.,!?])\.", r"\1", text)
        return re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)

    # -- language model -----------------------------------------------------------------------
    def _notes(self, symptoms: Sequence[str], cond: Condition, rng: random.Random) -> list[str]:
        """The patient's own notes for the LM: a lay phrasing per symptom (free text as given), at most
        ``lm_max_notes``; "infant" says who, not what, and is left out."""
        care = cond.speaker == "caregiver"
        female = rng.random() < 0.5
        notes = []
        for text, sid in self._resolve(symptoms):
            if sid == "infant":
                continue
            if sid is not None:
                text = rng.choice(self.domain.symptoms[sid].phrasings_for(cond.speaker))
            notes.append(_gender(text, female) if care else text)
        return notes[: self.lm_max_notes]

    def _messages(self, notes: Sequence[str], cond: Condition, rng: random.Random) -> list[dict[str, str]]:
        care = cond.speaker == "caregiver"
        msgs = [{"role": "system", "content": _SYSTEM_CARE if care else _SYSTEM}]
        for q, a in rng.sample(_SHOTS_CARE if care else _SHOTS, 2 if care else 3):
            msgs += [{"role": "user", "content": f"Notes: {q}"}, {"role": "assistant", "content": a}]
        msgs.append({"role": "user", "content": "Notes: " + ", ".join(notes)})
        return msgs

    @staticmethod
    def _speaks_as_patient(text: str) -> bool:
        """At least four words, and more first person (or about the child) than second person: a small
        model otherwise drifts into answering the patient ("I'm so sorry to hear about your ...")."""
        words = re.findall(r"[a-z']+", text.lower())
        second = sum(w in ("you", "your", "you're", "you've") for w in words)
        first = sum(w in ("i", "i'm", "i've", "my", "me", "she", "he", "her", "his", "baby") for w in words)
        return len(words) >= 4 and second <= first

    def _on_topic(self, text: str, symptoms: Sequence[str]) -> bool:
        """Speaks as the patient (or parent) and names one of the symptoms (stems of the symptom
        names, plus everyday synonyms of the commonest ones)."""
        if not self._speaks_as_patient(text):
            return False
        words = re.findall(r"[a-z']+", text.lower())
        stems: set[str] = set()
        for name, sid in self._resolve(symptoms):
            if sid == "infant":  # who it is about, not a symptom
                continue
            for w in re.findall(r"[a-z]+", name.lower()):
                if len(w) >= 4 and w not in _GENERIC:
                    stems.add(w[:4])
                    stems.update(_SYNONYMS.get(w, ()))
        return any(w.startswith(stem) for w in words for stem in stems)

    def _trim(self, text: str) -> str:
        """Drop trailing sentences that state no symptom: where a small model wanders off ("I'm afraid
        of the dark", "He loves ice cream") once it has said what matters."""
        sentences = re.findall(r"[^.!?]+[.!?]*", text)
        keep = len(sentences)
        while keep > 1 and not extract_symptoms(sentences[keep - 1], self.domain).stated:
            keep -= 1
        return "".join(sentences[:keep]).strip()

    def on_condition(self, text: str, icd10_code: str) -> bool:
        """The complaint states at least two of the condition's symptoms in lay words and nothing
        that contradicts it (:func:`phaita.models.findings.condition_fit`)."""
        return condition_fit(text, icd10_code, self.domain).on_condition()

    def _lm_complaint(self, symptoms: Sequence[str], cond: Condition, rng: random.Random,
                      temperature: float | None = None, attempts: int | None = None) -> str | None:
        """The LM's complaint, or None when it is off its condition ``attempts`` times.

        The LM rewrites the patient's notes, its reply started on the first note; a reply is kept only
        when it speaks as the patient and :meth:`on_condition` holds (after :meth:`_trim`).
        """
        for _ in range(attempts or self.lm_attempts):
            notes = self._notes(symptoms, cond, rng)
            prefix = _cap(notes[0]) if notes else ("My baby" if cond.speaker == "caregiver" else "I")
            raw = chat_generate(self.model, self.tokenizer, self._messages(notes, cond, rng),
                                max_new_tokens=self.max_new_tokens, temperature=temperature or self.temperature,
                                top_p=self.top_p, seed=rng.randrange(2 ** 31), prefix=prefix)
            text = self._trim(clean_generation(raw, max_sentences=3))
            if self._speaks_as_patient(text) and self.on_condition(text, cond.code):
                self.stats["lm"] += 1
                return text
            log.debug("%s: LM output off its condition (%r)", COMPONENT, raw)
        self.stats["template_fallback"] += 1
        return None

    # -- public API -----------------------------------------------------------------------------
    def generate_complaint(self, symptoms: Sequence[str] | None, icd10_code: str) -> str:
        """One complaint for ``icd10_code`` mentioning ``symptoms`` (ids, names or free text;
        None: sampled from the condition's probabilities)."""
        cond = self.domain.condition(icd10_code)
        if symptoms is None:
            symptoms = self.sample_symptoms(icd10_code)
        if isinstance(symptoms, str):
            symptoms = [symptoms]
        if self.model is not None:
            text = self._lm_complaint(symptoms, cond, self.rng)
            if text:
                self.last_source = "lm"
                return text
        self.last_source = "template"
        return self.template_complaint(symptoms, icd10_code)

    def generate_diverse_complaints(self, symptoms: Sequence[str] | None, icd10_code: str,
                                    num_variants: int = 3) -> list[str]:
        """``num_variants`` different complaints for the same symptoms (duplicates only if exhausted)."""
        if num_variants < 1:
            raise ValueError("num_variants must be >= 1")
        cond = self.domain.condition(icd10_code)
        if symptoms is None:
            symptoms = self.sample_symptoms(icd10_code)
        out: list[str] = []
        tries = 0
        while len(out) < num_variants and tries < num_variants * 8:
            tries += 1
            text = None
            if self.model is not None and tries <= num_variants + 1:  # one LM try per variant (+1 spare)
                text = self._lm_complaint(symptoms, cond, self.rng, self.temperature + 0.2 * (tries - 1) / num_variants,
                                          attempts=1)
            text = text or self.template_complaint(symptoms, icd10_code)
            if text not in out:
                out.append(text)
        while len(out) < num_variants:
            out.append(self.template_complaint(symptoms, icd10_code))
        return out

    def generate_dataset(self, n_per_condition: int = 50, codes: Sequence[str] | None = None,
                         seed: int | None = None, use_lm: bool = False) -> tuple[list[str], list[str]]:
        """(complaints, codes): ``n_per_condition`` complaints for each condition, sampled symptoms.

        Templates by default (fast); ``use_lm=True`` uses the LM when one is loaded.
        """
        rng = random.Random(seed) if seed is not None else self.rng
        texts: list[str] = []
        labels: list[str] = []
        for code in (codes or self.domain.codes):
            cond = self.domain.condition(code)
            for _ in range(n_per_condition):
                syms = self.sample_symptoms(code, rng)
                text = self._lm_complaint(syms, cond, rng) if (use_lm and self.model is not None) else None
                texts.append(text or self.template_complaint(syms, code, rng))
                labels.append(code)
        return texts, labels
