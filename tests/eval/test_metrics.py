import math

import numpy as np
import pytest

from cxrssl.eval.metrics import binary_metrics, bootstrap_intervals, confusion


def test_metrics_match_a_hand_computed_confusion_matrix():
    # 10 images: TP=3, FN=1, TN=4, FP=2 at threshold 0.5
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_score = [0.9, 0.8, 0.6, 0.2, 0.1, 0.3, 0.4, 0.45, 0.7, 0.55]
    assert confusion(np.array(y_true), np.array(y_score) >= 0.5) == {"tp": 3, "fn": 1, "tn": 4, "fp": 2}
    metrics = binary_metrics(y_true, y_score)
    assert metrics["accuracy"] == pytest.approx(7 / 10)
    assert metrics["sensitivity"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == pytest.approx(4 / 6)
    assert metrics["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # AUC by hand: of the 24 (positive, negative) pairs, count those ranked right.
    positives, negatives = [0.9, 0.8, 0.6, 0.2], [0.1, 0.3, 0.4, 0.45, 0.7, 0.55]
    right = sum(p > n for p in positives for n in negatives)
    assert metrics["auc"] == pytest.approx(right / 24)


def test_single_class_has_no_auc():
    metrics = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(metrics["auc"]) and math.isnan(metrics["specificity"])
    assert metrics["sensitivity"] == pytest.approx(2 / 3)


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_patients():
    rng = np.random.default_rng(0)

    def interval(n):
        y = rng.integers(0, 2, n)
        score = np.clip(y * 0.3 + rng.normal(0.35, 0.2, n), 0, 1)
        patients = [f"p{i // 2}" for i in range(n)]
        estimate = binary_metrics(y, score)["auc"]
        low, high = bootstrap_intervals(y, score, patients, resamples=300, seed=1)["auc"]
        assert low <= estimate <= high
        return high - low

    assert interval(800) < interval(80)


def test_bootstrap_resamples_patients_not_images():
    # One patient with 50 identical images: resampling images would give a
    # zero-width interval for that patient's share; by patient it stays wide.
    y = np.array([1] * 50 + [0, 1, 0, 1, 0, 1])
    score = np.array([0.9] * 50 + [0.2, 0.3, 0.8, 0.7, 0.1, 0.6])
    patients = ["big"] * 50 + ["a", "b", "c", "d", "e", "f"]
    low, high = bootstrap_intervals(y, score, patients, resamples=500, seed=0)["accuracy"]
    assert high - low > 0.3
