"""DiagnosisDiscriminator: a complaint in, ranked ICD-10 diagnoses with probabilities out.

Features come from a pretrained text encoder (mean pooled, loaded through the model loader) or,
with ``use_pretrained=False``, from the non-neural :class:`~phaita.models.featurizer.HashingFeaturizer`
(``combine_featurizer=True``: both), plus the symptoms the complaint states (+1) and denies (-1),
extracted from the domain's lay cues (:mod:`phaita.models.findings`; ``use_findings``). A small linear
(multinomial logistic regression) head is trained on CPU by :meth:`fit`; :meth:`calibrate` fits a
temperature on held-out complaints so that the probabilities mean what they say.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Sequence

import numpy as np

from phaita.data.domain import Domain, get_domain
from phaita.data.manifest import default_spec
from phaita.models._common import LoaderOptions, load_or_fallback, mean_pool_embed, model_label
from phaita.models.featurizer import HashingFeaturizer
from phaita.models.findings import extract_symptoms

log = logging.getLogger("phaita.models.discriminator")

__all__ = ["DiagnosisDiscriminator"]

COMPONENT = "DiagnosisDiscriminator"
FEATURIZER_LABEL = "hashing-tfidf"
_ENCODER_SCALE = 10.0  # unit-norm embeddings: scaled up so a linear head trains quickly


class DiagnosisDiscriminator:
    """Rank the respiratory conditions for patient complaints.

    Args:
        model_name: text encoder (Hub id, local folder or candidate list). Default: the manifest's.
        use_pretrained: encode with the pretrained model; False: the non-neural featurizer.
        fallback_to_featurizer: on a loader failure log ONE warning and use the featurizer.
        max_length, batch_size: encoder tokenization and batching.
        featurizer: a :class:`HashingFeaturizer` to use (default: a fresh one).
        use_findings: add the stated/denied symptom features (default True).
        combine_featurizer: with an encoder, add the hashing features too.
        max_retries, timeout, allow_offline, token, loader_kwargs: passed to the model loader.
        model, tokenizer: an already loaded encoder to share (no load happens).
        domain: the conditions (default: the packaged data).
    Raises:
        ModelDownloadError: the encoder could not be loaded (message starts with ``DiagnosisDiscriminator:``).
    """

    def __init__(self, model_name: str | Sequence[str] | None = None, use_pretrained: bool = True, *,
                 fallback_to_featurizer: bool = False, max_length: int = 128, batch_size: int = 32,
                 featurizer: HashingFeaturizer | None = None, seed: int = 0, max_retries: int = 3,
                 timeout: float = 300, allow_offline: bool = False, token: str | bool | None = None,
                 loader_kwargs: dict[str, Any] | None = None, model: Any = None, tokenizer: Any = None,
                 domain: Domain | None = None, use_findings: bool = True, combine_featurizer: bool = False) -> None:
        self.domain = domain or get_domain()
        self.use_findings, self.combine_featurizer = use_findings, combine_featurizer
        self.temperature = 1.0
        spec = default_spec(COMPONENT, "encoder")
        self.model_name = model_name if model_name is not None else spec.model_name
        self.max_length, self.batch_size, self.seed = max_length, batch_size, seed
        self.loader_options = LoaderOptions(max_retries, timeout, allow_offline, token, dict(loader_kwargs or {}))
        self.encoder, self.tokenizer = model, tokenizer
        self.featurizer = featurizer or HashingFeaturizer(n_features=2 ** 12)  # small: trains in seconds
        if model is None and use_pretrained:
            extra = spec.loader_kwargs() if model_name is None else {}
            loaded = load_or_fallback(COMPONENT, fallback_to_featurizer, "the non-neural featurizer",
                                      self.model_name, "auto", self.loader_options, extra)
            if loaded is not None:
                self.encoder, self.tokenizer = loaded
        self.encoder_label = (model_label(self.model_name, self.encoder) if self.encoder is not None
                              else FEATURIZER_LABEL)
        self.classes: list[str] = []
        self.weight: np.ndarray | None = None  # (n_features, n_classes)
        self.bias: np.ndarray | None = None
        self.history: dict[str, Any] = {}

    @property
    def uses_pretrained(self) -> bool:
        return self.encoder is not None

    @property
    def is_fitted(self) -> bool:
        return self.weight is not None

    # -- features -----------------------------------------------------------------------------
    def embed(self, complaints: Sequence[str]) -> np.ndarray:
        """Feature matrix (n, d): encoder mean pooling, or the featurizer."""
        texts = [complaints] if isinstance(complaints, str) else list(complaints)
        if self.encoder is not None:
            return mean_pool_embed(self.encoder, self.tokenizer, texts, batch_size=self.batch_size,
                                   max_length=self.max_length)
        if self.featurizer.idf is None:
            raise RuntimeError(f"{COMPONENT}: the featurizer is not fitted; call fit() or load() first")
        return self.featurizer.transform(texts)

    @property
    def feature_label(self) -> str:
        """What the head reads, e.g. ``all-MiniLM-L6-v2+hashing-tfidf+findings``."""
        parts = [self.encoder_label]
        if self.encoder is not None and self.combine_featurizer:
            parts.append(FEATURIZER_LABEL)
        if self.use_findings:
            parts.append("findings")
        return "+".join(parts)

    def _uses_hashing(self) -> bool:
        return self.encoder is None or self.combine_featurizer

    def findings_matrix(self, complaints: Sequence[str]) -> np.ndarray:
        """(n, n_symptoms): +1 for a stated symptom, -1 for a denied one, in domain order."""
        ids = list(self.domain.symptoms)
        col = {s: i for i, s in enumerate(ids)}
        M = np.zeros((len(complaints), len(ids)), dtype=np.float32)
        for r, text in enumerate(complaints):
            f = extract_symptoms(text, self.domain)
            for sid in f.stated:
                M[r, col[sid]] = 1.0
            for sid in f.denied:
                M[r, col[sid]] = -1.0
        return M

    def features(self, complaints: Sequence[str]) -> np.ndarray:
        """The head's input (n, d): encoder and/or hashing features, then the findings."""
        texts = [complaints] if isinstance(complaints, str) else list(complaints)
        parts = []
        if self.encoder is not None:
            parts.append(self.embed(texts) * _ENCODER_SCALE)
        if self._uses_hashing():
            if self.featurizer.idf is None:
                raise RuntimeError(f"{COMPONENT}: the featurizer is not fitted; call fit() or load() first")
            parts.append(self.featurizer.transform(texts))
        if self.use_findings:
            parts.append(self.findings_matrix(texts))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    # -- training -----------------------------------------------------------------------------
    def fit(self, complaints: Sequence[str], codes: Sequence[str], *, epochs: int = 200, lr: float = 0.1,
            weight_decay: float | None = None, verbose: bool = False) -> "DiagnosisDiscriminator":
        """Train the classification head (full-batch Adam on softmax cross-entropy, CPU)."""
        import torch

        complaints, codes = list(complaints), list(codes)
        if len(complaints) != len(codes) or not complaints:
            raise ValueError("fit needs equally many complaints and codes (at least one)")
        unknown = sorted({c for c in codes if c not in self.domain.conditions})
        if unknown:
            raise ValueError(f"unknown ICD-10 codes in training labels: {unknown}")
        t0 = time.perf_counter()
        if self._uses_hashing():
            self.featurizer.fit(complaints)
        X = torch.from_numpy(self.features(complaints))
        self.temperature = 1.0
        if not self._uses_hashing():
            Xf, Xt = X, X.T.contiguous()
        else:  # hashed features are ~2 % non-zero: sparse products make each epoch many times faster
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                Xf, Xt = X.to_sparse_csr(), X.T.contiguous().to_sparse_csr()
        self.classes = [c for c in self.domain.codes if c in set(codes)]
        index = {c: i for i, c in enumerate(self.classes)}
        y = torch.tensor([index[c] for c in codes])
        Y = torch.nn.functional.one_hot(y, len(self.classes)).to(X.dtype)
        wd = weight_decay if weight_decay is not None else (1e-4 if self._uses_hashing() else 1e-3)
        gen = torch.Generator().manual_seed(self.seed)
        W = torch.randn(X.shape[1], len(self.classes), generator=gen) * 0.01
        b = torch.zeros(len(self.classes))
        W.grad, b.grad = torch.zeros_like(W), torch.zeros_like(b)
        opt = torch.optim.Adam([W, b], lr=lr)
        loss = 0.0
        with torch.no_grad():  # softmax regression; gradients by hand (cheap with sparse features)
            for epoch in range(epochs):
                logits = Xf @ W + b
                P = torch.softmax(logits, dim=1)
                G = (P - Y) / len(y)
                W.grad = Xt @ G + 2 * wd * W
                b.grad = G.sum(0)
                opt.step()
                if verbose and epoch % 50 == 0 or epoch == epochs - 1:
                    loss = float(-(torch.log_softmax(logits, 1) * Y).sum(1).mean() + wd * (W * W).sum())
                    if verbose:
                        log.info("%s: epoch %d loss %.4f", COMPONENT, epoch, loss)
        self.weight, self.bias = W.detach().numpy().copy(), b.detach().numpy().copy()
        train_acc = float(((Xf @ W + b).argmax(1) == y).float().mean())
        self.history = {"loss": loss, "train_accuracy": train_acc, "n": len(codes),
                        "seconds": time.perf_counter() - t0, "features": int(X.shape[1])}
        log.info("%s: head trained on %d complaints in %.1f s (train accuracy %.3f, %s)", COMPONENT,
                 len(codes), self.history["seconds"], train_acc, self.feature_label)
        return self

    def logits(self, complaints: Sequence[str]) -> np.ndarray:
        """The head's raw scores (n, n_classes), before the temperature."""
        if self.weight is None or self.bias is None:
            raise RuntimeError(f"{COMPONENT}: the classification head is not trained; call fit() or load() first")
        return self.features(complaints) @ self.weight + self.bias

    def calibrate(self, complaints: Sequence[str], codes: Sequence[str]) -> float:
        """Fit the temperature on held-out labelled complaints (least negative log-likelihood);
        returns it. Complaints used here must not be the ones the head was trained on."""
        L = self.logits(list(complaints)).astype(np.float64)
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[c] for c in codes])
        best, best_nll = 1.0, float("inf")
        for t in np.exp(np.linspace(np.log(0.2), np.log(10.0), 81)):
            z = L / t
            z -= z.max(axis=1, keepdims=True)
            nll = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())
            if nll < best_nll:
                best, best_nll = float(t), nll
        self.temperature = best
        return best

    # -- prediction -----------------------------------------------------------------------------
    def predict_proba(self, complaints: Sequence[str]) -> np.ndarray:
        """Probabilities (n, n_classes), columns in the order of :attr:`classes`."""
        logits = self.logits(complaints) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_diagnosis(self, complaints: Sequence[str] | str, top_k: int = 3
                          ) -> list[list[tuple[str, str, float]]]:
        """Per complaint, the ``top_k`` (ICD-10 code, condition name, probability), most likely first.

        A single string is treated as a list of one complaint.
        """
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        texts = [complaints] if isinstance(complaints, str) else list(complaints)
        if not texts:
            return []
        P = self.predict_proba(texts)
        out = []
        for row in P:
            order = np.argsort(-row, kind="stable")[:top_k]
            out.append([(self.classes[i], self.domain.condition_name(self.classes[i]), float(row[i]))
                        for i in order])
        return out

    def evaluate(self, complaints: Sequence[str], codes: Sequence[str], top_k: int = 3) -> dict[str, float]:
        """Top-1 and top-k accuracy on labelled complaints."""
        preds = self.predict_diagnosis(list(complaints), top_k=top_k)
        top1 = float(np.mean([p[0][0] == c for p, c in zip(preds, codes)]))
        topk = float(np.mean([c in [x[0] for x in p] for p, c in zip(preds, codes)]))
        return {"top1": top1, f"top{top_k}": topk, "n": len(preds)}

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the trained head (and the featurizer state when it is used) with ``torch.save``."""
        import torch

        if self.weight is None or self.bias is None:
            raise RuntimeError(f"{COMPONENT}: nothing to save; call fit() first")
        state = {"format": "phaita-discriminator-head/1", "encoder": self.encoder_label, "classes": self.classes,
                 "weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias),
                 "featurizer": self.featurizer.state_dict() if self._uses_hashing() else None,
                 "features": self.feature_label, "temperature": self.temperature}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(state, path)

    def load(self, path: str | os.PathLike[str]) -> "DiagnosisDiscriminator":
        """Load a head saved by :meth:`save`; it must have been trained on the same encoder."""
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "phaita-discriminator-head/1":
            raise ValueError(f"{path}: not a PHAITA discriminator head")
        if state["encoder"] != self.encoder_label:
            raise ValueError(f"{path}: head trained on {state['encoder']!r}, but this discriminator uses "
                             f"{self.encoder_label!r}")
        if state.get("features", self.feature_label) != self.feature_label:
            raise ValueError(f"{path}: head trained on features {state['features']!r}, but this discriminator uses "
                             f"{self.feature_label!r}")
        unknown = [c for c in state["classes"] if c not in self.domain.conditions]
        if unknown:
            raise ValueError(f"{path}: head has classes unknown to the domain data: {unknown}")
        weight = state["weight"].numpy()
        if weight.shape[1] != len(state["classes"]):
            raise ValueError(f"{path}: head shape {tuple(weight.shape)} does not match {len(state['classes'])} classes")
        if state.get("featurizer") is not None:
            self.featurizer = HashingFeaturizer.from_state_dict(state["featurizer"])
        self.classes, self.weight, self.bias = list(state["classes"]), weight, state["bias"].numpy()
        self.temperature = float(state.get("temperature", 1.0))
        return self
