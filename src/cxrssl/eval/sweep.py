"""Downstream metrics at every saved checkpoint of a run, beside the pretext loss (Fig. 2).

The paper saw the pretext loss flatten near epoch 25 while downstream accuracy kept
rising; a sweep shows whether that holds for a run, and which checkpoint to keep.
The random initialisation the run started from is probed too, as epoch 0.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import spearmanr

from cxrssl.data.images import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.eval.evaluate import evaluate_backbone, load_task, result_payload
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import FindingsProbeResult
from cxrssl.eval.probe import ProbeResult, ProbeSettings
from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.report.plots import plot_sweep
from cxrssl.run import RunFolder
from cxrssl.ssl.monitors import MONITOR_COLUMNS


@dataclass
class Sweep:
    rows: list[dict]  # result_payload of each backbone, with its epoch
    folder: Path  # where sweep.csv, sweep.json and sweep.png are
    specs: list[BackboneSpec]  # the random start, then every saved checkpoint
    results: list[ProbeResult]  # one per spec, fitted probe included
    monitors: dict  # per label-free monitor: its Spearman correlation with the probe AUC over the checkpoints


def sweep_run(
    run_dir: str | Path,
    task_data: str | Path,
    out_dir: str | Path | None = None,
    settings: ProbeSettings = ProbeSettings(),
    progress: bool = True,
    task: ImageSet | None = None,
) -> Sweep:
    """Probe every checkpoint of ``run_dir`` on the task; write sweep.csv, sweep.json and sweep.png.

    ``task``: the task's images when the caller has decoded them already.
    """
    run = RunFolder(run_dir)
    checkpoints = run.saved_checkpoints()
    if not checkpoints:
        raise CxrsslError(f"{run.root}: no checkpoints/epoch_*.json; is this a run folder of `cxrssl pretrain`?")
    log = run.read_log()
    first = BackboneSpec.from_checkpoint(checkpoints[0])
    pretrain_seed = int(run.read_config()["pretrain"].get("seed", 0)) if run.config.is_file() else 0
    specs = [BackboneSpec.random(first.arch, first.image_size, pretrain_seed)] + [BackboneSpec.from_checkpoint(c) for c in checkpoints]
    task = task or load_task(task_data, first.image_size, progress, settings)
    rows, results = [], []
    for spec in specs:
        result = evaluate_backbone(spec, task, settings, progress=progress)
        results.append(result)
        rows.append({"epoch": spec.epoch, **result_payload(spec, task_data, result)})
        if progress:
            mean = " (means over the findings)" if isinstance(result, FindingsProbeResult) else ""
            print(f"epoch {spec.epoch:4d}: AUC {result.metrics['auc']:.3f}  ACC {result.metrics['accuracy']:.3f}{mean}")
    out_dir = Path(out_dir) if out_dir else run.root / f"sweep_{rows[0]['dataset']}"
    monitors = monitor_correlations(rows, log)
    atomic_write_json(out_dir / "sweep.json", {"run": str(run.root), "task": str(task_data), "rows": rows, "log": log, "monitors": monitors})
    atomic_write_text(out_dir / "sweep.csv", _sweep_csv(rows, log))
    loss_epochs = [int(entry["epoch"]) for entry in log]
    curves = {name: [_number(entry.get(name)) for entry in log] for name in MONITOR_COLUMNS}
    plot_sweep(loss_epochs, [float(entry["loss"]) for entry in log], rows, out_dir / "sweep.png", title=f"{run.root.name} on {rows[0]['dataset']}",
               monitors={name: values for name, values in curves.items() if any(math.isfinite(v) for v in values)})  # fmt: skip
    return Sweep(rows, out_dir, specs, results, monitors)


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


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


def _sweep_csv(rows: list[dict], log: list[dict]) -> str:
    at = {int(entry["epoch"]): entry for entry in log}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["epoch", "pretext_loss", *MONITOR_COLUMNS, "chosen_c"]
    for metric in METRICS:
        header += [metric, f"{metric}_low", f"{metric}_high"]
    writer.writerow(header)
    for row in rows:
        entry = at.get(row["epoch"], {})
        line = [row["epoch"], entry.get("loss", ""), *(entry.get(name, "") for name in MONITOR_COLUMNS), row.get("chosen_c", "per finding")]
        for metric in METRICS:
            low, high = row["intervals_95"].get(metric, (float("nan"), float("nan")))  # none with --bootstrap 0
            line += [f"{row['metrics'][metric]:.4f}", f"{low:.4f}", f"{high:.4f}"]
        writer.writerow(line)
    return buffer.getvalue()
