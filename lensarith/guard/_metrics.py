"""Detection metrics with bootstrap intervals: AUROC, precision and recall at an alert threshold.

Scores are oriented so that higher means "more likely a wrong answer"; labels are 1 for a
wrong answer. Intervals resample the rows (``numpy.random.default_rng(seed)``), skipping
resamples where a metric is undefined (one class only; no alert), and say how many were used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import LensarithError
from ..paper.stats import LEVEL, N_RESAMPLES

__all__ = ["auroc", "roc_curve", "detection_metrics"]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class.

    Example:
        >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inv, cnt = np.unique(scores, return_inverse=True, return_counts=True)
    avg = np.cumsum(cnt) - (cnt - 1) / 2.0
    ranks = avg[inv]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-positive and true-positive rates at every threshold (highest first), from (0, 0) to (1, 1)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tp / max(int(labels.sum()), 1)]
    fpr = np.r_[0.0, fp / max(int((~labels).sum()), 1)]
    return fpr, tpr


def _prec_rec(flag: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    n_flag = int(flag.sum())
    n_pos = int(labels.sum())
    tp = int((flag & labels).sum())
    precision = tp / n_flag if n_flag else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    return precision, recall, n_flag / len(flag)


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, *, n_boot: int = N_RESAMPLES,
                      seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """AUROC, and precision / recall / alert rate when rows with ``score >= threshold`` are flagged, each
    with a percentile bootstrap interval over rows.

    Raises:
        LensarithError: empty input, mismatched lengths or non-finite scores.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if scores.ndim != 1 or scores.shape != labels.shape or len(scores) == 0:
        raise LensarithError(f"scores and labels must be non-empty 1-D arrays of one length, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise LensarithError("scores hold NaN or inf: a detector score must be finite for every prompt")
    flag = scores >= threshold
    p, r, rate = _prec_rec(flag, labels)
    out: dict[str, Any] = {"n": int(len(scores)), "n_wrong": int(labels.sum()), "auroc": auroc(scores, labels),
                           "precision": p, "recall": r, "alert_rate": rate, "threshold": float(threshold)}
    idx = np.random.default_rng(seed).integers(0, len(scores), size=(n_boot, len(scores)))
    samples = {"auroc": [], "precision": [], "recall": [], "alert_rate": []}
    for row in idx:
        s, y, f = scores[row], labels[row], flag[row]
        samples["auroc"].append(auroc(s, y))
        pp, rr, aa = _prec_rec(f, y)
        samples["precision"].append(pp)
        samples["recall"].append(rr)
        samples["alert_rate"].append(aa)
    q = [(1 - level) / 2, (1 + level) / 2]
    for name, vals in samples.items():
        arr = np.asarray(vals)
        ok = np.isfinite(arr)
        if ok.sum() >= 2:
            lo, hi = np.quantile(arr[ok], q)
            out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
        else:
            out[f"{name}_lo"] = out[f"{name}_hi"] = float("nan")
        out[f"{name}_resamples"] = int(ok.sum())
    return out
