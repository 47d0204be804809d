"""From a backbone and a labelled manifest to probe results: the glue the verbs share."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxrssl.data.io import load_square_images
from cxrssl.data.manifest import Manifest
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import extract_features
from cxrssl.eval.probe import ProbeResult, run_probe
from cxrssl.fileio import atomic_write_text


@dataclass
class LabelledImages:
    """The readable, labelled images of a task manifest, decoded once."""

    manifest: Manifest  # only the rows that were read
    pixels: np.ndarray
    unreadable: list[tuple[str, str]]


def load_task(manifest: Manifest, image_size: int, progress: bool = True) -> LabelledImages:
    labelled = manifest.select([i for i, row in enumerate(manifest.rows) if row.label])
    if len(labelled) == 0:
        raise CxrsslError(f"{manifest.name}: no row has a label; the probe needs a labelled task manifest")
    loaded = load_square_images(labelled.files, image_size, progress=progress)
    if loaded.unreadable:
        print(f"warning: skipped {len(loaded.unreadable)} unreadable image(s) of {manifest.name}, e.g. {loaded.unreadable[0][0]} ({loaded.unreadable[0][1]})")
    return LabelledImages(labelled.select(loaded.kept), loaded.pixels, loaded.unreadable)


def probe_backbone(
    backbone: torch.nn.Module,
    task: LabelledImages,
    positive: str | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
    progress: bool = True,
) -> ProbeResult:
    features = extract_features(backbone, task.pixels, progress=progress)
    manifest = task.manifest
    return run_probe(features, manifest.labels, manifest.patient_keys, manifest.splits, positive, seed=seed, bootstrap=bootstrap)


def write_predictions(result: ProbeResult, task: LabelledImages, out_path: str | Path) -> Path:
    """Per-image test predictions, for review: path, patient, label, score, prediction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "patient_id", "label", f"p_{result.positive}", "predicted"])
    for row_index, score in zip(result.test_indices, result.test_scores):
        row = task.manifest.rows[row_index]
        predicted = result.positive if score >= 0.5 else result.negative
        writer.writerow([row.path, row.patient_id, row.label, f"{score:.6f}", predicted])
    return atomic_write_text(out_path, buffer.getvalue())
