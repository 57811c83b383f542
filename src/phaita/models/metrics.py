"""Quality figures of a diagnosis head: top-k accuracy, per-condition recall, a confusion table,
and the expected calibration error (ECE). Plain numpy; used by the tests and
``benchmarks/triage_quality.py``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["diagnosis_report", "expected_calibration_error"]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if conf.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(ok[m].mean() - conf[m].mean())
    return float(err)


def diagnosis_report(probabilities: np.ndarray, classes: Sequence[str], codes: Sequence[str]) -> dict:
    """top1, top3, ece, per-condition recall {code: recall}, confusion {true: {predicted: n}}, n."""
    P = np.asarray(probabilities)
    order = np.argsort(-P, axis=1, kind="stable")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in codes])
    top1 = order[:, 0] == y
    top3 = (order[:, :3] == y[:, None]).any(axis=1)
    recall = {c: float(top1[y == i].mean()) for c, i in index.items() if (y == i).any()}
    confusion: dict[str, dict[str, int]] = {}
    for true, pred in zip(codes, order[:, 0]):
        row = confusion.setdefault(true, {})
        row[classes[pred]] = row.get(classes[pred], 0) + 1
    return {"n": len(codes), "top1": float(top1.mean()), "top3": float(top3.mean()),
            "ece": expected_calibration_error(P.max(axis=1), top1), "recall": recall, "confusion": confusion}
