"""The linear probe: logistic regression on frozen features (Gazda et al. 2021).

Protocol: features standardised; ``class_weight="balanced"``; C searched in
{0.01, 0.05, 0.1, 0.2, 0.5, 1}; the C with the best mean AUC over stratified,
patient-grouped k-fold cross-validation on the training part (train + val) is
refitted on the whole training part and evaluated once on the test part. The
manifest's own split is used when it has one, else a seeded 70/10/20 patient-level
split. No patient may be in both parts: that is checked, not assumed; an official split
that shares patients is refused, or, with the ``purge`` policy, keeps its test part and
drops those patients' training images (``probe_split``).

``run_probe`` is the split followed by ``fit_and_score``, the probe on given training and
test rows, which ``eval.compare`` runs on every fold and label budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrssl.data.splits import PatientLeakError, assert_no_patient_leak, binary_targets, patient_grouped_split
from cxrssl.errors import ProbeError
from cxrssl.eval.metrics import binary_metrics, bootstrap_intervals, confusion

C_GRID = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


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
    purged: tuple[int, int] = (0, 0)  # training images and patients dropped by --split-policy purge
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
            "purged_images": self.purged[0],
            "purged_patients": self.purged[1],
        }


def make_classifier(c: float, seed: int = 0) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed))


def cross_validated_auc(
    features: np.ndarray, targets: np.ndarray, groups: Sequence[str], c_grid=C_GRID, folds: int = 5, seed: int = 0
) -> dict[float, float]:
    """Mean AUC over patient-grouped stratified folds, for every C.

    Within a fold the features are standardised once and the C values are fitted from the
    smallest up, each fit starting from the previous one's solution (a warm start): the
    same convex problems, solved to the same tolerance, in about half the iterations.
    """
    folds = _usable_folds(targets, groups, folds)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_aucs: dict[float, list[float]] = {c: [] for c in c_grid}
    for train_rows, held_rows in splitter.split(features, targets, groups):
        if len(set(targets[held_rows])) < 2 or len(set(targets[train_rows])) < 2:
            continue  # a fold without both classes cannot be scored
        scaler = StandardScaler().fit(features[train_rows])
        train_x, held_x = scaler.transform(features[train_rows]), scaler.transform(features[held_rows])
        model = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed, warm_start=True)
        for c in sorted(c_grid):
            model.set_params(C=c).fit(train_x, targets[train_rows])
            fold_aucs[c].append(roc_auc_score(targets[held_rows], model.predict_proba(held_x)[:, 1]))
    scores = {c: float(np.mean(fold_aucs[c])) if fold_aucs[c] else float("nan") for c in c_grid}
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


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe is run, everywhere it is run (probe, sweep, compare, the report)."""

    positive: str | None = None  # the disease class; default: the class that is not normal-like
    seed: int = 0  # the split, the cross-validation folds and the bootstrap
    bootstrap: int = 1000  # patient resamples for the 95 % CIs; 0: no intervals
    folds: int = 5  # cross-validation folds for choosing C
    c_grid: tuple[float, ...] = C_GRID
    split_policy: str = "refuse"  # a patient in the training and test parts of the manifest's split: "refuse" or "purge"
    findings: tuple[str, ...] | None = (
        None  # per-finding evaluation (eval.multilabel): the findings to keep, () = all; None: when the task has no binary label
    )
    min_patients: int = 5  # per finding: positive and negative labelled test patients it needs to be scored (eval.multilabel)

    def __post_init__(self):
        if self.split_policy not in SPLIT_POLICIES:
            raise ProbeError(f"unknown split policy {self.split_policy!r}; use one of {', '.join(SPLIT_POLICIES)}")
        if self.folds < 2:
            raise ProbeError(
                f"folds {self.folds}: the C search's cross-validation needs at least 2 folds (probe's --folds, compare's and sweep's --inner-folds)"
            )
        if self.min_patients < 1:
            raise ProbeError(f"--min-patients {self.min_patients}: give at least 1")
        if self.bootstrap < 0:
            raise ProbeError(f"--bootstrap {self.bootstrap}: give 0 (no intervals) or a positive number of resamples")


SPLIT_POLICIES = ("refuse", "purge")


@dataclass(frozen=True)
class ProbeSplit:
    """The training part (train + val) and the test part, and where they came from."""

    train: np.ndarray
    test: np.ndarray
    origin: str  # which split: the manifest's own ("manifest") or one drawn here ("patient_grouped_70_10_20")
    purged_images: int = 0  # training-part images dropped because their patient is in the test part
    purged_patients: int = 0

    def to_dict(self) -> dict:
        return {"split_source": self.origin, "purged_images": self.purged_images, "purged_patients": self.purged_patients}

    def require_both_classes(self, targets: np.ndarray, positive: str, negative: str) -> None:
        for name, rows in (("training", self.train), ("test", self.test)):
            if len(rows) == 0 or len(set(targets[rows])) < 2:
                raise ProbeError(f"the {name} part must hold both classes ({positive}, {negative}); the task is too small or unbalanced")


def has_test_split(splits: Sequence[str]) -> bool:
    """Whether a manifest's split column holds an official test part beside a training part."""
    splits = list(splits)
    return "test" in splits and any(s in ("train", "val") for s in splits)


def probe_split(patients: Sequence[str], labels: Sequence[str], splits: Sequence[str], seed: int = 0, policy: str = "refuse") -> ProbeSplit:
    """The manifest's split when it has a test part, else a seeded 70/10/20 patient-level split.

    A patient found in both parts stops the probe (``policy="refuse"``), or, with
    ``policy="purge"``, loses their training-part images: the official test part stays
    intact, so results remain comparable with published ones, and the counts dropped
    are reported.
    """
    return split_parts(patients, splits, lambda: patient_grouped_split(patients, labels, seed=seed), "patient_grouped_70_10_20", policy)


def split_parts(patients: Sequence[str], splits: Sequence[str], make_split, made: str, policy: str = "refuse") -> ProbeSplit:
    """The training and test parts: the manifest's ``splits`` when they hold a test part, else ``make_split()`` (named ``made``).

    The one place where a patient in both parts of an official split is refused or
    purged (see ``probe_split``); ``eval.multilabel`` makes its split through it too.
    """
    splits = list(splits)
    if has_test_split(splits):
        origin = "manifest"
    else:
        splits, origin = make_split(), made
    parts = ["train" if s in ("train", "val") else s for s in splits]
    purged_images = purged_patients = 0
    if policy == "purge" and origin == "manifest":
        in_test = {p for p, part in zip(patients, parts) if part == "test"}
        crossing = {p for p, part in zip(patients, parts) if part == "train" and p in in_test}
        purged_images = sum(1 for p, part in zip(patients, parts) if part == "train" and p in crossing)
        purged_patients = len(crossing)
        parts = ["" if part == "train" and p in crossing else part for p, part in zip(patients, parts)]
    try:
        assert_no_patient_leak(patients, parts, where="probe split")
    except PatientLeakError as error:
        raise PatientLeakError(f"{error}, or pass --split-policy purge to keep the test part and drop those patients' training images") from None
    train = np.array([i for i, s in enumerate(parts) if s == "train"], dtype=int)
    test = np.array([i for i, s in enumerate(parts) if s == "test"], dtype=int)
    return ProbeSplit(train, test, origin, purged_images, purged_patients)


@dataclass
class Fit:
    """The probe fitted on one training part and scored on one test part."""

    chosen_c: float
    cv_auc: dict[float, float]
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]  # empty when settings.bootstrap is 0
    confusion: dict[str, int]
    test_scores: np.ndarray
    model: Pipeline


def fit_and_score(
    features: np.ndarray,
    targets: np.ndarray,
    patients: Sequence[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: ProbeSettings = ProbeSettings(),
) -> Fit:
    """The paper's probe on one split: standardise, balanced LR, C by patient-grouped CV, refit, test."""
    patients = np.asarray(patients)
    cv_auc = cross_validated_auc(features[train_rows], targets[train_rows], patients[train_rows], settings.c_grid, settings.folds, settings.seed)
    chosen = choose_c(cv_auc)
    model = make_classifier(chosen, settings.seed).fit(features[train_rows], targets[train_rows])
    scores = model.predict_proba(features[test_rows])[:, 1]
    truth = targets[test_rows]
    intervals = (
        bootstrap_intervals(truth, scores, patients[test_rows], resamples=settings.bootstrap, seed=settings.seed) if settings.bootstrap else {}
    )
    return Fit(chosen, cv_auc, binary_metrics(truth, scores), intervals, confusion(truth, scores >= 0.5), scores, model)


def run_probe(
    features: np.ndarray,
    labels: Sequence[str],
    patients: Sequence[str],
    splits: Sequence[str] | None = None,
    settings: ProbeSettings = ProbeSettings(),
) -> ProbeResult:
    """The whole protocol, from features to test metrics with 95 % CIs."""
    targets, positive, negative = binary_targets(labels, settings.positive)
    split = probe_split(patients, labels, splits or [""] * len(labels), settings.seed, settings.split_policy)
    split.require_both_classes(targets, positive, negative)
    fit = fit_and_score(features, targets, patients, split.train, split.test, settings)
    return ProbeResult(
        positive=positive,
        negative=negative,
        chosen_c=fit.chosen_c,
        cv_auc=fit.cv_auc,
        metrics=fit.metrics,
        intervals=fit.intervals,
        confusion=fit.confusion,
        n_train=len(split.train),
        n_test=len(split.test),
        split_source=split.origin,
        purged=(split.purged_images, split.purged_patients),
        test_scores=fit.test_scores,
        test_indices=split.test,
        model=fit.model,
    )
