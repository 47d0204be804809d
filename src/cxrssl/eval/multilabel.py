"""Multi-label tasks: the paper's probe run one-vs-rest per finding, as CXR papers report it.

A multi-label task gives every image a value per finding: positive, negative or not
labelled (``data.findings``: NIH's ``|``-joined findings, CheXpert's 1 / 0 / −1 / blank
after an uncertainty policy). Per finding the probe is the binary one of ``eval.probe``:

* features standardised on the training part (all its images: standardising uses no
  label, so one scaler serves every finding);
* class-balanced L2 logistic regression, C from the same grid, chosen per finding by the
  mean AUC over patient-grouped inner folds; the folds are one assignment for all
  findings, stratified over the findings at the patient level (Sechidis et al. 2011,
  ``data.splits.multilabel_patient_folds``);
* refit on the whole training part at each finding's C and scored once on the test part.

An entry that is not labelled is left out of that finding's fit and score. Every finding
and C of a fold is solved at once by ``eval.logreg``, which reaches scikit-learn's
solution (tested against it) in a fraction of its time on 100k-image tasks.

The probabilities of balanced logistic regression are calibrated for a balanced
population, not for a rare finding's prevalence, so the threshold of ACC/SEN/SPE/F1 is
chosen on the training part: Youden's J on the inner folds' out-of-fold scores at the
chosen C (never on the test part). AUC does not depend on it.

A finding is fitted only when the training part holds at least ``MIN_TRAINING_PATIENTS``
(2) positive and 2 negative labelled patients (the inner cross-validation needs them;
a label budget may be that small on purpose), and scored only when the test part holds
at least ``min_patients`` (default 5) of each: an AUC over fewer positive patients says
little. Otherwise it is left out, named with the reason, and never averaged into the
macro mean AUC, the mean over the findings that were scored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from cxrssl.data.findings import finding_labels
from cxrssl.data.manifest import Manifest
from cxrssl.data.splits import multilabel_patient_folds, multilabel_patient_split
from cxrssl.eval.finetune import finetune
from cxrssl.eval.logreg import cross_validated_auc_grid, fit_logistic, standardise
from cxrssl.eval.metrics import METRICS, binary_metrics, youden_threshold
from cxrssl.eval.model import FindingsModel
from cxrssl.eval.probe import ProbeError, ProbeSettings, choose_c, split_parts
from cxrssl.eval.stats import bootstrap_estimate, patient_resample_weights, weighted_metrics

MACRO = "mean"  # the name of the macro mean wherever findings are listed
MIN_TRAINING_PATIENTS = 2  # positive and negative labelled patients a training part needs to fit a finding


@dataclass(frozen=True)
class FindingsTask:
    """The findings of a task's images: names, targets (n, F) with 1 / 0 / NaN, patients and split."""

    names: tuple[str, ...]
    targets: np.ndarray
    patients: np.ndarray
    splits: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.patients)

    def labelled_rows(self) -> np.ndarray:
        """Rows with at least one labelled finding."""
        return np.flatnonzero(np.isfinite(self.targets).any(axis=1))


def wants_findings(manifest: Manifest, settings: ProbeSettings) -> bool:
    """Whether a task is evaluated per finding: asked for, or a manifest with findings and no binary label."""
    if settings.findings is not None:
        return True
    return not any(manifest.labels) and finding_labels(manifest) is not None


def findings_task(manifest: Manifest, settings: ProbeSettings) -> FindingsTask:
    """The task's findings (``settings.findings``: the names to keep; empty = all), or one clear error."""
    labels = finding_labels(manifest)
    if labels is None:
        raise ProbeError(
            f"{manifest.name}: has no findings columns; index it with a findings task (e.g. `cxrssl index nih14 ROOT --task findings`) "
            f"or add a findings column (see the manifest format)"
        )
    if settings.positive is not None:
        raise ProbeError(
            f"{manifest.name}: --positive {settings.positive!r} names the disease class of a binary task; this one is evaluated per finding (choose findings with --findings)"
        )
    if settings.findings:
        labels = labels.subset(settings.findings)
    return FindingsTask(labels.names, labels.values.astype(float), np.asarray(manifest.patient_keys, dtype=object), tuple(manifest.splits))


def require_finding(manifest: Manifest, settings: ProbeSettings, finding: str | None) -> None:
    """Before any work: ``--finding NAME`` must name a finding of a task that is evaluated per finding."""
    if finding is None:
        return
    if not wants_findings(manifest, settings):
        raise ProbeError(f"{manifest.name}: --finding {finding!r} needs a task evaluated per finding, and this one is binary (by its label column)")
    names = findings_task(manifest, settings).names
    if finding not in names:
        raise ProbeError(f"{manifest.name}: --finding {finding!r} is not one of its findings ({', '.join(names)})")


def scorable_findings(task: FindingsTask, rows: np.ndarray, min_patients: int) -> dict[str, str]:
    """Findings of ``task`` that ``rows`` cannot fit or score, with the reason: too few positive or negative patients."""
    too_few = {}
    patients = task.patients[rows]
    for j, name in enumerate(task.names):
        values = task.targets[rows, j]
        positive = len(set(patients[values == 1]))
        negative = len(set(patients[values == 0]) - set(patients[values == 1]))
        if min(positive, negative) < min_patients:
            too_few[name] = f"{positive} positive / {negative} negative patients (fewer than {min_patients})"
    return too_few


@dataclass
class FindingsFit:
    """The probe of every finding on one training part, scored on one test part."""

    names: tuple[str, ...]  # every finding of the task
    excluded: dict[str, str]  # finding -> why it was not fitted or scored
    chosen_c: dict[str, float]
    cv_auc: dict[str, dict[float, float]]
    thresholds: dict[str, float]
    metrics: dict[str, dict[str, float]]  # finding -> ACC/AUC/SEN/SPE/F1, for the scored findings
    test_scores: np.ndarray  # (n_test, F) probabilities, NaN for the findings left out
    model: FindingsModel | None = field(repr=False, default=None)

    @property
    def scored(self) -> list[str]:
        return [name for name in self.names if name in self.metrics]

    @property
    def macro_auc(self) -> float:
        values = [self.metrics[name]["auc"] for name in self.scored]
        return float(np.mean(values)) if values else float("nan")


def fit_and_score_findings(
    features: np.ndarray,
    task: FindingsTask,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: ProbeSettings = ProbeSettings(),
) -> FindingsFit:
    """The probe of every finding on one split (see the module docstring)."""
    train_rows, test_rows = np.asarray(train_rows, dtype=int), np.asarray(test_rows, dtype=int)
    excluded = left_out_findings(task, train_rows, test_rows, settings.min_patients)
    fitted = [j for j, name in enumerate(task.names) if not excluded.get(name, "").startswith("training")]  # test-part exclusions: fitted, not scored
    n_test = len(test_rows)
    scores = np.full((n_test, len(task.names)), np.nan)
    fit = FindingsFit(task.names, excluded, {}, {}, {}, {}, scores)
    if not fitted:
        return fit
    targets = task.targets[:, fitted]
    patients = task.patients
    folds = min(settings.folds, len(set(patients[train_rows])))  # a label budget of 3 patients gets 3 inner folds
    folds = multilabel_patient_folds(patients[train_rows], targets[train_rows], folds, settings.seed)
    fold_of_row = np.full(len(train_rows), -1)
    for index, (_, held) in enumerate(folds):
        fold_of_row[held] = index
    c_grid = tuple(sorted(settings.c_grid))
    grid = cross_validated_auc_grid(features[train_rows], targets[train_rows], fold_of_row, c_grid, return_scores=True)
    chosen = []
    for k, j in enumerate(fitted):
        cv_auc = {c: float(grid.auc[i, k]) for i, c in enumerate(c_grid)}
        if not any(np.isfinite(v) for v in cv_auc.values()):
            excluded[task.names[j]] = "training part: no inner fold held both classes of this finding"
            continue
        fit.cv_auc[task.names[j]] = cv_auc
        chosen.append((k, j, choose_c(cv_auc)))
    if not chosen:
        return fit
    standardised, mean, scale = standardise(torch.as_tensor(np.asarray(features[train_rows])))
    mean, scale = mean.numpy(), scale.numpy()
    columns = [k for k, _, _ in chosen]
    used_c = sorted({c for _, _, c in chosen})
    solved = fit_logistic(standardised, targets[train_rows][:, columns], used_c)
    coef = np.stack([solved.coef[used_c.index(c), n] for n, (_, _, c) in enumerate(chosen)])
    intercept = np.array([solved.intercept[used_c.index(c), n] for n, (_, _, c) in enumerate(chosen)])
    out_of_fold = 1.0 / (1.0 + np.exp(-grid.scores))  # the inner folds' held-out decision values as probabilities
    thresholds = np.array([youden_threshold(targets[train_rows, k], out_of_fold[c_grid.index(c), :, k]) for k, _, c in chosen])
    names = tuple(task.names[j] for _, j, _ in chosen)
    fit.model = FindingsModel(names, mean, scale, coef, intercept, thresholds, np.array([c for _, _, c in chosen]))
    for n, (_, j, c) in enumerate(chosen):
        fit.chosen_c[task.names[j]] = c
        fit.thresholds[task.names[j]] = float(thresholds[n])
    if n_test:
        scores[:, [j for _, j, _ in chosen]] = fit.model.probability(features[test_rows])
        fit.metrics = finding_metrics(task, test_rows, scores, fit.thresholds, [name for name in names if name not in excluded])
    return fit


def left_out_findings(task: FindingsTask, train_rows: np.ndarray, test_rows: np.ndarray, min_patients: int) -> dict[str, str]:
    """The findings a split cannot fit (training part) or score (test part), with the reason."""
    excluded = {name: f"training part: {why}" for name, why in scorable_findings(task, train_rows, MIN_TRAINING_PATIENTS).items()}
    for name, why in scorable_findings(task, test_rows, min_patients).items():
        excluded.setdefault(name, f"test part: {why}")
    return excluded


def finding_metrics(
    task: FindingsTask, test_rows: np.ndarray, scores: np.ndarray, thresholds: dict[str, float], names
) -> dict[str, dict[str, float]]:
    """ACC/AUC/SEN/SPE/F1 of each finding in ``names`` on its labelled test images, at its threshold."""
    metrics = {}
    for name in names:
        j = task.names.index(name)
        truth = task.targets[test_rows, j]
        labelled = np.isfinite(truth)
        metrics[name] = binary_metrics(truth[labelled].astype(int), scores[labelled, j], thresholds[name])
    return metrics


def finetune_findings(spec, images, task: FindingsTask, train_rows, test_rows, finetune_settings, min_patients: int, work_dir=None, progress=False):
    """Fine-tune one output per finding (masked BCE, per-finding positive weights, epoch by validation macro AUC); score per finding.

    The findings with too few patients in the training part get no output; those with
    too few in the test part are trained but not scored. Returns the FindingsFit (the
    probe's shape, for the same tables) and the FinetuneFit (the network, the curve).
    """
    train_rows, test_rows = np.asarray(train_rows, dtype=int), np.asarray(test_rows, dtype=int)
    excluded = left_out_findings(task, train_rows, test_rows, min_patients)
    trained = [j for j, name in enumerate(task.names) if not excluded.get(name, "").startswith("training")]
    if not trained:
        raise ProbeError("no finding has enough labelled patients in the training part to fine-tune; add labelled patients or lower --min-patients")
    tuned = finetune(
        spec, images, task.targets[:, trained], task.patients, train_rows, test_rows, finetune_settings, work_dir=work_dir, progress=progress
    )
    scores = np.full((len(test_rows), len(task.names)), np.nan)
    scores[:, trained] = tuned.test_scores
    thresholds = {task.names[j]: float(t) for j, t in zip(trained, tuned.thresholds)}
    scored = [task.names[j] for j in trained if task.names[j] not in excluded]
    fit = FindingsFit(task.names, excluded, {}, {}, thresholds, finding_metrics(task, test_rows, scores, thresholds, scored), scores)
    return fit, tuned


@dataclass
class FindingsProbeResult:
    """``run_findings_probe``: one split, every finding, with patient-bootstrap intervals."""

    fit: FindingsFit
    intervals: dict[str, dict[str, tuple[float, float]]]  # finding (and MACRO) -> metric -> 95 % interval
    macro_interval: tuple[float, float]
    counts: dict[str, dict[str, int]]  # finding -> labelled test images / positive test patients
    n_train: int
    n_test: int
    split_source: str
    test_indices: np.ndarray = field(repr=False, default=None)
    purged: tuple[int, int] = (0, 0)

    @property
    def metrics(self) -> dict[str, float]:
        """Each metric's mean over the scored findings (the macro mean), where a binary result has its metrics."""
        scored = self.fit.scored
        return {m: float(np.mean([self.fit.metrics[name][m] for name in scored])) if scored else float("nan") for m in METRICS}

    def to_dict(self) -> dict:
        fit = self.fit
        findings = []
        for name in fit.names:
            entry = {"finding": name, **self.counts.get(name, {})}
            if name in fit.metrics:
                entry.update(
                    {
                        "metrics": fit.metrics[name],
                        "intervals_95": {m: list(v) for m, v in self.intervals.get(name, {}).items()},
                        "chosen_c": fit.chosen_c.get(name),  # none when fine-tuned
                        "cv_auc": {str(c): v for c, v in fit.cv_auc.get(name, {}).items()},
                        "threshold": fit.thresholds[name],
                    }
                )
            else:
                entry["excluded"] = fit.excluded.get(name, "not scored")
            findings.append(entry)
        return {
            "kind": "cxrssl-findings-probe",
            "findings": findings,
            "metrics": self.metrics,  # means over the scored findings, for the views a binary result has (sweep, report)
            "intervals_95": {"auc": list(self.macro_interval)},
            "macro_auc": fit.macro_auc,
            "macro_auc_95": list(self.macro_interval),
            "macro_over": fit.scored,
            "excluded": dict(fit.excluded),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "split_source": self.split_source,
            "purged_images": self.purged[0],
            "purged_patients": self.purged[1],
        }


def findings_split(task: FindingsTask, seed: int = 0, policy: str = "refuse") -> tuple[np.ndarray, np.ndarray, str, tuple[int, int]]:
    """(train rows, test rows, where the split came from, purged images/patients): the manifest's test part, or 70/10/20 stratified over findings."""
    patients = list(task.patients)
    split = split_parts(
        patients, task.splits, lambda: multilabel_patient_split(patients, task.targets, seed=seed), "patient_grouped_multilabel_70_10_20", policy
    )
    return split.train, split.test, split.origin, (split.purged_images, split.purged_patients)


def finding_intervals(
    task: FindingsTask, fit: FindingsFit, test_rows: np.ndarray, resamples: int, seed: int
) -> tuple[dict[str, dict[str, tuple[float, float]]], tuple[float, float]]:
    """Percentile intervals from resampling test patients (one resample for all findings, so the macro mean is coherent)."""
    if not resamples or not fit.scored:
        return {}, (float("nan"), float("nan"))
    weights = patient_resample_weights(task.patients[test_rows].astype(str), resamples, [seed, 21])
    intervals, auc_draws = {}, []
    for name in fit.scored:
        j = task.names.index(name)
        truth = task.targets[test_rows, j]
        labelled = np.isfinite(truth)
        draws = weighted_metrics(truth[labelled].astype(int), fit.test_scores[labelled, j], weights[:, labelled], fit.thresholds[name])
        intervals[name] = {m: _percentile(draws[m]) for m in METRICS}
        auc_draws.append(draws["auc"])
    with warnings.catch_warnings():  # a resample that draws no positive of any finding has no mean
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = np.nanmean(np.stack(auc_draws), axis=0) if auc_draws else np.array([])
    return intervals, _percentile(macro)


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    estimate = bootstrap_estimate(float("nan"), draws)
    return (estimate.low, estimate.high)


def run_findings_probe(features: np.ndarray, task: FindingsTask, settings: ProbeSettings = ProbeSettings()) -> FindingsProbeResult:
    """The whole protocol per finding, from features to test metrics with 95 % CIs."""
    train, test, split_origin, purged = findings_split(task, settings.seed, settings.split_policy)
    if len(train) == 0 or len(test) == 0:
        raise ProbeError("the split leaves no training or no test images; the task is too small for the probe")
    return findings_result(task, fit_and_score_findings(features, task, train, test, settings), train, test, split_origin, purged, settings)


def findings_result(
    task: FindingsTask, fit: FindingsFit, train, test, split_origin: str, purged: tuple[int, int], settings: ProbeSettings
) -> FindingsProbeResult:
    """A probe's or fine-tune's FindingsFit on one split as the result the verbs write: intervals and per-finding patient counts."""
    if not fit.scored:
        reasons = "; ".join(f"{name}: {why}" for name, why in fit.excluded.items())
        raise ProbeError(f"no finding can be scored on this split ({reasons}); add labelled patients or lower --min-patients")
    intervals, macro = finding_intervals(task, fit, test, settings.bootstrap, settings.seed)
    counts = {}
    for j, name in enumerate(task.names):
        truth = task.targets[test, j]
        counts[name] = {
            "test_images": int(np.isfinite(truth).sum()),
            "test_positive_patients": int(len(set(task.patients[test][truth == 1]))),
            "train_positive_patients": int(len(set(task.patients[train][task.targets[train, j] == 1]))),
        }
    return FindingsProbeResult(fit, intervals, macro, counts, len(train), len(test), split_origin, test, purged)
