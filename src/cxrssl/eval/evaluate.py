"""From a backbone and a labelled manifest to probe results: the glue the verbs share."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from cxrssl.data.images import ImageSet, open_image_set, read_rows
from cxrssl.data.manifest import Manifest
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import extract_features
from cxrssl.eval.probe import ProbeResult, run_probe
from cxrssl.fileio import atomic_write_text


def load_task(data: str | Path | Manifest, image_size: int, progress: bool = True) -> ImageSet:
    """The readable, labelled images of a task (manifest or cache), decoded once."""
    manifest = read_rows(data)
    labelled = [i for i, row in enumerate(manifest.rows) if row.label]
    if not labelled:
        raise CxrsslError(f"{manifest.name}: no row has a label; the probe needs a labelled task manifest")
    images = open_image_set(data, image_size, progress, rows=labelled)
    if images.unreadable:
        first_path, reason = images.unreadable[0]
        print(f"warning: skipped {len(images.unreadable)} unreadable image(s) of {manifest.name}, e.g. {first_path} ({reason})")
    return images


def probe_backbone(
    backbone: torch.nn.Module,
    task: ImageSet,
    positive: str | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
    progress: bool = True,
) -> ProbeResult:
    features = extract_features(backbone, task, progress=progress)
    manifest = task.manifest
    return run_probe(features, manifest.labels, manifest.patient_keys, manifest.splits, positive, seed=seed, bootstrap=bootstrap)


def write_predictions(result: ProbeResult, task: ImageSet, out_path: str | Path) -> Path:
    """Per-image test predictions, for review: path, patient, label, score, prediction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "patient_id", "label", f"p_{result.positive}", "predicted"])
    for row_index, score in zip(result.test_indices, result.test_scores):
        row = task.manifest.rows[row_index]
        predicted = result.positive if score >= 0.5 else result.negative
        writer.writerow([row.path, row.patient_id, row.label, f"{score:.6f}", predicted])
    return atomic_write_text(out_path, buffer.getvalue())
