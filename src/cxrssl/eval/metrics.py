"""Binary classification metrics, positive class = disease, with bootstrap CIs.

ACC, AUC, SEN (recall of the positive class), SPE (recall of the negative class)
and F1 (of the positive class), as in Gazda et al. 2021's Table III. Confidence
intervals resample *patients*, not images: a patient's follow-up films are not
independent evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

METRICS = ("accuracy", "auc", "sensitivity", "specificity", "f1")


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    return {
        "tp": int(np.sum(y_true & y_pred)),
        "fp": int(np.sum(~y_true & y_pred)),
        "tn": int(np.sum(~y_true & ~y_pred)),
        "fn": int(np.sum(y_true & ~y_pred)),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def binary_metrics(y_true: Sequence[int], y_score: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Metrics of scores thresholded at ``threshold``; AUC is NaN for a one-class set."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    counts = confusion(y_true, y_score >= threshold)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    both_classes = 0 < y_true.sum() < len(y_true)
    return {
        "accuracy": _ratio(tp + tn, len(y_true)),
        "auc": float(roc_auc_score(y_true, y_score)) if both_classes else float("nan"),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def youden_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity − 1 (Youden's J) on these scores; 0.5 when one class is missing.

    It lies halfway between the best score and the next lower one, so that ``score >=
    threshold`` classifies these scores exactly as the best cut does; ties of J go to the
    higher threshold. Entries with a NaN truth or score are left out. O(n log n).
    """
    truth, scores = np.asarray(truth, dtype=float), np.asarray(scores, dtype=float)
    keep = np.isfinite(truth) & np.isfinite(scores)
    truth, scores = truth[keep].astype(bool), scores[keep]
    if truth.all() or not truth.any():
        return 0.5
    order = np.argsort(-scores, kind="stable")
    ranked, positive = scores[order], truth[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    cuts = ranked[last_of_tie]
    j = np.cumsum(positive)[last_of_tie] / positive.sum() - np.cumsum(~positive)[last_of_tie] / (~positive).sum()
    best = int(np.argmax(j))
    return float((cuts[best] + cuts[best + 1]) / 2 if best + 1 < len(cuts) else cuts[best])


def bootstrap_intervals(
    y_true: Sequence[int],
    y_score: Sequence[float],
    patients: Sequence[str],
    threshold: float = 0.5,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals from resampling patients with replacement.

    Resamples in which a metric is undefined (e.g. no positives drawn) are left out
    of that metric's interval.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, patient in enumerate(patients):
        rows_of[patient].append(row)
    groups = [np.array(rows) for rows in rows_of.values()]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in METRICS}
    for _ in range(resamples):
        chosen = rng.integers(0, len(groups), size=len(groups))
        rows = np.concatenate([groups[i] for i in chosen])
        for name, value in binary_metrics(y_true[rows], y_score[rows], threshold).items():
            if np.isfinite(value):
                draws[name].append(value)
    tail = (1 - level) / 2 * 100
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if values else (float("nan"), float("nan"))
        for name, values in draws.items()
    }
