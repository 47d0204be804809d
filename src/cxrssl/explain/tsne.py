"""t-SNE of frozen features across checkpoints (the paper's Fig. 3).

One panel per checkpoint, points coloured by class, one legend. Features are
standardised first (as the probe sees them); perplexity is 30, or less for small
sets (t-SNE needs perplexity < N/3). The 2-D coordinates are saved beside the figure
so the panels can be redrawn or inspected point by point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

from cxrssl.data.findings import finding_labels
from cxrssl.data.imageset import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec, features_for
from cxrssl.fileio import atomic_write_text, csv_text
from cxrssl.plotting import plot_text, plt, save_figure

COORDINATE_COLUMNS = ("backbone", "epoch", "path", "label", "x", "y")


def finding_classes(task: ImageSet, finding: str) -> np.ndarray:
    """Each image's class for one finding: '<finding>', 'no <finding>' or 'not labelled'."""
    labels = finding_labels(task.manifest)
    if labels is None:
        raise CxrsslError(f"{task.manifest.name}: has no findings columns; --finding needs a manifest with findings")
    values = labels.subset([finding]).values[:, 0]
    return np.where(values == 1, finding, np.where(values == 0, f"no {finding}", "not labelled"))


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    scaled = StandardScaler().fit_transform(features)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(scaled)


def tsne_panels(
    specs: list[BackboneSpec], task: ImageSet, out_path: str | Path, seed: int = 0, progress: bool = False, finding: str | None = None
) -> tuple[Path, Path]:
    """Draw one panel per backbone; returns (figure, coordinates CSV).

    ``finding``: colour a multi-label task's points by that finding (positive, negative, not labelled) instead of by class.
    """
    if finding is None and not any(task.manifest.labels):
        found = finding_labels(task.manifest)
        names = f" (one of {', '.join(found.names)})" if found is not None else ""
        raise CxrsslError(f"{task.manifest.name}: has no class labels to colour by; give --finding NAME{names}")
    labels = np.array(task.manifest.labels) if finding is None else finding_classes(task, finding)
    classes = sorted(set(labels))
    colours = dict(zip(classes, plt.get_cmap("tab10").colors))
    figure, axes = plt.subplots(1, len(specs), figsize=(3.6 * len(specs), 3.9), dpi=110, squeeze=False)
    points = []  # the coordinates CSV: one line per backbone x image
    for axis, spec in zip(axes[0], specs):
        coords = tsne_embedding(features_for(spec, task, progress=progress), seed)
        for name in classes:
            chosen = labels == name
            axis.scatter(coords[chosen, 0], coords[chosen, 1], s=6, alpha=0.7, color=colours[name], label=plot_text(name))
        axis.set_title(spec.init_label if spec.checkpoint is None else f"epoch {spec.epoch}", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        for row, label, (x, y) in zip(task.manifest.rows, labels, coords):
            points.append([spec.description, spec.epoch, row.path, label, f"{x:.4f}", f"{y:.4f}"])
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=len(classes), markerscale=3, frameon=False)
    save_figure(figure, out_path, rect=(0, 0.08, 1, 1))
    coordinates = atomic_write_text(Path(out_path).with_suffix(".csv"), csv_text(COORDINATE_COLUMNS, points))
    return Path(out_path), coordinates
