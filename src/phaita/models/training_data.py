"""Varied training complaints, generated deterministically from the domain data (no model).

The template complaints of :class:`~phaita.models.ComplaintGenerator` are tidy: a head trained only
on them learns their wording. These vary what people vary: the words for a symptom (the domain's
phrasings *and* its short lay terms), short and long complaints, terse lists, rambling, hedges ("I
think", "a bit"), negations of symptoms that would point elsewhere ("no fever"), typos, lower case,
and who is speaking (the patient, a relative for an adult, a parent for a baby). The same seed
gives the same complaints.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Sequence

from phaita.data.domain import Condition, Domain, get_domain

if TYPE_CHECKING:
    from phaita.models.discriminator import DiagnosisDiscriminator

__all__ = ["VariedComplaints", "add_typos", "train_discriminator"]

_ALWAYS_SAID = frozenset({"copd_history", "asthma_history", "infant"})
_OPENERS = ("", "", "", "Hi,", "Hello,", "Please help,", "Sorry to bother you,", "I need some help.", "Um,", "Ok so")
_CLOSERS = ("", "", "", "", "What should I do?", "I'm worried.", "Can someone come?", "Is this serious?",
            "I don't know what to do.", "Please help.")
_HEDGES = ("I think ", "maybe ", "probably ", "I'm not sure but ", "kind of ", "sort of ", "")
_SOFTENERS = ("a bit of ", "a little ", "some ", "really bad ", "a lot of ", "")
_FILLERS = ("Well, ", "So ", "Honestly ", "And ", "Also ", "Oh and ", "Plus ", "")
_GENERIC_TIME = ("It's been a few days.", "Since yesterday.", "For a couple of days now.", "It got worse today.", "")
_RELATIVES = (("my husband", "he"), ("my wife", "she"), ("my mum", "she"), ("my dad", "he"), ("my partner", "she"),
              ("my father", "he"), ("my mother", "she"), ("my son", "he"), ("my daughter", "she"))
_THIRD = {"he": {"i": "he", "im": "he's", "i'm": "he's", "ive": "he's", "i've": "he's", "my": "his", "me": "him",
                 "myself": "himself", "am": "is", "i'd": "he'd", "i'll": "he'll"},
          "she": {"i": "she", "im": "she's", "i'm": "she's", "ive": "she's", "i've": "she's", "my": "her", "me": "her",
                  "myself": "herself", "am": "is", "i'd": "she'd", "i'll": "she'll"}}


def _bare(term: str) -> str:
    return re.sub(r"^(a|an|the|my|some)\s+", "", term)


def _third_person(text: str, pronoun: str) -> str:
    table = _THIRD[pronoun]

    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        rep = table.get(w.lower().replace("’", "'"), w)
        first_person = w.lower().startswith("i") and rep != w  # "I" is upper case anywhere in a sentence
        return rep[0].upper() + rep[1:] if w[0].isupper() and not first_person else rep

    return re.sub(r"\b[A-Za-z]+(?:'[a-z]+)?\b", sub, text)


def add_typos(text: str, rng: random.Random, rate: float = 0.06) -> str:
    """Drop, double or swap letters in about ``rate`` of the words; sometimes drop apostrophes."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) > 3 and rng.random() < rate:
            j = rng.randrange(1, len(w) - 1)
            kind = rng.randrange(3)
            if kind == 0:
                w = w[:j] + w[j + 1:]
            elif kind == 1:
                w = w[:j] + w[j] + w[j:]
            else:
                w = w[:j - 1] + w[j] + w[j - 1] + w[j + 1:]
            words[i] = w
    out = " ".join(words)
    if rng.random() < 0.5:
        out = out.replace("'", "").replace("’", "")
    return out


class VariedComplaints:
    """Generate varied lay complaints for the conditions of ``domain``.

    Args:
        domain: the conditions (default: the packaged data).
        negation_rate: share of complaints that deny one or two symptoms pointing elsewhere.
        typo_rate: share of complaints with typos.
    """

    def __init__(self, domain: Domain | None = None, *, negation_rate: float = 0.4, typo_rate: float = 0.3) -> None:
        self.domain = domain or get_domain()
        self.negation_rate, self.typo_rate = negation_rate, typo_rate

    # -- pieces ---------------------------------------------------------------------------------
    def _symptoms(self, cond: Condition, rng: random.Random, size: int) -> list[str]:
        chosen = [s for s, p in cond.symptoms.items() if rng.random() < p]
        rest = [s for s in cond.symptoms if s not in chosen]
        while len(chosen) < min(size, len(cond.symptoms)) and rest:
            pick = rng.choices(rest, weights=[cond.symptoms[s] for s in rest])[0]
            rest.remove(pick)
            chosen.append(pick)
        # keep the most telling ones when cutting down; who the patient is (COPD, asthma, a baby) is
        # always said when it applies: a head trained on "green phlegm, fever" as COPD without the
        # COPD ranked pneumonia and bronchitis as J44.0 on complaints written by people
        chosen.sort(key=lambda sid: (sid not in _ALWAYS_SAID, -cond.symptoms[sid] * rng.uniform(0.4, 1.0)))
        chosen = chosen[:max(size, sum(sid in _ALWAYS_SAID for sid in chosen))]
        rng.shuffle(chosen)
        if "infant" in chosen:
            chosen.remove("infant")
            chosen.insert(0, "infant")
        return chosen

    def _denials(self, cond: Condition, rng: random.Random) -> list[str]:
        """Symptoms this condition rarely has, weighted by how often other conditions have them."""
        pool = {}
        for other in self.domain.conditions.values():
            if other.code == cond.code or other.speaker != cond.speaker and "infant" in other.symptoms:
                continue
            for sid, p in other.symptoms.items():
                if sid != "infant" and self.domain.probability(cond.code, sid) <= 0.3 and self.domain.symptoms[sid].terms:
                    pool[sid] = max(pool.get(sid, 0.0), p)
        if not pool:
            return []
        sids = sorted(pool)
        k = 1 if rng.random() < 0.7 else 2
        out: list[str] = []
        for _ in range(k):
            pick = rng.choices(sids, weights=[pool[s] for s in sids])[0]
            if pick not in out:
                out.append(pick)
        return out

    def _say(self, sid: str, cond: Condition, rng: random.Random, terse: bool) -> str:
        sym = self.domain.symptoms[sid]
        phrasings = sym.phrasings_for(cond.speaker)
        if sym.terms and (terse or rng.random() < 0.45) and not (cond.speaker == "caregiver" and sid == "infant"):
            term = rng.choice(sym.terms)
            if terse:
                return _bare(term) if rng.random() < 0.6 else term
            lead = rng.choice(("I've got ", "I have ", "there's ", "I've had ", "")) if cond.speaker == "patient" else \
                rng.choice(("she's got ", "he has ", "there's ", ""))
            return lead + rng.choice(_SOFTENERS) + _bare(term) if lead else term
        return rng.choice(phrasings)

    def _deny(self, sid: str, cond: Condition, rng: random.Random) -> str:
        term = rng.choice(self.domain.symptoms[sid].terms)
        if cond.speaker == "caregiver":
            return rng.choice((f"no {_bare(term)}", f"she doesn't have {term}", f"there's no {_bare(term)}"))
        return rng.choice((f"no {_bare(term)}", f"I don't have {term}", f"no {_bare(term)} though",
                           f"I haven't had {term}", f"without {_bare(term)}", f"not {term} or anything"))

    # -- one complaint --------------------------------------------------------------------------
    def complaint(self, code: str, rng: random.Random) -> str:
        cond = self.domain.condition(code)
        style = rng.choices(("terse", "plain", "rambling"), weights=(0.25, 0.5, 0.25))[0]
        size = rng.choice((1, 2, 2, 3)) if style == "terse" else rng.choice((2, 3, 3, 4, 5, 6))
        sids = self._symptoms(cond, rng, size)
        clauses = [self._say(s, cond, rng, style == "terse") for s in sids]
        if rng.random() < self.negation_rate:
            for sid in self._denials(cond, rng):
                clauses.insert(rng.randrange(1, len(clauses) + 1), self._deny(sid, cond, rng))
        if style == "terse":
            text = ", ".join(clauses)
            if cond.durations and rng.random() < 0.3:
                text += ". " + rng.choice(cond.durations)
            return self._finish(text, cond, rng, relative=None)
        if style == "rambling":
            clauses = [rng.choice(_FILLERS) + c if i else c for i, c in enumerate(clauses)]
        if rng.random() < 0.4:
            i = rng.randrange(len(clauses))
            clauses[i] = rng.choice(_HEDGES) + clauses[i]
        body = clauses[0]
        for c in clauses[1:]:
            body += rng.choice((", ", ". ", " and ", ", and ", ", also "))
            body += c
        parts = [rng.choice(_OPENERS), body + "."]
        if cond.durations and rng.random() < 0.6:
            parts.append(rng.choice(cond.durations))
        elif rng.random() < 0.3:
            parts.append(rng.choice(_GENERIC_TIME))
        if style == "rambling" and rng.random() < 0.6:
            parts.append(rng.choice(("I didn't want to make a fuss.", "I've been putting off calling.",
                                     "It's really getting me down.", "My family told me to ring.")))
        parts.append(rng.choice(_CLOSERS))
        text = " ".join(p for p in parts if p)
        relative = None
        if cond.speaker == "patient" and rng.random() < 0.15:
            relative = rng.choice(_RELATIVES)
        return self._finish(text, cond, rng, relative)

    def _finish(self, text: str, cond: Condition, rng: random.Random, relative: tuple[str, str] | None) -> str:
        if relative is not None:
            who, pronoun = relative
            text = _third_person(text, pronoun)
            text = f"It's {who}. " + text if rng.random() < 0.5 else f"I'm calling about {who}. " + text
        if cond.speaker == "caregiver":
            pronoun = "she" if rng.random() < 0.5 else "he"
            text = _third_person_care(text, pronoun)
        text = re.sub(r"\s+", " ", text).strip()
        text = re.sub(r"([.,!?])\.", r"\1", text)
        text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
        if rng.random() < self.typo_rate:
            text = add_typos(text, rng)
        if rng.random() < 0.25:
            text = text.lower()
        return text

    # -- data sets --------------------------------------------------------------------------------
    def dataset(self, n_per_condition: int, seed: int, codes: Sequence[str] | None = None
                ) -> tuple[list[str], list[str]]:
        """(complaints, codes): ``n_per_condition`` varied complaints per condition, reproducible by ``seed``."""
        rng = random.Random(seed)
        texts: list[str] = []
        labels: list[str] = []
        for code in codes or self.domain.codes:
            for _ in range(n_per_condition):
                texts.append(self.complaint(code, rng))
                labels.append(code)
        return texts, labels


def _third_person_care(text: str, pronoun: str) -> str:
    """Caregiver phrasings come as he/she mixed: make them all one child."""
    if pronoun == "she":
        table = {"he": "she", "he's": "she's", "him": "her", "his": "her", "boy": "girl", "son": "daughter"}
    else:
        table = {"she": "he", "she's": "he's", "her": "his", "girl": "boy", "daughter": "son"}

    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        rep = table.get(w.lower(), w)
        return rep[0].upper() + rep[1:] if w[0].isupper() else rep

    return re.sub(r"\b[A-Za-z]+(?:'s)?\b", sub, text)


def train_discriminator(discriminator: "DiagnosisDiscriminator", *, n_per_condition: int = 100, seed: int = 1,
                        calibration_per_condition: int = 30, epochs: int = 100, lr: float = 0.2
                        ) -> "DiagnosisDiscriminator":
    """Fit ``discriminator`` on varied complaints, then calibrate it on other varied complaints
    (a different seed: never the training ones). Seconds on a CPU with the featurizer."""
    gen = VariedComplaints(discriminator.domain)
    texts, codes = gen.dataset(n_per_condition, seed=seed)
    held_texts, held_codes = gen.dataset(calibration_per_condition, seed=seed + 10_000)
    discriminator.fit(texts, codes, epochs=epochs, lr=lr)
    discriminator.calibrate(held_texts, held_codes)
    return discriminator
