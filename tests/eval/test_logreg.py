import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cxrssl.eval.logreg import LogisticFitError, auc_per_column, cross_validated_auc_grid, fit_logistic, standardise

C_GRID = (0.01, 0.1, 1.0, 10.0)


def _task(n=800, d=30, prevalence=(0.05, 0.2, 0.5, 0.8), missing=0.0, seed=0, shift=0.0):
    """Correlated features with planted signal; findings of the given prevalences; some labels NaN."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(n, 8))
    x = hidden @ rng.normal(size=(8, d)) / 3 + rng.normal(size=(n, d)) + shift
    risk = hidden @ rng.normal(size=(8, len(prevalence))) / 2 + rng.logistic(size=(n, len(prevalence)))
    targets = (risk > np.quantile(risk, 1 - np.asarray(prevalence), axis=0).diagonal()).astype(float)
    targets[rng.random(targets.shape) < missing] = np.nan
    return x, targets


def _sklearn(x, targets, c_grid, class_weight="balanced", solver="lbfgs"):
    coef = np.zeros((len(c_grid), targets.shape[1], x.shape[1]))
    intercept = np.zeros((len(c_grid), targets.shape[1]))
    for i, c in enumerate(c_grid):
        for f in range(targets.shape[1]):
            rows = ~np.isnan(targets[:, f])
            model = LogisticRegression(C=c, class_weight=class_weight, tol=1e-10, max_iter=10000, solver=solver)
            model.fit(x[rows], targets[rows, f])
            coef[i, f], intercept[i, f] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def _relative_gap(fit, coef, intercept):
    """Largest coefficient or intercept difference, per problem relative to its coefficient scale (at least 1)."""
    scale = np.maximum(1.0, np.abs(coef).max(2))
    return max((np.abs(fit.coef - coef).max(2) / scale).max(), (np.abs(fit.intercept - intercept) / scale).max())


@pytest.mark.parametrize(
    "missing, class_weight, prevalence",
    [
        (0.0, "balanced", (0.05, 0.2, 0.5, 0.8)),
        (0.1, "balanced", (0.03, 0.1, 0.3)),
        (0.1, None, (0.05, 0.2, 0.5, 0.8)),
    ],
)
def test_coefficients_are_scikit_learns(missing, class_weight, prevalence):
    x, targets = _task(n=1200, d=40, prevalence=prevalence, missing=missing, seed=1)
    x = (x - x.mean(0)) / x.std(0)
    fit = fit_logistic(x, targets, C_GRID, class_weight=class_weight)
    assert fit.coef.shape == (len(C_GRID), targets.shape[1], 40) and fit.intercept.shape == (len(C_GRID), targets.shape[1])
    assert fit.converged.all()
    # Newton-Cholesky at tol 1e-10 is converged to the last digits: the same optimum.
    assert _relative_gap(fit, *_sklearn(x, targets, C_GRID, class_weight, solver="newton-cholesky")) < 1e-8
    # lbfgs (scikit-learn's default) stops at its ftol of 64 eps before gtol 1e-10: 2e-7 to 1e-6 from it.
    assert _relative_gap(fit, *_sklearn(x, targets, C_GRID, class_weight)) < 5e-6


def test_unlabelled_rows_are_left_out_and_inputs_may_be_torch():
    x, targets = _task(n=600, d=20, prevalence=(0.1, 0.4, 0.6), missing=0.2, seed=2)
    x = (x - x.mean(0)) / x.std(0)
    fit = fit_logistic(torch.as_tensor(x), targets, (0.01, 1.0))
    # Dropping finding 1's unlabelled rows by hand gives the same fit for finding 1.
    rows = ~np.isnan(targets[:, 1])
    alone = fit_logistic(x[rows], targets[rows][:, [1]], (0.01, 1.0))
    np.testing.assert_allclose(fit.coef[:, 1], alone.coef[:, 0], atol=1e-9)
    np.testing.assert_allclose(fit.intercept[:, 1], alone.intercept[:, 0], atol=1e-9)


def test_decision_probability_and_warm_start():
    x, targets = _task(n=500, d=25, prevalence=(0.2, 0.5, 0.1), seed=3)
    x = (x - x.mean(0)) / x.std(0)
    fit = fit_logistic(x, targets, (0.01, 1.0))
    decision = fit.decision(x[:7])
    assert decision.shape == (2, 7, 3)
    np.testing.assert_allclose(decision[1, :, 2], x[:7] @ fit.coef[1, 2] + fit.intercept[1, 2])
    np.testing.assert_allclose(fit.probability(x[:7]), 1 / (1 + np.exp(-decision)))
    again = fit_logistic(x, targets, (0.01, 1.0), init=fit)
    assert again.iterations.max() <= 1  # already at the optimum: one gradient check, at most one step
    np.testing.assert_allclose(again.coef, fit.coef, atol=1e-9)


def test_a_finding_with_one_class_is_refused():
    x, targets = _task(n=300, d=10, prevalence=(0.2, 0.3), seed=4)
    targets[:, 1] = np.where(np.isnan(targets[:, 1]), np.nan, 0.0)  # no positives left
    with pytest.raises(LogisticFitError, match="finding 1: 0 positive"):
        fit_logistic(x, targets, (1.0,))
    targets[:, 1] = np.nan  # nothing labelled at all
    with pytest.raises(LogisticFitError, match="both classes"):
        fit_logistic(x, targets, (1.0,))
    with pytest.raises(LogisticFitError, match="1.0 .positive."):
        fit_logistic(x, np.full((300, 1), 2.0), (1.0,))


def test_auc_per_column_is_roc_auc_score_with_ties_and_missing_truth():
    rng = np.random.default_rng(5)
    truth = (rng.random((400, 6)) < [[0.05, 0.2, 0.5, 0.7, 0.3, 0.5]]).astype(float)
    scores = np.round(rng.normal(size=(400, 6)) + truth, 1)  # rounded: many ties
    scores[:, 4] = 0.0  # all tied
    truth[rng.random(truth.shape) < 0.15] = np.nan
    scores[np.isnan(truth)] = np.nan  # unlabelled rows may carry no score
    auc = auc_per_column(truth, scores)
    for j in range(6):
        rows = ~np.isnan(truth[:, j])
        assert auc[j] == pytest.approx(roc_auc_score(truth[rows, j], scores[rows, j]), abs=1e-12)
    assert auc[4] == 0.5
    assert auc_per_column(truth[:, 1], scores[:, 1]) == pytest.approx(auc[1], abs=0)
    one_class = auc_per_column(np.array([[1.0, 0.0], [1.0, 1.0], [np.nan, 0.0]]), np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.1]]))
    assert np.isnan(one_class[0]) and one_class[1] == 1.0
    with pytest.raises(ValueError, match="non-finite"):
        auc_per_column(np.array([1.0, 0.0]), np.array([np.nan, 0.0]))


def test_standardise_is_standard_scaler():
    x, _ = _task(n=300, d=12, seed=6, shift=5.0)
    x[:, 3] = 7.0  # a constant feature keeps std 1
    standardised, mean, std = standardise(torch.as_tensor(x))
    scaler = StandardScaler().fit(x)
    np.testing.assert_allclose(standardised.numpy(), scaler.transform(x), atol=1e-12)
    np.testing.assert_allclose(std.numpy(), scaler.scale_, rtol=1e-12)


def test_cross_validated_aucs_are_a_loop_of_scikit_learn_pipelines():
    x, targets = _task(n=900, d=30, prevalence=(0.04, 0.15, 0.4, 0.5), missing=0.05, seed=7, shift=2.0)
    rng = np.random.default_rng(7)
    fold_of_row = rng.integers(0, 4, size=900)
    fold_of_row[:40] = -1  # rows that take no part
    held = fold_of_row == 2
    targets[held & (targets[:, 0] == 1), 0] = 0.0  # finding 0: fold 2's held-out rows lack positives
    targets[fold_of_row == 1, 3] = np.nan  # finding 3: nothing labelled in fold 1
    grid = cross_validated_auc_grid(x, targets, fold_of_row, C_GRID, return_scores=True)

    expected = np.full((4, len(C_GRID), 4), np.nan)
    out_of_fold = np.full((len(C_GRID), 900, 4), np.nan)
    for k in range(4):
        train, held = (fold_of_row >= 0) & (fold_of_row != k), fold_of_row == k
        for f in range(4):
            rows = train & ~np.isnan(targets[:, f])
            scored = held & ~np.isnan(targets[:, f])
            if len(set(targets[rows, f])) < 2 or len(set(targets[scored, f])) < 2:
                continue
            for i, c in enumerate(C_GRID):
                scaler = StandardScaler().fit(x[train])  # on the fold's training rows, all findings'
                model = LogisticRegression(C=c, class_weight="balanced", tol=1e-10, max_iter=10000, solver="newton-cholesky")
                model.fit(scaler.transform(x[rows]), targets[rows, f])
                decision = model.decision_function(scaler.transform(x[scored]))
                expected[k, i, f] = roc_auc_score(targets[scored, f], decision)
                out_of_fold[i, scored, f] = decision
    assert np.array_equal(np.isnan(grid.fold_auc), np.isnan(expected))
    np.testing.assert_allclose(grid.fold_auc, expected, atol=1e-6)
    np.testing.assert_allclose(grid.auc, np.nanmean(expected, 0), atol=1e-6)
    assert grid.folds_scored.tolist() == [3, 4, 4, 3]
    assert grid.converged
    labelled = ~np.isnan(out_of_fold)
    np.testing.assert_allclose(grid.scores[labelled], out_of_fold[labelled], atol=1e-6)
    assert np.isnan(grid.scores[:, fold_of_row == -1]).all()


def test_cross_validation_of_a_finding_never_fittable_is_nan():
    x, targets = _task(n=300, d=8, prevalence=(0.3, 0.3), seed=8)
    targets[:, 1] = np.where(np.isnan(targets[:, 1]), np.nan, 1.0)
    grid = cross_validated_auc_grid(x, targets, np.arange(300) % 3, (0.1, 1.0))
    assert np.isnan(grid.auc[:, 1]).all() and grid.folds_scored.tolist() == [3, 0]
    assert np.isfinite(grid.auc[:, 0]).all()
    with pytest.raises(LogisticFitError, match="at least 2 folds"):
        cross_validated_auc_grid(x, targets, np.zeros(300, int), (1.0,))
