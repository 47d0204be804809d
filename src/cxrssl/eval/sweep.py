"""Downstream metrics at every saved checkpoint of a run, beside the pretext loss (Fig. 2).

The paper saw the pretext loss flatten near epoch 25 while downstream accuracy kept
rising; a sweep shows whether that holds for a run, and which checkpoint to keep.
The random initialisation the run started from is probed too, as epoch 0.

Which checkpoint to keep without labels is the paper's open question. For every
monitor the run logged (RankMe, alignment, uniformity; the k-NN AUC of
``pretrain --monitor``, or of ``sweep --monitor SMALL.csv`` computed here from each
checkpoint) :func:`monitor_choices` says which checkpoint it would keep and how much
probe AUC that choice loses against the best checkpoint; "last" (keep the final
epoch) is the choice to beat. One probe on one split is a noisy judge of a checkpoint
and says nothing of small label budgets; given ``budgets`` (a ``CompareSettings``) the
sweep also compares every checkpoint with ``eval.compare`` on the same patient-grouped
folds and label draws, and says per label budget which checkpoint each monitor keeps
and what that loses (:func:`budget_choices`).

:func:`sweep_run` returns the sweep; ``report.sweep.write_sweep_outputs`` writes
sweep.csv, sweep.png and sweep.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from scipy.stats import spearmanr

from cxrssl.data.imageset import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.eval.compare import CompareSettings, NamedBackbone, compare_backbones
from cxrssl.eval.evaluate import evaluate_backbone, load_task, result_payload
from cxrssl.eval.features import DEFAULT_READOUT, BackboneSpec
from cxrssl.eval.multilabel import FindingsProbeResult
from cxrssl.eval.probe import ProbeResult, ProbeSettings
from cxrssl.run import RunFolder
from cxrssl.ssl.monitors import MONITOR_COLUMNS, MONITOR_DIRECTION, knn_auc, knn_monitor_set


def sweep_folder(run: str | Path, dataset: str) -> Path:
    """Where a sweep of ``run`` on the task named ``dataset`` writes unless told otherwise: ``RUN/sweep_<dataset>``."""
    return Path(run) / f"sweep_{dataset}"


@dataclass
class Sweep:
    rows: list[dict]  # result_payload of each backbone, with its epoch
    specs: list[BackboneSpec]  # the random start, then every saved checkpoint
    results: list[ProbeResult]  # one per spec, fitted probe included
    monitors: dict  # per monitor: its Spearman correlation with the probe AUC over the checkpoints, the checkpoint it keeps, the AUC lost
    run: Path  # the run folder swept
    task: str  # the task it was probed on, as given
    log: list[dict]  # the run's log: pretext loss (and monitors) per epoch
    budgets: dict | None = None  # per label budget (budget_choices): each checkpoint's AUC over the compare folds, each monitor's choice

    @property
    def default_folder(self) -> Path:
        """Where the sweep's files go unless told otherwise: ``RUN/sweep_<dataset>``."""
        return sweep_folder(self.run, self.rows[0]["dataset"])

    def to_dict(self) -> dict:
        """What sweep.json holds."""
        found = {"run": str(self.run), "task": self.task, "rows": self.rows, "log": self.log, "monitors": self.monitors}
        return found if self.budgets is None else {**found, "budgets": self.budgets}


def sweep_run(
    run_dir: str | Path,
    task_data: str | Path,
    settings: ProbeSettings = ProbeSettings(),
    progress: bool = True,
    task: ImageSet | None = None,
    monitor: str | Path | None = None,
    readout: str = DEFAULT_READOUT,
    budgets: CompareSettings | None = None,
    journal: str | Path | None = None,
) -> Sweep:
    """Probe every checkpoint of ``run_dir`` on the task (no result file is written).

    ``task``: the task's images when the caller has decoded them already. ``monitor``:
    a small labelled manifest whose k-NN AUC (:func:`cxrssl.ssl.monitors.knn_auc`) is
    computed for every checkpoint, in place of any the run logged. ``budgets``: also
    compare every checkpoint at these label budgets and folds (``eval.compare``), its
    finished folds journalled in the folder ``journal`` (default: the sweep's default
    folder) so that a killed sweep resumes.
    """
    run = RunFolder(run_dir)
    checkpoints = run.saved_checkpoints()
    if not checkpoints:
        raise CxrsslError(f"{run.root}: no checkpoints/epoch_*.json; is this a run folder of `cxrssl pretrain`?")
    log = run.read_log()
    first = BackboneSpec.from_checkpoint(checkpoints[0])
    pretrain_seed = int(run.read_config()["pretrain"].get("seed", 0)) if run.config.is_file() else 0
    specs = [BackboneSpec.random(first.arch, first.image_size, pretrain_seed, readout)] + [
        replace(BackboneSpec.from_checkpoint(c), readout=readout) for c in checkpoints
    ]
    task = task or load_task(task_data, first.image_size, progress, settings)
    if monitor is not None:
        log = with_knn_monitor(log, specs[1:], monitor, first.image_size, progress)
    rows, results = [], []
    for spec in specs:
        result = evaluate_backbone(spec, task, settings, progress=progress)
        results.append(result)
        rows.append({"epoch": spec.epoch, **result_payload(spec, task_data, result)})
        if progress:
            mean = " (means over the findings)" if isinstance(result, FindingsProbeResult) else ""
            print(f"epoch {spec.epoch:4d}: AUC {result.metrics['auc']:.3f}  ACC {result.metrics['accuracy']:.3f}{mean}")
    monitors = monitor_correlations(rows, log)
    aucs = {row["epoch"]: row["metrics"]["auc"] for row in rows if row["epoch"] > 0}
    for name, choice in monitor_choices(aucs, log).items():
        monitors.setdefault(name, {}).update(choice)
    per_budget = None
    if budgets is not None:
        journal = journal or sweep_folder(run.root, rows[0]["dataset"])
        backbones = [NamedBackbone(checkpoint_name(spec), spec) for spec in specs]
        comparison = compare_backbones(backbones, [(rows[0]["dataset"], task)], journal, budgets, progress=progress)
        per_budget = budget_choices(comparison.payload, log)
    return Sweep(rows, specs, results, monitors, run.root, str(task_data), log, per_budget)


def checkpoint_name(spec: BackboneSpec) -> str:
    """A sweep's name for a backbone in its comparison: ``random init`` or ``epoch N``."""
    return "random init" if spec.checkpoint is None else f"epoch {spec.epoch}"


def budget_choices(payload: dict, log: list[dict]) -> dict[str, dict]:
    """Per label budget of a comparison of a run's checkpoints (backbones named by :func:`checkpoint_name`):
    each checkpoint's AUC over the folds (mean and interval; the macro mean over findings
    for a multi-label task), the random start's, and :func:`monitor_choices` on those AUCs.

    The AUC lost is between two checkpoints' means over the same folds; the best
    checkpoint is picked on those folds, so the loss of any choice is, if anything, overstated.
    """
    rows = [row for row in payload["tasks"][0]["rows"] if row.get("mode", "probe") == "probe"]
    found = {}
    for budget in dict.fromkeys(row["budget"] for row in rows):
        at = [row for row in rows if row["budget"] == budget]
        auc = {row["backbone"]: row["metrics"]["auc"] for row in at}
        epochs = {int(name.split()[1]): value for name, value in auc.items() if name.startswith("epoch ")}
        found[budget] = {
            "random_init_auc": auc.get("random init"),
            "auc": {str(epoch): value for epoch, value in sorted(epochs.items())},
            "choices": monitor_choices({epoch: value["value"] for epoch, value in epochs.items()}, log),
        }
    return found


def with_knn_monitor(log: list[dict], specs: list[BackboneSpec], monitor: str | Path, image_size: int, progress: bool = False) -> list[dict]:
    """The run's log with ``knn_auc`` at each checkpoint's epoch, from that checkpoint's features of the labelled set ``monitor``."""
    from cxrssl.eval.features import features_for

    images, targets, patients = knn_monitor_set(monitor, image_size, progress)
    values = {spec.epoch: knn_auc(features_for(spec, images), targets, patients) for spec in specs}
    return [{**entry, "knn_auc": f"{values[int(entry['epoch'])]:.6g}"} if int(entry["epoch"]) in values else entry for entry in log]


def monitor_choices(aucs: dict[int, float], log: list[dict]) -> dict[str, dict]:
    """Per monitor, and for "last": the checkpoint (epoch) it keeps, that checkpoint's AUC, the best one's and the AUC lost.

    ``aucs``: the probe AUC of each checkpoint by epoch. A monitor keeps the checkpoint
    with its best value (highest RankMe and k-NN AUC, lowest alignment and uniformity)
    among those it was measured at; ties go to the later epoch.
    """
    if not aucs:
        return {}
    best_epoch = max(aucs, key=lambda epoch: (aucs[epoch], epoch))
    at = {int(entry["epoch"]): entry for entry in log}
    choices = {"last": max(aucs)}
    for name in MONITOR_COLUMNS:
        measured = {epoch: _number(at[epoch].get(name)) for epoch in aucs if epoch in at}
        measured = {epoch: value for epoch, value in measured.items() if math.isfinite(value)}
        if measured:
            choices[name] = max(measured, key=lambda epoch: (MONITOR_DIRECTION[name] * measured[epoch], epoch))
    return {
        name: {
            "keeps_epoch": epoch,
            "auc": aucs[epoch],
            "best_epoch": best_epoch,
            "best_auc": aucs[best_epoch],
            "auc_lost": aucs[best_epoch] - aucs[epoch],
        }
        for name, epoch in choices.items()
    }


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def monitor_curves(log: list[dict]) -> dict[str, list[float]]:
    """Each label-free monitor the run logged, per epoch of the log (NaN where an epoch has none)."""
    curves = {name: [_number(entry.get(name)) for entry in log] for name in MONITOR_COLUMNS}
    return {name: values for name, values in curves.items() if any(math.isfinite(v) for v in values)}


def monitor_correlations(rows: list[dict], log: list[dict]) -> dict:
    """Spearman's rho between each monitor at a checkpoint's epoch and that checkpoint's probe AUC.

    Over the saved checkpoints that have the monitor (the random start has none); a
    positive rho for RankMe means a higher effective rank went with a better probe.
    """
    at = {int(entry["epoch"]): entry for entry in log}
    found = {}
    for name in MONITOR_COLUMNS:
        pairs = [(_number(at[row["epoch"]].get(name)), row["metrics"]["auc"]) for row in rows if row["epoch"] in at]
        pairs = [(value, auc) for value, auc in pairs if math.isfinite(value)]
        if len(pairs) >= 3 and len({value for value, _ in pairs}) > 1 and len({auc for _, auc in pairs}) > 1:
            rho = float(spearmanr(*zip(*pairs)).statistic)
            found[name] = {"spearman_with_auc": rho, "checkpoints": len(pairs)}
    return found
