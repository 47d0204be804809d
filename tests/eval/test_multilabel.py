"""The per-finding probe against scikit-learn one-vs-rest pipelines, its exclusions, split and intervals."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cxrssl.data.splits import multilabel_patient_folds
from cxrssl.eval.metrics import youden_threshold
from cxrssl.eval.multilabel import FindingsTask, findings_split, fit_and_score_findings, run_findings_probe
from cxrssl.eval.probe import C_GRID, ProbeSettings, choose_c


def _task(patients=150, seed=0, prevalence=(0.4, 0.25, 0.15), missing=0.1, splits=None, dims=12):
    """Two films per patient; finding f is planted in feature f; a share ``missing`` of entries is not labelled."""
    rng = np.random.default_rng(seed)
    n = 2 * patients
    patient_of = np.repeat(np.arange(patients), 2)
    present = rng.random((patients, len(prevalence))) < np.array(prevalence)
    targets = present[patient_of].astype(float)
    targets[rng.random(targets.shape) < missing] = np.nan
    features = rng.normal(size=(n, dims))
    features[:, : len(prevalence)] += 1.2 * present[patient_of]
    keys = np.array([f"p{i}" for i in patient_of], dtype=object)
    names = tuple(f"F{j}" for j in range(len(prevalence)))
    return FindingsTask(names, targets, keys, tuple(splits or [""] * n)), features


def _sklearn_reference(features, task, train, test, settings, fitted):
    """One finding at a time, as the binary probe does it: inner-CV AUC per C, C chosen, refit, test probabilities."""
    folds = multilabel_patient_folds(task.patients[train], task.targets[train][:, fitted], settings.folds, settings.seed)
    x_train = features[train]
    out = {}
    for j in fitted:
        y = task.targets[train, j]
        cv = {}
        oof = {c: np.full(len(train), np.nan) for c in settings.c_grid}
        for c in settings.c_grid:
            aucs = []
            for fit_rows, held_rows in folds:
                scaler = StandardScaler().fit(x_train[fit_rows])
                fit_rows_l = fit_rows[np.isfinite(y[fit_rows])]
                held_rows_l = held_rows[np.isfinite(y[held_rows])]
                if len(set(y[fit_rows_l])) < 2 or len(set(y[held_rows_l])) < 2:
                    continue
                model = LogisticRegression(C=c, class_weight="balanced", tol=1e-10, max_iter=10000)
                model.fit(scaler.transform(x_train[fit_rows_l]), y[fit_rows_l])
                p = model.predict_proba(scaler.transform(x_train[held_rows_l]))[:, 1]
                oof[c][held_rows_l] = p
                aucs.append(roc_auc_score(y[held_rows_l], p))
            cv[c] = float(np.mean(aucs))
        chosen = choose_c(cv)
        scaler = StandardScaler().fit(x_train)
        labelled = np.isfinite(y)
        model = LogisticRegression(C=chosen, class_weight="balanced", tol=1e-10, max_iter=10000)
        model.fit(scaler.transform(x_train[labelled]), y[labelled])
        probability = model.predict_proba(scaler.transform(features[test]))[:, 1]
        out[task.names[j]] = {"cv": cv, "c": chosen, "p": probability, "threshold": youden_threshold(y, oof[chosen])}
    return out


def test_every_finding_matches_scikit_learn_one_vs_rest():
    task, features = _task()
    train, test, _, _ = findings_split(task, seed=0)
    settings = ProbeSettings(bootstrap=0)
    fit = fit_and_score_findings(features, task, train, test, settings)
    assert fit.scored == list(task.names) and not fit.excluded
    reference = _sklearn_reference(features, task, train, test, settings, [0, 1, 2])
    for j, name in enumerate(task.names):
        expected = reference[name]
        assert fit.chosen_c[name] == expected["c"]
        for c in C_GRID:
            assert fit.cv_auc[name][c] == pytest.approx(expected["cv"][c], abs=1e-6)
        np.testing.assert_allclose(fit.test_scores[:, j], expected["p"], atol=1e-6)
        assert fit.thresholds[name] == pytest.approx(expected["threshold"], abs=1e-5)
        truth = task.targets[test, j]
        labelled = np.isfinite(truth)
        assert fit.metrics[name]["auc"] == pytest.approx(roc_auc_score(truth[labelled], expected["p"][labelled]), abs=1e-9)
    assert fit.macro_auc == pytest.approx(np.mean([fit.metrics[n]["auc"] for n in task.names]))


def test_findings_with_too_few_patients_are_named_and_never_averaged():
    task, features = _task(patients=120, prevalence=(0.4, 0.3, 0.3))
    train, test, _, _ = findings_split(task, seed=0)
    targets = task.targets.copy()
    # F1: one positive patient left in the training part; F2: positives only in the training part.
    positives_1 = sorted(set(task.patients[train][targets[train, 1] == 1]))
    targets[np.isin(task.patients, positives_1[1:]) & (targets[:, 1] == 1), 1] = 0
    targets[np.isin(np.arange(len(targets)), test) & (targets[:, 2] == 1), 2] = 0
    task = FindingsTask(task.names, targets, task.patients, task.splits)
    fit = fit_and_score_findings(features, task, train, test, ProbeSettings(bootstrap=0))
    assert fit.scored == ["F0"]
    assert fit.excluded["F1"].startswith("training part: 1 positive")
    assert fit.excluded["F2"].startswith("test part: 0 positive")
    assert fit.macro_auc == fit.metrics["F0"]["auc"]
    assert np.isnan(fit.test_scores[:, 1]).all() and np.isfinite(fit.test_scores[:, 2]).all()  # F2 is fitted, only not scored
    assert fit.model.names == ("F0", "F2")


def test_unlabelled_entries_are_left_out_of_a_findings_fit_and_score():
    """A finding's labelled rows alone decide its model: changing its not-labelled rows' features changes nothing but the scaler."""
    task, features = _task(missing=0.3)
    train, test, _, _ = findings_split(task, seed=0)
    settings = ProbeSettings(bootstrap=0)
    fit = fit_and_score_findings(features, task, train, test, settings)
    reference = _sklearn_reference(features, task, train, test, settings, [0, 1, 2])
    for name, expected in reference.items():
        assert fit.chosen_c[name] == expected["c"]
    truth = task.targets[test, 0]
    assert fit.metrics["F0"]["auc"] == pytest.approx(roc_auc_score(truth[np.isfinite(truth)], fit.test_scores[np.isfinite(truth), 0]))


def test_the_split_keeps_patients_whole_and_takes_the_manifests_test_part():
    task, _ = _task()
    train, test, source, _ = findings_split(task, seed=3)
    assert source == "patient_grouped_multilabel_70_10_20"
    assert not set(task.patients[train]) & set(task.patients[test])
    assert len(train) + len(test) == len(task)
    splits = ["test" if int(p[1:]) % 4 == 0 else "train" for p in task.patients]
    official = FindingsTask(task.names, task.targets, task.patients, tuple(splits))
    train, test, source, _ = findings_split(official)
    assert source == "manifest" and set(test) == {i for i, s in enumerate(splits) if s == "test"}


def test_run_findings_probe_gives_intervals_per_finding_and_for_the_mean():
    task, features = _task()
    result = run_findings_probe(features, task, ProbeSettings(bootstrap=200))
    payload = result.to_dict()
    assert payload["kind"] == "cxrssl-findings-probe" and payload["macro_over"] == list(task.names)
    for entry in payload["findings"]:
        low, high = entry["intervals_95"]["auc"]
        assert low <= entry["metrics"]["auc"] <= high
    low, high = payload["macro_auc_95"]
    assert low <= payload["macro_auc"] <= high
    assert payload["metrics"]["auc"] == pytest.approx(payload["macro_auc"])


def test_youden_threshold_against_a_brute_force_search():
    rng = np.random.default_rng(1)
    for _ in range(20):
        truth = rng.integers(0, 2, 40)
        scores = np.round(rng.random(40) + 0.3 * truth, 2)  # ties
        threshold = youden_threshold(truth, scores)
        j = lambda t, scores=scores, truth=truth: np.mean(scores[truth == 1] >= t) + np.mean(scores[truth == 0] < t) - 1  # noqa: E731
        best = max(j(t) for t in np.unique(scores))
        assert j(threshold) == pytest.approx(best)
    assert youden_threshold(np.ones(5), np.arange(5.0)) == 0.5


def test_positive_of_a_binary_task_is_refused_on_a_task_evaluated_per_finding(tmp_path):
    from cxrssl.data.manifest import read_manifest
    from cxrssl.eval.multilabel import findings_task
    from cxrssl.eval.probe import ProbeError

    path = tmp_path / "m.csv"
    path.write_text("path,patient_id,findings\na.png,p1,Edema\nb.png,p2,No Finding\n")
    with pytest.raises(ProbeError, match="names the disease class of a binary task"):
        findings_task(read_manifest(path, check_files=False), ProbeSettings(positive="Edema"))
