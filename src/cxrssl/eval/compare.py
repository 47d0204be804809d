"""Does pretraining pay? Backbones compared on identical folds and label budgets, paired.

For each labelled task, one resampling plan is drawn from the task alone (its labels,
patients, split and the seed), never from a backbone, and every backbone is probed on
exactly that plan, so every comparison is paired:

* **Outer design.** Without an official test split: stratified, patient-grouped K-fold
  cross-validation over every labelled image, repeated R times with different seeds
  (default 5 × 5: every image is tested 5 times). With one (the manifest's ``test``
  beside ``train``/``val``): the test part is kept for every repetition and the R
  repetitions redraw the training side (label budgets and inner folds). A patient in
  both official parts is refused, or purged from the training side (``split_policy``).
* **Label budgets.** In each training part, each class's patients are permuted once
  (``data.splits.label_budget_rows``) and a budget of b takes the first b patients per
  class with all their images; ``all`` takes every patient. Budgets are nested.
* **Multi-label tasks** (``eval.multilabel``: a manifest with findings): the folds are
  stratified over the findings at the patient level, a budget of b takes b patients in
  all (nested), and each fold fits the per-finding probe. Every finding gets its rows,
  and so does the macro mean AUC over the findings that every fold of that budget could
  fit and score; the others are named, never averaged in.
* **Inside.** The paper's probe, unchanged (``probe.fit_and_score``): standardise,
  balanced logistic regression, C from the grid by patient-grouped inner CV, refit, test.
  With ``settings.finetune``, every backbone is also fine-tuned end to end
  (``eval.finetune``) at the fine-tuning budgets on the folds of the first
  ``finetune_repeats`` repetitions: the same folds and draws for every backbone, so
  those rows are paired with the fine-tuned reference the same way.

Statistics (``eval.stats``): the corrected resampled t-test over the R·K folds for the
CV design, a patient-level paired bootstrap for a fixed test part. Each backbone gets
its mean ACC/AUC/SEN/SPE/F1 with a 95 % interval; each non-reference backbone its
paired difference to the reference (default: the random initialisation) with a 95 %
interval and a p-value. The output says which statistic was used.

A killed comparison resumes: finished folds are kept in ``.compare.partial.jsonl`` in
the output folder, keyed by everything that determines them, and skipped when it is run
again with the same inputs; the file is removed once the results are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cxrssl.data.images import ImageSet
from cxrssl.data.splits import label_budget_rows, multilabel_patient_folds, patient_budget_rows, patient_classes
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec, features_for
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import (
    MACRO,
    MIN_TRAINING_PATIENTS,
    FindingsTask,
    findings_split,
    findings_task,
    finetune_findings,
    fit_and_score_findings,
    left_out_findings,
    wants_findings,
)
from cxrssl.eval.probe import ProbeError, ProbeSettings, binary_targets, fit_and_score, has_test_split, probe_split
from cxrssl.eval.stats import (
    CORRECTED_T,
    PATIENT_BOOTSTRAP,
    Estimate,
    bootstrap_estimate,
    corrected_t,
    patient_resample_weights,
    weighted_metrics,
)
from cxrssl.fileio import atomic_write_text

if TYPE_CHECKING:
    from cxrssl.eval.finetune import FinetuneSettings

DEFAULT_BUDGETS: tuple[int | None, ...] = (10, 25, 50, 100, 250, None)
PARTIAL = ".compare.partial.jsonl"
FINETUNE_STATE = ".finetune_state"


class CompareError(CxrsslError):
    pass


def budget_name(budget: int | None) -> str:
    return "all" if budget is None else str(budget)


@dataclass(frozen=True)
class CompareSettings:
    budgets: tuple[int | None, ...] = DEFAULT_BUDGETS  # labelled patients per class; None = all
    folds: int = 5  # outer folds K (CV design)
    repeats: int = 5  # repetitions R
    probe: ProbeSettings = ProbeSettings(bootstrap=0)  # the probe in each fold; its seed is the base seed
    reference: str | None = None  # name of the reference backbone; default: the random init (else the first)
    bootstrap: int = 2000  # patient resamples, fixed-test design
    jobs: int = 0  # worker processes for the fits; 0 = one per core
    finetune: FinetuneSettings | None = None  # also fine-tune every backbone (eval.finetune)
    finetune_budgets: tuple[int | None, ...] = (25, 100, None)  # where to fine-tune; each must be one of budgets
    finetune_repeats: int = 1  # fine-tune on the folds of the first repeats only: it costs far more than a probe

    def __post_init__(self):
        if self.folds < 2:
            raise CompareError(f"--folds {self.folds}: the outer cross-validation needs at least 2 folds")
        if self.repeats < 1:
            raise CompareError(f"--repeats {self.repeats}: give at least 1 repetition")
        if not self.budgets or any(b is not None and b < 1 for b in self.budgets):
            raise CompareError(f"--labels {','.join(map(budget_name, self.budgets))}: budgets are patients per class (>= 1) or 'all'")
        if self.finetune and not set(self.finetune_budgets) <= set(self.budgets):
            missing = ", ".join(budget_name(b) for b in self.finetune_budgets if b not in self.budgets)
            raise CompareError(f"--finetune-labels {missing}: fine-tuning budgets must be among --labels")
        if self.finetune and not 1 <= self.finetune_repeats <= self.repeats:
            raise CompareError(f"--finetune-repeats {self.finetune_repeats}: give 1 to --repeats ({self.repeats})")
        if self.bootstrap < 100:
            raise CompareError(f"--bootstrap {self.bootstrap}: the paired bootstrap needs at least 100 resamples")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["budgets"] = [budget_name(b) for b in self.budgets]
        out["probe"]["c_grid"] = list(self.probe.c_grid)
        out["finetune"] = self.finetune.to_dict() if self.finetune else None
        out["finetune_budgets"] = [budget_name(b) for b in self.finetune_budgets] if self.finetune else []
        out.pop("jobs")
        return out


@dataclass(frozen=True)
class NamedBackbone:
    name: str
    spec: BackboneSpec


@dataclass
class Fold:
    """One outer split of a task: the test rows, and the training rows of each budget."""

    repeat: int
    fold: int
    test: np.ndarray
    train: dict[int | None, np.ndarray]  # budget -> rows
    seed: int  # seed of the inner CV
    train_size: int  # images of the whole training part, before any budget


@dataclass
class TaskPlan:
    name: str
    design: str  # "cv" or "fixed_test"
    targets: np.ndarray
    patients: np.ndarray
    positive: str
    negative: str
    folds: list[Fold]
    purged: tuple[int, int] = (0, 0)
    n_images: int = 0
    findings: FindingsTask | None = None  # a multi-label task: targets are (n, F) with NaN for entries not labelled

    @property
    def budget_unit(self) -> str:
        return "patients" if self.findings else "patients per class"

    @property
    def statistic(self) -> str:
        return CORRECTED_T if self.design == "cv" else PATIENT_BOOTSTRAP

    def describe(self, settings: CompareSettings) -> str:
        stratified = ", folds stratified over the findings" if self.findings else ""
        if self.design == "cv":
            return f"{settings.repeats} x {settings.folds}-fold patient-grouped cross-validation{stratified}"
        return f"the manifest's test part, {settings.repeats} draws of the training part"


def common_image_size(backbones: Sequence[NamedBackbone]) -> int:
    """The one image size every backbone works at (the tasks are decoded at it)."""
    sizes = {b.spec.image_size for b in backbones}
    if len(sizes) > 1:
        listed = ", ".join(f"{b.name} {b.spec.image_size} px" for b in backbones)
        raise CompareError(f"the backbones work at different image sizes ({listed}); compare backbones of one image size")
    return sizes.pop() if sizes else 128


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def plan_task(name: str, labels: Sequence[str], patients: Sequence[str], splits: Sequence[str], settings: CompareSettings) -> TaskPlan:
    """The folds and budget draws of one task, the same for every backbone."""
    probe = settings.probe
    targets, positive, negative = binary_targets(labels, probe.positive)
    patients = np.asarray(patients, dtype=object)
    seed = probe.seed
    folds: list[Fold] = []
    purged = (0, 0)
    classes = patient_classes(patients, labels)
    if has_test_split(splits):
        design = "fixed_test"
        split = probe_split(patients, labels, splits, seed, probe.split_policy)
        purged = (split.purged_images, split.purged_patients)
        try:
            split.require_both_classes(targets, positive, negative)
        except ProbeError as error:
            raise CompareError(f"{name}: {error}") from None
        for repeat in range(settings.repeats):
            train = _budgets(name, patients, labels, split.train, settings, (seed, repeat, 0))
            folds.append(Fold(repeat, 0, split.test, train, _seed(seed, repeat, 0, 1), len(split.train)))
    else:
        design = "cv"
        smallest = min((sum(1 for c in classes.values() if c == label), label) for label in (positive, negative))
        if smallest[0] < settings.folds:
            raise CompareError(
                f"{name}: class {smallest[1]!r} has only {smallest[0]} patient(s), fewer than the {settings.folds} folds; "
                f"lower --folds to at most {smallest[0]} or add labelled patients"
            )
        for repeat in range(settings.repeats):
            splitter = StratifiedGroupKFold(n_splits=settings.folds, shuffle=True, random_state=_seed(seed, repeat))
            for index, (train_rows, test_rows) in enumerate(splitter.split(np.zeros(len(targets)), targets, patients)):
                if len(set(targets[test_rows])) < 2:
                    raise CompareError(f"{name}: a test fold holds one class only; lower --folds")
                train = _budgets(name, patients, labels, train_rows, settings, (seed, repeat, index))
                folds.append(Fold(repeat, index, test_rows, train, _seed(seed, repeat, index, 1), len(train_rows)))
    return TaskPlan(name, design, targets, patients, positive, negative, folds, purged, len(targets))


def _budgets(name, patients, labels, rows, settings: CompareSettings, seed) -> dict[int | None, np.ndarray]:
    try:
        if labels is None:  # multi-label: budgets count patients, not patients per class
            return patient_budget_rows(patients, rows, settings.budgets, seed=list(seed))
        return label_budget_rows(patients, labels, rows, settings.budgets, seed=list(seed))
    except CxrsslError as error:
        raise CompareError(f"{name}: {error}") from None


def plan_findings_task(name: str, task: FindingsTask, settings: CompareSettings) -> TaskPlan:
    """The folds and budget draws of a multi-label task: folds stratified over findings at the patient level."""
    probe = settings.probe
    seed = probe.seed
    folds: list[Fold] = []
    purged = (0, 0)
    if has_test_split(task.splits):
        design = "fixed_test"
        train, test, _, purged = findings_split(task, seed, probe.split_policy)
        if len(train) == 0 or len(test) == 0:
            raise CompareError(f"{name}: the manifest's split leaves no training or no test images")
        for repeat in range(settings.repeats):
            drawn = _budgets(name, task.patients, None, train, settings, (seed, repeat, 0))
            folds.append(Fold(repeat, 0, test, drawn, _seed(seed, repeat, 0, 1), len(train)))
    else:
        design = "cv"
        patients = len(set(task.patients))
        if patients < settings.folds:
            raise CompareError(f"{name}: only {patients} patient(s), fewer than the {settings.folds} folds; lower --folds or add labelled patients")
        splits = {repeat: multilabel_patient_folds(task.patients, task.targets, settings.folds, _seed(seed, repeat)) for repeat in range(settings.repeats)}
        smallest = min(len(set(task.patients[train])) for found in splits.values() for train, _ in found)
        too_large = [b for b in settings.budgets if b is not None and b > smallest]
        if too_large:  # the limit of the smallest training part, not of the first one drawn
            raise CompareError(f"{name}: label budget {too_large[0]} patients: the smallest training part has {smallest}; "
                               f"lower --labels to at most {smallest} or use 'all'")  # fmt: skip
        for repeat, found in splits.items():
            for index, (train_rows, test_rows) in enumerate(found):
                drawn = _budgets(name, task.patients, None, train_rows, settings, (seed, repeat, index))
                folds.append(Fold(repeat, index, test_rows, drawn, _seed(seed, repeat, index, 1), len(train_rows)))
    _require_a_scorable_finding(name, task, folds, settings)
    return TaskPlan(name, design, task.targets, task.patients, "", "", folds, purged, len(task), task)


def _require_a_scorable_finding(name: str, task: FindingsTask, folds: list[Fold], settings: CompareSettings) -> None:
    """Before any fit: some finding must be fittable and scorable on every fold of some budget, else every table would be empty."""
    for budget in settings.budgets:
        left_out = set()
        for fold in folds:
            left_out |= set(left_out_findings(task, fold.train[budget], fold.test, settings.probe.min_patients))
        if len(left_out) < len(task.names):
            return
    raise CompareError(
        f"{name}: no finding has {MIN_TRAINING_PATIENTS} positive and negative patients in every training part and {settings.probe.min_patients} "
        f"in every test part at any budget; add labelled patients, raise --labels or lower --min-patients"
    )


def plan_for(name: str, images: ImageSet, settings: CompareSettings) -> TaskPlan:
    """One task's plan: per finding when the task is multi-label (``eval.multilabel.wants_findings``), else binary."""
    manifest = images.manifest
    if wants_findings(manifest, settings.probe):
        return plan_findings_task(name, findings_task(manifest, settings.probe), settings)
    return plan_task(name, manifest.labels, manifest.patient_keys, manifest.splits, settings)


def _fit_fold(plan: TaskPlan, fold: Fold, features: dict[str, np.ndarray], settings: CompareSettings) -> dict:
    """Every backbone at every budget on one fold: the records and (fixed test) the test scores."""
    probe = replace(settings.probe, seed=fold.seed, bootstrap=0)
    records, scores = [], {}
    if plan.findings:
        for name, values in features.items():
            for budget, train in fold.train.items():
                _record_findings(records, scores, plan, fold, name, budget, train, fit_and_score_findings(values, plan.findings, train, fold.test, probe))
        return {"mode": "probe", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}
    for name, values in features.items():
        for budget, train in fold.train.items():
            try:
                fit = fit_and_score(values, plan.targets, plan.patients, train, fold.test, probe)
            except ProbeError as error:
                raise CompareError(f"{plan.name}, budget {budget_name(budget)}: {error}") from None
            _record(records, scores, plan, fold, name, budget, train, fit.metrics, fit.test_scores, chosen_c=fit.chosen_c)
    return {"mode": "probe", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}


def _record_findings(records, scores, plan: TaskPlan, fold: Fold, name, budget, train, fit, **extra) -> None:
    """``_record`` per finding of a FindingsFit (probe or fine-tune): NaN metrics where the fold could not fit or score it."""
    for j, finding in enumerate(plan.findings.names):
        found = fit.metrics.get(finding, dict.fromkeys(METRICS, float("nan")))
        _record(records, scores, plan, fold, name, budget, train, found, fit.test_scores[:, j], finding=finding, chosen_c=fit.chosen_c.get(finding), **extra)
        if plan.design == "fixed_test":
            scores["threshold|" + _score_key(name, budget_name(budget), finding)] = fit.thresholds.get(finding, 0.5)


def _score_key(name: str, budget: str, finding: str | None = None) -> str:
    return f"{name}|{budget}" if finding is None else f"{name}|{budget}|{finding}"


def _record(records: list, scores: dict, plan: TaskPlan, fold: Fold, name: str, budget, train, metrics: dict, test_scores, finding=None, **extra) -> None:
    """One backbone at one budget on one fold: its record, and (fixed test part) its test scores for the bootstrap."""
    if finding is not None:
        extra = {"finding": finding, **extra}
    records.append(
        {
            "task": plan.name,
            "backbone": name,
            "budget": budget_name(budget),
            "repeat": fold.repeat,
            "fold": fold.fold,
            "n_train": int(len(train)),
            "n_train_patients": int(len(set(plan.patients[train]))),
            "n_test": int(len(fold.test)),
            **extra,
            **{metric: float(metrics[metric]) for metric in METRICS},
        }
    )
    if plan.design == "fixed_test":
        scores[_score_key(name, budget_name(budget), finding)] = test_scores.round(7).tolist()


@dataclass
class Comparison:
    payload: dict  # what compare.json holds
    folder: Path
    files: list[Path] = field(default_factory=list)


def compare_backbones(
    backbones: Sequence[NamedBackbone],
    tasks: Sequence[tuple[str, ImageSet]],
    out_dir: str | Path,
    settings: CompareSettings = CompareSettings(),
    progress: bool = True,
    overwrite: bool = False,
    features: dict[str, dict[str, np.ndarray]] | None = None,
) -> Comparison:
    """Compare ``backbones`` on every (name, images) task; write compare.json/.csv/.md and the figures.

    ``features[task][backbone]``: features computed before (e.g. by ``cxrssl extract``);
    by default they are extracted here, through the feature cache.
    """
    from cxrssl.report.compare import write_compare_outputs  # figures and tables live with the report

    out_dir = Path(out_dir)
    names = [b.name for b in backbones]
    if len(backbones) < 2:
        raise CompareError("give at least two backbones to compare (e.g. --checkpoint CK.json --init random)")
    if len(set(names)) != len(names):
        raise CompareError(f"two backbones share a name ({', '.join(names)}); name them with --checkpoint NAME=CK.json")
    common_image_size(backbones)
    if settings.finetune and any(b.spec.readout != "last" for b in backbones):
        raise CompareError("fine-tuning trains the network end to end from its last stage; compare another readout without --finetune")
    reference = settings.reference or next((b.name for b in backbones if b.spec.checkpoint is None and b.spec.init == "random"), names[0])
    if reference not in names:
        raise CompareError(f"--reference {reference!r} is not one of the backbones ({', '.join(names)})")
    task_names = [name for name, _ in tasks]
    if len(set(task_names)) != len(task_names):
        raise CompareError(f"two tasks share a name ({', '.join(task_names)}); give each --task its own manifest name or folder")
    if (out_dir / "compare.json").exists() and not overwrite:
        raise CompareError(f"{out_dir}: already holds compare.json; choose another -o or pass --overwrite")
    say = print if progress else (lambda *a, **k: None)

    plans = [plan_for(name, images, settings) for name, images in tasks]
    if features is None:
        features = {plan.name: {b.name: features_for(b.spec, images, progress=progress) for b in backbones} for plan, (_, images) in zip(plans, tasks)}
    key = _key(features, tasks, settings, plans)
    done = _read_partial(out_dir / PARTIAL, key)
    todo = [(plan, fold) for plan in plans for fold in plan.folds if ("probe", plan.name, fold.repeat, fold.fold) not in done]
    fits = len(todo) * len(backbones) * len(settings.budgets)
    say(f"compare: {len(backbones)} backbones x {len(plans)} task(s); {fits} probe fits to run ({len(done)} folds done before)")
    _start_partial(out_dir / PARTIAL, key, done)
    for result in _run_folds(todo, features, settings, progress):
        done[_fold_key(result)] = result
        _append_partial(out_dir / PARTIAL, [result])
    if settings.finetune:
        images_of = {plan.name: images for plan, (_, images) in zip(plans, tasks)}
        for plan in plans:
            for fold in plan.folds:
                if fold.repeat < settings.finetune_repeats and ("finetune", plan.name, fold.repeat, fold.fold) not in done:
                    say(f"fine-tuning {len(backbones)} backbone(s) at {len(settings.finetune_budgets)} budget(s): {plan.name}, repeat {fold.repeat}, fold {fold.fold}")
                    result = _finetune_fold(plan, fold, backbones, images_of[plan.name], settings, out_dir)
                    done[_fold_key(result)] = result
                    _append_partial(out_dir / PARTIAL, [result])
    payload = summarise(plans, done, names, reference, settings)
    payload["backbones"] = [{"name": b.name, "description": b.spec.description, "arch": b.spec.arch, "image_size": b.spec.image_size,
                             "epoch": b.spec.epoch, "checkpoint": str(b.spec.checkpoint) if b.spec.checkpoint else None, "readout": b.spec.readout} for b in backbones]  # fmt: skip
    files = write_compare_outputs(payload, out_dir)
    (out_dir / PARTIAL).unlink(missing_ok=True)
    shutil.rmtree(out_dir / FINETUNE_STATE, ignore_errors=True)
    return Comparison(payload, out_dir, files)


def _fold_key(result: dict) -> tuple:
    return (result.get("mode", "probe"), result["task"], result["repeat"], result["fold"])


def _finetune_fold(plan: TaskPlan, fold: Fold, backbones, images: ImageSet, settings: CompareSettings, out_dir: Path) -> dict:
    """Every backbone fine-tuned at every fine-tuning budget of one fold (in this process: torch uses the cores)."""
    from cxrssl.eval.finetune import finetune

    records, scores = [], {}
    for index, backbone in enumerate(backbones):
        for budget in settings.finetune_budgets:
            train = fold.train[budget]
            # One resumable state per fine-tune: a killed comparison resumes the one it was in.
            state = out_dir / FINETUNE_STATE / f"{plan.name}_r{fold.repeat}_f{fold.fold}_b{index}_{budget_name(budget)}"
            tune = replace(settings.finetune, seed=fold.seed)
            try:
                if plan.findings:
                    fit, tuned = finetune_findings(backbone.spec, images, plan.findings, train, fold.test, tune, settings.probe.min_patients, state)
                    _record_findings(records, scores, plan, fold, backbone.name + FINETUNED, budget, train, fit, chosen_epoch=tuned.chosen_epoch)
                    continue
                fit = finetune(backbone.spec, images, plan.targets, plan.patients, train, fold.test, tune, work_dir=state)
            except CxrsslError as error:
                raise CompareError(f"{plan.name}, fine-tuning at budget {budget_name(budget)}: {error}") from None
            _record(records, scores, plan, fold, backbone.name + FINETUNED, budget, train, fit.metrics, fit.test_scores,
                    chosen_c=None, chosen_epoch=fit.chosen_epoch)  # fmt: skip
    return {"mode": "finetune", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}


def _run_folds(todo, features, settings: CompareSettings, progress: bool):
    """Fit the folds, in worker processes when there are several cores; results as they finish."""
    jobs = settings.jobs or (os.cpu_count() or 1)
    if jobs == 1 or len(todo) <= 1:
        from tqdm import tqdm

        for plan, fold in tqdm(todo, desc="folds", unit="fold", disable=not progress, leave=False):
            yield _fit_fold(plan, fold, features[plan.name], settings)
        return
    from joblib import Parallel, delayed, parallel_config

    # One BLAS thread per worker: the workers, not BLAS, use the cores.
    with parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = Parallel(n_jobs=min(jobs, len(todo)), return_as="generator_unordered")
        yield from parallel(delayed(_fit_fold)(plan, fold, features[plan.name], settings) for plan, fold in todo)


def _key(features: dict, tasks, settings: CompareSettings, plans: list[TaskPlan]) -> str:
    """What the fold results depend on: the features themselves (by content), the tasks' labels, patients and split, the settings."""
    digest = hashlib.sha256()
    for task_name in sorted(features):
        for name in sorted(features[task_name]):
            digest.update(f"{task_name}|{name}|{features[task_name][name].shape}".encode())
            digest.update(np.ascontiguousarray(features[task_name][name]).tobytes())
    text = json.dumps(
        {"tasks": [[name, images.manifest.labels, images.manifest.patient_keys, images.manifest.splits] for name, images in tasks], "settings": settings.to_dict()},
        sort_keys=True,
    )
    digest.update(text.encode())
    for plan in plans:  # the targets too: a task's findings are not in its labels
        digest.update(f"{plan.name}|{'|'.join(plan.findings.names) if plan.findings else ''}".encode())
        digest.update(np.ascontiguousarray(plan.targets, dtype=float).tobytes())
    return digest.hexdigest()


def _read_partial(path: Path, key: str) -> dict:
    """Folds finished by an earlier run of the same comparison; anything else in the file is ignored."""
    done = {}
    if not path.is_file():
        return done
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        return done  # another comparison's: it will be replaced
    for line in lines[1:]:
        try:
            result = json.loads(line)
        except ValueError:
            break  # a line cut short by a kill
        done[_fold_key(result)] = result
    return done


def _start_partial(path: Path, key: str, done: dict) -> None:
    """The partial file holds this comparison's key, then the folds kept from before (a torn last line dropped)."""
    atomic_write_text(path, json.dumps({"key": key}) + "\n" + "".join(json.dumps(r) + "\n" for r in done.values()))


def _append_partial(path: Path, results: list[dict]) -> None:
    with open(path, "a") as handle:
        for result in results:
            handle.write(json.dumps(result) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


FINETUNED = " (fine-tuned)"


def summarise(plans: list[TaskPlan], done: dict, names: list[str], reference: str, settings: CompareSettings) -> dict:
    """compare.json's content: per task × budget × backbone the metrics and the paired differences.

    Fine-tuned rows (``settings.finetune``) form a group of their own, on the folds of
    the first ``finetune_repeats`` repetitions, paired with the fine-tuned reference.
    """
    tasks = []
    all_records = []
    for plan in plans:
        weights = None
        if plan.design == "fixed_test":
            test = plan.folds[0].test
            weights = patient_resample_weights(plan.patients[test].astype(str), settings.bootstrap, [settings.probe.seed, 99])
        groups = [("probe", names, reference, settings.budgets, plan.folds)]
        if settings.finetune:
            folds = [fold for fold in plan.folds if fold.repeat < settings.finetune_repeats]
            groups.append(("finetune", [n + FINETUNED for n in names], reference + FINETUNED, settings.finetune_budgets, folds))
        rows, finding_rows, macro_over, excluded = [], [], {}, {}
        for mode, group_names, group_reference, budgets, folds in groups:
            results = [done[(mode, plan.name, fold.repeat, fold.fold)] for fold in folds]
            records = [record for result in results for record in result["records"]]
            all_records += records
            for budget in map(budget_name, budgets):
                if not plan.findings:
                    rows += _summary_rows(plan, folds, results, records, group_names, group_reference, budget, weights, settings, mode)
                    continue
                summary = _findings_summary(plan, folds, results, records, group_names, group_reference, budget, weights, settings, mode)
                rows += summary[0]
                finding_rows += summary[1]
                macro_over[f"{mode}|{budget}"], excluded[f"{mode}|{budget}"] = summary[2], summary[3]
        findings = {}
        if plan.findings:
            findings = {"findings": list(plan.findings.names), "finding_rows": finding_rows, "macro_over": macro_over, "excluded": excluded}
        tasks.append(
            {
                **findings,
                "budget_unit": plan.budget_unit,
                "task": plan.name,
                "design": plan.design,
                "design_text": plan.describe(settings),
                "statistic": plan.statistic,
                "positive": plan.positive,
                "negative": plan.negative,
                "images": plan.n_images,
                "patients": int(len(set(plan.patients))),
                "purged_images": plan.purged[0],
                "purged_patients": plan.purged[1],
                "rows": rows,
            }
        )
    return {"kind": "cxrssl-compare", "settings": settings.to_dict(), "reference": reference, "tasks": tasks, "folds": all_records}


def _findings_summary(plan: TaskPlan, folds, results, records, names, reference, budget, weights, settings: CompareSettings, mode: str):
    """A multi-label task at one budget: the macro-mean rows, the rows of each finding, the findings averaged and those left out.

    A finding enters the macro mean, and gets rows, only when every fold of the group
    fitted and scored it (too few positive patients in a fold's training or test part
    leaves it out there); the mean is then over the same findings on every fold, so its
    per-fold values are paired across backbones like any other metric.
    """
    at_budget = [r for r in records if r["budget"] == budget]
    excluded, over = {}, []
    for finding in plan.findings.names:
        missing = sum(1 for r in at_budget if r["backbone"] == reference and r["finding"] == finding and not np.isfinite(r["auc"]))
        if missing:
            excluded[finding] = (f"not fitted or scored in {missing} of {len(folds)} {'folds' if plan.design == 'cv' else 'draws'}: fewer than {MIN_TRAINING_PATIENTS} positive or negative "
                                 f"patients in a training part, or {settings.probe.min_patients} in a test part")  # fmt: skip
        else:
            over.append(finding)
    finding_rows = []
    for finding in over:
        finding_rows += _summary_rows(plan, folds, results, at_budget, names, reference, budget, weights, settings, mode, finding=finding, over=[finding])
    macro = []
    for (name, repeat, fold), group in _group_by(at_budget, lambda r: (r["backbone"], r["repeat"], r["fold"])).items():
        chosen = [r for r in group if r["finding"] in over]
        first = group[0]
        means = {m: float(np.mean([r[m] for r in chosen])) if chosen else float("nan") for m in METRICS}  # NaN: no finding to average
        macro.append({key: first[key] for key in ("task", "backbone", "budget", "repeat", "fold", "n_train", "n_train_patients", "n_test")} | {"finding": MACRO, **means})
    rows = _summary_rows(plan, folds, results, macro, names, reference, budget, weights, settings, mode, finding=MACRO, over=over)
    return rows, finding_rows, over, excluded


def _group_by(records, key) -> dict:
    groups: dict = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _summary_rows(plan: TaskPlan, folds, results, records, names, reference, budget, weights, settings: CompareSettings, mode: str,
                  finding: str | None = None, over: list[str] | None = None) -> list[dict]:  # fmt: skip
    """The rows of one budget; for a multi-label task, of one ``finding`` (or the macro mean of the findings ``over``)."""
    if finding is not None:
        records = [r for r in records if r.get("finding") == finding]
    by_name = {name: sorted((r for r in records if r["backbone"] == name and r["budget"] == budget), key=lambda r: (r["repeat"], r["fold"])) for name in names}
    if plan.design == "cv":
        # n_test / n_train of the whole training part (1 / (K - 1) for K folds). A budget's
        # training sets are subsets that overlap less, so the correction is conservative there.
        ratio = float(np.mean([len(f.test) / f.train_size for f in folds]))
        estimates = {name: {m: corrected_t([r[m] for r in by_name[name]], ratio) for m in METRICS} for name in names}
        differences = {
            name: {m: corrected_t(np.array([r[m] for r in by_name[name]]) - np.array([r[m] for r in by_name[reference]]), ratio) for m in METRICS}
            for name in names
            if name != reference
        }
    else:
        estimates, differences = _bootstrap_rows(plan, results, names, reference, budget, weights, over)
    rows = []
    for name in names:
        found = by_name[name]
        rows.append(
            {
                **({"finding": finding} if finding is not None else {}),
                "task": plan.name,
                "mode": mode,
                "budget": budget,
                "backbone": name,
                "reference": reference,
                "n_folds": len(found),
                "train_images": float(np.mean([r["n_train"] for r in found])),
                "train_patients": float(np.mean([r["n_train_patients"] for r in found])),
                "test_images": float(np.mean([r["n_test"] for r in found])),
                "metrics": {m: estimates[name][m].clipped(0.0, 1.0).to_dict() for m in METRICS},
                "difference": {m: differences[name][m].clipped(-1.0, 1.0).to_dict() for m in METRICS} if name in differences else None,
            }
        )
    return rows


def _bootstrap_rows(plan: TaskPlan, results: list[dict], names, reference, budget, weights, findings: list[str] | None = None):
    """Fixed test part: the mean over repeats of each metric, and its paired patient bootstrap.

    For a multi-label task, ``findings`` are averaged (one finding, or the macro mean):
    each finding's metric on its labelled test images at its fitted threshold, then the
    mean over the findings, on the same patient resamples.
    """
    test = plan.folds[0].test
    point, draws = {}, {}
    if findings == []:  # a budget at which no finding could be scored: no mean to estimate
        nothing = {m: Estimate(float("nan"), float("nan"), float("nan")) for m in METRICS}
        return {name: nothing for name in names}, {name: nothing for name in names if name != reference}
    for name in names:
        per_finding = []
        for finding in findings or [None]:
            truth = plan.targets[test] if finding is None else plan.targets[test, plan.findings.names.index(finding)]
            labelled = np.isfinite(truth)
            truth, finding_weights = truth[labelled].astype(int), weights[:, labelled]
            key = _score_key(name, budget, finding)
            runs = [(np.asarray(result["scores"][key], dtype=float)[labelled], result["scores"].get("threshold|" + key, 0.5)) for result in results]
            on_the_test_part = [weighted_metrics(truth, s, np.ones((1, len(truth))), t) for s, t in runs]
            found_point = {m: float(np.mean([found[m][0] for found in on_the_test_part])) for m in METRICS}
            per_run = [weighted_metrics(truth, s, finding_weights, t) for s, t in runs]
            with warnings.catch_warnings():  # a resample without a class leaves its metric NaN in every run
                warnings.simplefilter("ignore", RuntimeWarning)
                per_finding.append((found_point, {m: np.nanmean(np.stack([p[m] for p in per_run]), axis=0) for m in METRICS}))
        point[name] = {m: float(np.mean([p[m] for p, _ in per_finding])) for m in METRICS}
        draws[name] = {m: np.mean(np.stack([d[m] for _, d in per_finding]), axis=0) for m in METRICS}
    estimates = {name: {m: bootstrap_estimate(point[name][m], draws[name][m]) for m in METRICS} for name in names}
    differences = {
        name: {m: bootstrap_estimate(point[name][m] - point[reference][m], draws[name][m] - draws[reference][m], difference=True) for m in METRICS}
        for name in names
        if name != reference
    }
    return estimates, differences


def estimate_of(row: dict, metric: str = "auc", difference: bool = False) -> Estimate | None:
    """An Estimate back from a compare.json row."""
    found = row["difference"] if difference else row["metrics"]
    return Estimate(**found[metric]) if found else None
