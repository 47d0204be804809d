import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from cxrssl.eval.metrics import binary_metrics
from cxrssl.eval.stats import Estimate, bootstrap_estimate, corrected_t, patient_resample_weights, weighted_auc, weighted_metrics


def test_corrected_t_against_a_hand_computation():
    values = np.array([0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.01, 0.02, 0.03])
    ratio = 1 / 4  # 5-fold CV: n_test / n_train
    estimate = corrected_t(values, ratio)
    mean = sum(values) / 10
    variance = sum((v - mean) ** 2 for v in values) / 9
    corrected_se = ((1 / 10 + 1 / 4) * variance) ** 0.5  # Nadeau & Bengio: 1/J + n2/n1, not 1/J
    t = mean / corrected_se
    assert estimate.value == pytest.approx(mean)
    assert estimate.p_value == pytest.approx(2 * (1 - scipy_stats.t.cdf(abs(t), 9)))
    half = scipy_stats.t.ppf(0.975, 9) * corrected_se
    assert (estimate.low, estimate.high) == pytest.approx((mean - half, mean + half))
    naive = scipy_stats.ttest_1samp(values, 0).pvalue
    assert estimate.p_value > naive  # the correction is what keeps overlapping folds from looking independent


def test_identical_values_give_zero_difference_and_p_one():
    assert corrected_t(np.zeros(25), 0.25).to_dict() == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    assert bootstrap_estimate(0.0, np.zeros(500), difference=True).p_value == 1.0
    nan_fold = corrected_t([0.1, np.nan, 0.3], 0.25)
    assert nan_fold.value == pytest.approx(0.2)


def test_weighted_auc_and_metrics_equal_sklearn_on_every_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    scores = np.round(rng.random(150) * 0.7 + 0.3 * y, 2)  # rounded: many ties
    patients = [f"p{i // 3}" for i in range(150)]
    weights = patient_resample_weights(patients, 40, seed=1)
    auc = weighted_auc(y, scores, weights)
    metrics = weighted_metrics(y, scores, weights)
    for row, w in enumerate(weights):
        assert auc[row] == pytest.approx(roc_auc_score(y, scores, sample_weight=w), abs=1e-12)
        expanded = np.repeat(np.arange(150), w)  # a resample, written out image by image
        reference = binary_metrics(y[expanded], scores[expanded])
        for name, value in reference.items():
            assert metrics[name][row] == pytest.approx(value, abs=1e-12), name
    assert np.allclose(weighted_auc(y, scores, np.ones((1, 150))), roc_auc_score(y, scores))


def test_patient_resampling_keeps_a_patients_images_together():
    patients = ["a", "a", "b", "c", "c", "c"]
    weights = patient_resample_weights(patients, 200, seed=3)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    # three patients drawn per resample
    assert (weights[:, 0] + weights[:, 2] + weights[:, 3] == 3).all()
    assert np.array_equal(weights, patient_resample_weights(patients, 200, seed=3))


def test_bootstrap_p_value_detects_a_shift():
    rng = np.random.default_rng(2)
    assert bootstrap_estimate(0.05, rng.normal(0.05, 0.01, 2000), difference=True).p_value < 0.01
    assert bootstrap_estimate(0.0, rng.normal(0.0, 0.01, 2000), difference=True).p_value > 0.2


def test_intervals_are_cut_to_the_metrics_range():
    wide = corrected_t([0.1, 0.9, 0.95, 0.05, 0.9], 0.25)  # a sensitivity that swings between folds
    assert wide.low < 0 or wide.high > 1
    cut = wide.clipped(0.0, 1.0)
    assert 0 <= cut.low <= cut.value <= cut.high <= 1 and cut.p_value == wide.p_value
    assert Estimate(0.5, 0.6, 0.7).clipped(0.0, 1.0) == Estimate(0.5, 0.6, 0.7)
