"""Matplotlib, set up once for every figure of cxrssl: the file-only backend and the shared style.

Importing this module chooses the ``Agg`` backend (no display needed, safe in worker
processes and on servers) before ``pyplot`` is loaded; the figure modules of
``explain`` and ``report`` take ``plt`` from here.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["plt", "save_figure", "integer_ticks", "light_grid", "plot_text", "GRID_ALPHA"]

GRID_ALPHA = 0.3  # the light grid of every chart


def light_grid(axes) -> None:
    """The faint grid every chart of cxrssl draws behind its data."""
    axes.grid(alpha=GRID_ALPHA)


def integer_ticks(axes) -> None:
    """Whole numbers only on the x axis (epochs, checkpoints)."""
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figure(figure, out_path: str | Path, **tight_layout) -> Path:
    """Lay ``figure`` out, write it to ``out_path`` and free it; returns the path."""
    figure.tight_layout(**tight_layout)
    figure.savefig(out_path)
    plt.close(figure)
    return Path(out_path)


def plot_text(text) -> str:
    """A user-given name as matplotlib shows it literally.

    A ``$`` would start mathtext (and an unbalanced formula stops ``savefig`` with an
    error); a legend label starting with ``_`` would be hidden.
    """
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text
