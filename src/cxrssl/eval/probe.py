"""The linear probe: logistic regression on frozen features (Gazda et al. 2021).

Protocol: features standardised; ``class_weight="balanced"``; C searched in
{0.01, 0.05, 0.1, 0.2, 0.5, 1}; the C with the best mean AUC over stratified,
patient-grouped k-fold cross-validation on the training part (train + val) is
refitted on the whole training part and evaluated once on the test part. The
manifest's own split is used when it has one, else a seeded 70/10/20 patient-level
split. No patient may be in both parts: that is checked, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrssl.data.splits import assert_no_patient_leak, patient_grouped_split
from cxrssl.errors import CxrsslError
from cxrssl.eval.metrics import binary_metrics, bootstrap_intervals, confusion

C_GRID = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


class ProbeError(CxrsslError):
    pass


@dataclass
class ProbeResult:
    positive: str
    negative: str
    chosen_c: float
    cv_auc: dict[float, float]  # mean cross-validated AUC of every C tried
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    confusion: dict[str, int]
    n_train: int
    n_test: int
    split_source: str  # "manifest" or "patient_grouped_70_10_20"
    test_scores: np.ndarray = field(repr=False, default=None)
    test_indices: np.ndarray = field(repr=False, default=None)
    model: Pipeline = field(repr=False, default=None)

    def to_dict(self) -> dict:
        return {
            "positive": self.positive,
            "negative": self.negative,
            "chosen_c": self.chosen_c,
            "cv_auc": {str(c): auc for c, auc in self.cv_auc.items()},
            "metrics": self.metrics,
            "intervals_95": {name: list(bounds) for name, bounds in self.intervals.items()},
            "confusion": self.confusion,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "split_source": self.split_source,
        }


def binary_targets(labels: Sequence[str], positive: str | None = None) -> tuple[np.ndarray, str, str]:
    """0/1 targets; the positive class is ``positive`` or, by default, the class that is not 'normal'-like."""
    classes = sorted({label for label in labels if label})
    if len(classes) != 2:
        raise ProbeError(f"the probe needs exactly two classes, found {len(classes)} ({', '.join(classes) or 'none'}); fix the label column")
    if positive is None:
        healthy = [c for c in classes if c.lower().replace("_", " ") in ("normal", "no finding", "no findings", "healthy", "negative")]
        positive = next(c for c in classes if c not in healthy) if len(healthy) == 1 else classes[1]
    if positive not in classes:
        raise ProbeError(f"--positive {positive!r} is not one of the classes {', '.join(classes)}")
    negative = next(c for c in classes if c != positive)
    return np.array([label == positive for label in labels], dtype=int), positive, negative


def make_classifier(c: float, seed: int = 0) -> Pipeline:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    )


def cross_validated_auc(
    features: np.ndarray, targets: np.ndarray, groups: Sequence[str], c_grid=C_GRID, folds: int = 5, seed: int = 0
) -> dict[float, float]:
    """Mean AUC over patient-grouped stratified folds, for every C."""
    folds = _usable_folds(targets, groups, folds)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(features, targets, groups))
    scores = {}
    for c in c_grid:
        fold_aucs = []
        for train_rows, held_rows in splits:
            if len(set(targets[held_rows])) < 2 or len(set(targets[train_rows])) < 2:
                continue  # a fold without both classes cannot be scored
            model = make_classifier(c, seed).fit(features[train_rows], targets[train_rows])
            fold_aucs.append(roc_auc_score(targets[held_rows], model.predict_proba(features[held_rows])[:, 1]))
        scores[c] = float(np.mean(fold_aucs)) if fold_aucs else float("nan")
    if all(np.isnan(v) for v in scores.values()):
        raise ProbeError("no cross-validation fold held both classes; the task is too small for the probe")
    return scores


def _usable_folds(targets: np.ndarray, groups: Sequence[str], folds: int) -> int:
    groups = np.asarray(groups)
    patients_per_class = min(len(set(groups[targets == value])) for value in (0, 1))
    usable = min(folds, patients_per_class)
    if usable < 2:
        raise ProbeError(
            f"the training part has only {patients_per_class} patient(s) in its smaller class; "
            f"the probe needs at least 2 per class for cross-validation (add labelled images)"
        )
    return usable


def choose_c(cv_auc: dict[float, float]) -> float:
    """Best mean AUC; ties go to the smaller C (the stronger regularisation)."""
    finite = {c: auc for c, auc in cv_auc.items() if np.isfinite(auc)}
    return min(finite, key=lambda c: (-finite[c], c))


def training_and_test_rows(patients: Sequence[str], labels: Sequence[str], splits: Sequence[str], seed: int = 0):
    """Rows of the training part (train + val) and of the test part, and where the split came from."""
    splits = list(splits)
    if "test" in splits and any(s in ("train", "val") for s in splits):
        source = "manifest"
    else:
        splits = patient_grouped_split(patients, labels, seed=seed)
        source = "patient_grouped_70_10_20"
    parts = ["train" if s in ("train", "val") else s for s in splits]
    assert_no_patient_leak(patients, parts, where="probe split")
    train = np.array([i for i, s in enumerate(parts) if s == "train"])
    test = np.array([i for i, s in enumerate(parts) if s == "test"])
    return train, test, source


def run_probe(
    features: np.ndarray,
    labels: Sequence[str],
    patients: Sequence[str],
    splits: Sequence[str] | None = None,
    positive: str | None = None,
    c_grid=C_GRID,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 1000,
) -> ProbeResult:
    """The whole protocol, from features to test metrics with 95 % CIs."""
    targets, positive, negative = binary_targets(labels, positive)
    patients = np.asarray(patients)
    train, test, source = training_and_test_rows(patients, labels, splits or [""] * len(labels), seed)
    for name, rows in (("training", train), ("test", test)):
        if len(rows) == 0 or len(set(targets[rows])) < 2:
            raise ProbeError(f"the {name} part must hold both classes ({positive}, {negative}); the task is too small or unbalanced")
    cv_auc = cross_validated_auc(features[train], targets[train], patients[train], c_grid, folds, seed)
    chosen = choose_c(cv_auc)
    model = make_classifier(chosen, seed).fit(features[train], targets[train])
    scores = model.predict_proba(features[test])[:, 1]
    return ProbeResult(
        positive=positive,
        negative=negative,
        chosen_c=chosen,
        cv_auc=cv_auc,
        metrics=binary_metrics(targets[test], scores),
        intervals=bootstrap_intervals(targets[test], scores, patients[test], resamples=bootstrap, seed=seed),
        confusion=confusion(targets[test], scores >= 0.5),
        n_train=len(train),
        n_test=len(test),
        split_source=source,
        test_scores=scores,
        test_indices=test,
        model=model,
    )
