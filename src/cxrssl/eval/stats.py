"""Statistics for comparing backbones on the same folds: intervals and paired tests.

Two designs, two statistics (``eval.compare`` picks by the task's split):

* **Repeated cross-validation** (no official test split): R repetitions of K-fold
  patient-grouped CV give J = R·K fold estimates per backbone. They are not independent:
  training parts overlap and every image is tested R times, so the naive t-test's
  variance s²/J is far too small. The corrected resampled t-test (Nadeau & Bengio 2003,
  "Inference for the generalization error"; its repeated-k-fold form in Bouckaert &
  Frank 2004) inflates it to (1/J + n_test/n_train)·s² and keeps J − 1 degrees of
  freedom. Applied to the per-fold *differences* of two backbones it is a paired test;
  applied to one backbone's per-fold values it gives that backbone's interval.
* **A fixed test set** (the manifest's official test part): the uncertainty that
  matters is which patients happened to be tested. A **patient-level paired
  bootstrap** resamples test patients with replacement (all their images together)
  and recomputes every backbone's metric on the same resample, so the distribution of
  the difference is paired; the percentile interval and a two-sided bootstrap p-value
  follow. It is conditional on the training draws made (it does not add their spread).

DeLong's test is not used: it treats images as independent, and chest X-ray test sets
hold several films of one patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CORRECTED_T = "corrected resampled t-test over repeated patient-grouped CV folds (Nadeau & Bengio 2003)"
PATIENT_BOOTSTRAP = "patient-level paired bootstrap on the fixed test part (percentile CI)"


@dataclass(frozen=True)
class Estimate:
    """A mean (or mean difference) with its 95 % interval and, for differences, a two-sided p-value."""

    value: float
    low: float
    high: float
    p_value: float = float("nan")

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "p_value": self.p_value}

    def clipped(self, low: float, high: float) -> Estimate:
        """The interval cut to the metric's range: a t interval of a proportion can pass 0 or 1 when folds vary a lot."""
        return Estimate(self.value, min(max(self.low, low), high), max(min(self.high, high), low), self.p_value)


def corrected_t(values: Sequence[float], test_train_ratio: float, level: float = 0.95) -> Estimate:
    """Mean of J fold values with the corrected resampled t interval and the p-value of mean = 0.

    ``test_train_ratio`` is n_test / n_train of one fold (1 / (K − 1) for K-fold CV).
    Folds whose value is NaN are left out. J values that are all equal give a zero-width
    interval; all zero gives p = 1 (a backbone against itself).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(values.mean())
    if len(values) < 2:
        return Estimate(mean, float("nan"), float("nan"), float("nan"))
    variance = (1 / len(values) + test_train_ratio) * values.var(ddof=1)
    if variance == 0:
        return Estimate(mean, mean, mean, 1.0 if mean == 0 else 0.0)
    scale = float(np.sqrt(variance))
    quantile = scipy_stats.t.ppf(0.5 + level / 2, df=len(values) - 1)
    p_value = float(2 * scipy_stats.t.sf(abs(mean) / scale, df=len(values) - 1))
    return Estimate(mean, float(mean - quantile * scale), float(mean + quantile * scale), p_value)


def patient_resample_weights(patients: Sequence[str], resamples: int, seed) -> np.ndarray:
    """(resamples, n_images) integer weights: how often each image is drawn when patients are resampled."""
    _, patient_of_image = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    count = patient_of_image.max() + 1 if len(patient_of_image) else 0
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(count, np.full(count, 1 / count), size=resamples) if count else np.zeros((resamples, 0), int)
    return drawn[:, patient_of_image]


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties count one half) under each row of ``weights`` (resamples × images), vectorised.

    Equals ``sklearn.metrics.roc_auc_score(y_true, scores, sample_weight=row)`` per row;
    NaN where a row leaves a class without weight.
    """
    y_true = np.asarray(y_true).astype(bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive = np.asarray(scores)[order], y_true[order]
    w = np.asarray(weights, dtype=float)[:, order]
    negative_cum = np.cumsum(w * ~positive, axis=1)
    # For each sorted position, the span of its group of tied scores.
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    starts = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    ends = np.r_[np.flatnonzero(new_group)[1:] - 1, len(order) - 1][np.cumsum(new_group) - 1]
    padded = np.concatenate([np.zeros((len(w), 1)), negative_cum], axis=1)
    below = padded[:, starts]  # negatives strictly below the group
    tied = padded[:, ends + 1] - below
    numerator = np.sum(w * positive * (below + 0.5 * tied), axis=1)
    denominator = np.sum(w * positive, axis=1) * np.sum(w * ~positive, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def weighted_metrics(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """ACC, AUC, SEN, SPE, F1 (as ``metrics.binary_metrics``) under each row of ``weights``."""
    y_true = np.asarray(y_true).astype(bool)
    predicted = np.asarray(scores) >= threshold
    w = np.asarray(weights, dtype=float)
    tp, fp = w @ (y_true & predicted), w @ (~y_true & predicted)
    tn, fn = w @ (~y_true & ~predicted), w @ (y_true & ~predicted)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
            "auc": weighted_auc(y_true, scores, w),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


def bootstrap_estimate(point: float, draws: np.ndarray, level: float = 0.95, difference: bool = False) -> Estimate:
    """Percentile interval of bootstrap ``draws`` around ``point``; for a difference, the two-sided p-value of 0.

    p = 2·min(share of draws ≤ 0, share ≥ 0), with the +1 correction that keeps it above
    zero for a finite number of draws, capped at 1: identical backbones give p = 1.
    """
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Estimate(point, float("nan"), float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    p_value = float("nan")
    if difference:
        side = min(np.sum(draws <= 0), np.sum(draws >= 0))
        p_value = float(min(1.0, 2 * (side + 1) / (len(draws) + 1)))
    return Estimate(point, float(low), float(high), p_value)
