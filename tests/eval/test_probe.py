import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from cxrssl.eval.probe import (
    C_GRID,
    ProbeError,
    ProbeSettings,
    binary_targets,
    choose_c,
    cross_validated_auc,
    fit_and_score,
    make_classifier,
    probe_split,
    run_probe,
)


def _task(n=240, separation=1.0, seed=0, dims=10):
    rng = np.random.default_rng(seed)
    patients = [f"p{i // 2}" for i in range(n)]  # two films per patient
    y = np.repeat(rng.integers(0, 2, n // 2), 2)
    features = rng.normal(size=(n, dims))
    features[:, 0] += separation * y
    labels = ["PNEUMONIA" if v else "NORMAL" for v in y]
    return features, labels, patients, y


def test_grid_search_picks_what_a_brute_force_loop_picks():
    features, _, patients, y = _task(separation=0.6, seed=3)
    scores = cross_validated_auc(features, y, patients, seed=0)
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    brute = {}
    for c, (train, held) in itertools.product(C_GRID, splitter.split(features, y, patients)):
        model = make_classifier(c).fit(features[train], y[train])
        brute.setdefault(c, []).append(roc_auc_score(y[held], model.predict_proba(features[held])[:, 1]))
    # The grid is warm-started along C; a cold fit per C reaches the same optimum.
    for c in C_GRID:
        assert scores[c] == pytest.approx(np.mean(brute[c]), abs=2e-3)
    assert np.mean(brute[choose_c(scores)]) == pytest.approx(max(np.mean(v) for v in brute.values()), abs=2e-3)


def test_known_separability_gives_the_expected_auc():
    # One informative feature, shifted by d between classes: AUC = Phi(d / sqrt(2)).
    from scipy.stats import norm

    for separation in (0.5, 1.0, 2.0):
        features, labels, patients, _ = _task(n=2000, separation=separation, seed=1, dims=5)
        result = run_probe(features, labels, patients, settings=ProbeSettings(bootstrap=20))
        expected = norm.cdf(separation / np.sqrt(2))
        assert result.metrics["auc"] == pytest.approx(expected, abs=0.04)


def test_uninformative_features_give_chance():
    features, labels, patients, _ = _task(n=600, separation=0.0, seed=2)
    assert run_probe(features, labels, patients, settings=ProbeSettings(bootstrap=20)).metrics["auc"] == pytest.approx(0.5, abs=0.1)


def test_manifest_split_is_used_and_patients_never_cross():
    features, labels, patients, _ = _task(n=100)
    splits = ["test" if int(p[1:]) < 15 else ("val" if int(p[1:]) < 20 else "train") for p in patients]
    result = run_probe(features, labels, patients, splits, ProbeSettings(bootstrap=20))
    assert result.split_source == "manifest"
    assert result.n_test == 30 and result.n_train == 70
    test_patients = {patients[i] for i in result.test_indices}
    assert test_patients == {f"p{i}" for i in range(15)}


def test_leaking_manifest_split_is_refused():
    from cxrssl.data.splits import PatientLeakError

    features, labels, patients, _ = _task(n=40)
    splits = ["train", "test"] * 20  # both films of each patient on opposite sides
    with pytest.raises(PatientLeakError, match="several subsets"):
        run_probe(features, labels, patients, splits, ProbeSettings(bootstrap=20))


def test_single_class_and_tiny_tasks_fail_clearly():
    with pytest.raises(ProbeError, match="exactly two classes, found 1"):
        binary_targets(["NORMAL", "NORMAL"])
    features, labels, patients, _ = _task(n=8)
    with pytest.raises(ProbeError, match="too small|at least 2 per class"):
        run_probe(features, labels, patients, settings=ProbeSettings(bootstrap=20))


def test_positive_class_defaults_to_the_disease():
    assert binary_targets(["No Finding", "Pneumonia"])[1] == "Pneumonia"
    assert binary_targets(["NORMAL", "PNEUMONIA"])[1:] == ("PNEUMONIA", "NORMAL")
    assert binary_targets(["COVID", "other"], positive="COVID")[1] == "COVID"
    with pytest.raises(ProbeError, match="not one of the classes"):
        binary_targets(["A", "B"], positive="C")


def test_fit_and_score_is_the_probe_on_given_rows():
    features, labels, patients, y = _task(n=200, separation=1.0, seed=4)
    train, test = np.arange(0, 140), np.arange(140, 200)  # patients p0..p69 | p70..p99
    fit = fit_and_score(features, y, patients, train, test, ProbeSettings(bootstrap=0))
    model = make_classifier(fit.chosen_c).fit(features[train], y[train])
    assert np.allclose(fit.test_scores, model.predict_proba(features[test])[:, 1])
    assert fit.metrics["auc"] == pytest.approx(roc_auc_score(y[test], fit.test_scores))
    assert fit.intervals == {}  # bootstrap 0: no intervals rather than NaN ones
    assert set(fit_and_score(features, y, patients, train, test, ProbeSettings(bootstrap=30)).intervals) == set(fit.metrics)


def test_purge_keeps_the_official_test_part_and_drops_crossing_patients_from_training():
    patients = ["a", "a", "b", "b", "c", "d", "e", "e"]
    labels = ["X", "Y"] * 4
    splits = ["train", "test", "train", "val", "test", "train", "val", "test"]  # a and e cross
    from cxrssl.data.splits import PatientLeakError

    with pytest.raises(PatientLeakError, match="--split-policy purge"):
        probe_split(patients, labels, splits)
    split = probe_split(patients, labels, splits, policy="purge")
    assert split.test.tolist() == [1, 4, 7]  # untouched
    assert split.train.tolist() == [2, 3, 5]  # a's and e's training images are gone
    assert (split.purged_images, split.purged_patients) == (2, 2)
    assert not {patients[i] for i in split.train} & {patients[i] for i in split.test}


def test_bad_probe_settings_are_refused():
    with pytest.raises(ProbeError, match="at least 2 folds"):
        ProbeSettings(folds=1)
    with pytest.raises(ProbeError, match="unknown split policy"):
        ProbeSettings(split_policy="ignore")
