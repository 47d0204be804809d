"""Figures, drawn with matplotlib's file-only backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_loss_curve(epochs: list[int], losses: list[float], out_path: str | Path, title: str = "Pretext loss (NT-Xent)") -> Path:
    """Pretext loss per epoch: the left half of the paper's Fig. 2."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(epochs, losses, marker="o")
    axes.set_xlabel("epoch")
    axes.set_ylabel("NT-Xent loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return Path(out_path)
