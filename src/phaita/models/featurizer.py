"""A non-neural text featurizer: hashed word and character n-grams with TF-IDF weights.

No model and no network: what :class:`~phaita.models.DiagnosisDiscriminator` uses with
``use_pretrained=False``. Hashing is stable across processes (CRC32), so a saved head keeps
working after a restart.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["HashingFeaturizer", "tokenize"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NEGATORS = {"no", "not", "never", "without", "don't", "doesn't", "didn't", "haven't", "hasn't", "isn't",
             "can't", "cannot", "won't", "nothing", "aren't", "wasn't"}
# "can't catch my breath" is a symptom, not a denial: these negators only negate what follows
# when it is a symptom word, not a verb of ability.
_ABILITY = {"catch", "get", "breathe", "stop", "think", "face", "eat", "drink", "sleep", "settle", "fit", "manage"}
_STOP = {"i", "a", "an", "the", "and", "my", "me", "it", "is", "to", "of", "in", "on", "for", "with", "i'm", "i've",
         "it's", "been", "be", "am", "so", "that", "this", "at", "has", "have", "had", "just", "really"}


def tokenize(text: str, *, negation: bool = True) -> list[str]:
    """Lower-case word tokens; with ``negation``, up to 3 words after a negator get a ``NOT_`` prefix."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    if not negation:
        return words
    out: list[str] = []
    scope = 0
    for w in words:
        if w in _NEGATORS:
            scope = 3
            out.append(w)
            continue
        if scope and w in _ABILITY:
            scope = 0
        if scope and w not in _STOP:
            out.append("NOT_" + w)
            scope -= 1
        else:
            out.append(w)
    return out


def _hash(s: str, n: int) -> int:
    return zlib.crc32(s.encode("utf-8")) % n


class HashingFeaturizer:
    """Hashed TF-IDF over word n-grams and character n-grams, L2-normalised rows.

    Args:
        n_features: hash space size (columns of the output).
        word_ngrams: (min, max) word n-gram lengths.
        char_ngrams: (min, max) character n-gram lengths (within word boundaries); ``None`` for none.
        sublinear_tf: use ``1 + log(tf)``.
    """

    def __init__(self, n_features: int = 2 ** 14, word_ngrams: tuple[int, int] = (1, 2),
                 char_ngrams: tuple[int, int] | None = (3, 5), sublinear_tf: bool = True) -> None:
        if n_features < 16:
            raise ValueError("n_features must be >= 16")
        self.n_features = int(n_features)
        self.word_ngrams = tuple(word_ngrams)
        self.char_ngrams = tuple(char_ngrams) if char_ngrams else None
        self.sublinear_tf = sublinear_tf
        self.idf: np.ndarray | None = None

    # -- features -----------------------------------------------------------------------------
    def _grams(self, text: str) -> Iterable[str]:
        toks = tokenize(text)
        lo, hi = self.word_ngrams
        for n in range(lo, hi + 1):
            for i in range(len(toks) - n + 1):
                yield "w:" + " ".join(toks[i:i + n])
        if self.char_ngrams:
            clo, chi = self.char_ngrams
            for tok in toks:
                padded = f" {tok} "
                for n in range(clo, chi + 1):
                    for i in range(len(padded) - n + 1):
                        yield "c:" + padded[i:i + n]

    def _counts(self, texts: Sequence[str]) -> np.ndarray:
        X = np.zeros((len(texts), self.n_features), dtype=np.float32)
        for r, text in enumerate(texts):
            for g in self._grams(text):
                X[r, _hash(g, self.n_features)] += 1.0
        if self.sublinear_tf:
            np.log1p(X, out=X)
        return X

    def fit(self, texts: Sequence[str]) -> "HashingFeaturizer":
        """Learn inverse document frequencies from ``texts``."""
        texts = _as_list(texts)
        if not texts:
            raise ValueError("fit needs at least one text")
        df = (self._counts(texts) > 0).sum(axis=0).astype(np.float64)
        self.idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (n, n_features), rows L2-normalised (all zero for an empty text)."""
        texts = _as_list(texts)
        X = self._counts(texts)
        if self.idf is not None:
            X *= self.idf
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        np.divide(X, norms, out=X, where=norms > 0)
        return X

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "word_ngrams": list(self.word_ngrams),
                "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
                "sublinear_tf": self.sublinear_tf, "idf": None if self.idf is None else self.idf.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "HashingFeaturizer":
        f = cls(n_features=state["n_features"], word_ngrams=tuple(state["word_ngrams"]),
                char_ngrams=tuple(state["char_ngrams"]) if state.get("char_ngrams") else None,
                sublinear_tf=state["sublinear_tf"])
        if state.get("idf") is not None:
            f.idf = np.asarray(state["idf"], dtype=np.float32)
            if f.idf.shape != (f.n_features,):
                raise ValueError("featurizer state: idf length does not match n_features")
        return f


def _as_list(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return out
