"""DiagnosisDiscriminator: a complaint in, ranked ICD-10 diagnoses with probabilities out.

Features come from a pretrained text encoder (mean pooled, loaded through the model loader) or,
with ``use_pretrained=False``, from the non-neural :class:`~phaita.models.featurizer.HashingFeaturizer`.
A small linear (multinomial logistic regression) head is trained on CPU by :meth:`fit`.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Sequence

import numpy as np

from phaita.domain import Domain, get_domain
from phaita.manifest import default_spec
from phaita.models._common import LoaderOptions, load_or_fallback, mean_pool_embed, model_label
from phaita.models.featurizer import HashingFeaturizer

log = logging.getLogger("phaita.models.discriminator")

__all__ = ["DiagnosisDiscriminator"]

COMPONENT = "DiagnosisDiscriminator"
FEATURIZER_LABEL = "hashing-tfidf"


class DiagnosisDiscriminator:
    """Rank the respiratory conditions for patient complaints.

    Args:
        model_name: text encoder (Hub id, local folder or candidate list). Default: the manifest's.
        use_pretrained: encode with the pretrained model; False: the non-neural featurizer.
        fallback_to_featurizer: on a loader failure log ONE warning and use the featurizer.
        max_length, batch_size: encoder tokenization and batching.
        featurizer: a :class:`HashingFeaturizer` to use (default: a fresh one).
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
                 domain: Domain | None = None) -> None:
        self.domain = domain or get_domain()
        spec = default_spec(COMPONENT, "encoder")
        self.model_name = model_name if model_name is not None else spec.model_name
        self.max_length, self.batch_size, self.seed = max_length, batch_size, seed
        self.loader_options = LoaderOptions(max_retries, timeout, allow_offline, token, dict(loader_kwargs or {}))
        self.encoder, self.tokenizer = model, tokenizer
        self.featurizer = featurizer or HashingFeaturizer()
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
        if self.encoder is None:
            self.featurizer.fit(complaints)
        X = torch.from_numpy(self.embed(complaints))
        if self.encoder is not None:  # unit-norm embeddings: scale up so a linear head trains quickly
            X = X * 10.0
            Xf, Xt = X, X.T.contiguous()
        else:  # hashed features are ~2 % non-zero: sparse products make each epoch many times faster
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                Xf, Xt = X.to_sparse_csr(), X.T.contiguous().to_sparse_csr()
        self.classes = [c for c in self.domain.codes if c in set(codes)]
        index = {c: i for i, c in enumerate(self.classes)}
        y = torch.tensor([index[c] for c in codes])
        Y = torch.nn.functional.one_hot(y, len(self.classes)).to(X.dtype)
        wd = weight_decay if weight_decay is not None else (1e-4 if self.encoder is None else 1e-3)
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
                 len(codes), self.history["seconds"], train_acc, self.encoder_label)
        return self

    # -- prediction -----------------------------------------------------------------------------
    def predict_proba(self, complaints: Sequence[str]) -> np.ndarray:
        """Probabilities (n, n_classes), columns in the order of :attr:`classes`."""
        if self.weight is None or self.bias is None:
            raise RuntimeError(f"{COMPONENT}: the classification head is not trained; call fit() or load() first")
        X = self.embed(complaints)
        if self.encoder is not None:
            X = X * 10.0
        logits = X @ self.weight + self.bias
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
                 "featurizer": self.featurizer.state_dict() if self.encoder is None else None}
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
        unknown = [c for c in state["classes"] if c not in self.domain.conditions]
        if unknown:
            raise ValueError(f"{path}: head has classes unknown to the domain data: {unknown}")
        weight = state["weight"].numpy()
        if weight.shape[1] != len(state["classes"]):
            raise ValueError(f"{path}: head shape {tuple(weight.shape)} does not match {len(state['classes'])} classes")
        if state.get("featurizer") is not None:
            self.featurizer = HashingFeaturizer.from_state_dict(state["featurizer"])
        self.classes, self.weight, self.bias = list(state["classes"]), weight, state["bias"].numpy()
        return self
