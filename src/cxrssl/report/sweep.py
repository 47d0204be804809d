"""The files of a ``cxrssl sweep``: sweep.csv (metrics per checkpoint beside the loss), sweep.png (Fig. 2), sweep.json;
with label budgets, sweep_budgets.csv (each checkpoint's AUC per budget, and which monitors keep it).

sweep.json is written last: a folder without it holds an interrupted write (and, with
label budgets, the journal of the comparison's finished folds, removed once it is written).
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.eval.compare.journal import discard_journal
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.sweep import Sweep, monitor_curves
from cxrssl.fileio import atomic_write_json, atomic_write_text, csv_text
from cxrssl.report.plots import plot_sweep
from cxrssl.ssl.monitors import MONITOR_COLUMNS

# What write_sweep_outputs writes, in that order (BUDGETS_FILE before sweep.json when the sweep has label budgets).
SWEEP_FILES = ("sweep.csv", "sweep.png", "sweep.json")
BUDGETS_FILE = "sweep_budgets.csv"


def sweep_csv(rows: list[dict], log: list[dict]) -> str:
    """One line per checkpoint (epoch 0 = the random start): the logged loss and monitors at its epoch, C, each metric with its interval."""
    at = {int(entry["epoch"]): entry for entry in log}
    header = ["epoch", "pretext_loss", *MONITOR_COLUMNS, "chosen_c"]
    for metric in METRICS:
        header += [metric, f"{metric}_low", f"{metric}_high"]
    lines = []
    for row in rows:
        entry = at.get(row["epoch"], {})
        line = [row["epoch"], entry.get("loss", ""), *(entry.get(name, "") for name in MONITOR_COLUMNS), row.get("chosen_c", "per finding")]
        for metric in METRICS:
            low, high = row["intervals_95"].get(metric, (float("nan"), float("nan")))  # none with --bootstrap 0
            line += [f"{row['metrics'][metric]:.4f}", f"{low:.4f}", f"{high:.4f}"]
        lines.append(line)
    return csv_text(header, lines)


def budgets_csv(budgets: dict) -> str:
    """One line per label budget and checkpoint (epoch 0 = the random start): the AUC over the compare folds
    with its interval, and the monitors that keep that checkpoint (``last`` included)."""
    lines = []
    for budget, found in budgets.items():
        kept: dict[int, list[str]] = {}
        for name, choice in found["choices"].items():
            kept.setdefault(int(choice["keeps_epoch"]), []).append(name)
        best = next(iter(found["choices"].values()))["best_epoch"] if found["choices"] else None
        start = {"0": found["random_init_auc"]} if found["random_init_auc"] else {}
        for epoch, auc in {**start, **found["auc"]}.items():
            epoch = int(epoch)
            lines.append(
                [budget, epoch, f"{auc['value']:.4f}", f"{auc['low']:.4f}", f"{auc['high']:.4f}", int(epoch == best), ";".join(kept.get(epoch, []))]
            )
    return csv_text(["budget", "epoch", "auc", "auc_low", "auc_high", "best", "kept_by"], lines)


def plot_sweep_figure(sweep: Sweep, out_path: str | Path) -> Path:
    """Fig. 2 of a sweep: the pretext loss, the probe per checkpoint and the logged monitors."""
    log = sweep.log
    return plot_sweep(
        [int(entry["epoch"]) for entry in log],
        [float(entry["loss"]) for entry in log],
        sweep.rows,
        out_path,
        title=f"{sweep.run.name} on {sweep.rows[0]['dataset']}",
        monitors=monitor_curves(log),
    )


def write_sweep_outputs(sweep: Sweep, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``SWEEP_FILES`` into ``out_dir`` (default: ``sweep.default_folder``, RUN/sweep_<dataset>), sweep.json last."""
    out_dir = Path(out_dir) if out_dir else sweep.default_folder
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_text(out_dir / "sweep.csv", sweep_csv(sweep.rows, sweep.log)), plot_sweep_figure(sweep, out_dir / "sweep.png")]
    if sweep.budgets is not None:
        files.append(atomic_write_text(out_dir / BUDGETS_FILE, budgets_csv(sweep.budgets)))
    files.append(atomic_write_json(out_dir / "sweep.json", sweep.to_dict()))
    discard_journal(out_dir)
    return files
