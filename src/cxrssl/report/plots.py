"""Figures, drawn with matplotlib's file-only backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_loss_curve(epochs: list[int], losses: list[float], out_path: str | Path, title: str = "Pretext loss (NT-Xent)") -> Path:
    """Pretext loss per epoch: the left half of the paper's Fig. 2."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(epochs, losses, marker="o")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("NT-Xent loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return Path(out_path)


def plot_sweep(loss_epochs: list[int], losses: list[float], rows: list[dict], out_path: str | Path, title: str = "") -> Path:
    """The paper's Fig. 2: pretext loss per epoch, and downstream ACC / AUC (95 % CI) per checkpoint."""
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    loss_axes.plot(loss_epochs, losses, marker=".", color="tab:gray")
    loss_axes.set(xlabel="epoch", ylabel="NT-Xent loss", title="pretext loss")
    epochs = [row["epoch"] for row in rows]
    for metric, colour in (("accuracy", "tab:blue"), ("auc", "tab:orange")):
        values = [100 * row["metrics"][metric] for row in rows]
        low = [100 * (row["metrics"][metric] - row["intervals_95"][metric][0]) for row in rows]
        high = [100 * (row["intervals_95"][metric][1] - row["metrics"][metric]) for row in rows]
        metric_axes.errorbar(epochs, values, yerr=[low, high], marker="o", capsize=3, color=colour, label=metric.upper().replace("ACCURACY", "ACC"))
    metric_axes.set(xlabel="checkpoint epoch (0 = random init)", ylabel="percent", title="downstream probe, 95 % CI")
    metric_axes.legend()
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return Path(out_path)
