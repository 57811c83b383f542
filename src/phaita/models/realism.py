"""RealismScorer: how much a complaint sounds like a real patient, in [0, 1].

Three parts, combined by weight (parts that are not available are left out):

- **fluency**: perplexity under a causal LM (GPT-2 by default), mapped between the LM's own
  perplexity on calibration complaints (template complaints from the domain phrasings: 1) and on the
  same complaints with their words shuffled (``FLUENCY_FLOOR``, 0.5: weak evidence, never a veto);
- **closeness**: cosine similarity of the complaint's mean-pooled encoding (a BERT-family encoder,
  BioBERT first, then BERT, through the loader's candidate chain) to its nearest lay reference
  phrasings, mapped between clinical and off-topic anchor sentences (0) and the calibration
  complaints (1);
- **heuristics** (always, and alone with ``use_pretrained=False``): lay vocabulary, first-person
  voice, length, repetition, clinical jargon.

- **consistency** (only when the condition is given: ``score(text, condition="J45.9")``): does the
  complaint support the condition it claims? Two or more of its symptoms stated in lay words: 1;
  halved for each contradicting symptom; 0 for text that states none (off-topic text), from
  :func:`phaita.models.findings.condition_fit`. Reported separately in :class:`RealismScore`.

The combined score is a weighted geometric mean, so one very poor part (word salad that an
encoder still finds "close", jargon that an LM finds fluent) pulls the whole score down. Each model
is calibrated against itself, so scores are comparable across encoders and LMs.

Models load only through the loader (:mod:`phaita.loader`). ``phaita.utils.realism_scorer`` re-exports
this module's names (the specification's path).
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from phaita.data.domain import Domain, get_domain
from phaita.data.manifest import default_spec
from phaita.models._common import LoaderOptions, load_or_fallback, mean_pool_embed, model_label
from phaita.models.findings import condition_fit

log = logging.getLogger("phaita.realism_scorer")

__all__ = ["RealismScorer", "RealismScore", "heuristic_realism"]

COMPONENT = "RealismScorer"
_ANCHORS = (  # clearly not a patient speaking: the 0 point of closeness
    "The patient presents with acute exacerbation of dyspnea and purulent sputum production.",
    "Bilateral basal crackles on auscultation with consolidation on chest radiograph.",
    "Quarterly revenue increased by four percent compared with the previous fiscal year.",
    "Click the button below to reset your account password.",
    "The committee will review the proposal at its next scheduled meeting.",
    "Preheat the oven to 180 degrees and grease a round cake tin.",
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_FIRST_PERSON = {"i", "i'm", "i've", "i'd", "i'll", "my", "me", "myself", "we", "our", "us"}
_CARER = {"baby", "she", "he", "she's", "he's", "her", "his", "him", "son", "daughter", "child"}
_COMMON = {"the", "a", "an", "and", "or", "but", "so", "it", "it's", "is", "was", "to", "of", "in", "on", "at",
           "for", "with", "up", "out", "all", "this", "that", "have", "has", "had", "been", "be", "am", "are",
           "just", "really", "very", "now", "can't", "can", "don't", "not", "no", "get", "got", "feel", "feels",
           "like", "when", "what", "do", "some", "any", "day", "days", "week", "night", "today", "since", "ago",
           "help", "please", "worried", "bad", "worse", "going", "keep", "still", "too", "lot", "bit", "hi",
           "hello", "last", "about", "over", "from", "then", "again", "even", "much", "more", "there", "there's"}
_FLOOR = 0.02  # parts are floored here inside the geometric mean
#: Fluency is mapped to [FLUENCY_FLOOR, 1], never 0: terse, misspelled and texted complaints ("copd +
#: fever since yday, spit is green") are real, yet a small LM finds them as unlikely as shuffled words.
#: Measured with MiniLM + SmolLM2: fluency down to 0 let such complaints score 0.10-0.16, below
#: off-topic text (0.23); with the floor every hand-written complaint that states a symptom scores >= 0.4.
FLUENCY_FLOOR = 0.5
_ICD = re.compile(r"\b[A-Z][0-9]{2}\.[0-9]{1,2}\b")


@dataclass(frozen=True)
class RealismScore:
    """The combined score and its parts (None where a part was not computed)."""

    score: float
    heuristic: float
    fluency: float | None = None
    closeness: float | None = None
    perplexity: float | None = None
    consistency: float | None = None


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def heuristic_realism(complaint: str, domain: Domain | None = None) -> float:
    """A model-free realism estimate in [0, 1]."""
    domain = domain or get_domain()
    if not complaint or not complaint.strip():
        return 0.0
    words = _WORD.findall(complaint.lower().replace("’", "'"))
    if not words:
        return 0.0
    lay_vocab = _lay_vocab(domain)
    content = [w for w in words if len(w) > 2 and w not in _COMMON]
    lay = sum(w in lay_vocab for w in content) / len(content) if content else 0.5
    voice = 1.0 if any(w in _FIRST_PERSON for w in words) else (0.6 if any(w in _CARER for w in words) else 0.2)
    n = len(words)
    length = n / 4 if n < 4 else (1.0 if n <= 60 else 60 / n)
    repetition = _clip01((len(set(words)) / n - 0.3) / 0.35) if n >= 8 else 1.0
    jargon = sum(w in domain.clinical_terms for w in words)
    score = (0.5 * lay + 0.3 * voice + 0.2 * length) * (0.3 + 0.7 * repetition) / (1.0 + 0.5 * jargon)
    if _ICD.search(complaint):
        score *= 0.3
    return _clip01(score)


_VOCAB_CACHE: dict[int, frozenset[str]] = {}


def _lay_vocab(domain: Domain) -> frozenset[str]:
    key = id(domain)
    if key not in _VOCAB_CACHE:
        words: set[str] = set()
        for text in domain.lay_references() + [d for c in domain.conditions.values() for d in c.durations]:
            words.update(_WORD.findall(text.lower()))
        _VOCAB_CACHE[key] = frozenset(words - domain.clinical_terms)
    return _VOCAB_CACHE[key]


class RealismScorer:
    """Score how realistic (lay, fluent, patient-like) complaints are.

    Args:
        encoder_candidates: BERT-family encoders tried in order (default: the manifest's, BioBERT first).
        fluency_model: causal LM for perplexity (default: the manifest's, GPT-2).
        use_pretrained: load the two models; False: heuristics only, no model.
        fallback_to_heuristics: on a loader failure log ONE warning per model and go on without it.
        weights: (fluency, closeness, heuristic) weights; renormalised over the parts available.
        encoder_loader_kwargs / fluency_loader_kwargs: loader options for one model (e.g. ``gguf_file``);
        loader_kwargs: for both (e.g. ``cache_dir``). max_retries, timeout, allow_offline, token: the loader's.
        encoder, encoder_tokenizer, fluency_lm, fluency_tokenizer: already loaded models to share.
    Raises:
        ModelDownloadError: a model could not be loaded (message starts with ``RealismScorer:``).
    """

    def __init__(self, encoder_candidates: str | Sequence[str] | None = None, fluency_model: str | None = None,
                 use_pretrained: bool = True, *, fallback_to_heuristics: bool = False,
                 weights: tuple[float, float, float] = (0.4, 0.4, 0.2), max_retries: int = 3,
                 timeout: float = 300, allow_offline: bool = False, token: str | bool | None = None,
                 loader_kwargs: dict[str, Any] | None = None, encoder_loader_kwargs: dict[str, Any] | None = None,
                 fluency_loader_kwargs: dict[str, Any] | None = None, encoder: Any = None,
                 encoder_tokenizer: Any = None, fluency_lm: Any = None, fluency_tokenizer: Any = None,
                 n_calibration: int = 20, domain: Domain | None = None, consistency_weight: float = 0.3) -> None:
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("weights must be three non-negative numbers with a positive sum")
        self.domain = domain or get_domain()
        enc_spec, flu_spec = default_spec(COMPONENT, "encoder"), default_spec(COMPONENT, "fluency")
        self.encoder_candidates = encoder_candidates if encoder_candidates is not None else list(enc_spec.candidates)
        self.fluency_model = fluency_model if fluency_model is not None else flu_spec.model_name
        self.weights = tuple(float(w) for w in weights)
        if consistency_weight < 0:
            raise ValueError("consistency_weight must be >= 0")
        self.consistency_weight = float(consistency_weight)
        self.n_calibration = n_calibration
        self.loader_options = LoaderOptions(max_retries, timeout, allow_offline, token, dict(loader_kwargs or {}))
        self.encoder, self.encoder_tokenizer = encoder, encoder_tokenizer
        self.fluency_lm, self.fluency_tokenizer = fluency_lm, fluency_tokenizer
        if use_pretrained and encoder is None:
            extra = dict(encoder_loader_kwargs or (enc_spec.loader_kwargs() if encoder_candidates is None else {}))
            loaded = load_or_fallback(COMPONENT, fallback_to_heuristics, "scoring without the encoder",
                                      self.encoder_candidates, "auto", self.loader_options, extra)
            if loaded is not None:
                self.encoder, self.encoder_tokenizer = loaded
        if use_pretrained and fluency_lm is None:
            extra = dict(fluency_loader_kwargs or (flu_spec.loader_kwargs() if fluency_model is None else {}))
            loaded = load_or_fallback(COMPONENT, fallback_to_heuristics, "scoring without the fluency model",
                                      self.fluency_model, "causal_lm", self.loader_options, extra)
            if loaded is not None:
                self.fluency_lm, self.fluency_tokenizer = loaded
        self.encoder_name = model_label(self.encoder_candidates, self.encoder) if self.encoder is not None else None
        self._refs: np.ndarray | None = None
        self._close_range: tuple[float, float] | None = None
        self._ppl_range: tuple[float, float] | None = None
        self._calibration: list[str] | None = None

    # -- calibration (lazy, once) ----------------------------------------------------------------
    def _calibration_texts(self) -> list[str]:
        """Template complaints (seeded): realistic by construction, of a complaint's usual length."""
        if self._calibration is None:
            from phaita.models.generator import ComplaintGenerator

            gen = ComplaintGenerator(use_pretrained=False, seed=0, domain=self.domain)
            codes = [self.domain.codes[i % len(self.domain.codes)] for i in range(self.n_calibration)]
            self._calibration = [gen.generate_complaint(None, c) for c in codes]
        return self._calibration

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return mean_pool_embed(self.encoder, self.encoder_tokenizer, list(texts), max_length=96)

    def _nearest(self, emb: np.ndarray, k: int = 3) -> np.ndarray:
        """Mean cosine similarity of each row to its ``k`` nearest reference phrasings."""
        assert self._refs is not None
        sims = emb @ self._refs.T
        k = min(k, sims.shape[1])
        return np.sort(sims, axis=1)[:, -k:].mean(axis=1)

    def _calibrate_closeness(self) -> None:
        self._refs = self._embed(self.domain.lay_references())
        hi = float(np.median(self._nearest(self._embed(self._calibration_texts()))))
        lo = float(np.median(self._nearest(self._embed(_ANCHORS))))
        if hi - lo < 1e-3:
            lo = hi - 0.1
        self._close_range = (lo, hi)

    def perplexity(self, text: str) -> float:
        """Perplexity of ``text`` under the fluency LM."""
        import torch

        tok = self.fluency_tokenizer
        ids = tok(text, return_tensors="pt")["input_ids"]
        bos = getattr(tok, "bos_token_id", None)
        if bos is None:
            bos = tok.eos_token_id
        if bos is not None and (ids.shape[1] == 0 or int(ids[0, 0]) != bos):
            ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
        if ids.shape[1] < 2:
            return float("inf")
        # at most 512 tokens, and never past a short-context model's positions (IndexError otherwise)
        ctx = getattr(getattr(self.fluency_lm, "config", None), "max_position_embeddings", None)
        ids = ids[:, : min(512, ctx) if isinstance(ctx, int) and ctx > 1 else 512]
        self.fluency_lm.eval()
        with torch.inference_mode():
            loss = self.fluency_lm(input_ids=ids, labels=ids).loss
        return float(math.exp(min(float(loss), 50.0)))

    def _calibrate_fluency(self) -> None:
        refs = self._calibration_texts()
        rng = random.Random(1)
        shuffled = []
        for r in refs:
            words = r.split()
            rng.shuffle(words)
            shuffled.append(" ".join(words))
        good = float(np.median([math.log(self.perplexity(t)) for t in refs]))
        bad = float(np.median([math.log(self.perplexity(t)) for t in shuffled]))
        if bad - good < 0.1:
            bad = good + 1.0
        self._ppl_range = (good, bad)

    # -- scoring ------------------------------------------------------------------------------------
    def consistency(self, complaint: str, condition: str) -> float:
        """Does ``complaint`` support ``condition`` (ICD-10 code)? In [0, 1]."""
        return condition_fit(complaint, condition, self.domain).score

    def score_details(self, complaint: str, condition: str | None = None) -> RealismScore:
        """The score and its parts (``consistency`` only when ``condition`` is given)."""
        if not isinstance(complaint, str):
            raise TypeError("complaint must be a string")
        if condition is not None:
            self.domain.condition(condition)  # an unknown code fails here, by name
        heur = heuristic_realism(complaint, self.domain)
        if not complaint.strip():
            return RealismScore(score=0.0, heuristic=0.0)
        fluency = closeness = ppl = None
        if self.fluency_lm is not None:
            if self._ppl_range is None:
                self._calibrate_fluency()
            assert self._ppl_range is not None
            ppl = self.perplexity(complaint)
            good, bad = self._ppl_range
            fluency = FLUENCY_FLOOR + (1 - FLUENCY_FLOOR) * _clip01((bad - math.log(ppl)) / (bad - good))
        if self.encoder is not None:
            if self._close_range is None:
                self._calibrate_closeness()
            assert self._close_range is not None
            lo, hi = self._close_range
            closeness = _clip01((float(self._nearest(self._embed([complaint]))[0]) - lo) / (hi - lo))
        consistency = self.consistency(complaint, condition) if condition is not None else None
        parts = [(w, v) for w, v in zip(self.weights + (self.consistency_weight,), (fluency, closeness, heur, consistency))
                 if v is not None and w > 0]
        total = sum(w for w, _ in parts)
        score = math.exp(sum(w * math.log(max(v, _FLOOR)) for w, v in parts) / total) if total > 0 else heur
        if score <= _FLOOR + 1e-9:
            score = 0.0
        return RealismScore(score=_clip01(score), heuristic=heur, fluency=fluency, closeness=closeness,
                            perplexity=ppl, consistency=consistency)

    def score(self, complaint: str, condition: str | None = None) -> float:
        """Realism of one complaint in [0, 1] (higher: more like a real patient); with ``condition``,
        also whether it fits that condition."""
        return self.score_details(complaint, condition).score

    def score_batch(self, complaints: Sequence[str], conditions: Sequence[str] | None = None) -> list[float]:
        if conditions is None:
            return [self.score(c) for c in complaints]
        return [self.score(c, code) for c, code in zip(complaints, conditions)]
