"""The resampling plan of a comparison: per task, its outer folds and the label-budget draws of each.

The plan is drawn from the task alone (labels, patients, split, the seed), never from a
backbone, so every backbone is probed on exactly the same folds and draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cxrssl.data.imageset import ImageSet
from cxrssl.data.splits import label_budget_rows, multilabel_patient_folds, patient_budget_rows, patient_classes
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.finetune import FinetuneSettings
from cxrssl.eval.multilabel import MIN_TRAINING_PATIENTS, FindingsTask, findings_split, findings_task, left_out_findings, wants_findings
from cxrssl.eval.probe import ProbeError, ProbeSettings, binary_targets, has_test_split, probe_split
from cxrssl.eval.stats import CORRECTED_T, PATIENT_BOOTSTRAP

DEFAULT_BUDGETS: tuple[int | None, ...] = (10, 25, 50, 100, 250, None)
FINETUNED = " (fine-tuned)"  # appended to a backbone's name for its fine-tuned rows


class CompareError(CxrsslError):
    """A comparison that cannot run as asked: one line naming the task or flag, and the fix."""


def budget_name(budget: int | None) -> str:
    return "all" if budget is None else str(budget)


def score_key(name: str, budget: str, finding: str | None = None) -> str:
    """Where a fold result keeps a backbone's test scores at a budget (and finding), for the bootstrap."""
    return f"{name}|{budget}" if finding is None else f"{name}|{budget}|{finding}"


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
        splits = {
            repeat: multilabel_patient_folds(task.patients, task.targets, settings.folds, _seed(seed, repeat)) for repeat in range(settings.repeats)
        }
        smallest = min(len(set(task.patients[train])) for found in splits.values() for train, _ in found)
        too_large = [b for b in settings.budgets if b is not None and b > smallest]
        if too_large:  # the limit of the smallest training part, not of the first one drawn
            raise CompareError(
                f"{name}: label budget {too_large[0]} patients: the smallest training part has {smallest}; "
                f"lower --labels to at most {smallest} or use 'all'"
            )
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
